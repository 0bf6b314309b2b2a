"""The web service: the only HTTP door. It turns pages and forms into the other
services' commands over NATS and renders their replies; it owns no business data."""

NAME = "web"
