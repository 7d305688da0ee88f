"""``ragotel.instrument()``: providers, exporters, library instrumentors and gauges — idempotent, never raising."""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import wrapt
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ragotel import _guard
from ragotel import telemetry as _telemetry
from ragotel.applogs import AppLogs, attach
from ragotel.config import Settings, apply_log_level
from ragotel.flushing import Deadlines, ExportLedger

__all__ = ["LIBRARIES", "Instrumentation", "current_instrumentation", "instrument", "uninstrument"]

_log = logging.getLogger("ragotel")
_P = TypeVar("_P")


@dataclass(frozen=True, slots=True)
class Library:
    """A supported library: the module whose presence enables it and the instrumentor class path."""

    module: str
    instrumentor: str  # "package.module:ClassName"


# The registry: adding a library is one line here plus one entry point in pyproject.toml.
LIBRARIES: Final[dict[str, Library]] = {
    "openai": Library("openai", "ragotel.instrumentation.openai:OpenAIInstrumentor"),
    "langchain": Library("langchain_core", "ragotel.instrumentation.langchain:LangChainInstrumentor"),
    "chromadb": Library("chromadb", "ragotel.instrumentation.chromadb:ChromaInstrumentor"),
    "qdrant": Library("qdrant_client", "ragotel.instrumentation.qdrant:QdrantInstrumentor"),
    "sentence_transformers": Library(
        "sentence_transformers", "ragotel.instrumentation.sentence_transformers:SentenceTransformersInstrumentor"
    ),
    "llama_index": Library("llama_index.core", "ragotel.instrumentation.llama_index:LlamaIndexInstrumentor"),
    "anthropic": Library("anthropic", "ragotel.instrumentation.anthropic:AnthropicInstrumentor"),
    "bedrock": Library("botocore", "ragotel.instrumentation.bedrock:BedrockInstrumentor"),
    "google_genai": Library("google.genai", "ragotel.instrumentation.google_genai:GoogleGenAIInstrumentor"),
    "ollama": Library("ollama", "ragotel.instrumentation.ollama:OllamaInstrumentor"),
    "cohere": Library("cohere", "ragotel.instrumentation.cohere:CohereInstrumentor"),
    "faiss": Library("faiss", "ragotel.instrumentation.faiss:FaissInstrumentor"),
    "lancedb": Library("lancedb", "ragotel.instrumentation.lancedb:LanceDBInstrumentor"),
    "milvus": Library("pymilvus", "ragotel.instrumentation.milvus:MilvusInstrumentor"),
    "haystack": Library("haystack", "ragotel.instrumentation.haystack:HaystackInstrumentor"),
}


class Stoppable(Protocol):
    """Something started by instrument() that shutdown() stops (host gauges, health scheduler)."""

    def stop(self) -> None:
        """Stop promptly; must not raise."""


