"""Structured log output for the daemon (logfmt or JSON lines on stderr), and rate-limited warnings."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

__all__ = ["LogLimiter", "configure_logging"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = str(value)
            if not text or any(c in text for c in ' ="\n\t'):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send ``ragotel.*`` logs (and uvicorn/grpc warnings) to stderr in ``fmt`` (text = logfmt, or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("ragotel").setLevel(level.upper())


class LogLimiter:
    """Logs a warning per distinct reason at most once per ``interval``, counting what it held back."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *args: object) -> None:
        """Log ``message % args`` unless ``key`` was logged within the interval."""
        now = time.monotonic()
        with self._lock:
            last, held = self._last.get(key, (-self._interval, 0))
            if now - last < self._interval:
                self._last[key] = (last, held + 1)
                return
            self._last[key] = (now, 0)
            if len(self._last) > 1000:
                self._last.clear()
        suffix = f" ({held} similar suppressed)" if held else ""
        self._logger.warning(message + suffix, *args)
