"""The HTTP API: routing, every handler and its JSON, /metrics."""
