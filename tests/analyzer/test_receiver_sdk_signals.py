"""Metrics and logs from the real OTel SDK exporters (gRPC and HTTP) reach the windows, health and series API."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from tests.analyzer.analyzer_helpers import api

from ragotel.analyzer.server import Server


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_metric_exporter_feeds_dependency_health_host_signals_and_series(analyzer: Server, transport: str) -> None:
    """Observable gauges and a histogram exported by a local MeterProvider show up as health, signals and series."""
    exporter = (
        GrpcMetricExporter(endpoint=analyzer.grpc_address, insecure=True)
        if transport == "grpc"
        else HttpMetricExporter(endpoint=f"http://{analyzer.http_address}/v1/metrics")
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "metered"}))
    meter = provider.get_meter("ragotel.tests")

    def health(options: CallbackOptions) -> list[Observation]:
        return [
            Observation(1, {"ragotel.dependency.name": "qdrant", "ragotel.dependency.kind": "vector_db"}),
            Observation(0, {"ragotel.dependency.name": "openai", "ragotel.dependency.kind": "llm"}),
        ]

    meter.create_observable_gauge("ragotel.dependency.health", [health])
    meter.create_observable_gauge("system.memory.utilization", [lambda options: [Observation(0.42)]])
    durations = meter.create_histogram("ragotel.stage.duration", unit="s")
    for value in (0.1, 0.2, 0.6):
        durations.record(value, {"ragotel.stage": "generation", "ragotel.component": "openai"})
    provider.force_flush()
    provider.shutdown()
    assert analyzer.ingest.wait_idle()

    (service,) = api(analyzer, "/api/v1/health").json()["services"]
    assert service["service"] == "metered"
    assert service["healthy"] is False
    assert [(d["name"], d["kind"], d["healthy"]) for d in service["dependencies"]] == [
        ("openai", "llm", False),
        ("qdrant", "vector_db", True),
    ]
    signal = api(analyzer, "/api/v1/signals?signal=memory_utilization&service=metered").json()["values"]
    assert signal == [{"labels": {"service": "metered"}, "value": 0.42}]
    (histogram,) = api(analyzer, "/api/v1/series?name=ragotel.stage.duration").json()["series"]
    assert (histogram["kind"], histogram["count"], histogram["unit"]) == ("histogram", 3, "s")
    assert histogram["value"] == pytest.approx(0.3)
    instance = histogram["attributes"].pop("service.instance.id")  # the SDK's resource sets one; series keep it
    assert instance
    assert histogram["attributes"] == {"ragotel.component": "openai", "ragotel.stage": "generation"}


def test_sdk_log_exporter_feeds_error_log_counts(analyzer: Server) -> None:
    """Records emitted through an SDK LoggerProvider and its OTLP/HTTP log exporter are counted, errors apart."""
    provider = LoggerProvider(resource=Resource.create({"service.name": "logged"}))
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"http://{analyzer.http_address}/v1/logs"))
    )
    logger = provider.get_logger("ragotel.tests")
    for severity, text in (
        (SeverityNumber.INFO, "retrieval done"),
        (SeverityNumber.WARN, "slow generation"),
        (SeverityNumber.ERROR, "vector store unreachable"),
        (SeverityNumber.FATAL, "giving up"),
    ):
        logger.emit(LogRecord(severity_number=severity, severity_text=severity.name, body=text))
    provider.shutdown()
    assert analyzer.ingest.wait_idle()
    logs = api(analyzer, "/api/v1/stats?service=logged").json()["services"][0]["logs"]
    assert (logs["count"], logs["errors"]) == (4, 2)


def test_a_record_with_only_an_error_text_counts_as_an_error(analyzer: Server) -> None:
    """A log record whose sender set only the severity text (no number) is counted by its text."""
    records = [{"severityText": text, "body": {"stringValue": text}} for text in ("error", "FATAL", "WARN", "INFO")]
    doc = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "texted"}}]},
                "scopeLogs": [{"logRecords": records}],
            }
        ]
    }
    response = httpx.post(f"http://{analyzer.http_address}/v1/logs", json=doc, timeout=10)
    assert response.status_code == 200
    assert analyzer.ingest.wait_idle()
    logs = api(analyzer, "/api/v1/stats?service=texted").json()["services"][0]["logs"]
    assert (logs["count"], logs["errors"]) == (4, 2)
