"""Helpers for analyzer tests: free-port configs, API reads, spans exported through a real SDK TracerProvider."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from ragotel.analyzer.server import Server

T0_NS = 1_800_000_000_000_000_000


def free_ports_config(tmp_path: Path) -> dict[str, Any]:
    """Every endpoint on port 0, state in the test's directory."""
    return {
        "receivers": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}},
        "api": {"endpoint": "127.0.0.1:0"},
        "state": {"path": str(tmp_path / "state.db")},
    }


def api(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    """GET ``path`` from the analyzer's API."""
    return httpx.get(f"http://{server.api_address}{path}", timeout=10, **kwargs)


def stage_row(server: Server, service: str, stage: str, component: str | None = None) -> dict[str, Any]:
    """The /api/v1/stats row of one (service, stage[, component]), once everything accepted is merged."""
    assert server.ingest.wait_idle()
    body = api(server, f"/api/v1/stats?service={service}").json()
    rows = [
        row
        for entry in body["services"]
        for row in entry["stages"]
        if row["stage"] == stage and (component is None or row["component"] == component)
    ]
    assert len(rows) == 1, body
    return rows[0]


def emit_spans(
    exporter: SpanExporter,
    service: str,
    spans: Sequence[tuple[str, Mapping[str, Any], float]],
    *,
    error_indexes: Sequence[int] = (),
) -> None:
    """Export spans (name, attributes, duration in seconds) through a real SDK TracerProvider and ``exporter``.

    Start and end times are set explicitly so durations are exact; the provider is local, never global.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("ragotel.tests")
    for i, (name, attributes, seconds) in enumerate(spans):
        span = tracer.start_span(name, attributes=dict(attributes), start_time=T0_NS)
        if i in error_indexes:
            span.set_status(Status(StatusCode.ERROR, "failed"))
        span.end(end_time=T0_NS + round(seconds * 1e9))
    provider.shutdown()


def encoded_spans(
    service: str,
    spans: Sequence[tuple[str, Mapping[str, Any], float]],
    *,
    error_indexes: Sequence[int] = (),
) -> bytes:
    """The ExportTraceServiceRequest the SDK's OTLP exporters would send for these spans."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    emit_spans(memory, service, spans, error_indexes=error_indexes)
    return bytes(encode_spans(memory.get_finished_spans()).SerializeToString())


def gauge_request(
    service: str, points: Sequence[tuple[str, float, Mapping[str, Any], float]], instance: str = ""
) -> bytes:
    """An ExportMetricsServiceRequest of gauge points (metric name, value, attributes, time in seconds)."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key: str, value: Any) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=str(value)))

    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.append(kv("service.name", service))
    if instance:
        resource.resource.attributes.append(kv("service.instance.id", instance))
    scope = resource.scope_metrics.add()
    for name, value, attributes, seconds in points:
        metric = scope.metrics.add(name=name, unit="1")
        point = metric.gauge.data_points.add(as_double=value, time_unix_nano=int(seconds * 1e9))
        point.attributes.extend(kv(k, v) for k, v in attributes.items())
    return bytes(request.SerializeToString())


def log_request(service: str, severities: Sequence[int]) -> bytes:
    """An ExportLogsServiceRequest with one record per severity number."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    scope = resource.scope_logs.add()
    for severity in severities:
        scope.log_records.add(severity_number=severity, body=AnyValue(string_value="event"))
    return bytes(request.SerializeToString())
