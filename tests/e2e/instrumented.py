"""ragotel instrumenting the example app's libraries, exporting over OTLP/HTTP to an in-process analyzer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import ragotel
from ragotel.analyzer.server import Server


@contextmanager
def instrumented(server: Server, service: str) -> Iterator[None]:
    """Local providers exporting to ``server`` (spans every 0.1 s, metrics every 0.3 s) and ragotel instrumenting
    langchain, chromadb and openai over them; everything is undone on exit."""
    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://{server.http_address}/v1/traces"), schedule_delay_millis=100
        )
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"http://{server.http_address}/v1/metrics"), export_interval_millis=300
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    handle = ragotel.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, libraries=["langchain", "chromadb", "openai"]
    )
    try:
        yield
    finally:
        handle.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()
