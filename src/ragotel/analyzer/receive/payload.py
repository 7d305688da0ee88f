"""Request bodies to messages: content types, bounded decompression, protobuf/JSON decoding, error statuses."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError, EncodeError
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
        reason = _one_line(reason)
        super().__init__(reason)
        self.status = status
        self.grpc_code = grpc_code
        self.reason = reason


def _one_line(text: str, limit: int = 400) -> str:
    """Whitespace runs (newlines included) collapsed, cut to ``limit`` characters: a reason fits one log line."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


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

    Every member of a multi-member gzip body is decoded, the limit applying to all of them together.
    Raises PayloadError: 415 for an unknown encoding, 400 for corrupt, truncated or trailing data, 413 past ``limit``
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
    chunks: list[bytes] = []
    size = 0
    pending = body
    while True:  # a gzip body may hold several members (RFC 1952 §2.2); each one counts
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(pending, limit + 1 - size)  # never 0, which would mean "unbounded"
        except zlib.error as exc:
            raise PayloadError(400, "INVALID_ARGUMENT", f"corrupt {coding} body: {exc}") from None
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, "RESOURCE_EXHAUSTED", f"decompressed body exceeds the limit of {limit} bytes")
        if not inflater.eof:
            raise PayloadError(400, "INVALID_ARGUMENT", f"truncated {coding} body")
        chunks.append(chunk)
        pending = inflater.unused_data
        if not pending:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if coding == "deflate":
            raise PayloadError(
                400, "INVALID_ARGUMENT", f"{len(pending)} bytes of trailing data after the deflate stream"
            )


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded export request: the message and its protobuf encoding (what pass-through forwards)."""

    signal: str  # traces | metrics | logs
    message: Any
    protobuf: bytes


def decode(signal: str, data: bytes, media: str) -> Decoded:
    """Decode an uncompressed body; traces use the lean schema, metrics and logs the full one.

    Raises PayloadError(400) naming what could not be decoded, for every kind of decoding failure.
    """
    if media == JSON:
        full = _FULL[signal]()
        try:
            parse_otlp_json(signal, data, full)
            data = full.SerializeToString()
        except (JsonDecodeError, EncodeError) as exc:
            raise PayloadError(400, "INVALID_ARGUMENT", str(exc)) from None
        if signal != "traces":
            return Decoded(signal, full, data)
    cls = LeanTraceRequest if signal == "traces" else _FULL[signal]
    try:
        message = cls.FromString(data)
    # upb reports every malformation as DecodeError; the others are listed so that no decoding failure is a 500.
    except (DecodeError, RecursionError, ValueError, OverflowError) as exc:
        raise PayloadError(400, "INVALID_ARGUMENT", f"undecodable protobuf {_FULL[signal].__name__}: {exc}") from None
    return Decoded(signal, message, data)
