"""The bounded ingest queue between receivers and windows, its worker thread, and overload protection.

Modelled on the Collector's memory_limiter: when the queue is full (items or bytes) or the process's resident
memory is over ``memory_limit``, receivers refuse new requests with a retryable answer (HTTP 503 with
Retry-After, gRPC UNAVAILABLE with RetryInfo) instead of growing. Whatever was accepted is merged into the
windows even during shutdown: ``close()`` drains the queue before it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import psutil

from ragotel.analyzer.logfmt import LogLimiter
from ragotel.analyzer.receive.selfmetrics import AnalyzerMetrics
from ragotel.analyzer.windows import Windows
from ragotel.analyzer.windows.records import LogBatch, MetricBatch, TraceBatch

__all__ = ["Forwarder", "Ingest", "Refused"]

_log = logging.getLogger("ragotel.analyzer.ingest")

Batch = TraceBatch | MetricBatch | LogBatch


class Forwarder(Protocol):
    """Where accepted requests also go (pass-through); ``forward`` must not block or raise."""

    def forward(self, signal: str, protobuf: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a request is refused and when to retry."""

    reason: str  # queue_full | memory_limit | shutting_down
    retry_after: float


@dataclass(frozen=True, slots=True)
class _Item:
    signal: str
    batch: Batch
    size: int
    arrival: float


class Ingest:
    """Accepts decoded batches from any thread; one worker merges them into ``windows`` in arrival order."""

    def __init__(
        self,
        windows: Windows,
        metrics: AnalyzerMetrics,
        *,
        max_items: int,
        max_bytes: int,
        memory_limit: int,
        retry_after: float,
        forwarder: Forwarder | None = None,
    ) -> None:
        self._windows = windows
        self._metrics = metrics
        self._max_items = max_items
        self._max_bytes = max_bytes
        self.memory_limit = memory_limit
        self._retry_after = retry_after
        self._forwarder = forwarder
        self._queue: deque[_Item] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._memory_over = False
        self._busy = False
        self._process = psutil.Process()
        self._limiter = LogLimiter(_log)
        self._thread = threading.Thread(target=self._run, name="ragotel-analyzer-ingest", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self.check_memory()
        self._thread.start()

    def check_memory(self) -> None:
        """Sample resident memory against ``memory_limit`` (called on every server tick)."""
        if self.memory_limit <= 0:
            self._memory_over = False
            return
        rss = self._process.memory_info().rss
        over = rss > self.memory_limit
        if over != self._memory_over:
            _log.warning(
                "memory limit %s: resident %d bytes, limit %d",
                "exceeded" if over else "recovered",
                rss,
                self.memory_limit,
            )
        self._memory_over = over

    def refusal(self, size: int = 0) -> Refused | None:
        """Return why a request of ``size`` bytes would be refused now, or None if it would be accepted."""
        if self._closing:
            return Refused("shutting_down", self._retry_after)
        if self._memory_over:
            return Refused("memory_limit", self._retry_after)
        if len(self._queue) >= self._max_items or (self._queue and self._bytes + size > self._max_bytes):
            return Refused("queue_full", self._retry_after)
        return None

    def check(self) -> Refused | None:
        """Like ``refusal()``, but a refusal is counted and logged (at most once per reason every 10 s).

        Receivers call it before decoding, so an overloaded analyzer sheds work cheaply.
        """
        refused = self.refusal()
        if refused is not None:
            self._refused(refused)
        return refused

    def _refused(self, refused: Refused) -> None:
        self._metrics.refused.labels(refused.reason).inc()
        self._limiter.warning(refused.reason, "refusing data (%s); clients are told to retry", refused.reason)

    def submit(self, signal: str, batch: Batch, protobuf: bytes) -> Refused | None:
        """Queue ``batch`` for the windows and forward ``protobuf`` downstream; return a refusal instead if overloaded.

        Never blocks on the worker. Thread-safe.
        """
        size = len(protobuf)
        with self._cond:
            refused = self.refusal(size)
            if refused is None:
                self._queue.append(_Item(signal, batch, size, time.time()))
                self._bytes += size
                self._cond.notify()
        if refused is not None:
            self._refused(refused)
            return refused
        if self._forwarder is not None:
            self._forwarder.forward(signal, protobuf)
        return None

    def state(self) -> tuple[int, int, bool]:
        """(queued requests, queued bytes, refusing now) for /metrics and /readyz."""
        return len(self._queue), self._bytes, self.refusal() is not None

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until everything queued so far has been merged; True if that happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, merge every queued one, then stop the worker (waits up to ``timeout``)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.error("ingest worker did not drain within %.1fs; %d requests lost", timeout, len(self._queue))

    def _run(self) -> None:
        windows = self._windows
        seconds = self._metrics.ingest_seconds
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._bytes -= item.size
                self._busy = True
            started = time.perf_counter()
            batch = item.batch
            try:
                if isinstance(batch, TraceBatch):
                    windows.add_traces(batch, item.arrival)
                elif isinstance(batch, MetricBatch):
                    windows.add_metrics(batch, item.arrival)
                else:
                    windows.add_logs(batch, item.arrival)
            except Exception:  # noqa: BLE001  one bad batch must not stop ingest for every later one
                _log.exception("could not merge a %s batch into the windows", item.signal)
            seconds.labels(item.signal).observe(time.perf_counter() - started)
