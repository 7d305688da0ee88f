"""The only place a broad ``except`` is allowed: telemetry failures are logged (rate limited), never raised."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

_log = logging.getLogger("ragotel")
T = TypeVar("T")

_LOG_INTERVAL_S = 60.0
_last_logged: dict[str, float] = {}
_lock = threading.Lock()


def report(where: str, exc: BaseException) -> None:
    """Log a telemetry failure at DEBUG, at most once a minute per ``where``. Never raises."""
    try:
        now = time.monotonic()
        with _lock:
            last = _last_logged.get(where)
            if last is not None and now - last < _LOG_INTERVAL_S:
                return
            if len(_last_logged) > 1024:  # bounded: distinct call sites are few, but never grow without limit
                _last_logged.clear()
            _last_logged[where] = now
        _log.debug("ragotel: %s failed: %r", where, exc, exc_info=exc)
    except Exception:  # noqa: S110 - logging must not be able to break the caller
        pass


def call(where: str, fn: Callable[[], T], fallback: T) -> T:
    """Run ``fn``; on any exception report it and return ``fallback``. For telemetry code around user calls."""
    try:
        return fn()
    except Exception as exc:
        report(where, exc)
        return fallback


def run(where: str, fallback: T, fn: Callable[..., T], *args: Any) -> T:
    """:func:`call` of ``fn(*args)``: no closure or ``functools.partial`` built per call (the per-step hot path)."""
    try:
        return fn(*args)
    except Exception as exc:
        report(where, exc)
        return fallback


def warned(where: str, fn: Callable[[], T], fallback: T) -> T:
    """Run ``fn``; on any exception log it at WARNING (see :func:`warn`) and return ``fallback``. For set-up steps
    (patching a library) whose failure the user should see, while the other steps go on."""
    try:
        return fn()
    except Exception as exc:
        warn(where, exc)
        return fallback


def caught(fn: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """Run ``fn``: ``(result, None)``, or ``(None, exception)`` when it raised. Logs nothing; never raises. For the
    few callers that word or record the failure themselves (a library that failed to instrument, NVML missing)."""
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


def warn(where: str, exc: BaseException) -> None:
    """Log a failure the user should see (e.g. a library that could not be instrumented) at WARNING."""
    try:
        _log.warning("ragotel: %s failed: %s", where, exc, exc_info=_log.isEnabledFor(logging.DEBUG))
    except Exception:  # noqa: S110 - logging must not be able to break the caller
        pass
