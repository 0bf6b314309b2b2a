"""Subscriptions: members, tiers, memberships, invoicing runs, payments and credit notes."""

NAME = "subscriptions"
