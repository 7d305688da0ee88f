"""The analyzer's own Prometheus metrics, and a collector exposing the window statistics at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ragotel.analyzer.windows import Windows

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

    def watch(self, windows: Windows, queue_state: Callable[[], tuple[int, int, bool]]) -> None:
        """Expose window statistics and the ingest queue (items, bytes, refusing) at each scrape."""
        self.registry.register(_StateCollector(windows, queue_state))


class _StateCollector(Collector):
    def __init__(self, windows: Windows, queue_state: Callable[[], tuple[int, int, bool]]) -> None:
        self._windows = windows
        self._queue_state = queue_state

    def collect(self) -> Iterator[Metric]:
        items, size, refusing = self._queue_state()
        yield GaugeMetricFamily("ragotel_analyzer_ingest_queue_items", "Requests waiting for the windows.", items)
        yield GaugeMetricFamily("ragotel_analyzer_ingest_queue_bytes", "Bytes of requests waiting.", size)
        yield GaugeMetricFamily(
            "ragotel_analyzer_overloaded", "1 while requests are refused as overloaded.", float(refusing)
        )
        counts = self._windows.snapshot_counts()
        yield GaugeMetricFamily("ragotel_analyzer_series", "Series held in the windows.", counts["series"])
        overflow = GaugeMetricFamily(
            "ragotel_analyzer_overflow_items",
            "Items counted into the overflow series since start because max_series was reached.",
            counts["overflow"],
        )
        yield overflow
        labels = ["service", "stage", "component"]
        rate = GaugeMetricFamily("ragotel_stage_request_rate", "Spans per second over the window.", labels=labels)
        errors = GaugeMetricFamily("ragotel_stage_error_ratio", "Failed fraction over the window.", labels=labels)
        latency = GaugeMetricFamily(
            "ragotel_stage_latency_seconds", "Latency quantiles over the window.", labels=[*labels, "quantile"]
        )
        for signal, family, quantile in (
            ("request_rate", rate, None),
            ("error_rate", errors, None),
            ("latency_p50", latency, "0.5"),
            ("latency_p95", latency, "0.95"),
            ("latency_p99", latency, "0.99"),
        ):
            for value in self._windows.signal(signal):
                values = [value.labels.get(k, "") for k in labels]
                family.add_metric(values + ([quantile] if quantile else []), value.value)
        yield rate
        yield errors
        yield latency
