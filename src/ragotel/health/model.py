"""Health records and verdicts: what a dependency's status looks like, argument validation, running one check."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

from ragotel import _guard
from ragotel.health.checks import CheckError, IndexSizes

__all__ = ["DependencyStatus", "HealthReport", "Status", "overall_status"]

Status = Literal["healthy", "degraded", "unhealthy"]
_REASON_MAX: Final = 300


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    """The last verdict on one dependency; ``healthy`` is None until its first probe finished."""

    name: str
    kind: str
    healthy: bool | None
    reason: str | None
    duration_s: float | None
    checked_at: float | None  # Unix time of the last verdict
    consecutive_failures: int
    interval_s: float
    timeout_s: float

    @property
    def state(self) -> str:
        """``up``, ``down`` or ``unknown``."""
        return "unknown" if self.healthy is None else "up" if self.healthy else "down"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for a readiness endpoint."""
        return {
            "kind": self.kind,
            "state": self.state,
            "reason": self.reason,
            "duration_s": self.duration_s,
            "checked_at": self.checked_at,
            "consecutive_failures": self.consecutive_failures,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Overall status (``healthy``; ``degraded`` when some but at most half are down; ``unhealthy``) and details."""

    status: Status
    dependencies: tuple[DependencyStatus, ...]

    def __str__(self) -> str:
        return self.status

    def dependency(self, name: str) -> DependencyStatus | None:
        """The status of dependency ``name``, or None if it is not registered."""
        return next((d for d in self.dependencies if d.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """``{"status": ..., "dependencies": {name: {...}}}`` for a readiness endpoint."""
        return {"status": self.status, "dependencies": {d.name: d.to_dict() for d in self.dependencies}}


def overall_status(total: int, down: int) -> Status:
    """``healthy`` with none down, ``degraded`` with at most half down, else ``unhealthy``."""
    if down == 0:
        return "healthy"
    return "degraded" if 2 * down <= total else "unhealthy"


@dataclass(frozen=True, slots=True)
class Outcome:
    healthy: bool
    reason: str | None
    index: IndexSizes | None = None


class Dependency:
    """A registered check and its latest verdict; mutated only under the registry's lock."""

    __slots__ = (
        "check",
        "checked_at",
        "duration",
        "failures",
        "healthy",
        "index",
        "interval",
        "kind",
        "name",
        "next_due",
        "reason",
        "running",
        "stuck",
        "timeout",
    )

    def __init__(self, name: str, check: Callable[[], Any], kind: str, interval: float, timeout: float) -> None:
        self.name = name
        self.check = check
        self.kind = kind
        self.interval = interval
        self.timeout = timeout
        self.next_due = time.monotonic()
        self.running: Run | None = None
        self.stuck = 0
        self.healthy: bool | None = None
        self.reason: str | None = None
        self.duration: float | None = None
        self.checked_at: float | None = None
        self.failures = 0
        self.index: IndexSizes | None = None

    def snapshot(self) -> DependencyStatus:
        return DependencyStatus(
            self.name,
            self.kind,
            self.healthy,
            self.reason,
            self.duration,
            self.checked_at,
            self.failures,
            self.interval,
            self.timeout,
        )


class Run:
    """One execution of a check; ``abandoned`` once the scheduler cut it at its timeout."""

    __slots__ = ("abandoned", "dep", "generation", "started")

    def __init__(self, dep: Dependency, generation: int) -> None:
        self.dep = dep
        self.generation = generation
        self.started: float | None = None
        self.abandoned = False


# --- validation ------------------------------------------------------------------------------------------------------


def seconds(argument: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{argument}: expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{argument}: expected a finite number of seconds > 0, got {value!r}")
    return float(value)


def validate(name: object, check: object, kind: object, interval: object, timeout: object) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not callable(check):
        raise ValueError(f"check: expected a callable with no arguments, got {type(check).__name__}")
    if inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(getattr(check, "__call__", None)):  # noqa: B004
        raise ValueError("check: expected a synchronous callable; an async def check would never be awaited")
    try:
        inspect.signature(check).bind()
    except TypeError as exc:
        raise ValueError(f"check: must be callable with no arguments ({exc})") from None
    except ValueError:
        pass  # some builtins have no signature; they fail at their first probe instead
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"kind: expected a non-empty string such as 'vector_db', 'llm', 'database', got {kind!r}")
    seconds("interval", interval)
    seconds("timeout", timeout)
    return name.strip(), kind.strip()


def describe(exc: BaseException) -> str:
    """The reason shown for a failed check: a CheckError's message as is, else "ExceptionType: message"."""
    if isinstance(exc, CheckError) and str(exc):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def evaluate(check: Callable[[], Any]) -> Outcome:
    """Run a check once, here; turn every result into a verdict. Never raises."""
    try:
        with suppress_instrumentation(), suppress_http_instrumentation():
            result = check()
    except BaseException as exc:  # noqa: BLE001 - any failure of the check is its verdict; this is ragotel's own thread
        return Outcome(False, describe(exc))
    if result is False:
        return Outcome(False, "check returned False")
    if isinstance(result, BaseException):
        return Outcome(False, f"check returned an exception instead of raising it: {describe(result)}")
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            _guard.call("closing a coroutine returned by a check", close, None)
        return Outcome(False, "check returned an awaitable; checks must be synchronous")
    return Outcome(True, None, result if isinstance(result, IndexSizes) else None)
