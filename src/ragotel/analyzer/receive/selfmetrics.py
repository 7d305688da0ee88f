"""The receiving side's own Prometheus metrics: requests, items, ingest and pass-through outcomes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

__all__ = ["AnalyzerMetrics"]


class AnalyzerMetrics:
    """Counters the receivers, ingest and pass-through update; every one lives in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "ragotel_analyzer_requests",
            "OTLP export requests by transport, signal and outcome.",
            ["transport", "signal", "outcome"],
            registry=registry,
        )
        self.items = Counter(
            "ragotel_analyzer_items",
            "Spans, data points and log records received, by signal and outcome (accepted|rejected).",
            ["signal", "outcome"],
            registry=registry,
        )
        self.refused = Counter(
            "ragotel_analyzer_refused_requests",
            "Requests refused as retryable because the analyzer was overloaded, by reason.",
            ["reason"],
            registry=registry,
        )
        self.ingest_seconds = Histogram(
            "ragotel_analyzer_ingest_seconds",
            "Time to merge one accepted request into the windows.",
            ["signal"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=registry,
        )
        self.passthrough = Counter(
            "ragotel_analyzer_passthrough_requests",
            "Requests forwarded downstream, by outcome (sent|dropped|failed).",
            ["signal", "outcome"],
            registry=registry,
        )
        ProcessCollector(registry=registry)
