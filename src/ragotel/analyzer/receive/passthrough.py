"""Pass-through: forward every accepted request, unchanged, to a downstream OTLP endpoint with bounded retry.

Only the configured ``signals`` are forwarded (a traces-only backend such as Phoenix answers 405 to metrics). The
queue holds at most ``queue_size`` requests; when it is full the oldest is dropped and counted. Transient failures
(HTTP 429/502/503/504, gRPC UNAVAILABLE and the like, connection errors) are retried with exponential backoff,
honouring Retry-After, for up to ``max_elapsed``; others are counted as failed. Nothing is lost silently; the
warnings about failures are rate-limited (one per signal and kind of failure every ``_WARN_EVERY`` seconds).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx

from ragotel.analyzer.config.model import PassthroughConfig
from ragotel.analyzer.logfmt import LogLimiter
from ragotel.analyzer.receive.selfmetrics import AnalyzerMetrics

__all__ = ["Passthrough"]

_log = logging.getLogger("ragotel.analyzer.passthrough")
_WARN_EVERY = 60.0

_GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_RETRYABLE_GRPC = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class Passthrough:
    """Forwards (signal, protobuf bytes) downstream from one background thread; ``forward`` never blocks."""

    def __init__(self, config: PassthroughConfig, metrics: AnalyzerMetrics) -> None:
        if config.endpoint is None:
            raise ValueError("passthrough.endpoint is not set")
        self._config = config
        self._signals = frozenset(config.signals)
        self._metrics = metrics.passthrough
        self._warn = LogLimiter(_log, _WARN_EVERY)
        self._queue: deque[tuple[str, bytes]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._run, name="ragotel-analyzer-passthrough", daemon=True)
        url = urlsplit(config.endpoint)
        self._base = config.endpoint.rstrip("/")
        self._http: httpx.Client | None = None
        self._channel: Any = None
        if config.protocol == "grpc":
            target = url.netloc
            if url.scheme == "https":
                self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
            else:
                self._channel = grpc.insecure_channel(target)
        else:
            self._http = httpx.Client(timeout=config.timeout, headers={"content-type": "application/x-protobuf"})

    @property
    def endpoint(self) -> str:
        """Where requests are forwarded."""
        return self._base

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    def forward(self, signal: str, protobuf: bytes) -> None:
        """Queue one request of a configured signal (others are not forwarded); drop (and count) the oldest when
        the queue is full."""
        if signal not in self._signals:
            return
        with self._cond:
            if self._closing:
                self._metrics.labels(signal, "dropped").inc()
                return
            if len(self._queue) >= self._config.queue_size:
                old_signal, _ = self._queue.popleft()
                self._metrics.labels(old_signal, "dropped").inc()
            self._queue.append((signal, protobuf))
            self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, then count the rest as dropped and stop."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 1)
        with self._cond:
            for signal, _ in self._queue:
                self._metrics.labels(signal, "dropped").inc()
            if self._queue:
                _log.warning("pass-through stopped with %d request(s) unsent (counted as dropped)", len(self._queue))
            self._queue.clear()
        if self._http is not None:
            self._http.close()
        if self._channel is not None:
            self._channel.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or (self._closing and time.monotonic() > self._deadline):
                    return
                signal, payload = self._queue.popleft()
            outcome = self._deliver(signal, payload)
            self._metrics.labels(signal, outcome).inc()

    def _deliver(self, signal: str, payload: bytes) -> str:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                self._send(signal, payload)
                return "sent"
            except _Retry as exc:
                backoff = (
                    exc.after if exc.after is not None else min(2.0**attempt * 0.5, 10.0) * random.uniform(0.8, 1.2)  # noqa: S311  jitter, not security
                )
                attempt += 1
                limit = started + self._config.max_elapsed
                if self._closing:
                    limit = min(limit, self._deadline)
                if time.monotonic() + backoff > limit:
                    self._warn.warning(
                        f"gave up {signal}",
                        "pass-through gave up on a %s request after %d attempts: %s",
                        signal,
                        attempt,
                        exc,
                    )
                    return "failed"
                time.sleep(backoff)
            except _Failed as exc:
                self._warn.warning(
                    f"failed {signal}",
                    "pass-through could not deliver a %s request: %s%s",
                    signal,
                    exc,
                    f" (if {self._base} does not take {signal}, leave it out of passthrough.signals)"
                    if exc.refused
                    else "",
                )
                return "failed"

    def _send(self, signal: str, payload: bytes) -> None:
        if self._http is not None:
            try:
                response = self._http.post(f"{self._base}/v1/{signal}", content=payload, headers=self._config.headers)
            except httpx.TransportError as exc:
                raise _Retry(f"{type(exc).__name__}: {exc}") from None
            if response.status_code == 200:
                return
            if response.status_code in _RETRYABLE_HTTP:
                after = response.headers.get("retry-after")
                raise _Retry(f"HTTP {response.status_code}", float(after) if after and after.isdigit() else None)
            raise _Failed(
                f"HTTP {response.status_code}: {response.text[:200]}", refused=response.status_code in (404, 405)
            )
        call = self._channel.unary_unary(_GRPC_METHODS[signal])
        try:
            call(
                payload,
                timeout=self._config.timeout,
                metadata=tuple((k.lower(), v) for k, v in self._config.headers.items()),
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code in _RETRYABLE_GRPC:
                raise _Retry(f"gRPC {code.name}") from None
            raise _Failed(f"gRPC {code.name}: {exc.details()}", refused=code == grpc.StatusCode.UNIMPLEMENTED) from None


class _Failed(Exception):
    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused  # the endpoint does not serve this signal at all
