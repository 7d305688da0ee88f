"""OTLP/HTTP receiver: the real SDK exporter, OTLP/JSON, partial success, every bad input, auth and overload."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export import SpanExportResult
from tests.analyzer.analyzer_helpers import T0_NS, api, emit_spans, encoded_spans, stage_row

from ragotel.analyzer.config.loading import ConfigError
from ragotel.analyzer.server import Server

PROTOBUF = {"Content-Type": "application/x-protobuf"}
GEN = {"ragotel.stage": "generation", "ragotel.component": "openai", "gen_ai.request.model": "gpt-4o-mini"}


def _post(server: Server, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"http://{server.http_address}{path}", content=body, headers=headers or PROTOBUF, timeout=10)


def _status(response: httpx.Response) -> status_pb2.Status:
    assert response.headers["content-type"] == "application/x-protobuf"
    return status_pb2.Status.FromString(response.content)


@pytest.mark.parametrize("compression", [None, Compression.Gzip])
def test_sdk_http_exporter_spans_are_counted_exactly(analyzer: Server, compression: Compression | None) -> None:
    """Spans from the SDK's OTLP/HTTP exporter (plain and gzip) give exact counts, error rate, average and quantiles."""
    durations = [0.05 * i for i in range(1, 21)]
    exporter = OTLPSpanExporter(endpoint=f"http://{analyzer.http_address}/v1/traces", compression=compression)
    emit_spans(exporter, "rag-api", [("chat gpt-4o-mini", GEN, d) for d in durations], error_indexes=[0, 7])
    row = stage_row(analyzer, "rag-api", "generation", "openai")
    assert row["count"] == 20
    assert row["error_rate"] == pytest.approx(0.1)
    assert row["avg"] == pytest.approx(sum(durations) / 20)
    assert row["p50"] == pytest.approx(durations[9], rel=0.01)
    assert row["p95"] == pytest.approx(durations[18], rel=0.01)
    assert row["p99"] == pytest.approx(durations[18], rel=0.01)
    assert row["series"][0]["model"] == "gpt-4o-mini"
    assert row["rate"] > 0


OTLP_JSON = """{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
    "scopeSpans": [{
      "scope": {"name": "manual", "version": "1.0"},
      "spans": [
        {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
         "parentSpanId": "EEE19B7EC3C1B173", "name": "retrieve", "kind": 3,
         "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712660250000000",
         "attributes": [{"key": "ragotel.stage", "value": {"stringValue": "retrieval"}},
                        {"key": "ragotel.component", "value": {"stringValue": "qdrant"}},
                        {"key": "ragotel.retrieval.document_count", "value": {"intValue": "0"}}],
         "status": {"code": "STATUS_CODE_ERROR", "message": "timeout"},
         "someFutureField": {"ignored": true}},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175", "name": "retrieve",
         "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": 1544712660000000000, "endTimeUnixNano": "1544712660750000000",
         "attributes": [{"key": "ragotel.stage", "value": {"stringValue": "retrieval"}},
                        {"key": "ragotel.component", "value": {"stringValue": "qdrant"}},
                        {"key": "ragotel.retrieval.document_count", "value": {"intValue": 3}}],
         "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}]}
      ]
    }]
  }]
}"""


