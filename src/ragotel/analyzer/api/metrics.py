"""Self-metrics for /metrics: gauges read at scrape (windows, ingest queue, alerts, outbox) and alerting's counters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ragotel.analyzer.alerting import Alerting
from ragotel.analyzer.windows import Windows

__all__ = ["AlertingCollector", "AlertingMetrics", "WindowsCollector", "exposition"]


class AlertingMetrics:
    """Prometheus metrics of rules, notifications and recoveries (names follow Prometheus' own notifier)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "ragotel_analyzer_rule_evaluations", "Rule evaluations.", ["rule"], registry=registry
        )
        self.evaluation_failures = Counter(
            "ragotel_analyzer_rule_evaluation_failures", "Rule evaluations that raised.", ["rule"], registry=registry
        )
        self.evaluation_seconds = Histogram(
            "ragotel_analyzer_rule_evaluation_seconds",
            "Time to evaluate one rule.",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=registry,
        )
        self.sent = Counter(
            "ragotel_analyzer_notifications_sent", "Notifications delivered.", ["channel"], registry=registry
        )
        self.errors = Counter(
            "ragotel_analyzer_notifications_errors", "Failed delivery attempts.", ["channel"], registry=registry
        )
        self.dropped = Counter(
            "ragotel_analyzer_notifications_dropped",
            "Notifications given up after retries (or refused as malformed by the receiver).",
            ["channel"],
            registry=registry,
        )
        self.latency = Histogram(
            "ragotel_analyzer_notification_latency_seconds",
            "Time to deliver one batch.",
            ["channel"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.recoveries = Counter(
            "ragotel_analyzer_recoveries", "Recovery hook outcomes.", ["hook", "status"], registry=registry
        )

    def evaluated(self, rule: str, seconds: float, error: BaseException | None) -> None:
        self.evaluations.labels(rule).inc()
        self.evaluation_seconds.observe(seconds)
        if error is not None:
            self.evaluation_failures.labels(rule).inc()

    def delivered(self, channel: str, n: int, seconds: float) -> None:
        self.sent.labels(channel).inc(n)
        self.latency.labels(channel).observe(seconds)

    def failed(self, channel: str, n: int, *, gave_up: bool) -> None:
        self.errors.labels(channel).inc(n)
        if gave_up:
            self.dropped.labels(channel).inc(n)

    def recorded(self, hook: str, status: str) -> None:
        self.recoveries.labels(hook, status).inc()


class AlertingCollector(Collector):
    """Alerts by rule/state/severity and outbox rows by channel/status, read at scrape time."""

    def __init__(self, alerting: Alerting) -> None:
        self._alerting = alerting

    def collect(self) -> Iterable[Metric]:
        alerts = GaugeMetricFamily(
            "ragotel_analyzer_alerts", "Pending and firing alerts.", labels=["rule", "state", "severity"]
        )
        for (rule, state, severity), n in sorted(self._alerting.alert_counts.items()):
            alerts.add_metric([rule, state, severity], n)
        yield alerts
        queue = GaugeMetricFamily(
            "ragotel_analyzer_notifications_queue_length", "Notifications waiting for delivery.", labels=["channel"]
        )
        failed = GaugeMetricFamily(
            "ragotel_analyzer_notifications_undelivered",
            "Notifications in the outbox that were given up (kept for the retention period).",
            labels=["channel"],
        )
        store = self._alerting.store
        counts = store.outbox_counts() if store is not None else {}
        for name in self._alerting.channel_names:
            queue.add_metric([name], counts.get((name, "pending"), 0))
            failed.add_metric([name], counts.get((name, "failed"), 0))
        yield queue
        yield failed


class WindowsCollector(Collector):
    """The ingest queue (items, bytes, refusing) and the per-stage window statistics, read at scrape time."""

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
        yield CounterMetricFamily(
            "ragotel_analyzer_overflow_items",
            "Items counted into the overflow series since start because max_series was reached.",
            counts["overflow"],
        )
        dropped = CounterMetricFamily(
            "ragotel_analyzer_graph_dropped_items",
            "Dependency-graph items left out since start: calls on a new edge past the edge limit (edge_limit), "
            "halves of a cross-service call pushed out of the full pairing map (pair_limit).",
            labels=["reason"],
        )
        dropped.add_metric(["edge_limit"], counts["graph_overflow"])
        dropped.add_metric(["pair_limit"], self._windows.pairs.counts["dropped"])
        yield dropped
        labels = ["service", "stage", "component"]
        rate = GaugeMetricFamily("ragotel_stage_request_rate", "Spans per second over the window.", labels=labels)
        errors = GaugeMetricFamily("ragotel_stage_error_ratio", "Failed fraction over the window.", labels=labels)
        # A summary of quantiles only: the window has no cumulative _count/_sum to offer, and the text format
        # reserves the ``quantile`` label for summaries.
        latency = Metric("ragotel_stage_latency_seconds", "Latency quantiles over the window.", "summary")
        for signal, family in (("request_rate", rate), ("error_rate", errors)):
            for value in self._windows.signal(signal):
                family.add_metric([value.labels.get(k, "") for k in labels], value.value)
        for signal, quantile in (("latency_p50", "0.5"), ("latency_p95", "0.95"), ("latency_p99", "0.99")):
            for value in self._windows.signal(signal):
                sample_labels = {k: value.labels.get(k, "") for k in labels}
                latency.add_sample(latency.name, {**sample_labels, "quantile": quantile}, value.value)
        yield rate
        yield errors
        yield latency


class _WithoutCreated(Collector):
    """A registry's metrics without the ``*_created`` samples (exposed as gauge families in the text format).

    Filtering here rather than calling ``prometheus_client.disable_created_metrics()`` leaves the process-global
    setting of an application that embeds the analyzer alone.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


def exposition(registry: CollectorRegistry) -> str:
    """The Prometheus text exposition of ``registry`` (``promtool check metrics`` clean)."""
    return generate_latest(_WithoutCreated(registry)).decode()
