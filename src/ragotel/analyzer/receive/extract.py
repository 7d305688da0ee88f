"""Decoded export requests to compact batches the windows merge: spans grouped per series, points, log counts.

This is the per-item hot path. Spans are grouped per request so the windows do per-series work once per
request, and label values stay raw bytes until the end (one decode per group, not per span). Items that
break the OTLP data model are counted as rejected and reported back through ``partial_success``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from ragotel.analyzer.receive.dialects import OTHER_STAGE, count_value, read_span
from ragotel.analyzer.receive.wire import ERROR_STATUS, any_value_text
from ragotel.analyzer.vocabulary import SERVICE_INSTANCE_ID, SERVICE_VERSION, STAGES
from ragotel.analyzer.windows.records import CallSpan, LogBatch, MetricBatch, MetricPoint, SpanGroup, TraceBatch
from ragotel.semconv import (
    DB_COLLECTION_NAME,
    DB_SYSTEM_NAME,
    ENDUSER_ID,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    LEGACY_NAMES,
    RAGOTEL_COMPONENT,
    RAGOTEL_RETRIEVAL_DOCUMENT_COUNT,
    RAGOTEL_STAGE,
    SERVER_ADDRESS,
    SERVICE_NAME,
    STAGE_EMBEDDING,
    STAGE_GENERATION,
    STAGE_VECTOR_DB,
)

__all__ = [
    "extract_logs",
    "extract_metrics",
    "extract_traces",
]

UNKNOWN_SERVICE = "unknown_service"
"""What the OTel SDK calls a service that set no ``service.name``."""

_ZERO_COUNTS = frozenset({b"\x18\x00", b"\x21" + bytes(8), b"\x0a\x010"})  # int 0, double 0.0, string "0"
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_ERROR_SEVERITY = 17  # SEVERITY_NUMBER_ERROR
# Senders that set only the text (severity_number UNSPECIFIED): syslog- and Python-style names of ERROR and above.
_ERROR_TEXTS = ("ERROR", "FATAL", "CRITICAL", "ALERT", "EMERG", "PANIC")
_SERVER_KIND = 2  # SPAN_KIND_SERVER
_CLIENT_KIND = 3  # SPAN_KIND_CLIENT
# The names these attributes had before the semantic conventions renamed them, as peer instrumentations still send.
_LEGACY_PROVIDER = LEGACY_NAMES[GEN_AI_PROVIDER_NAME][1]
_LEGACY_DB_SYSTEM = LEGACY_NAMES[DB_SYSTEM_NAME][1]
# The stages whose spans carry token usage, as the SDK encodes them (AnyValue string_value, field 1).
_USAGE_STAGES = frozenset(b"\x0a" + bytes([len(s)]) + s.encode() for s in (STAGE_GENERATION, STAGE_EMBEDDING))
# The stages whose spans call an LLM or a database (the dependency graph's stage -> dependency edges).
_CALL_STAGES = frozenset(
    b"\x0a" + bytes([len(s)]) + s.encode() for s in (STAGE_GENERATION, STAGE_EMBEDDING, STAGE_VECTOR_DB)
)
_VECTOR_DB_STAGE = b"\x0a" + bytes([len(STAGE_VECTOR_DB)]) + STAGE_VECTOR_DB.encode()


# Stage names as the serialized AnyValue strings ragotel's spans carry, so both kinds of span share one key shape.
_STAGE_VALUES = {stage: AnyValue(string_value=stage).SerializeToString() for stage in STAGES}

_LABELS: dict[bytes, Any] = {}
_MISSING = object()
_LABELS_MAX = 65_536


def _text(raw: bytes | None, default: str) -> str:
    """Decode a label value, memoised: the same few hundred values recur in every request."""
    if raw is None:
        return default
    value = _LABELS.get(raw, _MISSING)  # one lookup: another receiver thread may clear the cache meanwhile
    if value is _MISSING:
        value = any_value_text(raw)
        if len(_LABELS) >= _LABELS_MAX:
            _LABELS.clear()
        _LABELS[raw] = value
    return value or default


def extract_traces(message: Any) -> TraceBatch:
    """Group the spans of a ``LeanTraceRequest`` per series.

    Spans with invalid ids, a negative duration or a ``status`` that does not decode are rejected one by one.
    """
    raw_groups: dict[tuple[Any, ...], list[Any]] = {}
    accepted = rejected = bad_status = 0
    zero_counts = _ZERO_COUNTS
    usage_stages = _USAGE_STAGES
    call_stages = _CALL_STAGES
    vector_db_stage = _VECTOR_DB_STAGE
    error_status = ERROR_STATUS
    versions: dict[str, str] = {}
    raw_calls: list[tuple[Any, ...]] = []
    for resource_spans in message.resource_spans:
        service = resource_spans.resource.attributes.get(SERVICE_NAME)
        version = resource_spans.resource.attributes.get(SERVICE_VERSION)
        if version is not None:
            versions[_text(service, UNKNOWN_SERVICE)] = _text(version, "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id = span.trace_id
                span_id = span.span_id
                duration = span.end_time_unix_nano - span.start_time_unix_nano
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or duration < 0
                    or trace_id == _ZERO_TRACE
                    or span_id == _ZERO_SPAN
                ):
                    rejected += 1
                    continue
                status = span.status
                error = status == error_status  # ERROR is almost always exactly these two bytes
                if status and not error:
                    code = _status_code(status)
                    if code is None:
                        bad_status += 1
                        continue
                    error = code == Status.STATUS_CODE_ERROR
                get = span.attributes.get
                stage = get(RAGOTEL_STAGE)
                provider = db_system = server = None
                if stage is None or stage in call_stages:  # only these call an LLM or a database
                    if stage != vector_db_stage:
                        provider = get(GEN_AI_PROVIDER_NAME) or get(_LEGACY_PROVIDER)
                    if provider is None:
                        db_system = get(DB_SYSTEM_NAME) or get(_LEGACY_DB_SYSTEM)
                    if provider is not None or db_system is not None:
                        server = get(SERVER_ADDRESS)
                kind = span.kind
                # SERVER spans, and CLIENT spans to anything but an LLM or a database (those are dependencies, with
                # their own nodes), may be halves of a call between two services.
                if kind == _SERVER_KIND or (kind == _CLIENT_KIND and provider is None and db_system is None):
                    peer = get(SERVER_ADDRESS) if kind == _CLIENT_KIND else None
                    raw_calls.append((kind, trace_id, span_id, span.parent_span_id, service, duration, error, peer))
                if stage is None:  # another instrumentation's span: read its dialect
                    reading = read_span(get, root=not span.parent_span_id)
                    key = (
                        service,
                        _STAGE_VALUES[reading.stage],
                        reading.component,
                        reading.model,
                        reading.collection,
                        provider,
                        db_system,
                        server,
                    )
                    group = raw_groups.get(key)
                    if group is None:
                        group = raw_groups[key] = [[], 0, 0, [], 0, 0]
                    group[0].append(duration)
                    group[1] += error or reading.error
                    group[2] += reading.documents == 0
                    if reading.user:
                        group[3].append(reading.user)
                    if reading.tokens is not None:
                        group[4] += reading.tokens
                        group[5] += 1
                    accepted += 1
                    continue
                key = (
                    service,
                    stage,
                    get(RAGOTEL_COMPONENT),
                    get(GEN_AI_RESPONSE_MODEL) or get(GEN_AI_REQUEST_MODEL),
                    get(DB_COLLECTION_NAME),
                    provider,
                    db_system,
                    server,
                )
                group = raw_groups.get(key)
                if group is None:
                    group = raw_groups[key] = [[], 0, 0, [], 0, 0]
                group[0].append(duration)
                group[1] += error
                count = get(RAGOTEL_RETRIEVAL_DOCUMENT_COUNT)
                if count is not None and count in zero_counts:
                    group[2] += 1
                user = get(ENDUSER_ID)
                if user is not None:
                    group[3].append(user)
                if stage in usage_stages:  # two map lookups saved on every other span
                    tokens_in = get(GEN_AI_USAGE_INPUT_TOKENS)
                    tokens_out = get(GEN_AI_USAGE_OUTPUT_TOKENS)
                    if tokens_in is not None or tokens_out is not None:
                        group[4] += _count(tokens_in) + _count(tokens_out)
                        group[5] += 1
                accepted += 1
    groups = []
    for key, (durations, errors, empty, users, tokens, token_calls) in raw_groups.items():
        service, stage, component, model, collection, provider, db_system, server = key
        stage_text = _text(stage, OTHER_STAGE)
        groups.append(
            SpanGroup(
                service=_text(service, UNKNOWN_SERVICE),
                stage=stage_text,
                component=_text(component, ""),
                model=_text(model, ""),
                collection=_text(collection, ""),
                durations=[d * 1e-9 for d in durations],
                errors=errors,
                empty_retrievals=empty if stage_text == "retrieval" else 0,
                users=[u for u in map(any_value_text, users) if u] if stage_text == "pipeline" else [],
                tokens=tokens,
                token_calls=token_calls,
                provider=_text(provider, ""),
                db_system=_text(db_system, ""),
                server=_text(server, ""),
            )
        )
    calls = [
        CallSpan(
            kind == _CLIENT_KIND,
            trace_id,
            span_id,
            parent,
            _text(service, UNKNOWN_SERVICE),
            duration * 1e-9,
            error,
            _text(peer, ""),
        )
        for kind, trace_id, span_id, parent, service, duration, error, peer in raw_calls
    ]
    reasons = []
    if rejected:
        reasons.append(f"{rejected} span(s) with an invalid trace_id/span_id or an end before the start")
    if bad_status:
        reasons.append(f"{bad_status} span(s) with an undecodable status")
    return TraceBatch(groups, accepted, rejected + bad_status, "; ".join(reasons), versions, calls)


def _count(raw: bytes | None) -> int:
    """A token count attribute as a non-negative int; 0 when absent or not a number."""
    return count_value(raw) or 0


def _status_code(status: bytes) -> int | None:
    """The ``code`` of a serialized Status that also carries a message; None if it does not decode."""
    try:
        return int(Status.FromString(status).code)
    except DecodeError:
        return None


def _attr_text(value: Any) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return str(value.string_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return bytes(value.bytes_value).hex()
    if kind == "array_value":
        return json.dumps([_attr_text(v) for v in value.array_value.values])
    if kind == "kvlist_value":
        return json.dumps({kv.key: _attr_text(kv.value) for kv in value.kvlist_value.values})
    return ""


def _resource_identity(attributes: Iterable[Any]) -> tuple[str, str]:
    service = instance = ""
    for kv in attributes:
        if kv.key == SERVICE_NAME:
            service = _attr_text(kv.value)
        elif kv.key == SERVICE_INSTANCE_ID:
            instance = _attr_text(kv.value)
    return service or UNKNOWN_SERVICE, instance


def extract_metrics(message: Any) -> MetricBatch:
    """Reduce every data point of an ``ExportMetricsServiceRequest``; reject points with no value or a non-finite one.

    The resource's ``service.instance.id`` joins the point attributes so that two replicas of one service
    never interleave in one series.
    """
    points: list[MetricPoint] = []
    rejected = 0
    non_finite: list[str] = []  # names of the metrics whose points were NaN or infinite
    for resource_metrics in message.resource_metrics:
        service, instance = _resource_identity(resource_metrics.resource.attributes)
        extra = ((SERVICE_INSTANCE_ID, instance),) if instance else ()
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                name, unit = metric.name, metric.unit
                for point in getattr(metric, kind).data_points:
                    if kind in ("gauge", "sum"):
                        which = point.WhichOneof("value")
                        if which is None:
                            rejected += 1
                            continue
                        value = float(point.as_double if which == "as_double" else point.as_int)
                        count = 1
                    else:
                        count = int(point.count)
                        value = point.sum / count if count else 0.0
                    if not math.isfinite(value):  # one NaN would poison every read that touches its series
                        non_finite.append(name)
                        continue
                    attributes = tuple(sorted({kv.key: _attr_text(kv.value) for kv in point.attributes}.items()))
                    points.append(
                        MetricPoint(
                            service, name, attributes + extra, kind, unit, point.time_unix_nano * 1e-9, value, count
                        )
                    )
    reasons = [f"{rejected} number data point(s) without a value"] if rejected else []
    if non_finite:
        reasons.append(
            f"{len(non_finite)} data point(s) with a NaN or infinite value (first in {non_finite[0][:128]!r})"
        )
    return MetricBatch(points, len(points), rejected + len(non_finite), "; ".join(reasons))


def extract_logs(message: Any) -> LogBatch:
    """Count log records and error records (severity_number >= ERROR, or only a text saying so) per service."""
    services: dict[str, tuple[int, int]] = {}
    accepted = 0
    for resource_logs in message.resource_logs:
        service, _ = _resource_identity(resource_logs.resource.attributes)
        total = errors = 0
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                total += 1
                if record.severity_number >= _ERROR_SEVERITY or (
                    record.severity_number == 0 and record.severity_text.upper().startswith(_ERROR_TEXTS)
                ):
                    errors += 1
        if total:
            old_total, old_errors = services.get(service, (0, 0))
            services[service] = (old_total + total, old_errors + errors)
            accepted += total
    return LogBatch(services, accepted)
