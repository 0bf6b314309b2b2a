"""Vestry's services, each its own process with its own store."""
