"""Recovery hooks: run an action when an alert fires, safely (cooldowns, caps, timeouts, dry-run) and audited.

Actions: ``command`` (argv, never a shell), ``webhook``, ``python`` (``module:function``), ``redis_flush``
(SCAN + UNLINK). Telemetry is untrusted: only the labels service, stage, component, rule and severity can reach
an action, through ``{name}`` placeholders, and only when the value matches ``LABEL_VALUE_RE``. Actions run on a
small thread pool, never on the evaluation thread; each audit record says what ran, why, and what came of it.
If the alert still fires ``verify_within`` after a successful action, or the action failed, the hook escalates
with a notification.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Final, Protocol

import httpx

from ragotel.analyzer.config.specs import (
    LABEL_VALUE_RE,
    SUBSTITUTABLE_LABELS,
    CommandActionSpec,
    PythonActionSpec,
    RecoverySpec,
    RedisFlushActionSpec,
    RuleSpec,
    WebhookActionSpec,
)
from ragotel.analyzer.judge.alert_state import Notifier
from ragotel.analyzer.state import StateStore
from ragotel.analyzer.vocabulary import url_without_credentials

__all__ = [
    "ActionResult",
    "CommandAction",
    "PythonAction",
    "RecoveryAction",
    "RecoveryManager",
    "RedisFlushAction",
    "UnsafeLabelError",
    "WebhookAction",
    "build_action",
    "render",
]

_log = logging.getLogger("ragotel.analyzer.recovery")
_TAIL: Final = 2000
_BASE_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class UnsafeLabelError(ValueError):
    """A placeholder's label is missing or its value is not safe to pass to an action."""


def render(template: str, labels: Mapping[str, str]) -> str:
    """Replace ``{service}``-style placeholders with validated label values; raise UnsafeLabelError otherwise."""
    out = template
    for name in SUBSTITUTABLE_LABELS:
        token = "{" + name + "}"
        if token not in out:
            continue
        value = labels.get(name)
        if value is None:
            raise UnsafeLabelError(f"label {name!r} is missing from the alert")
        if not LABEL_VALUE_RE.match(value):
            raise UnsafeLabelError(f"label {name}={value[:64]!r} does not match {LABEL_VALUE_RE.pattern}")
        out = out.replace(token, value)
    return out


@dataclass(frozen=True, slots=True)
class ActionResult:
    """``status``: succeeded | failed | timeout; ``detail``: exit code, output tails, keys deleted, error."""

    status: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class RecoveryAction(Protocol):
    """One kind of action. ``describe`` says what would run (for the audit and dry-run) and may raise
    UnsafeLabelError; ``run`` does it within ``timeout`` seconds and reports, raising nothing it can catch."""

    type: str

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]: ...

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult: ...


class CommandAction:
    """A program started without a shell, in its own process group (killed whole on timeout), with a minimal
    environment (PATH, HOME, LANG, LC_ALL, TZ, TMPDIR, the variables named in ``inherit_env``, then ``env``)."""

    type = "command"

    def __init__(self, spec: CommandActionSpec) -> None:
        self._spec = spec

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {"argv": [render(arg, labels) for arg in self._spec.argv], "cwd": self._spec.cwd}

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        argv = self.describe(labels)["argv"]
        # The analyzer's environment holds secrets (SMTP, tokens): a command gets only what it is given.
        inherited = {k: os.environ[k] for k in (*_BASE_ENV, *self._spec.inherit_env) if k in os.environ}
        env = {**inherited, **self._spec.env}
        # Output goes to files, not pipes: a restart script that starts a daemon leaves it holding the
        # descriptors, and reading a pipe to EOF would then wait for the daemon to exit.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(  # noqa: S603  argv list from the configuration, labels validated, no shell
                    argv,
                    cwd=self._spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                return ActionResult("failed", {"error": f"{type(exc).__name__}: {exc}"})
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return ActionResult("timeout", {"pid": proc.pid, "stderr": _tail(err)})
            detail = {"exit_code": proc.returncode, "stdout": _tail(out), "stderr": _tail(err)}
        return ActionResult("succeeded" if proc.returncode == 0 else "failed", detail)


def _tail(f: IO[bytes]) -> str:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - _TAIL))
    return f.read().decode(errors="replace")


