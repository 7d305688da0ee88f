"""ragotel-analyzer: OTLP receivers, sliding-window statistics, rules, alerts and recovery for RAG services."""
