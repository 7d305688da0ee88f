"""The API of alerting: /api/v1/alerts, /recoveries, /notifications and /rules, and the JSON of each."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ragotel.analyzer.alerting import Alerting
from ragotel.analyzer.api.query import choice_param, choices_param, duration_param, int_param
from ragotel.analyzer.api.router import Request, Response
from ragotel.analyzer.judge.records import Alert
from ragotel.analyzer.vocabulary import iso_time

__all__ = ["AlertsApi"]

_STATES: Final = ("pending", "firing", "resolved", "active")
_DELIVERIES: Final = ("pending", "delivered", "failed")


class AlertsApi:
    """Handlers reading the alerting component's state store and its published active alerts."""

    def __init__(self, alerting: Alerting) -> None:
        self._alerting = alerting

    def routes(self) -> Sequence[tuple[str, str, Any]]:
        return (
            ("GET", "/api/v1/alerts", self.api_alerts),
            ("GET", "/api/v1/recoveries", self.api_recoveries),
            ("GET", "/api/v1/notifications", self.api_notifications),
            ("GET", "/api/v1/rules", self.api_rules),
        )

    @staticmethod
    def _since(request: Request) -> float:
        return time.time() - duration_param(request.query, "since", "24h")

    @staticmethod
    def _limit(request: Request) -> int:
        return int_param(request.query, "limit", 500, minimum=1, maximum=10000)

    def api_alerts(self, request: Request) -> Response:
        """Alerts active now or changed within ``since`` (default 24h), newest first, each with its diagnosis."""
        if self._alerting.store is None:
            return Response.error(503, "alerting is not started")
        since, limit = self._since(request), self._limit(request)
        states = choices_param(request.query, "status", _STATES)
        if "active" in states:
            states = [s for s in states if s != "active"] + ["pending", "firing"]
        rows = self._alerting.store.query_alerts(
            since=since,
            states=states,
            rule=request.query.get("rule"),
            service=request.query.get("service"),
            limit=limit,
        )
        deliveries: dict[int, list[dict[str, Any]]] = {}
        if rows:
            for n in self._alerting.store.notifications(alert_ids=[r["id"] for r in rows], limit=limit * 20):
                deliveries.setdefault(int(n["alert_id"]), []).append(_notification(n))
        live = {a.id: a for a in self._alerting.active}
        alerts = [_alert(row, deliveries.get(int(row["id"]), []), live.get(row["id"])) for row in rows]
        return Response(200, _finite({"alerts": alerts, "count": len(alerts)}))

    def api_recoveries(self, request: Request) -> Response:
        """The recovery audit trail within ``since`` (default 24h), newest first."""
        if self._alerting.store is None:
            return Response.error(503, "alerting is not started")
        since, limit = self._since(request), self._limit(request)
        rows = self._alerting.store.recoveries(
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
        if self._alerting.store is None:
            return Response.error(503, "alerting is not started")
        status = choice_param(request.query, "status", _DELIVERIES)
        limit = self._limit(request)
        rows = [_notification(n) for n in self._alerting.store.notifications(status=status, limit=limit)]
        return Response(200, _finite({"notifications": rows, "count": len(rows)}))

    def api_rules(self, request: Request) -> Response:
        """Every rule with its configuration, evaluation health and active alerts (like Prometheus' /api/v1/rules)."""
        if self._alerting.engine is None:
            return Response.error(503, "alerting is not started")
        engine = self._alerting.engine
        active: dict[str, list[dict[str, Any]]] = {}
        for alert in self._alerting.active:
            snap = {k: v for k, v in alert.to_dict().items() if k != "diagnosis"}
            for key in ("active_since", "started_at", "resolved_at"):
                snap[key] = iso_time(snap[key])
            active.setdefault(alert.rule, []).append(snap)
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


def _finite(value: Any) -> Any:
    """JSON without NaN/Infinity (the API encoder refuses them; receivers choke on them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _alert(row: Mapping[str, Any], deliveries: list[dict[str, Any]], live: Alert | None) -> dict[str, Any]:
    """An episode as stored; for an active one, value, threshold and severity as of the last evaluation."""
    labels = row["labels"] or {}
    if live is not None:
        row = {**row, "value": live.value, "threshold": live.threshold, "severity": live.severity}
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
        "deploy": (row["diagnosis"] or {}).get("deploy"),
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