class WebhookAction:
    """POST ``{"hook", "alert"}`` as JSON; 2xx is success."""

    type = "webhook"

    def __init__(self, spec: WebhookActionSpec, hook: str) -> None:
        self._spec = spec
        self._hook = hook

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {"url": self._spec.url}

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        headers = dict(self._spec.headers)
        for header, var in self._spec.headers_env.items():
            value = os.environ.get(var)
            if value is None:
                return ActionResult("failed", {"error": f"environment variable {var} is not set"})
            headers[header] = value
        body = {"hook": self._hook, "labels": dict(labels), "alert": dict(alert)}
        try:
            resp = httpx.post(self._spec.url, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            return ActionResult("timeout", {"error": f"{type(exc).__name__}: {exc}"})
        except httpx.HTTPError as exc:
            return ActionResult("failed", {"error": f"{type(exc).__name__}: {exc}"})
        detail = {"status_code": resp.status_code, "body": resp.text[:_TAIL]}
        return ActionResult("succeeded" if 200 <= resp.status_code < 300 else "failed", detail)


class PythonAction:
    """Call ``module:function(alert=..., **kwargs)`` on its own daemon thread; past ``timeout`` it is abandoned."""

    type = "python"

    def __init__(self, spec: PythonActionSpec) -> None:
        self._spec = spec
        self._function: Callable[..., Any] | None = None

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {"target": self._spec.target, "kwargs": dict(self._spec.kwargs)}

    def resolve(self) -> Callable[..., Any]:
        """Import the target (raises ImportError/AttributeError/TypeError with the reason)."""
        if self._function is None:
            module_name, _, attr = self._spec.target.partition(":")
            function = getattr(importlib.import_module(module_name), attr)
            if not callable(function):
                raise TypeError(f"{self._spec.target} is not callable")
            self._function = function
        return self._function

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["return"] = self.resolve()(alert=dict(alert), **self._spec.kwargs)
            except BaseException as exc:  # noqa: BLE001  user code: any failure is the action's result
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=call, name=f"ragotel-recovery-{self._spec.target}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            return ActionResult("timeout", {"error": f"still running after {timeout:g}s (abandoned)"})
        if "error" in outcome:
            return ActionResult("failed", {"error": outcome["error"]})
        return ActionResult("succeeded", {"return": repr(outcome.get("return"))[:_TAIL]})


class RedisFlushAction:
    """Delete keys matching a pattern with SCAN + UNLINK (non-blocking for Redis); ``*`` alone is FLUSHDB ASYNC."""

    type = "redis_flush"

    def __init__(self, spec: RedisFlushActionSpec) -> None:
        self._spec = spec

    def _url(self) -> str:
        if self._spec.url is not None:
            return self._spec.url
        value = os.environ.get(str(self._spec.url_env))
        if value is None:
            raise UnsafeLabelError(f"environment variable {self._spec.url_env} is not set")
        return value

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {
            "pattern": render(self._spec.pattern, labels),
            "url": url_without_credentials(self._spec.url) if self._spec.url else None,
        }

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        import redis  # noqa: PLC0415  optional dependency, only needed when such a hook is configured

        pattern = render(self._spec.pattern, labels)
        deadline = time.monotonic() + timeout
        deleted = 0
        try:
            client = redis.Redis.from_url(self._url(), socket_timeout=timeout, socket_connect_timeout=timeout)
            with client:
                if pattern == "*" and self._spec.allow_flush_all:
                    client.flushdb(asynchronous=True)
                    return ActionResult("succeeded", {"flushed": "database"})
                batch: list[Any] = []
                for key in client.scan_iter(match=pattern, count=self._spec.batch):
                    batch.append(key)
                    if len(batch) >= self._spec.batch:
                        deleted += int(client.unlink(*batch))
                        batch.clear()
                    if time.monotonic() > deadline:
                        return ActionResult("timeout", {"deleted": deleted, "pattern": pattern})
                if batch:
                    deleted += int(client.unlink(*batch))
        except redis.RedisError as exc:
            return ActionResult("failed", {"error": f"{type(exc).__name__}: {exc}", "deleted": deleted})
        return ActionResult("succeeded", {"deleted": deleted, "pattern": pattern})


def build_action(spec: RecoverySpec) -> RecoveryAction:
    """The action of a validated hook."""
    action = spec.action
    if isinstance(action, CommandActionSpec):
        return CommandAction(action)
    if isinstance(action, WebhookActionSpec):
        return WebhookAction(action, spec.name)
    if isinstance(action, PythonActionSpec):
        return PythonAction(action)
    return RedisFlushAction(action)


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
    def reasons(alert: Mapping[str, Any]) -> set[str]:
        """What ``on`` entries match: the rule, the primary cause, and the first action recommended for it."""
        diagnosis = alert.get("diagnosis") or {}
        out = {str(alert["rule"])}
        if diagnosis.get("primary_cause"):
            out.add(str(diagnosis["primary_cause"]))
        causes = diagnosis.get("possible_causes") or []
        if causes and causes[0].get("actions"):
            out.add(str(causes[0]["actions"][0]))
        return out

    # -- AlertListener -----------------------------------------------------------------------------------------
    def on_firing(self, alert: Mapping[str, Any], spec: RuleSpec, now: float) -> None:
        self._consider(alert, now)

    def on_resolved(self, alert: Mapping[str, Any], now: float) -> None:
        with self._lock:
            done = [rid for rid, r in self._verifications.items() if r.get("alert_id") == alert.get("id")]
            for rid in done:
                del self._verifications[rid]
        for rid in done:
            self._store.update_recovery(rid, {"verification": "resolved"})

    # -- periodic ------------------------------------------------------------------------------------------------
    def tick(self, now: float, firing: Sequence[Mapping[str, Any]]) -> None:
        """Retry hooks of still-firing alerts whose cooldown has passed, and escalate failed verifications."""
        for alert in firing:
            self._consider(alert, now)
        with self._lock:
            due = [r for r in self._verifications.values() if r.get("verify_at") is not None and r["verify_at"] <= now]
            for record in due:
                del self._verifications[record["id"]]
        for record in due:
            rid = int(record["id"])
            still = any(a.get("id") == record.get("alert_id") for a in firing)
            if not still:
                self._store.update_recovery(rid, {"verification": "resolved"})
                continue
            self._store.update_recovery(rid, {"verification": "escalated"})
            alert = next(a for a in firing if a.get("id") == record.get("alert_id"))
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

    def _consider(self, alert: Mapping[str, Any], now: float) -> None:
        if alert.get("status") != "firing":
            return
        reasons = self.reasons(alert)
        labels = {**(alert.get("labels") or {}), "rule": str(alert["rule"]), "severity": str(alert["severity"])}
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
    def _base_record(
        self, hook: _Hook, alert: Mapping[str, Any], target: str, now: float, command: Any
    ) -> dict[str, Any]:
        diagnosis = alert.get("diagnosis") or {}
        return {
            "hook": hook.spec.name,
            "action": hook.action.type,
            "target": target,
            "alert_id": alert.get("id"),
            "fingerprint": alert.get("fingerprint"),
            "rule": alert.get("rule"),
            "service": alert.get("service"),
            "reason": f"{alert.get('rule')} firing; primary cause {diagnosis.get('primary_cause', 'unknown')}",
            "command": command,
            "dry_run": int(hook.spec.dry_run),
            "started_at": now,
        }

    def _audit_skip(
        self, hook: _Hook, alert: Mapping[str, Any], labels: Mapping[str, str], target: str, now: float, why: str
    ) -> None:
        record = self._base_record(hook, alert, target, now, {})
        record.update(status="skipped", detail={"reason": why}, finished_at=now)
        self._store.insert_recovery(record)
        self._count(hook.spec.name, "skipped")

    def _start(self, hook: _Hook, alert: Mapping[str, Any], labels: Mapping[str, str], target: str, now: float) -> None:
        try:
            command = hook.action.describe(labels)
        except UnsafeLabelError as exc:
            record = self._base_record(hook, alert, target, now, {})
            record.update(status="refused", detail={"error": str(exc)}, finished_at=now)
            self._store.insert_recovery(record)
            self._count(hook.spec.name, "refused")
            _log.warning("recovery %s refused: %s", hook.spec.name, exc)
            return
        record = self._base_record(hook, alert, target, now, command)
        if hook.spec.dry_run:
            record.update(status="dry_run", detail={"note": "dry run: nothing was executed"}, finished_at=now)
            self._store.insert_recovery(record)
            self._count(hook.spec.name, "dry_run")
            _log.warning("recovery %s (dry run) would run %s for %s", hook.spec.name, command, alert.get("rule"))
            return
        record["status"] = "running"
        rid = self._store.insert_recovery(record)
        with self._lock:
            self._in_flight.add((hook.spec.name, target))
        _log.warning("recovery %s: running %s %s for %s", hook.spec.name, hook.action.type, command, alert.get("rule"))
        future = self._pool.submit(self._run, hook, dict(alert), dict(labels), target, rid)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: futures.Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _run(self, hook: _Hook, alert: dict[str, Any], labels: dict[str, str], target: str, rid: int) -> None:
        """On a pool thread: run, record, escalate on failure, arm verification on success."""
        try:
            try:
                result = hook.action.run(labels, alert, hook.spec.timeout)
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
                    self._verifications[rid] = {**pending, "alert_id": alert.get("id")}
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

    def _escalate(self, alert: Mapping[str, Any], targets: list[str] | None, extra: dict[str, Any], now: float) -> None:
        with self._store.transaction():
            self._notifier.enqueue("escalation", alert, now, notify=True, extra=extra, targets=targets)
        self._notifier.wake()
        self._count(str(extra["hook"]), "escalated")

    def _count(self, hook: str, status: str) -> None:
        if self._stats is not None:
            self._stats.recorded(hook, status)