def test_otlp_json_with_hex_ids_is_decoded_per_the_json_mapping(analyzer: Server) -> None:
    """Hex ids, int64 as strings or numbers, enums by name or number and unknown fields decode; the answer is JSON."""
    response = _post(analyzer, "/v1/traces", OTLP_JSON.encode(), {"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    row = stage_row(analyzer, "json-svc", "retrieval", "qdrant")
    assert (row["count"], row["error_rate"], row["empty_retrieval_rate"]) == (2, 0.5, 0.5)
    assert row["avg"] == pytest.approx(0.5)


def test_json_with_bad_hex_id_names_the_field(analyzer: Server) -> None:
    """An id that is not hex is a 400 whose google.rpc.Status (as JSON) names the offending field."""
    body = OTLP_JSON.replace("EEE19B7EC3C1B174", "not-hex-at-all!!").encode()
    response = _post(analyzer, "/v1/traces", body, {"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    status = response.json()
    assert status["code"] == 3
    assert status["message"].startswith("resourceSpans[0].scopeSpans[0].spans[0].spanId: expected")


def _request_with_bad_ids() -> bytes:
    request = ExportTraceServiceRequest.FromString(
        encoded_spans("partial", [("ok", GEN, 0.1), ("bad", GEN, 0.2), ("ok2", GEN, 0.3)])
    )
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"\x01\x02\x03\x04"
    spans[2].start_time_unix_nano = spans[2].end_time_unix_nano + 1
    return bytes(request.SerializeToString())


def test_invalid_spans_are_rejected_through_partial_success(analyzer: Server) -> None:
    """Spans with a malformed trace id or an end before their start are rejected individually, the rest counted."""
    response = _post(analyzer, "/v1/traces", _request_with_bad_ids())
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 2
    assert "invalid trace_id/span_id" in answer.partial_success.error_message
    assert stage_row(analyzer, "partial", "generation")["count"] == 1

    request = json.loads(OTLP_JSON)
    request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "00000000"
    response = _post(analyzer, "/v1/traces", json.dumps(request).encode(), {"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"


def _bomb() -> bytes:
    return gzip.compress(bytes(3 * 1024 * 1024))


BAD_INPUTS: list[tuple[str, str, str, dict[str, str], Callable[[], bytes], int, str]] = [
    ("undecodable protobuf", "POST", "/v1/traces", PROTOBUF, lambda: b"\xff\xff\xff\xff", 400, "undecodable protobuf"),
    (
        "undecodable JSON",
        "POST",
        "/v1/logs",
        {"Content-Type": "application/json"},
        lambda: b"{nope",
        400,
        "invalid JSON",
    ),
    (
        "JSON of the wrong shape",
        "POST",
        "/v1/metrics",
        {"Content-Type": "application/json"},
        lambda: b"[1]",
        400,
        "JSON object",
    ),
    ("wrong content type", "POST", "/v1/traces", {"Content-Type": "text/plain"}, lambda: b"x", 415, "Content-Type"),
    ("unknown content encoding", "POST", "/v1/traces", {**PROTOBUF, "Content-Encoding": "br"}, lambda: b"x", 415, "br"),
    (
        "truncated gzip",
        "POST",
        "/v1/traces",
        {**PROTOBUF, "Content-Encoding": "gzip"},
        lambda: gzip.compress(encoded_spans("x", [("a", GEN, 0.1)]))[:-12],
        400,
        "truncated gzip",
    ),
    (
        "gzip bomb",
        "POST",
        "/v1/traces",
        {**PROTOBUF, "Content-Encoding": "gzip"},
        _bomb,
        413,
        "decompressed body exceeds",
    ),
    ("oversize body", "POST", "/v1/traces", PROTOBUF, lambda: bytes(1024 * 1024 + 1), 413, "exceeds the limit"),
    ("wrong method", "GET", "/v1/traces", PROTOBUF, lambda: b"", 405, "use POST"),
    ("wrong path", "POST", "/v1/spans", PROTOBUF, lambda: b"", 404, "no OTLP endpoint at /v1/spans"),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "reason"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_its_status_a_reason_and_a_log_line(
    make_analyzer: Callable[..., Server],
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Callable[[], bytes],
    status: int,
    reason: str,
) -> None:
    """Each bad request gets the specified status, a google.rpc.Status naming the problem and a warning log line,
    and the receiver goes on accepting good requests."""
    server = make_analyzer({"receivers": {"http": {"max_body_size": "1MiB"}}})
    caplog.set_level(logging.WARNING, logger="ragotel.analyzer")
    response = httpx.request(method, f"http://{server.http_address}{path}", content=body(), headers=headers, timeout=10)
    assert response.status_code == status
    if response.headers["content-type"] == "application/json":
        message = response.json()["message"]
    else:
        message = _status(response).message
    assert reason in message
    if status == 405:
        assert response.headers["allow"] == "POST"
    assert any(reason in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    good = _post(server, "/v1/traces", encoded_spans("after", [("a", GEN, 0.1)]))
    assert good.status_code == 200
    assert stage_row(server, "after", "generation")["count"] == 1


def test_bearer_token_guards_receivers_and_api(
    make_analyzer: Callable[..., Server], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """With auth on, exports need the token (env var for receivers, file for the API); probes stay open."""
    monkeypatch.setenv("RAGOTEL_TEST_TOKEN", "s3cret-token")
    (tmp_path / "api-token").write_text("api-token\n")
    server = make_analyzer(
        {
            "receivers": {"auth": {"token_env": "RAGOTEL_TEST_TOKEN"}},
            "api": {"auth": {"token_file": str(tmp_path / "api-token")}},
        }
    )
    endpoint = f"http://{server.http_address}/v1/traces"
    spans = [("chat", GEN, 0.1)]
    refused = _post(server, "/v1/traces", encoded_spans("auth", spans))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert _status(refused).code == 16
    wrong = _post(server, "/v1/traces", encoded_spans("auth", spans), {**PROTOBUF, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    results: list[SpanExportResult] = []

    class Recording(OTLPSpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            results.append(super().export(spans))
            return results[-1]

    emit_spans(Recording(endpoint=endpoint, headers={"authorization": "Bearer s3cret-token"}), "auth", spans)
    emit_spans(Recording(endpoint=endpoint), "auth", spans)
    assert results == [SpanExportResult.SUCCESS, SpanExportResult.FAILURE]

    assert api(server, "/api/v1/stats").status_code == 401
    stats = api(server, "/api/v1/stats?service=auth", headers={"Authorization": "bearer api-token"})
    assert stats.status_code == 200
    assert stats.json()["services"][0]["stages"][0]["count"] == 1
    assert api(server, "/healthz").status_code == 200
    assert api(server, "/readyz").status_code == 200


def test_missing_token_source_is_a_config_error(tmp_path: Any) -> None:
    """A token variable that is unset stops the server before anything is bound, naming the key."""
    from ragotel.analyzer.config.loading import load_config

    config = load_config([], {"receivers": {"auth": {"token_env": "RAGOTEL_UNSET_VARIABLE_X"}}})
    with pytest.raises(ConfigError) as caught:
        Server(config)
    assert caught.value.problems == [
        "receivers.auth.token_env: expected environment variable RAGOTEL_UNSET_VARIABLE_X to hold a token"
    ]


def _hold_worker(server: Server) -> None:
    """With the windows locked, fill the one-slot queue: the worker holds one request, the queue another."""
    for _ in range(2):
        assert _post(server, "/v1/traces", encoded_spans("fill", [("a", GEN, 0.1)])).status_code == 200
    deadline = time.monotonic() + 5
    while server.ingest.state()[0] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.timeout(60)
def test_overload_answers_503_with_retry_after_and_the_sdk_exporter_retries(
    make_analyzer: Callable[..., Server],
) -> None:
    """A full ingest queue gives 503 + Retry-After; the SDK exporter waits, retries and succeeds once it drains."""
    server = make_analyzer({"limits": {"ingest_queue_size": 1, "retry_after": "1s"}})
    with server.windows.lock:
        _hold_worker(server)
        refused = _post(server, "/v1/traces", encoded_spans("fill", [("a", GEN, 0.1)]))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert _status(refused).code == 14
        assert api(server, "/readyz").json() == {"status": "not ready", "reason": "refusing data: queue_full"}
        results: list[SpanExportResult] = []

        class Recording(OTLPSpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                results.append(super().export(spans))
                return results[-1]

        exporter = Recording(endpoint=f"http://{server.http_address}/v1/traces")
        sender = threading.Thread(target=emit_spans, args=(exporter, "retried", [("chat", GEN, 0.25)]))
        sender.start()
        time.sleep(0.3)  # the exporter's first attempt is refused while the lock is held
    sender.join(30)
    assert results == [SpanExportResult.SUCCESS]
    assert stage_row(server, "retried", "generation")["count"] == 1
    assert stage_row(server, "fill", "generation")["count"] == 2
    metrics = api(server, "/metrics").text
    assert 'ragotel_analyzer_refused_requests_total{reason="queue_full"}' in metrics


def test_memory_limit_refuses_data_and_fails_readiness(make_analyzer: Callable[..., Server]) -> None:
    """Resident memory above memory_limit makes the receiver answer 503 and /readyz report why."""
    server = make_analyzer({"limits": {"memory_limit": 1024}})
    response = _post(server, "/v1/traces", encoded_spans("mem", [("a", GEN, 0.1)]))
    assert response.status_code == 503
    assert "memory_limit" in _status(response).message
    ready = api(server, "/readyz")
    assert (ready.status_code, ready.json()["reason"]) == (503, "refusing data: memory_limit")
    assert api(server, "/healthz").status_code == 200
    server.ingest.memory_limit = 0
    server.tick()
    assert _post(server, "/v1/traces", encoded_spans("mem", [("a", GEN, 0.1)])).status_code == 200


def test_metrics_and_logs_endpoints_accept_protobuf(analyzer: Server) -> None:
    """/v1/metrics and /v1/logs decode and feed the windows (points and error logs are counted)."""
    from tests.analyzer.analyzer_helpers import gauge_request, log_request

    dep = {"ragotel.dependency.name": "redis", "ragotel.dependency.kind": "cache"}
    now = T0_NS / 1e9
    assert (
        _post(analyzer, "/v1/metrics", gauge_request("svc", [("ragotel.dependency.health", 1.0, dep, now)])).status_code
        == 200
    )
    assert _post(analyzer, "/v1/logs", log_request("svc", [9, 17, 17])).status_code == 200
    assert analyzer.ingest.wait_idle()
    health = api(analyzer, "/api/v1/health").json()["services"]
    assert [(s["service"], s["healthy"], s["dependencies"][0]["name"]) for s in health] == [("svc", True, "redis")]
    logs = api(analyzer, "/api/v1/stats?service=svc").json()["services"][0]["logs"]
    assert (logs["count"], logs["errors"]) == (3, 2)


def test_chunked_body_over_the_limit_is_cut_off_with_413(make_analyzer: Callable[..., Server]) -> None:
    """A chunked body (no Content-Length) is counted as it streams in and refused once past max_body_size."""
    server = make_analyzer({"receivers": {"http": {"max_body_size": "64KiB"}}})

    def chunks() -> Any:
        for _ in range(40):
            yield bytes(4096)

    response = httpx.post(f"http://{server.http_address}/v1/traces", content=chunks(), headers=PROTOBUF, timeout=10)
    assert response.status_code == 413
    assert "exceeds the limit of 65536" in _status(response).message


def test_otlp_json_metrics_and_logs_with_hex_exemplar_and_record_ids(analyzer: Server) -> None:
    """OTLP/JSON metrics (a gauge with a hex-id exemplar) and logs (hex trace/span ids) decode and are counted."""
    metrics = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "jm"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "system.memory.utilization",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "asDouble": 0.5,
                                            "timeUnixNano": "1800000000000000000",
                                            "exemplars": [
                                                {
                                                    "asDouble": 0.5,
                                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                                    "spanId": "eee19b7ec3c1b174",
                                                }
                                            ],
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    logs = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "jm"}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"severityNumber": "SEVERITY_NUMBER_ERROR", "traceId": "5b8efff798038103d269b633813fc60c"},
                            {"severityNumber": 9, "spanId": "eee19b7ec3c1b174", "body": {"stringValue": "ok"}},
                        ]
                    }
                ],
            }
        ]
    }
    for path, doc in (("/v1/metrics", metrics), ("/v1/logs", logs)):
        response = _post(analyzer, path, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        assert (response.status_code, response.json()) == (200, {})
    assert analyzer.ingest.wait_idle()
    service = api(analyzer, "/api/v1/stats?service=jm").json()["services"][0]
    assert service["resources"]["memory_utilization"] == 0.5
    assert (service["logs"]["count"], service["logs"]["errors"]) == (2, 1)
