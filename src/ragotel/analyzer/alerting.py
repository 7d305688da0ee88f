"""Wires part 2 into the analyzer server: rules -> alerts -> outbox/channels and recovery, state, API, metrics.

``attach(server)`` is called by ``Server`` once its windows exist. Everything here runs as one Component ticked
on the server's loop thread; delivery and recovery actions run on their own threads.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ragotel.analyzer.api.router import Request, Response
from ragotel.analyzer.config.model import Config
from ragotel.analyzer.judge.alert_state import AlertEngine, iso_time
from ragotel.analyzer.judge.diagnosis import Diagnoser, StatsSource
from ragotel.analyzer.judge.rules import build_rule
from ragotel.analyzer.notify.channels import build_channel
from ragotel.analyzer.notify.outbox import Outbox
from ragotel.analyzer.recover.recovery import RecoveryManager
from ragotel.analyzer.state import StateStore
from ragotel.analyzer.vocabulary import parse_duration

if TYPE_CHECKING:
    from ragotel.analyzer.server import Server

__all__ = ["Alerting", "attach"]

_log = logging.getLogger("ragotel.analyzer.alerting")
_PRUNE_EVERY: Final = 3600.0
_STATES: Final = frozenset({"pending", "firing", "resolved"})


def _finite(value: Any) -> Any:
    """JSON without NaN/Infinity (the API encoder refuses them; receivers choke on them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class _Metrics:
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


class _StateCollector(Collector):
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


class Alerting:
    """The alerting Component: owns the state store, rule engine, outbox and recovery manager."""

    def __init__(self, config: Config, windows: StatsSource, registry: CollectorRegistry) -> None:
        self.config = config
        self._windows = windows
        self._metrics = _Metrics(registry)
        self._rules = [build_rule(spec, window=config.window) for spec in config.rules if spec.enabled]
        self._channel_specs = list(config.channels)
        self.channel_names = [c.name for c in self._channel_specs]
        self.store: StateStore | None = None
        self.engine: AlertEngine | None = None
        self.outbox: Outbox | None = None
        self.recovery: RecoveryManager | None = None
        self.alert_counts: dict[tuple[str, str, str], int] = {}
        self.active: list[dict[str, Any]] = []
        self._last_prune = 0.0
        registry.register(_StateCollector(self))

    # -- Component ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the state, restore pending/firing alerts, start delivery threads."""
        now = time.time()
        store = self.store = StateStore(self.config.state.path)
        self.outbox = Outbox(store, [build_channel(c) for c in self._channel_specs], stats=self._metrics)
        self.recovery = RecoveryManager(self.config.recovery, store, self.outbox, stats=self._metrics)
        diagnoser = Diagnoser(self._windows, window=self.config.window)
        self.engine = AlertEngine(
            self._rules,
            self._windows,
            diagnoser,
            store,
            self.outbox,
            absent_grace=self.config.window,
            listeners=[self.recovery],
            on_evaluation=self._metrics.evaluated,
        )
        self.engine.restore(now)
        self._publish()
        self.outbox.start()
        _log.info(
            "alerting started",
            extra={"rules": len(self._rules), "channels": len(self.channel_names), "state": store.path},
        )

    def tick(self, now: float) -> None:
        if self.engine is None or self.recovery is None or self.outbox is None or self.store is None:
            return
        self.engine.tick(now)
        self._publish()
        firing = [a for a in self.active if a["status"] == "firing"]
        self.outbox.refresh(now, firing)
        self.recovery.tick(now, firing)
        if now - self._last_prune >= _PRUNE_EVERY:
            self._last_prune = now
            removed = self.store.prune(now - self.config.state.retention)
            if removed:
                _log.info("pruned %d old alert/outbox/recovery records", removed)

    def stop(self) -> None:
        """Let running recovery actions record their result, stop delivery, close the state file."""
        if self.recovery is not None:
            self.recovery.close()
        if self.outbox is not None:
            self.outbox.stop()
        if self.store is not None:
            self.store.close()

    def _publish(self) -> None:
        """Snapshots of the active alerts for other threads (API, scrapes): replaced whole, never mutated."""
        active = [a.snapshot() for a in self.engine.active()] if self.engine is not None else []
        counts: dict[tuple[str, str, str], int] = {}
        for alert in active:
            key = (alert["rule"], alert["status"], alert["severity"])
            counts[key] = counts.get(key, 0) + 1
        self.active, self.alert_counts = active, counts

    # -- API -----------------------------------------------------------------------------------------------------
    def routes(self) -> Sequence[tuple[str, str, Any]]:
        return (
            ("GET", "/api/v1/alerts", self.api_alerts),
            ("GET", "/api/v1/recoveries", self.api_recoveries),
            ("GET", "/api/v1/notifications", self.api_notifications),
            ("GET", "/api/v1/rules", self.api_rules),
        )

    @staticmethod
    def _since(request: Request, default: str = "24h") -> float:
        raw = request.query.get("since", default)
        try:
            return time.time() - parse_duration(raw)
        except ValueError:
            raise _BadQuery(f"query parameter since: expected a duration such as 30m, 24h or 7d, got {raw!r}") from None

    @staticmethod
    def _limit(request: Request) -> int:
        raw = request.query.get("limit", "500")
        if not raw.isdigit() or not 1 <= int(raw) <= 10000:
            raise _BadQuery(f"query parameter limit: expected an integer from 1 to 10000, got {raw!r}")
        return int(raw)

    def api_alerts(self, request: Request) -> Response:
        """Alerts active now or changed within ``since`` (default 24h), newest first, each with its diagnosis."""
        if self.store is None:
            return Response.error(503, "alerting is not started")
        try:
            since, limit = self._since(request), self._limit(request)
            states = [s for s in request.query.get("status", "").split(",") if s]
            if "active" in states:
                states = [s for s in states if s != "active"] + ["pending", "firing"]
            unknown = [s for s in states if s not in _STATES]
            if unknown:
                raise _BadQuery(
                    f"query parameter status: expected pending, firing, resolved or active, got {unknown[0]!r}"
                )
        except _BadQuery as exc:
            return Response.error(400, str(exc))
        rows = self.store.query_alerts(
            since=since,
            states=states,
            rule=request.query.get("rule"),
            service=request.query.get("service"),
            limit=limit,
        )
        deliveries: dict[int, list[dict[str, Any]]] = {}
        if rows:
            for n in self.store.notifications(alert_ids=[r["id"] for r in rows], limit=limit * 20):
                deliveries.setdefault(int(n["alert_id"]), []).append(_notification(n))
        live = {a["id"]: a for a in self.active}
        alerts = [_alert(row, deliveries.get(int(row["id"]), []), live.get(row["id"])) for row in rows]
        return Response(200, _finite({"alerts": alerts, "count": len(alerts)}))

    def api_recoveries(self, request: Request) -> Response:
        """The recovery audit trail within ``since`` (default 24h), newest first."""
        if self.store is None:
            return Response.error(503, "alerting is not started")
        try:
            since, limit = self._since(request), self._limit(request)
        except _BadQuery as exc:
            return Response.error(400, str(exc))
        rows = self.store.recoveries(
            since=since, hook=request.query.get("hook"), service=request.query.get("service"), limit=limit
        )
        out = []
        for row in rows:
            item = dict(row)
            item["dry_run"] = bool(item["dry_run"])
            for key in ("started_at", "finished_at", "verify_at"):
                item[key] = iso_time(item[key])
            out.append(item)
        return Response(200, _finite({"recoveries": out, "count": len(out)}))

    def api_notifications(self, request: Request) -> Response:
        """Outbox rows (``status`` pending, delivered or failed), newest first: where delivery problems show."""
        if self.store is None:
            return Response.error(503, "alerting is not started")
        status = request.query.get("status")
        if status not in (None, "pending", "delivered", "failed"):
            return Response.error(400, f"query parameter status: expected pending, delivered or failed, got {status!r}")
        try:
            limit = self._limit(request)
        except _BadQuery as exc:
            return Response.error(400, str(exc))
        rows = [_notification(n) for n in self.store.notifications(status=status, limit=limit)]
        return Response(200, _finite({"notifications": rows, "count": len(rows)}))

    def api_rules(self, request: Request) -> Response:
        """Every rule with its configuration, evaluation health and active alerts (like Prometheus' /api/v1/rules)."""
        if self.engine is None:
            return Response.error(503, "alerting is not started")
        engine = self.engine
        active: dict[str, list[dict[str, Any]]] = {}
        for alert in self.active:
            snap = {k: v for k, v in alert.items() if k != "diagnosis"}
            for key in ("active_since", "started_at", "resolved_at"):
                snap[key] = iso_time(snap[key])
            active.setdefault(alert["rule"], []).append(snap)
        rules = []
        for rule in engine.rules:
            spec = rule.spec
            health = engine.health[spec.name]
            rules.append(
                {
                    "name": spec.name,
                    "type": spec.type,
                    "spec": spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                    "health": "err" if health.last_error else ("ok" if health.evaluations else "unknown"),
                    "last_error": health.last_error,
                    "evaluations": health.evaluations,
                    "failures": health.failures,
                    "last_evaluation": iso_time(health.last_evaluation),
                    "evaluation_seconds": health.last_duration,
                    "alerts": active.get(spec.name, []),
                }
            )
        return Response(200, _finite({"rules": rules}))


class _BadQuery(ValueError):
    pass


def _alert(row: Mapping[str, Any], deliveries: list[dict[str, Any]], live: Mapping[str, Any] | None) -> dict[str, Any]:
    """An episode as stored; for an active one, value, threshold and severity as of the last evaluation."""
    labels = row["labels"] or {}
    if live is not None:
        row = {**row, "value": live["value"], "threshold": live["threshold"], "severity": live["severity"]}
    return {
        "id": row["id"],
        "fingerprint": row["fingerprint"],
        "rule": row["rule"],
        "status": row["state"],
        "severity": row["severity"],
        "labels": labels,
        "service": labels.get("service"),
        "stage": labels.get("stage"),
        "component": labels.get("component"),
        "message": row["message"],
        "value": row["value"],
        "threshold": row["threshold"],
        "active_since": iso_time(row["active_since"]),
        "started_at": iso_time(row["started_at"]),
        "resolved_at": iso_time(row["resolved_at"]),
        "updated_at": iso_time(row["updated_at"]),
        "notified": bool(row["notified"]),
        "diagnosis": row["diagnosis"],
        "symptoms": row["symptoms"],
        "notifications": deliveries,
    }


def _notification(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "alert_id": row["alert_id"],
        "kind": row["kind"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "created_at": iso_time(row["created_at"]),
        "next_attempt_at": iso_time(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "delivered_at": iso_time(row["delivered_at"]),
    }


def attach(server: Server) -> Alerting:
    """Build the alerting side from ``server.config`` and register it as a component with its API routes."""
    alerting = Alerting(server.config, server.windows, server.registry)
    server.add_component(alerting)
    for method, path, handler in alerting.routes():
        server.add_route(method, path, handler)
    return alerting
