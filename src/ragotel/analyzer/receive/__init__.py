"""Receiving: OTLP over gRPC and HTTP, payload decoding, auth, the ingest queue and pass-through."""
