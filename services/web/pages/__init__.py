"""The public site's pages, one module per area."""
