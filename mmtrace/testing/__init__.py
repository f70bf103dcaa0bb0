"""Helpers for tests and examples: synthetic traces built without a kernel (never mixed with recorded ones)."""
