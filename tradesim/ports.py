"""Protocols that domain-facing code depends on; adapters implement them."""
