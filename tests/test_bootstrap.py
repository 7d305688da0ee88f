"""ragotel.instrument(): providers, OTLP exporters, environment handling, idempotence, never raising or blocking.

Tests that let instrument() build and install global providers run in a child process, so this process's
OpenTelemetry globals stay untouched.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.servers import HangingServer, HttpReceiver

import ragotel
from ragotel import telemetry
from ragotel.bootstrap import current_instrumentation
from ragotel.config import Settings
from ragotel.testing import capture

_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RAGOTEL_"))}


def run_child(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with a clean OTEL_* environment plus ``env``; fail on non-zero exit."""
    full_env = {**_CLEAN_ENV, "RAGOTEL_HOST_METRICS": "false", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


_PIPELINE = """
    import ragotel
    @ragotel.pipeline("qa", user_id="u1")
    def ask():
        with ragotel.retrieval("kb") as r:
            r.add_documents([("d1", 0.9)])
        with ragotel.generation("m", provider="openai") as g:
            g.record_usage(3, 4)
        return "ok"
"""


def _spans(receiver: HttpReceiver) -> tuple[dict[str, Any], list[str]]:
    resource: dict[str, Any] = {}
    names: list[str] = []
    for req in receiver.requests:
        if req.path != "/v1/traces":
            continue
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(req.body)
        for rs in msg.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            names += [s.name for ss in rs.scope_spans for s in ss.spans]
    return resource, names


def test_explicit_arguments_beat_environment(http_receiver: HttpReceiver) -> None:
    """Explicit service_name/endpoint/headers win over OTEL_*; spans and metrics arrive as OTLP/HTTP protobuf."""
    run_child(
        _PIPELINE
        + f"""
    handle = ragotel.instrument(
        service_name="explicit-svc", endpoint="{http_receiver.url}", headers={{"x-team": "rag"}}
    )
    assert ask() == "ok"
    assert handle.owns_providers
    assert handle.force_flush(10_000)
    handle.shutdown()
    """,
        env={
            "OTEL_SERVICE_NAME": "env-svc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-team=env",
        },
    )
    resource, names = _spans(http_receiver)
    assert resource["service.name"] == "explicit-svc"
    assert sorted(names) == ["chat m", "pipeline qa", "retrieval kb"]
    trace_req = next(r for r in http_receiver.requests if r.path == "/v1/traces")
    assert trace_req.headers["content-type"] == "application/x-protobuf"
    assert trace_req.headers["x-team"] == "rag"
    metric_reqs = [r for r in http_receiver.requests if r.path == "/v1/metrics"]
    assert metric_reqs, "no metrics exported"
    msg = ExportMetricsServiceRequest()
    msg.ParseFromString(metric_reqs[-1].body)
    metric_names = {m.name for rm in msg.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"ragotel.stage.duration", "gen_ai.client.token.usage", "ragotel.retrieval.documents"} <= metric_names


def test_environment_configures_exporters(http_receiver: HttpReceiver) -> None:
    """With no arguments, OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT and _HEADERS configure the export."""
    run_child(
        _PIPELINE
        + """
    handle = ragotel.instrument()
    ask()
    handle.shutdown()
    """,
        env={
            "OTEL_SERVICE_NAME": "env-svc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url,
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t0k",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        },
    )
    resource, names = _spans(http_receiver)
    assert resource["service.name"] == "env-svc"
    assert resource["deployment.environment.name"] == "test"
    assert len(names) == 3
    trace_req = next(r for r in http_receiver.requests if r.path == "/v1/traces")
    assert trace_req.headers["authorization"] == "Bearer t0k"


def test_reuses_app_providers_and_adds_no_exporter() -> None:
    """When the app installed SDK providers, instrument() uses them and adds no span processor or reader."""
    proc = run_child(
        _PIPELINE
        + """
    from opentelemetry import trace, metrics
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    exporter = InMemorySpanExporter()
    tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter)); trace.set_tracer_provider(tp)
    reader = InMemoryMetricReader(); mp = MeterProvider(metric_readers=[reader]); metrics.set_meter_provider(mp)
    handle = ragotel.instrument(endpoint="http://127.0.0.1:9")
    assert handle.tracer_provider is tp and handle.meter_provider is mp and not handle.owns_providers
    assert len(tp._active_span_processor._span_processors) == 1
    assert len(mp._metric_readers) == 1
    ask()
    print(sorted(s.name for s in exporter.get_finished_spans()))
    """
    )
    assert proc.stdout.strip() == "['chat m', 'pipeline qa', 'retrieval kb']"


def test_grpc_protocol_builds_grpc_exporters() -> None:
    """protocol='grpc' (or the env var) selects the gRPC OTLP exporters."""
    proc = run_child(
        """
    import ragotel
    handle = ragotel.instrument(protocol="grpc", endpoint="http://127.0.0.1:4317")
    bsp = handle.tracer_provider._active_span_processor._span_processors[0]
    print(type(bsp.span_exporter).__module__)
    handle.uninstrument()
    """
    )
    assert proc.stdout.strip() == "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


def test_closed_port_does_not_raise_or_block() -> None:
    """Exporting to a closed port: the app's calls complete, nothing is raised, shutdown returns."""
    proc = run_child(
        _PIPELINE
        + """
    import time
    handle = ragotel.instrument(endpoint="http://127.0.0.1:9")
    t0 = time.perf_counter()
    for _ in range(2000):
        ask()
    elapsed = time.perf_counter() - t0
    handle.force_flush(2000)
    handle.shutdown()
    print(elapsed)
    """,
        env={"OTEL_EXPORTER_OTLP_TIMEOUT": "1", "OTEL_BSP_MAX_QUEUE_SIZE": "256"},
    )
    # 2000 pipelines of 3 spans: unblocked this is well under a second; a blocked export would take >= 1 s each.
    assert float(proc.stdout.strip().splitlines()[-1]) < 10


def test_hanging_endpoint_does_not_block_the_app(hanging_server: HangingServer) -> None:
    """An endpoint that accepts and never answers: calls still complete (export happens off the app's threads)."""
    proc = run_child(
        _PIPELINE
        + f"""
    import time
    handle = ragotel.instrument(endpoint="{hanging_server.url}")
    t0 = time.perf_counter()
    for _ in range(1000):
        ask()
    print(time.perf_counter() - t0)
    """,
        env={"OTEL_EXPORTER_OTLP_TIMEOUT": "2", "OTEL_BSP_SCHEDULE_DELAY": "10"},
    )
    assert float(proc.stdout.strip().splitlines()[-1]) < 10


_FLUSH_TIMING = """
    import json, time
    handle = ragotel.instrument(endpoint="{url}")
    for _ in range(20):
        ask()
    t0 = time.perf_counter()
    flushed = handle.force_flush(timeout_millis=1000)
    flush_s = time.perf_counter() - t0
    for _ in range(20):
        ask()
    t0 = time.perf_counter()
    stopped = handle.shutdown()
    shutdown_s = time.perf_counter() - t0
    print(json.dumps({{"flushed": flushed, "flush_s": flush_s, "stopped": stopped, "shutdown_s": shutdown_s}}))
"""


@pytest.mark.parametrize("endpoint", ["closed", "hanging"])
def test_flush_and_shutdown_keep_their_timeouts_and_report_failure(
    endpoint: str, hanging_server: HangingServer
) -> None:
    """Endpoint down or hanging: force_flush(1 s) is False within ~1 s, shutdown() False within the export timeout."""
    url = "http://127.0.0.1:9" if endpoint == "closed" else hanging_server.url
    proc = run_child(_PIPELINE + _FLUSH_TIMING.format(url=url), env={"OTEL_EXPORTER_OTLP_TIMEOUT": "2"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flushed"] is False
    assert result["flush_s"] < 1.8
    assert result["stopped"] is False
    assert result["shutdown_s"] < 2.8


def test_flush_reports_a_refused_export(http_receiver: HttpReceiver) -> None:
    """An endpoint answering 400 to every export: force_flush and shutdown return False (nothing was exported)."""
    http_receiver.respond(status=400, body=b"rejected")
    proc = run_child(_PIPELINE + _FLUSH_TIMING.format(url=http_receiver.url), env={"OTEL_EXPORTER_OTLP_TIMEOUT": "5"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {**result, "flushed": False, "stopped": False}
    assert any(r.path == "/v1/traces" for r in http_receiver.requests)


def test_bad_environment_warns_and_runs(http_receiver: HttpReceiver) -> None:
    """Unknown protocol, malformed headers and non-numeric limits each give one warning naming the variable."""
    proc = run_child(
        _PIPELINE
        + """
    import logging
    logging.basicConfig(level=logging.WARNING)
    handle = ragotel.instrument()
    assert ask() == "ok"
    bsp = handle.tracer_provider._active_span_processor._span_processors[0]
    print(type(bsp.span_exporter).__module__)
    handle.uninstrument()
    """,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon",
            "OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign",
            "OTEL_BSP_MAX_QUEUE_SIZE": "lots",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
            "RAGOTEL_CAPTURE_MAX_LENGTH": "-3",
        },
    )
    assert proc.stdout.strip() == "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    for needle in (
        "OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon'",
        "OTEL_EXPORTER_OTLP_HEADERS='no-equals-sign'",
        "OTEL_BSP_MAX_QUEUE_SIZE='lots'",
        "OTEL_EXPORTER_OTLP_TIMEOUT='soon'",
        "RAGOTEL_CAPTURE_MAX_LENGTH='-3'",
    ):
        assert proc.stderr.count(needle) == 1, f"{needle} not warned exactly once:\n{proc.stderr}"


def test_settings_from_env_fallbacks(caplog: pytest.LogCaptureFixture) -> None:
    """Settings.from_env documents its fallbacks: defaults for bad values, explicit values for good ones."""
    caplog.set_level(logging.WARNING, logger="ragotel")
    s = Settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "maybe",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "ragotel_openai, chromadb",
            "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        }
    )
    assert s.protocol == "grpc"
    assert s.capture_content is False
    assert s.disabled_libraries == frozenset({"openai", "chromadb"})
    assert s.max_queue_size == 64
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT='maybe'" in caplog.text
    explicit = Settings.from_env(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, protocol="http/protobuf", capture_content=True
    )
    assert explicit.protocol == "http/protobuf"
    assert explicit.capture_content is True
    assert Settings.from_env({}, headers="a=1,b=x%3Dy").headers == {"a": "1", "b": "x=y"}


def test_instrument_is_idempotent_and_uninstrument_resets() -> None:
    """A second instrument() returns the same handle; uninstrument() clears it and the next call builds anew."""
    with capture() as cap:
        first = ragotel.instrument(
            tracer_provider=cap.tracer_provider, meter_provider=cap.meter_provider, libraries=[], host_metrics=False
        )
        try:
            assert ragotel.instrument() is first
            assert current_instrumentation() is first
            assert not first.owns_providers
        finally:
            ragotel.uninstrument()
        assert current_instrumentation() is None


def test_instrument_reports_to_given_providers() -> None:
    """Stages report to the providers passed to instrument(), with the capture setting applied."""
    with capture() as cap:
        handle = ragotel.instrument(
            tracer_provider=cap.tracer_provider,
            meter_provider=cap.meter_provider,
            libraries=[],
            host_metrics=False,
            capture_content=True,
        )
        telemetry.pop(telemetry.current())  # report through instrument()'s Telemetry, not capture()'s
        try:
            with ragotel.retrieval("kb") as op:
                op.capture("gen_ai.retrieval.query.text", "q?")
            assert handle.force_flush()
        finally:
            handle.uninstrument()
        span = cap.span("retrieval kb")
        assert (span.attributes or {})["gen_ai.retrieval.query.text"] == "q?"


def test_unknown_library_warns(caplog: pytest.LogCaptureFixture) -> None:
    """An unknown name in libraries= is reported by name; instrument() still returns a handle."""
    caplog.set_level(logging.WARNING, logger="ragotel")
    with capture() as cap:
        handle = ragotel.instrument(
            tracer_provider=cap.tracer_provider,
            meter_provider=cap.meter_provider,
            libraries=["nope"],
            host_metrics=False,
        )
        handle.uninstrument()
    assert "unknown library 'nope'" in caplog.text
    assert handle.libraries == ()


def test_settings_are_json_serialisable_for_debugging() -> None:
    """The settings record is plain data (what `ragotel` prints when asked for its configuration)."""
    s = Settings.from_env({})
    assert json.loads(json.dumps({k: getattr(s, k) for k in ("protocol", "capture_content", "max_queue_size")})) == {
        "protocol": "http/protobuf",
        "capture_content": False,
        "max_queue_size": 2048,
    }


def test_libraries_are_instrumented_when_the_app_imports_them() -> None:
    """instrument() imports no library itself: each is patched the moment the app imports it, and never after
    uninstrument()."""
    proc = run_child(
        """
    import sys
    import ragotel
    handle = ragotel.instrument(endpoint="http://127.0.0.1:9")
    heavy = [m for m in ("openai", "chromadb", "torch", "sentence_transformers", "langchain_core") if m in sys.modules]
    assert heavy == [], heavy
    assert {"openai", "chromadb", "qdrant"} <= handle.pending, handle.pending
    import openai
    from openai.resources.chat.completions import Completions
    assert "openai" in handle.libraries and "openai" not in handle.pending
    import wrapt
    assert isinstance(Completions.__dict__["create"], wrapt.FunctionWrapper)
    handle.uninstrument()
    assert not isinstance(Completions.__dict__["create"], wrapt.FunctionWrapper)
    import chromadb
    from chromadb.api.models.Collection import Collection
    assert not isinstance(Collection.__dict__["query"], wrapt.FunctionWrapper)
    print("ok")
    """
    )
    assert proc.stdout.strip() == "ok"


def test_log_level_variable(caplog: pytest.LogCaptureFixture) -> None:
    """RAGOTEL_LOG_LEVEL sets the ragotel logger's level; a bad value warns naming the variable."""
    from ragotel.config import apply_log_level

    logger = logging.getLogger("ragotel")
    before = logger.level
    try:
        apply_log_level({"RAGOTEL_LOG_LEVEL": "debug"})
        assert logger.level == logging.DEBUG
        caplog.set_level(logging.WARNING, logger="ragotel")
        apply_log_level({"RAGOTEL_LOG_LEVEL": "loud"})
        assert "RAGOTEL_LOG_LEVEL='loud'" in caplog.text
    finally:
        logger.setLevel(before)
