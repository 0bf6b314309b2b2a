"""Notifications: contacts, consent, templates, email and SMS, and the delivery ledger."""

NAME = "notifications"
