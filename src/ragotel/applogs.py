"""The app's ``logging`` records as OTLP logs: one OpenTelemetry handler on the root logger, never exporting its own.

:func:`attach` puts the ``LoggingHandler`` of ``opentelemetry-instrumentation-logging`` on the root logger at the
configured level (records carry the current span's trace and span ids, the provider's resource and, for records
logged with an exception, ``exception.type`` / ``exception.message`` / ``exception.stacktrace``). When such a
handler is already there (``opentelemetry-instrument`` with the logging instrumentation, or the app's own), it is
adopted instead of doubled. Either way :class:`ExportPathFilter` keeps the export path's own records out, so an
exporter that fails and logs about it never feeds itself. :meth:`AppLogs.detach` undoes everything.
"""

from __future__ import annotations

import logging
import logging.config
import threading
from typing import Any, Final

import wrapt
from opentelemetry import _logs
from opentelemetry.instrumentation.logging.handler import LoggingHandler

try:  # the SDK's own (deprecated) handler, installed by OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true
    from opentelemetry.sdk._logs import LoggingHandler as _SdkLoggingHandler

    _OTEL_HANDLERS: tuple[type[logging.Handler], ...] = (LoggingHandler, _SdkLoggingHandler)
except ImportError:  # removed from a future SDK
    _OTEL_HANDLERS = (LoggingHandler,)

__all__ = ["EXCLUDED_LOGGERS", "AppLogs", "ExportPathFilter", "attach"]

# Loggers of the export path: the OTel SDK and exporters, the HTTP and gRPC clients they use, and ragotel itself
# (its warnings may come from inside an export). Their records stay with the app's other handlers.
EXCLUDED_LOGGERS: Final = ("opentelemetry", "urllib3", "requests", "grpc", "httpx", "httpcore", "ragotel")
_EXCLUDED_PREFIXES: Final = tuple(f"{name}." for name in EXCLUDED_LOGGERS)
# The SDK's batch workers (OtelBatchLogRecordProcessor, ...) and metric reader: anything logged there is export work.
_EXPORT_THREADS: Final = ("OtelBatch", "OtelPeriodicExportingMetricReader")


class ExportPathFilter(logging.Filter):
    """Drop records of the export path: the loggers in :data:`EXCLUDED_LOGGERS` and the SDK's export threads."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record the OTel handler must not export. Never raises."""
        name = record.name
        if name in EXCLUDED_LOGGERS or name.startswith(_EXCLUDED_PREFIXES):
            return False
        thread = record.threadName
        return not (thread and thread.startswith(_EXPORT_THREADS))


class AppLogs:
    """The handler sending the app's records, and how to restore the root logger as it was."""

    def __init__(self, handler: logging.Handler, *, owned: bool, previous_level: int | None, removed: bool) -> None:
        self.handler = handler
        self.stand_in: logging.Handler | None = None  # logging.lastResort, put on a root logger that had no handler
        self.owned = owned  # ragotel made it (else: adopted from the app or the logging instrumentation)
        self._previous_level = previous_level  # an adopted handler's level before ragotel set it
        self._removed = removed  # an adopted handler taken off the root logger (logs switched off)
        self._filter = ExportPathFilter()
        handler.addFilter(self._filter)

    def detach(self) -> None:
        """Remove the handler ragotel added (an adopted one: the filter, level and placement ragotel changed)."""
        global _active
        root = logging.getLogger()
        self.handler.removeFilter(self._filter)
        if self.owned:
            root.removeHandler(self.handler)
            if self.stand_in is not None:
                root.removeHandler(self.stand_in)
            self.handler.flush()
        else:
            if self._previous_level is not None:
                self.handler.setLevel(self._previous_level)
            if self._removed:
                root.addHandler(self.handler)
        with _lock:
            if _active is self:
                _active = None


def attach(provider: _logs.LoggerProvider | None, level: int | None, *, force_level: bool) -> AppLogs | None:
    """Send the root logger's records at ``level`` and above to ``provider``; ``level=None`` switches logs off.

    An OTel handler already on the root logger is adopted: ragotel sets its level when it has none (NOTSET) or
    ``force_level`` (ragotel's own variable asked for one), and filters the export path out of it; with logs off it
    is taken off the root logger until :meth:`AppLogs.detach`. ``provider=None`` (the app's tracer provider
    is its own and it installed no LoggerProvider) adds nothing. Returns None when nothing changed. Thread-safe.
    """
    global _active
    root = logging.getLogger()
    existing = next((h for h in root.handlers if isinstance(h, _OTEL_HANDLERS)), None)
    if existing is not None:
        if level is None:
            root.removeHandler(existing)
            return AppLogs(existing, owned=False, previous_level=None, removed=True)
        previous = None
        if force_level or existing.level == logging.NOTSET:
            previous = existing.level
            existing.setLevel(level)
        return AppLogs(existing, owned=False, previous_level=previous, removed=False)
    if level is None or provider is None:
        return None
    handler = LoggingHandler(level=level, logger_provider=provider)
    logs = AppLogs(handler, owned=True, previous_level=None, removed=False)
    with _lock:
        _keep_across_logging_config()
        _active = logs
        if not root.handlers and logging.lastResort is not None:
            # With no handler anywhere, Python prints WARNING and above to stderr (logging.lastResort); a handler of
            # ours alone would silence that. The stand-in keeps it until the app configures logging itself.
            logs.stand_in = logging.lastResort
            root.addHandler(logs.stand_in)
        root.addHandler(handler)
    return logs


_lock = threading.Lock()
_active: AppLogs | None = None  # the handler ragotel added, kept on the root logger across logging config
_patched = False


def _keep_across_logging_config() -> None:
    """Patch ``basicConfig`` / ``dictConfig`` / ``fileConfig`` once so they neither see nor drop ragotel's handler.

    Without it, ``logging.basicConfig()`` called after ``instrument()`` would find a root handler and do nothing,
    leaving the app without its console output; ``dictConfig`` would remove the handler. Call with ``_lock`` held.
    """
    global _patched
    if _patched:
        return
    _patched = True
    wrapt.wrap_function_wrapper(logging, "basicConfig", _around_config)
    wrapt.wrap_function_wrapper(logging.config, "dictConfig", _around_config)
    wrapt.wrap_function_wrapper(logging.config, "fileConfig", _around_config)


def _around_config(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    logs = _active
    root = logging.getLogger()
    if logs is None or logs.handler not in root.handlers:
        return wrapped(*args, **kwargs)
    stand_in = logs.stand_in
    root.removeHandler(logs.handler)
    if stand_in is not None:
        root.removeHandler(stand_in)
    try:
        return wrapped(*args, **kwargs)
    finally:
        if stand_in is not None and not root.handlers:
            root.addHandler(stand_in)  # the configuration set no root handler: stderr stays as it was
        elif stand_in is not None:
            logs.stand_in = None
        if logs.handler not in root.handlers:
            root.addHandler(logs.handler)
