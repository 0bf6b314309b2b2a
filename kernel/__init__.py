"""What every Vestry service needs and nothing service-specific: settings, the store's
engine, the outbox and its relay, the idempotent inbox, the JetStream streams and
consumers, dead letters, and request/reply commands."""
