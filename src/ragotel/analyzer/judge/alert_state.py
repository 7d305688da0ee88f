"""Alert state machine (Prometheus semantics: inactive -> pending -> firing -> resolved) over rule samples.

Runs on the evaluation thread. Every transition is written to SQLite together with the notifications it causes
(one transaction), so a restart restores pending and firing alerts, never re-fires a resolved one, and honours the
per-alert cooldown across the crash.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ragotel.analyzer.config.specs import RuleSpec
from ragotel.analyzer.judge.diagnosis import Diagnoser
from ragotel.analyzer.judge.episode import AlertEpisode, fingerprint
from ragotel.analyzer.judge.records import Alert, Diagnosis
from ragotel.analyzer.judge.rules import BurnRateRule, Rule, Sample, SignalSource, render_summary
from ragotel.analyzer.state import StateStore
from ragotel.analyzer.vocabulary import SEVERITY_ORDER, format_value, signal_unit

__all__ = ["AlertEngine", "AlertListener", "Notifier", "RuleHealth"]

_log = logging.getLogger("ragotel.analyzer.alerts")

_PERSIST_EVERY = 60.0
"""Seconds between writes of the rules' history (burn-rate buckets) to the state file."""


class Notifier(Protocol):
    """Where transitions go (the outbox): ``enqueue`` runs inside the state transaction, ``wake`` after it."""

    def enqueue(
        self,
        kind: str,
        alert: Alert,
        now: float,
        *,
        notify: bool,
        extra: Mapping[str, Any] | None = None,
        targets: Sequence[str] | None = None,
    ) -> None: ...

    def wake(self) -> None: ...


class AlertListener(Protocol):
    """Told about firing and resolved alerts after their transition committed (recovery hooks). Must not block."""

    def on_firing(self, alert: Alert, spec: RuleSpec, now: float) -> None: ...

    def on_resolved(self, alert: Alert, now: float) -> None: ...


@dataclass(slots=True)
class RuleHealth:
    """Last evaluation of a rule, for ``/api/v1/rules`` and metrics."""

    evaluations: int = 0
    failures: int = 0
    last_error: str | None = None
    last_evaluation: float | None = None
    last_duration: float = 0.0


