"""Request bodies to messages: content types, bounded decompression, protobuf/JSON decoding, error statuses."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ragotel.analyzer.receive.otlp_json import JsonDecodeError, parse_otlp_json
from ragotel.analyzer.receive.wire import LeanTraceRequest

__all__ = [
    "JSON",
    "PROTOBUF",
    "PayloadError",
    "decode",
    "decompress",
    "media_type",
]

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"

_FULL: dict[str, Any] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}


class PayloadError(Exception):
    """A request the receiver refuses: HTTP status, gRPC code name and a one-line reason."""

    def __init__(self, status: int, grpc_code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.grpc_code = grpc_code
        self.reason = reason


def media_type(content_type: str | None) -> str | None:
    """Return ``PROTOBUF`` or ``JSON`` for a Content-Type header (parameters ignored), else None."""
    if not content_type:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    if base in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if base == JSON:
        return JSON
    return None


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding (identity, gzip, deflate) producing at most ``limit`` bytes.

    Raises PayloadError: 415 for an unknown encoding, 400 for corrupt or truncated data, 413 past ``limit``
    (the output is cut off at ``limit + 1`` bytes, so a decompression bomb costs no memory).
    """
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        if len(body) > limit:
            raise PayloadError(413, "RESOURCE_EXHAUSTED", f"body of {len(body)} bytes exceeds the limit of {limit}")
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise PayloadError(415, "INVALID_ARGUMENT", f"unsupported Content-Encoding {encoding!r} (gzip, deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PayloadError(400, "INVALID_ARGUMENT", f"corrupt {coding} body: {exc}") from None
    if len(out) > limit:
        raise PayloadError(413, "RESOURCE_EXHAUSTED", f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise PayloadError(400, "INVALID_ARGUMENT", f"truncated {coding} body")
    return out


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded export request: the message and its protobuf encoding (what pass-through forwards)."""

    signal: str  # traces | metrics | logs
    message: Any
    protobuf: bytes


def decode(signal: str, data: bytes, media: str) -> Decoded:
    """Decode an uncompressed body; traces use the lean schema, metrics and logs the full one.

    Raises PayloadError(400) naming what could not be decoded.
    """
    if media == JSON:
        full = _FULL[signal]()
        try:
            parse_otlp_json(signal, data, full)
        except JsonDecodeError as exc:
            raise PayloadError(400, "INVALID_ARGUMENT", str(exc)) from None
        data = full.SerializeToString()
        if signal != "traces":
            return Decoded(signal, full, data)
    cls = LeanTraceRequest if signal == "traces" else _FULL[signal]
    try:
        message = cls.FromString(data)
    except DecodeError as exc:
        raise PayloadError(400, "INVALID_ARGUMENT", f"undecodable protobuf {_FULL[signal].__name__}: {exc}") from None
    return Decoded(signal, message, data)
