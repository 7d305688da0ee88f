"""Flush and shut down providers within a deadline, and know whether everything was exported.

The SDK's batch span processor ignores the timeout of ``force_flush`` and both its processors drop the exporters'
results (opentelemetry-python #4568), so with the endpoint down or hanging ``force_flush(30_000)`` overran by tens
of seconds and still returned True. Here each provider call runs on a helper thread the caller waits for only until
the deadline, and the exporters ragotel builds report every export's outcome to an :class:`ExportLedger`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

from ragotel import _guard

__all__ = ["Deadlines", "ExportLedger"]

_SUCCESS: Final = (SpanExportResult.SUCCESS, MetricExportResult.SUCCESS, LogRecordExportResult.SUCCESS)


class ExportLedger:
    """Counts the failed exports of the exporters it tracks. Thread-safe; never raises into the exporter's caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failed exports so far (compare before and after a flush)."""
        return self._failures

    def track(self, exporter: Any) -> Any:
        """Make ``exporter`` report each export's outcome here; returns it, same object and type.

        The instance's ``export`` is shadowed rather than the exporter wrapped, so code that inspects the processor's
        exporter still finds the OTLP exporter it configured.
        """
        export = exporter.export

        def tracked(*args: Any, **kwargs: Any) -> Any:
            try:
                result = export(*args, **kwargs)
            except BaseException:
                self._fail()
                raise
            if result not in _SUCCESS:
                self._fail()
            return result

        exporter.export = tracked
        return exporter

    def _fail(self) -> None:
        with self._lock:
            self._failures += 1


class Deadlines:
    """Runs blocking provider calls (flush, shutdown) on helper threads, each awaited no longer than a deadline.

    A call still running at the deadline goes on in the background (bounded by the exporter's own timeout); the next
    call of the same name waits for it rather than piling a second thread behind it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}

    def run(self, calls: Mapping[str, Callable[[], Any]], timeout_s: float) -> bool:
        """Run ``calls`` concurrently; True when every one finished within ``timeout_s`` without raising or
        returning False. Never raises."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        results: dict[str, Any] = {}
        started: list[threading.Thread] = []
        for name, call in calls.items():
            with self._lock:
                previous = self._running.get(name)
            if previous is not None:
                previous.join(max(0.0, deadline - time.monotonic()))
                if previous.is_alive():
                    results[name] = False
                    continue
            thread = threading.Thread(
                target=self._call, args=(name, call, results), name=f"ragotel-{name}", daemon=True
            )
            with self._lock:
                self._running[name] = thread
            thread.start()
            started.append(thread)
        for thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
        in_time = not any(thread.is_alive() for thread in started)
        return in_time and len(results) == len(calls) and all(result is not False for result in results.values())

    def _call(self, name: str, call: Callable[[], Any], results: dict[str, Any]) -> None:
        results[name] = _guard.call(name, call, False)
        with self._lock:
            if self._running.get(name) is threading.current_thread():
                del self._running[name]