class AlertEngine:
    """Evaluates every rule each tick and drives each series through the alert state machine.

    ``absent_grace``: a pending or firing series that disappears from the windows (no data) is dropped or resolved
    only after this long, so a restart with empty windows or a pause in telemetry neither resets a pending alert's
    ``for`` clock nor resolves what is still broken.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        source: SignalSource,
        diagnoser: Diagnoser,
        store: StateStore,
        notifier: Notifier,
        *,
        absent_grace: float,
        listeners: Sequence[AlertListener] = (),
        on_evaluation: Callable[[str, float, BaseException | None], None] | None = None,
    ) -> None:
        self.rules = list(rules)
        self._specs = {r.spec.name: r.spec for r in self.rules}
        self._source = source
        self._diagnoser = diagnoser
        self._store = store
        self._notifier = notifier
        self._absent_grace = absent_grace
        self._listeners = list(listeners)
        self._on_evaluation = on_evaluation
        self._by_rule: dict[str, dict[str, AlertEpisode]] = {r.spec.name: {} for r in self.rules}
        self._cooldowns: dict[str, float] = {}
        self.health: dict[str, RuleHealth] = {r.spec.name: RuleHealth() for r in self.rules}
        self._persisted = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def restore(self, now: float) -> None:
        """Load pending and firing episodes and cooldowns from the store (call once, before the first tick)."""
        self._cooldowns = self._store.cooldowns()
        for row in self._store.active_alerts():
            alert = AlertEpisode(
                fingerprint=row["fingerprint"],
                rule=row["rule"],
                labels=dict(row["labels"]),
                severity=row["severity"],
                state=row["state"],
                active_since=row["active_since"],
                last_true=row["last_true"],
                last_seen=now,
                value=row["value"] if row["value"] is not None else math.nan,
                threshold=row["threshold"] if row["threshold"] is not None else math.nan,
                id=row["id"],
                started_at=row["started_at"],
                message=row["message"],
                diagnosis=row["diagnosis"],
                symptoms=row["symptoms"],
                notified=bool(row["notified"]),
                last_notified_at=row["last_notified_at"],
            )
            if alert.rule not in self._specs:
                # The rule was removed from the configuration: its alerts cannot be evaluated any more.
                if alert.state == "firing":
                    alert.message = f"{alert.message} (rule {alert.rule} no longer configured)"
                    self._resolve(alert, now)
                else:
                    self._store.delete_alert(row["id"])
                continue
            self._by_rule[alert.rule][alert.fingerprint] = alert
        for rule in self.rules:
            if isinstance(rule, BurnRateRule):
                rule.restore(self._store.burn_history(rule.spec.name), now)
        self._persisted = now
        _log.info("restored %d pending/firing alert(s) from %s", len(self.active()), self._store.path)

    def persist(self, now: float) -> None:
        """Write the rules' own history (burn-rate buckets) to the state file; every minute and at shutdown."""
        self._persisted = now
        for rule in self.rules:
            if isinstance(rule, BurnRateRule):
                try:
                    self._store.save_burn_history(rule.spec.name, rule.history(), now)
                except Exception as exc:  # noqa: BLE001  losing history costs detection speed, never evaluation
                    _log.warning("cannot save the history of rule %s: %r", rule.spec.name, exc)

    def active(self) -> list[AlertEpisode]:
        return [a for alerts in self._by_rule.values() for a in alerts.values()]

    def firing(self) -> list[AlertEpisode]:
        return [a for a in self.active() if a.state == "firing"]

    # -- evaluation ------------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Evaluate every enabled rule once. A rule that raises is recorded and skipped; its alerts stay as they are."""
        try:
            self._diagnoser.observe(now)
        except Exception as exc:  # noqa: BLE001  baselines are best effort; evaluation must go on
            _log.debug("diagnosis baselines failed: %r", exc)
        if now - self._persisted >= _PERSIST_EVERY:
            self.persist(now)
        for rule in self.rules:
            spec = rule.spec
            if not spec.enabled:
                continue
            health = self.health[spec.name]
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                samples = rule.evaluate(self._source, now)
                self._apply(spec, samples, now)
            except Exception as exc:  # noqa: BLE001  one failing rule must never stop the others
                error = exc
                health.failures += 1
                health.last_error = f"{type(exc).__name__}: {exc}"
                _log.warning("rule %s failed: %s", spec.name, health.last_error, exc_info=_log.isEnabledFor(10))
            health.evaluations += 1
            health.last_evaluation = now
            health.last_duration = time.perf_counter() - started
            if error is None:
                health.last_error = None
            if self._on_evaluation is not None:
                self._on_evaluation(spec.name, health.last_duration, error)

    def _apply(self, spec: RuleSpec, samples: Sequence[Sample], now: float) -> None:
        alerts = self._by_rule[spec.name]
        seen: set[str] = set()
        for sample in samples:
            fp = fingerprint(spec.name, sample.labels)
            seen.add(fp)
            alert = alerts.get(fp)
            if sample.active:
                if alert is None:
                    alert = AlertEpisode(
                        fingerprint=fp,
                        rule=spec.name,
                        labels=dict(sample.labels),
                        severity=sample.severity,
                        state="pending",
                        active_since=now,
                        last_true=now,
                        last_seen=now,
                        value=sample.value,
                        threshold=sample.threshold,
                    )
                    alerts[fp] = alert
                    if spec.for_ > 0:
                        alert.message = self._message(spec, alert)
                        self._save(alert, now)
                self._observe(alert, sample, now, true=True)
                if alert.state == "pending":
                    alert.severity = sample.severity
                    if now - alert.active_since >= spec.for_:
                        self._fire(alert, spec, now)
                else:
                    severity = self._damped_severity(alert, spec, sample.severity, now)
                    if severity != alert.severity:
                        self._change_severity(alert, spec, severity, now)
                    self._maybe_notify(alert, spec, now)
            elif alert is not None:
                self._observe(alert, sample, now, true=False)
                self._condition_false(alert, spec, now, since=alert.last_true, grace=spec.keep_firing_for)
        for fp, alert in list(alerts.items()):
            if fp not in seen:
                grace = max(self._absent_grace, spec.keep_firing_for)
                since = max(alert.last_seen, alert.last_true)
                if alert.state == "pending" and now - since < grace:
                    continue  # no data (a pause, or the empty windows after a restart): the `for` clock keeps running
                self._condition_false(alert, spec, now, since=since, grace=grace)

    @staticmethod
    def _observe(alert: AlertEpisode, sample: Sample, now: float, *, true: bool) -> None:
        alert.last_seen = now
        alert.value = sample.value
        alert.threshold = sample.threshold
        if true:
            alert.last_true = now
        if sample.details:
            alert.extra["details"] = dict(sample.details)

    @staticmethod
    def _damped_severity(alert: AlertEpisode, spec: RuleSpec, severity: str, now: float) -> str:
        """A firing alert steps down a severity level only after ``keep_firing_for`` below it, so a value hovering
        at the threshold does not flap warning <-> critical (each escalation would page again)."""
        seen = alert.extra.setdefault("severity_at", now)
        if SEVERITY_ORDER[severity] >= SEVERITY_ORDER[alert.severity]:
            alert.extra["severity_at"] = now
            return severity
        return alert.severity if now - seen < spec.keep_firing_for else severity

    def _condition_false(self, alert: AlertEpisode, spec: RuleSpec, now: float, *, since: float, grace: float) -> None:
        if alert.state == "pending":
            self._by_rule[spec.name].pop(alert.fingerprint, None)
            if alert.id is not None:
                self._store.delete_alert(alert.id)
        elif now - since >= grace:
            self._resolve(alert, now)
        else:
            self._maybe_notify(alert, spec, now)

    # -- transitions -----------------------------------------------------------------------------------------------
    @staticmethod
    def _format(spec: RuleSpec, value: float) -> str:
        unit = "" if spec.type == "burn_rate" else signal_unit(spec.signal)
        if unit:
            return format_value(value, unit)
        return f"{value:.3g}x" if spec.type == "burn_rate" else f"{value:.3g}"

    def _message(self, spec: RuleSpec, alert: AlertEpisode) -> str:
        unit = "" if spec.type == "burn_rate" else signal_unit(spec.signal)
        values = {
            "value": alert.value,
            "threshold": alert.threshold,
            "objective": spec.objective,
            "factor": spec.factor,
            "rule": spec.name,
            "severity": alert.severity,
        }

        def fmt(name: str, value: Any) -> str:
            if name in ("value", "threshold") and isinstance(value, float):
                return format_value(value, unit) if unit else f"{value:.3g}"
            if name == "objective" and isinstance(value, float):
                return format_value(value, "ratio")
            return f"{value:g}" if isinstance(value, float) else str(value)

        template = (
            spec.summary or f"{spec.name}: {spec.signal or spec.type} is {{value}} ({spec.condition} {{threshold}})"
        )
        return render_summary(template, alert.labels, values, fmt)

    def _diagnose(self, alert: AlertEpisode, spec: RuleSpec, now: float) -> None:
        try:
            diagnosis, symptoms = self._diagnoser.diagnose(spec, alert.labels, alert.value, alert.threshold, now)
        except Exception as exc:  # noqa: BLE001  a diagnosis failure must not keep the alert from firing
            _log.warning("diagnosis of %s failed: %r", spec.name, exc)
            alert.diagnosis = Diagnosis.failed(exc).to_dict()
            return
        alert.diagnosis = diagnosis.to_dict()
        if alert.extra.get("details"):
            symptoms["details"] = alert.extra["details"]
        alert.symptoms = symptoms

    def _fire(self, alert: AlertEpisode, spec: RuleSpec, now: float) -> None:
        alert.state = "firing"
        alert.started_at = now
        self._diagnose(alert, spec, now)
        base = self._message(spec, alert)
        summary = (alert.diagnosis or {}).get("summary")
        alert.message = f"{base}; {summary}" if summary else base
        notify = self._cooldown_over(alert, spec, now)
        self._commit(alert, "firing", now, notify=notify)
        for listener in self._listeners:
            listener.on_firing(alert.snapshot(), spec, now)

    def _maybe_notify(self, alert: AlertEpisode, spec: RuleSpec, now: float) -> None:
        """A firing alert whose notification was held by the cooldown, or is due for a repeat."""
        if alert.state != "firing":
            return
        if not alert.notified:
            if self._cooldown_over(alert, spec, now):
                self._commit(alert, "firing", now, notify=True)
        elif (
            spec.repeat_interval > 0
            and alert.last_notified_at is not None
            and now - alert.last_notified_at >= spec.repeat_interval
        ):
            self._commit(alert, "firing", now, notify=True, extra={"repeat": True})

    def _change_severity(self, alert: AlertEpisode, spec: RuleSpec, severity: str, now: float) -> None:
        previous, alert.severity = alert.severity, severity
        alert.message = self._message(spec, alert)
        worse = SEVERITY_ORDER[severity] > SEVERITY_ORDER[previous]
        # Escalation is news and bypasses the cooldown; de-escalation only updates state (Alertmanager gets it).
        self._commit(alert, "firing", now, notify=worse, extra={"previous_severity": previous})

    def _resolve(self, alert: AlertEpisode, now: float) -> None:
        alert.state = "resolved"
        alert.resolved_at = now
        spec = self._specs.get(alert.rule)
        if spec is not None:
            # What the value is now: the last sample when the series is still there, else no data.
            fresh = alert.last_seen >= now and math.isfinite(alert.value)
            current = f"now {self._format(spec, alert.value)}" if fresh else "no data now"
            alert.message = f"{alert.message} — resolved: {current}"
        self._by_rule.get(alert.rule, {}).pop(alert.fingerprint, None)
        # Nobody was told it fired (cooldown): telling them it resolved would be noise.
        self._commit(alert, "resolved", now, notify=alert.notified)
        for listener in self._listeners:
            listener.on_resolved(alert.snapshot(), now)

    def _cooldown_over(self, alert: AlertEpisode, spec: RuleSpec, now: float) -> bool:
        last = self._cooldowns.get(alert.fingerprint)
        return last is None or now - last >= spec.cooldown

    def _save(self, alert: AlertEpisode, now: float) -> None:
        alert.id = self._store.save_alert(alert.id, alert.row(now))

    def _commit(
        self, alert: AlertEpisode, kind: str, now: float, *, notify: bool, extra: Mapping[str, Any] | None = None
    ) -> None:
        if notify and kind == "firing":
            alert.notified = True
            alert.last_notified_at = now
        with self._store.transaction():
            self._save(alert, now)
            if notify and kind == "firing":
                self._store.set_cooldown(alert.fingerprint, now)
            self._notifier.enqueue(kind, alert.snapshot(), now, notify=notify, extra=extra)
        if notify and kind == "firing":
            self._cooldowns[alert.fingerprint] = now
        self._notifier.wake()
        _log.info(
            "alert %s %s %s%s value=%s",
            alert.rule,
            kind,
            dict(alert.labels),
            "" if notify else " (no notification: cooldown)" if kind == "firing" else " (not notified)",
            alert.value,
        )