class Instrumentation:
    """The handle instrument() returns: what was instrumented, and flush / shutdown / uninstrument."""

    def __init__(
        self,
        settings: Settings,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        *,
        owns_providers: bool,
        ledger: ExportLedger | None = None,
        logger_provider: _logs.LoggerProvider | None = None,
        owns_logger_provider: bool = False,
    ) -> None:
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider  # where the app's logging records go; None: not exported
        self.owns_logger_provider = owns_logger_provider
        self.app_logs: AppLogs | None = None  # the root logger's OTel handler while instrumented
        self.owns_providers = owns_providers
        self.instrumentors: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.pending: set[str] = set()  # installed libraries instrumented when the app imports them
        self._stoppables: list[Stoppable] = []
        self._active = True
        self._ledger = ledger  # the exporters ragotel built report here; None for the app's own providers
        self._deadlines = Deadlines()

    @property
    def libraries(self) -> tuple[str, ...]:
        """Names of the libraries instrumented so far (see ``pending`` for those waiting for their import)."""
        return tuple(self.instrumentors)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what is buffered now, returning within ``timeout_millis``. Never raises.

        True only when everything was exported in time. False when the deadline passed (the export goes on in the
        background, cut by the exporter's own timeout) or an export failed (endpoint down, hanging, refusing). With
        the app's own providers ragotel cannot see export results: True then means they flushed in time.
        """
        return self._within(timeout_millis, "force_flush", lambda flush: functools.partial(flush, timeout_millis))

    def _within(self, timeout_millis: float, method: str, bind: Callable[[Any], Callable[[], Any]]) -> bool:
        """Call ``method`` of the providers concurrently, waiting at most ``timeout_millis``; see force_flush.

        An app's own LoggerProvider is only flushed, never shut down (ragotel may own the others and not that one).
        """
        failures = self._ledger.failures if self._ledger is not None else 0
        calls = {}
        providers = (("traces", self.tracer_provider), ("metrics", self.meter_provider), ("logs", self.logger_provider))
        for signal, provider in providers:
            own = signal != "logs" or self.owns_logger_provider
            call = getattr(provider, method if own or method != "shutdown" else "force_flush", None)
            if call is not None:
                calls[f"{signal} {method}"] = bind(call)
        done = self._deadlines.run(calls, timeout_millis / 1000)
        return done and (self._ledger is None or self._ledger.failures == failures)

    def uninstrument(self) -> None:
        """Restore every patched library callable and stop the gauges. Never raises."""
        global _current
        with _lock:
            self._active = False
            self.pending.clear()
        for name, instrumentor in list(self.instrumentors.items()):
            _guard.call(f"uninstrument {name}", instrumentor.uninstrument, None)
        self.instrumentors.clear()
        for stoppable in self._stoppables:
            _guard.call("stop", stoppable.stop, None)
        self._stoppables.clear()
        app_logs, self.app_logs = self.app_logs, None
        if app_logs is not None:
            _guard.call("detaching the logging handler", app_logs.detach, None)
        with _lock:
            if _current is self:
                _current = None
                _telemetry.set_default(None)
        self._active = False

    def shutdown(self, timeout_millis: float | None = None) -> bool:
        """Uninstrument, then flush and shut down the providers ragotel built (an app's own are only flushed).

        Returns within ``timeout_millis`` (default: the export timeout, ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s); True
        when the last export went through in time, False otherwise (as :meth:`force_flush`). Never raises.
        """
        self.uninstrument()
        timeout = self.settings.exporter_timeout_s * 1000 if timeout_millis is None else timeout_millis
        if not self.owns_providers:
            return self.force_flush(int(timeout))
        return self._within(timeout, "shutdown", _unregistered)

    def _instrument_libraries(self) -> None:
        """Instrument each wanted library now if the app already imported it, else the moment it is imported.

        Deferring through a post-import hook keeps ``instrument()`` cheap: an installed but unused library (torch
        behind sentence-transformers takes seconds to import) is never imported by ragotel.
        """
        wanted = self.settings.libraries
        names = list(LIBRARIES) if wanted is None else [n.removeprefix("ragotel_") for n in wanted]
        for name in names:
            lib = LIBRARIES.get(name)
            if lib is None:
                _log.warning("ragotel: unknown library %r in libraries=; known: %s", name, ", ".join(LIBRARIES))
                continue
            active = _active_instrumentor(lib)
            if active is not None:  # instrumented already, e.g. by `opentelemetry-instrument`'s ragotel_ entry point
                self.instrumentors[name] = active
                continue
            if name in self.settings.disabled_libraries or "*" in self.settings.disabled_libraries:
                continue
            if lib.module in sys.modules:
                self._instrument_library(name, lib)
                continue
            if _guard.call("find_spec", functools.partial(importlib.util.find_spec, lib.module), None) is None:
                continue  # not installed: skipped quietly
            self.pending.add(name)
            hook = functools.partial(self._on_import, name, lib)
            wrapt.register_post_import_hook(hook, lib.module)

    def _on_import(self, name: str, lib: Library, _module: Any) -> None:
        """Post-import hook: instrument ``name`` unless this handle was uninstrumented meanwhile. Never raises."""
        with _lock:
            if not self._active or name not in self.pending:
                return
            self.pending.discard(name)
            _guard.call(f"instrumenting {name}", functools.partial(self._instrument_library, name, lib), None)

    def _instrument_library(self, name: str, lib: Library) -> None:
        # One library failing must not stop the others: recorded in `failed`, logged at WARNING.
        _, exc = _guard.caught(functools.partial(self._load_instrumentor, name, lib))
        if exc is not None:
            self.failed[name] = repr(exc)
            _guard.warn(f"instrumenting {name}", exc)

    def _load_instrumentor(self, name: str, lib: Library) -> None:
        active = _active_instrumentor(lib)
        if active is not None:  # instrumenting it again would only log "already instrumented"
            self.instrumentors[name] = active
            return
        module_name, _, class_name = lib.instrumentor.partition(":")
        instrumentor = getattr(importlib.import_module(module_name), class_name)()
        instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            skip_dep_check=False,
            coexistence=self.settings.coexistence,
        )
        if instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentors[name] = instrumentor
        else:
            self.failed[name] = "dependency check failed (version not supported)"

    def _attach_logs(self) -> None:
        """Send the app's logging records (WARNING and above by default) to the logger provider; see ragotel.applogs."""
        self.app_logs = attach(
            self.logger_provider, self.settings.app_logs_level, force_level=self.settings.app_logs_forced
        )

    def _start_gauges(self) -> None:
        hooks: list[tuple[str, str]] = []
        if self.settings.host_metrics:
            hooks.append(("ragotel.host", "install"))
        hooks.append(("ragotel.health", "install"))
        for module_name, func in hooks:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            starter = functools.partial(getattr(module, func), self.meter_provider, self.settings)
            stoppable: Stoppable | None = _guard.call(f"{module_name}.{func}", starter, None)
            if stoppable is not None:
                self._stoppables.append(stoppable)


def _active_instrumentor(lib: Library) -> Any:
    """The instrumentor of ``lib`` if it is instrumented already (they are singletons), without importing anything."""
    module_name, _, class_name = lib.instrumentor.partition(":")
    cls = getattr(sys.modules.get(module_name), class_name, None)
    instance = getattr(cls, "_instance", None)
    return instance if getattr(instance, "is_instrumented_by_opentelemetry", False) else None


def _unregistered(stop: Callable[[], Any]) -> Callable[[], Any]:
    # The SDK providers also shut down at exit; called here, a second call (after our deadline) would only warn.
    atexit.unregister(stop)
    return stop


_lock = threading.RLock()
_current: Instrumentation | None = None


def current_instrumentation() -> Instrumentation | None:
    """The handle of the active ``instrument()`` call, if any."""
    return _current


def instrument(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | str | None = None,
    capture_content: bool | None = None,
    libraries: list[str] | tuple[str, ...] | None = None,
    host_metrics: bool = True,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    coexistence: str | None = None,
    logs: bool | str | int | None = None,
) -> Instrumentation:
    """Instrument every supported, importable library and start the gauges. Idempotent; never raises.

    Providers: the ones passed, else SDK providers the app already installed globally (ragotel then adds no
    exporter), else new SDK providers exporting OTLP (``http/protobuf`` by default, ``grpc`` on request),
    installed as the global providers. Explicit arguments beat ``OTEL_*`` environment variables. Makes no network
    call itself: exporters connect on their first export, from their own threads. ``coexistence`` (else
    ``RAGOTEL_COEXISTENCE``, else ``"defer"``) says what to do about another instrumentation of a library
    (:mod:`ragotel.coexistence`). ``logs`` (else ``RAGOTEL_APP_LOGS`` / ``OTEL_PYTHON_LOG_*``, else WARNING) is the
    level from which the app's ``logging`` records go out as OTLP logs: ``False`` off, ``True`` the default, or a
    level (``"error"``, ``logging.ERROR``). Under ``opentelemetry-instrument`` ragotel is already started: this
    returns its handle.
    """
    global _current
    with _lock:
        if _current is not None:
            return _current
        _guard.call("reading RAGOTEL_LOG_LEVEL", apply_log_level, None)
        settings = _guard.call(
            "reading settings",
            lambda: Settings.from_env(
                service_name=service_name,
                endpoint=endpoint,
                protocol=protocol,
                headers=headers,
                capture_content=capture_content,
                libraries=libraries,
                host_metrics=host_metrics,
                coexistence=coexistence,
                logs=logs,
            ),
            Settings(),
        )
        handle = _guard.call(
            "building providers", lambda: _build(settings, tracer_provider, meter_provider), None
        ) or Instrumentation(settings, tracer_provider, meter_provider, owns_providers=False)
        _telemetry.set_default(
            _telemetry.Telemetry(
                handle.tracer_provider,
                handle.meter_provider,
                capture_content=settings.capture_content,
                capture_max_length=settings.capture_max_length,
                openinference=settings.openinference,
            )
        )
        _current = handle
        _guard.call("instrumenting libraries", handle._instrument_libraries, None)
        _guard.call("attaching the logging handler", handle._attach_logs, None)
        _guard.call("starting gauges", handle._start_gauges, None)
        return handle


def uninstrument() -> None:
    """Undo :func:`instrument` entirely: unpatch libraries, stop gauges. Providers stay usable. Never raises."""
    handle = _current
    if handle is not None:
        handle.uninstrument()


def _build(
    settings: Settings, tracer_provider: trace.TracerProvider | None, meter_provider: metrics.MeterProvider | None
) -> Instrumentation:
    ledger = ExportLedger()
    tracer, owns_tracer = _provider(
        tracer_provider, trace.get_tracer_provider, TracerProvider, lambda: _new_tracer_provider(settings, ledger)
    )
    if owns_tracer:
        trace.set_tracer_provider(tracer)
    meter, owns_meter = _provider(
        meter_provider, metrics.get_meter_provider, MeterProvider, lambda: _new_meter_provider(settings, ledger)
    )
    if owns_meter:
        metrics.set_meter_provider(meter)
    logger, owns_logger = _logger_provider(settings, ledger, owns_tracer)
    return Instrumentation(
        settings,
        tracer,
        meter,
        owns_providers=owns_tracer or owns_meter or owns_logger,
        ledger=ledger,
        logger_provider=logger,
        owns_logger_provider=owns_logger,
    )


def _logger_provider(
    settings: Settings, ledger: ExportLedger, owns_tracer: bool
) -> tuple[_logs.LoggerProvider | None, bool]:
    """The app's installed SDK LoggerProvider, else a new one when ragotel built the tracer provider too, else None.

    An app that brought its own tracer provider manages its export: without a LoggerProvider of its own, its logs
    are not exported (ragotel adds no exporter beside the app's).
    """
    existing = _logs.get_logger_provider()
    if isinstance(existing, LoggerProvider):
        return existing, False
    if not owns_tracer or settings.app_logs_level is None:
        return None, False
    provider = _new_logger_provider(settings, ledger)
    _logs.set_logger_provider(provider)
    return provider, True


def _provider(
    given: _P | None, installed: Callable[[], _P], sdk_type: type[_P], new: Callable[[], _P]
) -> tuple[_P, bool]:
    """The provider to use and whether ragotel made it: the one given, else an installed SDK one, else a new one."""
    if given is not None:
        return given, False
    existing = installed()
    if isinstance(existing, sdk_type):
        return existing, False
    return new(), True


def _resource(settings: Settings) -> Resource:
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; an explicit name wins over both.
    return Resource.create({SERVICE_NAME: settings.service_name} if settings.service_name else {})


def _exporter_module(settings: Settings, signal: str) -> tuple[Any, str]:
    """Import the OTLP exporter module for ``signal`` ("trace"/"metric"/"_log"); grpc falls back to http if missing."""
    if settings.protocol == "grpc":
        try:
            return importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{signal}_exporter"), "grpc"
        except ImportError:
            _log.warning(
                "ragotel: protocol 'grpc' needs the gRPC exporter (pip install 'ragotel[grpc]'); using http/protobuf"
            )
    return importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{signal}_exporter"), "http/protobuf"


def _exporter_kwargs(settings: Settings, protocol: str, path: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"timeout": settings.exporter_timeout_s}
    if settings.headers is not None:
        kwargs["headers"] = settings.headers
    if settings.endpoint:
        base = settings.endpoint.rstrip("/")
        kwargs["endpoint"] = base if protocol == "grpc" else f"{base}/{path}"
    return kwargs


def _new_tracer_provider(settings: Settings, ledger: ExportLedger) -> TracerProvider:
    module, protocol = _exporter_module(settings, "trace")
    exporter: SpanExporter = ledger.track(module.OTLPSpanExporter(**_exporter_kwargs(settings, protocol, "v1/traces")))
    provider = TracerProvider(resource=_resource(settings))
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=settings.max_queue_size,
            schedule_delay_millis=settings.schedule_delay_ms,
            max_export_batch_size=min(settings.max_export_batch_size, settings.max_queue_size),
            export_timeout_millis=settings.export_timeout_ms,
        )
    )
    return provider


def _new_logger_provider(settings: Settings, ledger: ExportLedger) -> LoggerProvider:
    module, protocol = _exporter_module(settings, "_log")
    exporter: LogRecordExporter = ledger.track(
        module.OTLPLogExporter(**_exporter_kwargs(settings, protocol, "v1/logs"))
    )
    provider = LoggerProvider(resource=_resource(settings))
    # Bounded: OTEL_BLRP_MAX_QUEUE_SIZE records (2048) wait at most; beyond that new ones are dropped, never blocking.
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    return provider


def _new_meter_provider(settings: Settings, ledger: ExportLedger) -> MeterProvider:
    module, protocol = _exporter_module(settings, "metric")
    exporter: MetricExporter = ledger.track(
        module.OTLPMetricExporter(**_exporter_kwargs(settings, protocol, "v1/metrics"))
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=settings.metric_export_interval_ms)
    return MeterProvider(resource=_resource(settings), metric_readers=[reader])
