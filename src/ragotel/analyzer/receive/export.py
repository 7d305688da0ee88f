"""One OTLP export, independent of transport: decode, extract, admit to ingest, build the response.

Both receivers call ``ExportHandler.export`` and only translate its outcome to HTTP or gRPC.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ragotel.analyzer.logfmt import LogLimiter
from ragotel.analyzer.receive.extract import extract_logs, extract_metrics, extract_traces
from ragotel.analyzer.receive.ingest import Ingest, Refused
from ragotel.analyzer.receive.payload import JSON, PayloadError, decode
from ragotel.analyzer.receive.selfmetrics import AnalyzerMetrics
from ragotel.analyzer.windows.records import LogBatch, MetricBatch, TraceBatch

__all__ = ["GRPC_CODES", "ExportHandler", "ExportResult", "status_body"]

_log = logging.getLogger("ragotel.analyzer.receiver")

GRPC_CODES = {
    "OK": 0,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "RESOURCE_EXHAUSTED": 8,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}

# signal -> (response class, partial_success field counting rejected items)
_RESPONSES: dict[str, tuple[Any, str, str]] = {
    "traces": (ExportTraceServiceResponse, "rejected_spans", "rejectedSpans"),
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points", "rejectedDataPoints"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records", "rejectedLogRecords"),
}


@dataclass(frozen=True, slots=True)
class ExportResult:
    """An accepted export: how many items were counted and rejected, and why."""

    signal: str
    accepted: int
    rejected: int
    error_message: str

    def response(self, media: str) -> bytes:
        """The Export*ServiceResponse, with ``partial_success`` only when something was rejected."""
        cls, field, json_field = _RESPONSES[self.signal]
        if media == JSON:
            if not self.rejected:
                return b"{}"
            partial = {json_field: str(self.rejected), "errorMessage": self.error_message}
            return json.dumps({"partialSuccess": partial}).encode()
        message = cls()
        if self.rejected:
            setattr(message.partial_success, field, self.rejected)
            message.partial_success.error_message = self.error_message
        return bytes(message.SerializeToString())


def status_body(grpc_code: str, message: str, media: str) -> bytes:
    """A ``google.rpc.Status`` body in the request's encoding (the OTLP/HTTP error body)."""
    code = GRPC_CODES[grpc_code]
    if media == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    return bytes(status_pb2.Status(code=code, message=message).SerializeToString())


class ExportHandler:
    """Turns one request body into windows input; thread-safe."""

    def __init__(self, ingest: Ingest, metrics: AnalyzerMetrics) -> None:
        self.ingest = ingest
        self.metrics = metrics
        self.log = LogLimiter(_log)

    def export(self, signal: str, data: bytes, media: str) -> ExportResult | Refused:
        """Decode and admit ``data`` (already decompressed, within the size limit).

        Returns the result, or a Refused when overloaded. Raises PayloadError for a body that cannot be decoded.
        """
        decoded = decode(signal, data, media)
        batch: TraceBatch | MetricBatch | LogBatch
        if signal == "traces":
            batch = extract_traces(decoded.message)
            rejected, reason = batch.rejected, batch.error_message
        elif signal == "metrics":
            batch = extract_metrics(decoded.message)
            rejected, reason = batch.rejected, batch.error_message
        else:
            batch = extract_logs(decoded.message)
            rejected, reason = 0, ""
        refused = self.ingest.submit(signal, batch, decoded.protobuf)
        if refused is not None:
            return refused
        items = self.metrics.items
        items.labels(signal, "accepted").inc(batch.accepted)
        if rejected:
            items.labels(signal, "rejected").inc(rejected)
            self.log.warning(f"partial:{signal}", "partially rejected %s export: %s", signal, reason)
        return ExportResult(signal, batch.accepted, rejected, reason)

    def bad_request(self, transport: str, signal: str, error: PayloadError, peer: str) -> None:
        """Count and (rate-limited) log a refused request."""
        self.metrics.requests.labels(transport, signal, f"error_{error.status}").inc()
        self.log.warning(
            f"{transport}:{error.status}", "%s %s export from %s refused: %s", transport, signal, peer, error.reason
        )
