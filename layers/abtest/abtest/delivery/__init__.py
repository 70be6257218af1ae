"""Outbound delivery: the I/O side of webhooks (connecting to a checked address)."""
