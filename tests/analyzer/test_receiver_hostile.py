"""Hostile bodies of issue 10 (items 1, 2, 7): a decoding failure is a 400 / INVALID_ARGUMENT or a partial success."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from tests.analyzer.analyzer_helpers import encoded_spans, gauge_request, log_request, stage_row

from ragotel.analyzer.server import Server

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON_TYPE = {"Content-Type": "application/json"}
GEN = {"ragotel.stage": "generation", "ragotel.component": "openai"}
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def _post(server: Server, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"http://{server.http_address}{path}", content=body, headers=headers, timeout=30)


def _span_json(**fields: object) -> bytes:
    span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175", "name": "s", **fields}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


_DEEP = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
_HUGE_INT = _span_json(startTimeUnixNano=0).replace(b'"startTimeUnixNano": 0', b'"startTimeUnixNano": ' + b"7" * 5000)
_RAW_SURROGATE_KEY = (
    b'{"resourceSpans": [{"resource": {"attributes": [{"key": "a\xed\xa0\x80", "value": {"stringValue": "x"}}]}}]}'
)
_ESCAPED_SURROGATE_KEY = (
    b'{"resourceSpans": [{"resource": {"attributes": [{"key": "a\\ud800", "value": {"stringValue": "x"}}]}}]}'
)
_SURROGATE_VALUE = _span_json(name="a").replace(b'"name": "a"', b'"name": "a\\ud800"')
_LOG_SEVERITY = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": 1e400}]}]}]}'
_LOG_SEVERITY_NAN = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": NaN}]}]}]}'
_METRIC_INF_TIME = (
    b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "gauge": {"dataPoints": '
    b'[{"asDouble": 1, "timeUnixNano": 1e400}]}}]}]}]}'
)

HOSTILE_JSON = {
    "nested 100,000 arrays deep": ("/v1/traces", _DEEP),
    "integer of 5,000 digits": ("/v1/traces", _HUGE_INT),
    "kind 1e400": ("/v1/traces", _span_json(kind=1e400)),
    "kind -1e400": ("/v1/traces", _span_json(kind=-1e400)),
    "status.code 1e400": ("/v1/traces", _span_json(status={"code": 1e400})),
    "status.code NaN": ("/v1/traces", _span_json(status={"code": float("nan")})),
    "key with bytes ED A0 80": ("/v1/traces", _RAW_SURROGATE_KEY),
    "key with an escaped lone surrogate": ("/v1/traces", _ESCAPED_SURROGATE_KEY),
    "name with an escaped lone surrogate": ("/v1/traces", _SURROGATE_VALUE),
    "field name with an escaped lone surrogate": ("/v1/traces", b'{"resourceSpans": [{"scopeSpans\\ud800": []}]}'),
    "severityNumber 1e400": ("/v1/logs", _LOG_SEVERITY),
    "severityNumber NaN": ("/v1/logs", _LOG_SEVERITY_NAN),
    "timeUnixNano 1e400": ("/v1/metrics", _METRIC_INF_TIME),
}


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_hostile_otlp_json_is_a_400_with_a_one_line_reason(analyzer: Server, case: str) -> None:
    """Deep nesting, huge or infinite numbers and lone surrogates in OTLP/JSON are a 400 with one line, never a 500."""
    path, body = HOSTILE_JSON[case]
    response = _post(analyzer, path, body, JSON_TYPE)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    status = response.json()
    assert status["code"] == 3
    assert status["message"]
    assert "\n" not in status["message"]
    assert len(status["message"]) < 1000


def _nested_any_value(depth: int) -> bytes:
    """A serialized span whose one attribute value is a kvlist nested ``depth`` deep (past upb's recursion limit)."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    value = AnyValue(string_value="leaf").SerializeToString()
    for _ in range(depth):
        value = _field(6, _field(1, b"\x0a\x01k" + _field(2, value)))  # AnyValue{kvlist_value{values: [{"k": value}]}}
    return value


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_hostile_protobuf_nesting_is_never_a_500(analyzer: Server) -> None:
    """A metric point whose attribute nests 5,000 kvlists deep is a 400 on HTTP and INVALID_ARGUMENT on gRPC."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest.FromString(gauge_request("deep", [("m", 1.0, {}, 1.0)]))
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    base = point.SerializeToString()
    attribute = b"\x0a\x01k" + _field(2, _nested_any_value(5000))
    point_bytes = base + _field(7, attribute)  # NumberDataPoint.attributes
    body = _rewrap_metric_point(point_bytes)
    response = _post(analyzer, "/v1/metrics", body, PROTOBUF)
    assert response.status_code == 400, response.status_code
    assert status_pb2.Status.FromString(response.content).code == 3
    with grpc.insecure_channel(analyzer.grpc_address) as channel, pytest.raises(grpc.RpcError) as error:
        channel.unary_unary(METRICS)(body, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _rewrap_metric_point(point: bytes) -> bytes:
    """ExportMetricsServiceRequest{resource_metrics{scope_metrics{metrics{name: "m", gauge{data_points: point}}}}}."""
    metric = _field(1, b"m") + _field(5, _field(1, point))
    return _field(1, _field(2, _field(2, metric)))


def _spans_with_bad_status_message() -> bytes:
    """Three spans (the first an error); the second has Status{message: b"\\xff\\xfe", code: ERROR}, invalid UTF-8."""
    request = ExportTraceServiceRequest.FromString(
        encoded_spans("bad-status", [("ok", GEN, 0.1), ("bad", GEN, 0.2), ("ok2", GEN, 0.3)], error_indexes=[0])
    )
    resource_spans = request.resource_spans[0]
    spans = [span.SerializeToString() for span in resource_spans.scope_spans[0].spans]
    spans[1] += _field(15, b"\x12\x02\xff\xfe\x18\x02")  # Span.status
    scope = b"".join(_field(2, span) for span in spans)
    return _field(1, _field(1, resource_spans.resource.SerializeToString()) + _field(2, scope))


def test_span_with_undecodable_status_is_rejected_through_partial_success(analyzer: Server) -> None:
    """A span whose status sub-message has invalid UTF-8 is rejected alone (HTTP and gRPC), the others counted."""
    body = _spans_with_bad_status_message()
    response = _post(analyzer, "/v1/traces", body, PROTOBUF)
    assert response.status_code == 200, response.status_code
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "status" in answer.partial_success.error_message
    with grpc.insecure_channel(analyzer.grpc_address) as channel:
        reply = ExportTraceServiceResponse.FromString(channel.unary_unary(TRACES)(body, timeout=30))
    assert reply.partial_success.rejected_spans == 1
    row = stage_row(analyzer, "bad-status", "generation")
    assert (row["count"], row["error_rate"]) == (4, 0.5)


def _bad_utf8(message: bytes, good: bytes) -> bytes:
    assert good in message
    return message.replace(good, b"\xff" * len(good), 1)


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/v1/metrics", METRICS, _bad_utf8(gauge_request("svc", [("m", 1.0, {"route": "abcd"}, 1.0)]), b"abcd")),
        ("/v1/logs", LOGS, _bad_utf8(log_request("svc", [17]), b"event")),
    ],
    ids=["metric point attribute", "log record body"],
)
def test_metric_and_log_sub_messages_that_do_not_decode_are_refused(
    analyzer: Server, path: str, method: str, body: bytes
) -> None:
    """Invalid UTF-8 inside a metric point or a log record is a 400 / INVALID_ARGUMENT, never a 500 / UNKNOWN."""
    response = _post(analyzer, path, body, PROTOBUF)
    assert response.status_code == 400
    with grpc.insecure_channel(analyzer.grpc_address) as channel, pytest.raises(grpc.RpcError) as error:
        channel.unary_unary(method)(body, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_gzip_body_of_two_members_counts_every_span(analyzer: Server) -> None:
    """A gzip body of two members (3 + 4 spans) counts all 7 spans."""
    first = encoded_spans("gz-members", [("a", GEN, 0.1)] * 3)
    second = encoded_spans("gz-members", [("b", GEN, 0.2)] * 4)
    body = gzip.compress(first) + gzip.compress(second)
    response = _post(analyzer, "/v1/traces", body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert stage_row(analyzer, "gz-members", "generation")["count"] == 7


def test_gzip_members_share_one_size_limit(make_analyzer: Callable[..., Server]) -> None:
    """The decompressed size limit applies to all members together: two members of 40 KiB each exceed 64 KiB."""
    server = make_analyzer({"receivers": {"http": {"max_body_size": "64KiB"}}})
    member = gzip.compress(bytes(40 * 1024))
    response = _post(server, "/v1/traces", member + member, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "65536" in status_pb2.Status.FromString(response.content).message
    trailing = gzip.compress(encoded_spans("gz-junk", [("a", GEN, 0.1)])) + b"not gzip"
    response = _post(server, "/v1/traces", trailing, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 400
