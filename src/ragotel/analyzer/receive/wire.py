"""Lean, wire-compatible protobuf schemas for the span hot path, and decoding of raw AnyValue bytes.

The generated opentelemetry-proto classes make one Python object per attribute; at 512 spans per request
that dominates the cost of ingest. These schemas read the same bytes (field numbers and wire types match
opentelemetry/proto/trace/v1/trace.proto) but declare ``attributes`` as ``map<string, bytes>``: a
``KeyValue`` and a map entry share one wire format, so upb builds the map in C and a lookup returns the
serialized ``AnyValue`` without a wrapper object. Fields the analyzer never reads are left undeclared and
skipped by the parser.
"""

from __future__ import annotations

import struct
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["ERROR_STATUS", "LeanTraceRequest", "any_value_text"]

_F = descriptor_pb2.FieldDescriptorProto
_PKG = "ragotel.analyzer.lean"


def _build() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(name="ragotel_analyzer_lean.proto", package=_PKG, syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]], attributes: int = 0) -> None:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = f".{_PKG}.{type_name}"
        if attributes:
            entry = msg.nested_type.add(name="AttributesEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
            msg.field.add(
                name="attributes",
                number=attributes,
                type=_F.TYPE_MESSAGE,
                label=_F.LABEL_REPEATED,
                type_name=f".{_PKG}.{name}.AttributesEntry",
            )

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("Resource", [], attributes=1)
    message(
        "Span",
        [
            ("trace_id", 1, _F.TYPE_BYTES, opt, None),
            ("span_id", 2, _F.TYPE_BYTES, opt, None),
            (
                "parent_span_id",
                4,
                _F.TYPE_BYTES,
                opt,
                None,
            ),  # graph pairs; wrapper spans of other dialects: root or not
            ("kind", 6, _F.TYPE_INT32, opt, None),  # the SpanKind enum: same varint on the wire
            ("start_time_unix_nano", 7, _F.TYPE_FIXED64, opt, None),
            ("end_time_unix_nano", 8, _F.TYPE_FIXED64, opt, None),
            # google.rpc-free Status kept raw: ERROR is almost always exactly b"\x18\x02".
            ("status", 15, _F.TYPE_BYTES, opt, None),
        ],
        attributes=9,
    )
    message("ScopeSpans", [("spans", 2, _F.TYPE_MESSAGE, rep, "Span")])
    message(
        "ResourceSpans",
        [("resource", 1, _F.TYPE_MESSAGE, opt, "Resource"), ("scope_spans", 2, _F.TYPE_MESSAGE, rep, "ScopeSpans")],
    )
    message("ExportTraceServiceRequest", [("resource_spans", 1, _F.TYPE_MESSAGE, rep, "ResourceSpans")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.ExportTraceServiceRequest"))


LeanTraceRequest: Any = _build()
"""Parses an ``ExportTraceServiceRequest`` reading only what the windows need."""

ERROR_STATUS = b"\x18\x02"
"""Serialized ``Status{code: STATUS_CODE_ERROR}`` without a message."""


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def any_value_text(raw: bytes | None) -> str | None:
    """Render a serialized ``AnyValue`` as a label string; None if absent or not a scalar.

    Strings stay as they are; booleans become ``true``/``false``, integers and doubles their decimal form.
    Malformed bytes give None rather than raising: a bad attribute must not cost the whole request.
    """
    if not raw:
        return None
    try:
        value: str | None = None
        pos = 0
        while pos < len(raw):
            tag, pos = _read_varint(raw, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 2:
                length, pos = _read_varint(raw, pos)
                chunk = raw[pos : pos + length]
                pos += length
                value = chunk.decode() if field == 1 else None
            elif wire == 0:
                number, pos = _read_varint(raw, pos)
                if field == 2:
                    value = "true" if number else "false"
                elif field == 3:
                    value = str(number - (1 << 64) if number >= 1 << 63 else number)
                else:
                    value = None
            elif wire == 1:
                (double,) = struct.unpack_from("<d", raw, pos)
                pos += 8
                value = repr(double) if field == 4 else None
            elif wire == 5:
                pos += 4
                value = None
            else:
                return None
        return value
    except (ValueError, UnicodeDecodeError, struct.error):
        return None
