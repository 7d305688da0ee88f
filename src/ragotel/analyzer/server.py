"""The analyzer daemon's lifecycle: startup -> tick loop -> graceful shutdown, and the component extension point.

``Server`` builds the parts and connects them: receivers -> ingest -> windows -> alerting (judge -> notify,
recover), the API and the optional pass-through. ``start()``/``stop()``
run it in-process (tests, ``ragotel demo``); ``run()`` is the blocking daemon with SIGTERM/SIGINT handling
(the handlers it replaced are restored on return). Shutdown stops the receivers first, then merges everything
already accepted, stops the components, flushes the pass-through and closes the API last.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from ragotel.analyzer.alerting import Alerting
from ragotel.analyzer.api.alerts import AlertsApi
from ragotel.analyzer.api.graph import dependencies_handler
from ragotel.analyzer.api.metrics import AlertingCollector, AlertingMetrics, WindowsCollector
from ragotel.analyzer.api.page import PageApi
from ragotel.analyzer.api.router import Handler, Router, add_builtin_routes
from ragotel.analyzer.config.model import Config
from ragotel.analyzer.receive.auth import load_credentials
from ragotel.analyzer.receive.export import ExportHandler
from ragotel.analyzer.receive.http_service import ConnectionLimits, HttpService, bind
from ragotel.analyzer.receive.ingest import Ingest
from ragotel.analyzer.receive.otlp_grpc import OtlpGrpcServer
from ragotel.analyzer.receive.otlp_http import OtlpHttpApp
from ragotel.analyzer.receive.passthrough import Passthrough
from ragotel.analyzer.receive.selfmetrics import AnalyzerMetrics
from ragotel.analyzer.windows import Windows

__all__ = ["Component", "Server"]

_log = logging.getLogger("ragotel.analyzer.server")


class Component(Protocol):
    """Something that lives as long as the server and is ticked every ``evaluation_interval``.

    ``tick`` runs on the server's loop thread; it should return quickly and must not raise (an exception is
    logged and the next tick still happens).
    """

    def start(self) -> None: ...

    def tick(self, now: float) -> None: ...

    def stop(self) -> None: ...


class Server:
    """One analyzer: receivers, ingest, windows, API, pass-through and the registered components.

    Construction validates what the configuration refers to (token sources, TLS files) and raises ConfigError;
    nothing is bound until ``start()``.
    """

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = AnalyzerMetrics(self.registry)
        self.windows = Windows(
            config.window,
            max_series=config.limits.max_series,
            detection_horizon=config.detection.horizon,
            baseline_horizon=config.baseline.horizon,
            baseline_min_samples=config.baseline.min_samples,
            fit_window=config.memory_fit_window,
        )
        # Everything the configuration points at is checked before anything holds a resource.
        credentials = load_credentials(config)  # the same check as --check-config
        self._receiver_auth, self._receiver_tls = credentials.receiver_auth, credentials.receiver_tls
        self._api_tls = credentials.api_tls
        self.passthrough = Passthrough(config.passthrough, self.metrics) if config.passthrough.endpoint else None
        limits = config.limits
        self.ingest = Ingest(
            self.windows,
            self.metrics,
            max_items=limits.ingest_queue_size,
            max_bytes=limits.ingest_queue_bytes,
            memory_limit=limits.memory_limit,
            retry_after=limits.retry_after,
            forwarder=self.passthrough,
        )
        self.registry.register(WindowsCollector(self.windows, self.ingest.state))
        self._handler = ExportHandler(self.ingest, self.metrics)
        self.router = Router(credentials.api_auth)
        add_builtin_routes(self.router, self.windows, self.registry, self.readiness)
        self.router.add("GET", "/api/v1/dependencies", dependencies_handler(self.windows))
        self._components: list[Component] = []
        self._grpc: OtlpGrpcServer | None = None
        self._http: HttpService | None = None
        self._api: HttpService | None = None
        self._state = "new"  # new -> running -> stopping -> stopped
        self._lock = threading.Lock()
        self._exit = threading.Event()
        self._ticker: threading.Thread | None = None
        # Judging, notifying and recovering: one component ticked with the others, its metrics and its API.
        self.alerting = Alerting(config, self.windows, AlertingMetrics(self.registry))
        self.registry.register(AlertingCollector(self.alerting))
        self.add_component(self.alerting)
        for method, path, handler in AlertsApi(self.alerting).routes():
            self.add_route(method, path, handler)
        for method, path, handler, public in PageApi(self.windows, self.alerting).routes():
            self.router.add(method, path, handler, public=public)

    # --- components and routes -------------------------------------------------------------------------------

    def add_component(self, component: Component) -> None:
        """Register a component; it is started with the server (or at once if the server already runs)."""
        self._components.append(component)
        if self._state == "running":
            component.start()

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``handler`` (``Request -> Response``, see ``ragotel.analyzer.api``) at ``method path`` on the API."""
        self.router.add(method, path, handler)

    # --- addresses -------------------------------------------------------------------------------------------

    @property
    def grpc_address(self) -> str | None:
        """Bound ``HOST:PORT`` of the OTLP/gRPC receiver (None when disabled or not started)."""
        return self._grpc.address if self._grpc is not None else None

    @property
    def http_address(self) -> str | None:
        """Bound ``HOST:PORT`` of the OTLP/HTTP receiver (None when disabled or not started)."""
        return self._http.address if self._http is not None else None

    @property
    def api_address(self) -> str | None:
        """Bound ``HOST:PORT`` of the HTTP API (None before start)."""
        return self._api.address if self._api is not None else None

    def readiness(self) -> str | None:
        """None when serving and accepting data, else why not (what /readyz reports)."""
        if self._state != "running":
            return f"server is {self._state}"
        refused = self.ingest.refusal()
        return f"refusing data: {refused.reason}" if refused is not None else None

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self, *, tick_thread: bool = True) -> None:
        """Bind every endpoint and start serving; on failure, undo what started and re-raise (OSError/RuntimeError).

        With ``tick_thread`` a daemon thread calls ``tick`` every ``evaluation_interval``; ``run()`` ticks on
        the calling thread instead.
        """
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"server already {self._state}")
            self._state = "starting"
        try:
            self._start_services()
        except BaseException:
            self._state = "running"
            self.stop()  # whatever did start is stopped; the server cannot be started again
            raise
        self._state = "running"
        if tick_thread:
            self._ticker = threading.Thread(target=self._tick_loop, name="ragotel-analyzer-tick", daemon=True)
            self._ticker.start()
        _log.info(
            "ragotel-analyzer started",
            extra={
                "grpc": self.grpc_address,
                "http": self.http_address,
                "api": self.api_address,
                "window": self.config.window,
            },
        )

    def _start_services(self) -> None:
        config = self.config
        self.ingest.start()
        if self.passthrough is not None:
            self.passthrough.start()
            _log.info("pass-through enabled", extra={"endpoint": self.passthrough.endpoint})
        for component in self._components:
            component.start()
        self._api = HttpService("api", self.router, bind(config.api.endpoint), tls=self._api_tls)
        self._api.start()
        _log.info("listening", extra={"service": "api", "address": self.api_address, "tls": bool(self._api_tls)})
        if config.receivers.http.enabled:
            http = config.receivers.http
            app = OtlpHttpApp(self._handler, self._receiver_auth, http.max_body_size, http.read_timeout)
            limits = ConnectionLimits(http.read_timeout, http.max_connections)
            self._http = HttpService("otlp-http", app, bind(http.endpoint), tls=self._receiver_tls, limits=limits)
            self._http.start()
            _log.info("listening", extra={"service": "otlp-http", "address": self.http_address})
        if config.receivers.grpc.enabled:
            self._grpc = OtlpGrpcServer(self._handler, self._receiver_auth, config.receivers.grpc, self._receiver_tls)
            self._grpc.start()
            _log.info("listening", extra={"service": "otlp-grpc", "address": self.grpc_address})

    def tick(self, now: float | None = None) -> None:
        """One evaluation step: expire old window data, sample memory, tick every component."""
        now = time.time() if now is None else now
        self.windows.expire(now)
        self.ingest.check_memory()
        for component in self._components:
            try:
                component.tick(now)
            except Exception:  # noqa: BLE001  one failing component must not stop the others or the loop
                _log.exception("component %r failed in tick", component)

    def _tick_loop(self) -> None:
        interval = self.config.evaluation_interval
        next_at = time.monotonic()
        while not self._exit.is_set():
            self.tick()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a slow component): skip the missed ticks rather than burst
                next_at = time.monotonic()
                delay = 0
            self._exit.wait(delay)

    def request_exit(self) -> None:
        """Ask ``run()`` to shut down (what SIGTERM/SIGINT do); safe from any thread or signal handler."""
        self._exit.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown: stop receiving, merge everything accepted, stop components, flush, close the API."""
        with self._lock:
            if self._state in ("stopping", "stopped", "new"):
                return
            self._state = "stopping"
        _log.info("shutting down")
        self._exit.set()
        if self._grpc is not None:
            self._grpc.stop(grace=min(10.0, timeout))
        if self._http is not None:
            self._http.stop()
        self.ingest.close(timeout)
        if self._ticker is not None:
            self._ticker.join(timeout)
        for component in reversed(self._components):
            try:
                component.stop()
            except Exception:  # noqa: BLE001  every component gets its stop even if one fails
                _log.exception("component %r failed to stop", component)
        if self.passthrough is not None:
            self.passthrough.close(min(10.0, timeout))
        if self._api is not None:
            self._api.stop()
        self._state = "stopped"
        _log.info("stopped", extra=self.windows.snapshot_counts())

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT, then shut down gracefully; return the process exit code (0)."""
        previous: dict[int, Any] = {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            _log.info("received %s", signal.Signals(signum).name)
            self._exit.set()

        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, on_signal)
        try:
            self.start(tick_thread=False)
            self._tick_loop()
        finally:
            self.stop()
            for number, handler in previous.items():
                signal.signal(number, handler)
        return 0
