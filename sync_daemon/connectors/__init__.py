"""Connectors: one module per remote system; `http` owns retries and the rate limit."""
