"""Self-metrics for /metrics: gauges read at scrape (windows, ingest queue, alerts, outbox) and alerting's counters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ragotel.analyzer.alerting import Alerting
from ragotel.analyzer.windows import Windows

__all__ = ["AlertingCollector", "AlertingMetrics", "WindowsCollector"]


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
