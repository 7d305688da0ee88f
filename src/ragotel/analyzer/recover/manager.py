"""Recovery hooks: run an action when an alert fires, safely (cooldowns, caps, timeouts, dry-run) and audited.

Actions run on a small thread pool, never on the evaluation thread; each audit record says what ran, why, and what
came of it. If the alert still fires ``verify_within`` after a successful action, or the action failed, the hook
escalates with a notification.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from ragotel.analyzer.config.hooks import RecoverySpec
from ragotel.analyzer.config.specs import RuleSpec
from ragotel.analyzer.judge.alert_state import Notifier
from ragotel.analyzer.judge.records import Alert
from ragotel.analyzer.recover.actions import ActionResult, RecoveryAction, UnsafeLabelError, build_action
from ragotel.analyzer.state import StateStore

__all__ = ["RecoveryManager", "RecoveryRecord", "RecoveryStats"]

_log = logging.getLogger("ragotel.analyzer.recovery")


@dataclass(frozen=True, slots=True)
class RecoveryRecord:
    """One entry of the audit trail as first written: which hook ran what, on which target, for which alert, why."""

    hook: str
    action: str
    target: str
    alert_id: int | None
    fingerprint: str
    rule: str
    service: str | None
    reason: str
    command: Any
    dry_run: bool
    started_at: float
    status: str  # running, then succeeded | failed | timeout; or at once skipped | refused | dry_run
    detail: Mapping[str, Any] | None = None
    finished_at: float | None = None

    def to_row(self) -> dict[str, Any]:
        """The columns of the ``recoveries`` table (the state file's shape)."""
        row = {
            "hook": self.hook,
            "action": self.action,
            "target": self.target,
            "alert_id": self.alert_id,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "service": self.service,
            "reason": self.reason,
            "command": self.command,
            "dry_run": int(self.dry_run),
            "started_at": self.started_at,
            "status": self.status,
        }
        if self.detail is not None:
            row["detail"] = dict(self.detail)
        if self.finished_at is not None:
            row["finished_at"] = self.finished_at
        return row


class RecoveryStats(Protocol):
    def recorded(self, hook: str, status: str) -> None: ...


@dataclass(slots=True)
class _Hook:
    spec: RecoverySpec
    action: RecoveryAction
    escalate_to: list[str] | None


def _selected(selector: Mapping[str, str | list[str]], labels: Mapping[str, str]) -> bool:
    for key, want in selector.items():
        value = labels.get(key)
        if (value not in want) if isinstance(want, list) else (value != want):
            return False
    return True


class RecoveryManager:
    """Decides which hooks run for firing alerts, runs them off the evaluation thread, verifies and escalates.

    ``on_firing``/``on_resolved``/``tick`` are called on the evaluation thread and never block on an action.
    Cooldowns and attempt caps are per hook and service, read from the audit trail, so they survive restarts.
    """

    def __init__(
        self,
        hooks: Sequence[RecoverySpec],
        store: StateStore,
        notifier: Notifier,
        *,
        stats: RecoveryStats | None = None,
        max_workers: int = 4,
    ) -> None:
        self._hooks = [_Hook(spec, build_action(spec), spec.escalate_to) for spec in hooks]
        self._store = store
        self._notifier = notifier
        self._stats = stats
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ragotel-recovery")
        self._in_flight: set[tuple[str, str]] = set()
        self._futures: set[futures.Future[None]] = set()
        self._not_before: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._verifications: dict[int, dict[str, Any]] = {r["id"]: r for r in store.pending_verifications()}

    def close(self, timeout: float = 5.0) -> None:
        """Cancel queued runs and give running ones up to ``timeout`` to finish and record their result."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = list(self._futures)
        futures.wait(running, timeout=timeout)

    @staticmethod
    def reasons(alert: Alert) -> set[str]:
        """What ``on`` entries match: the rule, the primary cause, and the first action recommended for it."""
        out = {alert.rule}
        diagnosis = alert.diagnosis
        if diagnosis is None:
            return out
        if diagnosis.primary_cause:
            out.add(diagnosis.primary_cause)
        causes = diagnosis.possible_causes
        if causes and causes[0].actions:
            out.add(causes[0].actions[0])
        return out

    # -- AlertListener -----------------------------------------------------------------------------------------
    def on_firing(self, alert: Alert, spec: RuleSpec, now: float) -> None:
        self._consider(alert, now)

    def on_resolved(self, alert: Alert, now: float) -> None:
        with self._lock:
            done = [rid for rid, r in self._verifications.items() if r.get("alert_id") == alert.id]
            for rid in done:
                del self._verifications[rid]
        for rid in done:
            self._store.update_recovery(rid, {"verification": "resolved"})

    # -- periodic ------------------------------------------------------------------------------------------------
    def tick(self, now: float, firing: Sequence[Alert]) -> None:
        """Retry hooks of still-firing alerts whose cooldown has passed, and escalate failed verifications."""
        for alert in firing:
            self._consider(alert, now)
        with self._lock:
            due = [r for r in self._verifications.values() if r.get("verify_at") is not None and r["verify_at"] <= now]
            for record in due:
                del self._verifications[record["id"]]
        for record in due:
            rid = int(record["id"])
            still = any(a.id == record.get("alert_id") for a in firing)
            if not still:
                self._store.update_recovery(rid, {"verification": "resolved"})
                continue
            self._store.update_recovery(rid, {"verification": "escalated"})
            alert = next(a for a in firing if a.id == record.get("alert_id"))
            hook = next((h for h in self._hooks if h.spec.name == record["hook"]), None)
            within = hook.spec.verify_within if hook else 0.0
            self._escalate(
                alert,
                hook.escalate_to if hook else None,
                {
                    "hook": record["hook"],
                    "action": record["action"],
                    "result": "did not resolve the alert",
                    "recovery_id": rid,
                    "reason": f"the alert still fires {within:g}s after the action",
                },
                now,
            )

    def _consider(self, alert: Alert, now: float) -> None:
        if alert.status != "firing":
            return
        reasons = self.reasons(alert)
        labels = {**alert.labels, "rule": alert.rule, "severity": alert.severity}
        for hook in self._hooks:
            spec = hook.spec
            if not reasons.intersection(spec.on) or not _selected(spec.match, labels):
                continue
            target = labels.get("service") or "-"
            key = (spec.name, target)
            with self._lock:
                # Known to be in cooldown or capped until then: no need to ask the audit trail every tick.
                if key in self._in_flight or now < self._not_before.get(key, 0.0):
                    continue
            last = self._store.last_run(spec.name, target)
            if last is not None:
                wait = spec.cooldown if last["status"] in ("succeeded", "dry_run") else spec.failure_cooldown
                if now - float(last["started_at"]) < wait:
                    self._not_before[key] = float(last["started_at"]) + wait
                    continue
            runs = self._store.runs(spec.name, target, now - spec.attempts_window)
            if len(runs) >= spec.max_attempts:
                self._not_before[key] = float(runs[0]["started_at"]) + spec.attempts_window
                self._audit_skip(hook, alert, labels, target, now, "attempt cap reached")
                continue
            self._start(hook, alert, labels, target, now)

    # -- running -------------------------------------------------------------------------------------------------
    def _record(
        self, hook: _Hook, alert: Alert, target: str, now: float, command: Any, status: str, **outcome: Any
    ) -> RecoveryRecord:
        cause = alert.diagnosis.primary_cause if alert.diagnosis is not None else "unknown"
        return RecoveryRecord(
            hook=hook.spec.name,
            action=hook.action.type,
            target=target,
            alert_id=alert.id,
            fingerprint=alert.fingerprint,
            rule=alert.rule,
            service=alert.service,
            reason=f"{alert.rule} firing; primary cause {cause}",
            command=command,
            dry_run=hook.spec.dry_run,
            started_at=now,
            status=status,
            **outcome,
        )

    def _audit_skip(
        self, hook: _Hook, alert: Alert, labels: Mapping[str, str], target: str, now: float, why: str
    ) -> None:
        record = self._record(hook, alert, target, now, {}, "skipped", detail={"reason": why}, finished_at=now)
        self._store.insert_recovery(record.to_row())
        self._count(hook.spec.name, "skipped")

    def _start(self, hook: _Hook, alert: Alert, labels: Mapping[str, str], target: str, now: float) -> None:
        try:
            command = hook.action.describe(labels)
        except UnsafeLabelError as exc:
            record = self._record(hook, alert, target, now, {}, "refused", detail={"error": str(exc)}, finished_at=now)
            self._store.insert_recovery(record.to_row())
            self._count(hook.spec.name, "refused")
            _log.warning("recovery %s refused: %s", hook.spec.name, exc)
            return
        if hook.spec.dry_run:
            note = {"note": "dry run: nothing was executed"}
            record = self._record(hook, alert, target, now, command, "dry_run", detail=note, finished_at=now)
            self._store.insert_recovery(record.to_row())
            self._count(hook.spec.name, "dry_run")
            _log.warning("recovery %s (dry run) would run %s for %s", hook.spec.name, command, alert.rule)
            return
        rid = self._store.insert_recovery(self._record(hook, alert, target, now, command, "running").to_row())
        with self._lock:
            self._in_flight.add((hook.spec.name, target))
        _log.warning("recovery %s: running %s %s for %s", hook.spec.name, hook.action.type, command, alert.rule)
        future = self._pool.submit(self._run, hook, alert, dict(labels), target, rid)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: futures.Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _run(self, hook: _Hook, alert: Alert, labels: dict[str, str], target: str, rid: int) -> None:
        """On a pool thread: run, record, escalate on failure, arm verification on success."""
        try:
            try:
                result = hook.action.run(labels, alert.to_dict(), hook.spec.timeout)
            except Exception as exc:  # noqa: BLE001  a broken action is a failed recovery, never a dead pool
                result = ActionResult("failed", {"error": f"{type(exc).__name__}: {exc}"})
            finished = time.time()
            fields: dict[str, Any] = {"status": result.status, "detail": dict(result.detail), "finished_at": finished}
            if result.status == "succeeded":
                fields.update(verify_at=finished + hook.spec.verify_within, verification="pending")
            self._store.update_recovery(rid, fields)
            self._count(hook.spec.name, result.status)
            if result.status == "succeeded":
                pending = {"id": rid, "hook": hook.spec.name, "action": hook.action.type, **fields}
                with self._lock:
                    self._verifications[rid] = {**pending, "alert_id": alert.id}
                _log.warning("recovery %s succeeded: %s", hook.spec.name, dict(result.detail))
            else:
                _log.error("recovery %s %s: %s", hook.spec.name, result.status, dict(result.detail))
                error = result.detail.get("error") or result.detail.get("stderr") or result.detail.get("exit_code")
                self._escalate(
                    alert,
                    hook.escalate_to,
                    {
                        "hook": hook.spec.name,
                        "action": hook.action.type,
                        "result": result.status,
                        "recovery_id": rid,
                        "reason": f"the action {result.status}: {error}",
                    },
                    finished,
                )
        finally:
            with self._lock:
                self._in_flight.discard((hook.spec.name, target))

    def _escalate(self, alert: Alert, targets: list[str] | None, extra: dict[str, Any], now: float) -> None:
        with self._store.transaction():
            self._notifier.enqueue("escalation", alert, now, notify=True, extra=extra, targets=targets)
        self._notifier.wake()
        self._count(str(extra["hook"]), "escalated")

    def _count(self, hook: str, status: str) -> None:
        if self._stats is not None:
            self._stats.recorded(hook, status)
