"""Pass-through: accepted requests are forwarded unchanged downstream, retried on transient failures, and counted."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.analyzer.analyzer_helpers import api, encoded_spans, gauge_request, stage_row
from tests.servers import HangingServer, HttpReceiver

from ragotel.analyzer.server import Server

GEN = {"ragotel.stage": "generation", "ragotel.component": "openai"}
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _post(server: Server, body: bytes, headers: dict[str, str] = PROTOBUF) -> None:
    response = httpx.post(f"http://{server.http_address}/v1/traces", content=body, headers=headers, timeout=10)
    assert response.status_code == 200


def _passthrough_counts(server: Server) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in api(server, "/metrics").text.splitlines():
        if line.startswith("ragotel_analyzer_passthrough_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            outcome = labels.split('outcome="')[1].split('"')[0]
            counts[outcome] = counts.get(outcome, 0) + float(value)
    return counts


def test_http_passthrough_forwards_bytes_unchanged(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """Protobuf bodies arrive downstream byte for byte; OTLP/JSON arrives as the equivalent protobuf."""
    server = make_analyzer({"passthrough": {"endpoint": http_receiver.url, "headers": {"X-Tenant": "t1"}}})
    body = encoded_spans("fwd", [("chat", GEN, 0.1), ("chat", GEN, 0.2)])
    _post(server, body)
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "fwd"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "x"}
                        ]
                    }
                ],
            }
        ]
    }
    _post(server, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    first, second = http_receiver.wait_for(2, timeout=10)
    assert (first.path, first.headers["content-type"], first.headers["x-tenant"]) == (
        "/v1/traces",
        "application/x-protobuf",
        "t1",
    )
    assert first.body == body
    span = ExportTraceServiceRequest.FromString(second.body).resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id.hex(), span.span_id.hex(), span.name) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        "x",
    )
    assert stage_row(server, "fwd", "generation")["count"] == 2


@pytest.mark.timeout(60)
def test_transient_downstream_failures_are_retried_and_permanent_ones_counted(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """Two 503s are retried until delivery; a 400 is counted as failed, never silently lost."""
    server = make_analyzer({"passthrough": {"endpoint": http_receiver.url}})
    http_receiver.fail_next(2, status=503)
    body = encoded_spans("retry", [("chat", GEN, 0.1)])
    _post(server, body)
    delivered = http_receiver.wait_for(3, timeout=20)
    assert [r.body for r in delivered] == [body] * 3
    http_receiver.fail_next(1, status=400)
    _post(server, body)
    http_receiver.wait_for(4, timeout=10)
    deadline = time.monotonic() + 10
    while _passthrough_counts(server) != {"sent": 1, "failed": 1}:
        assert time.monotonic() < deadline, _passthrough_counts(server)
        time.sleep(0.05)


def test_grpc_passthrough_into_another_analyzer(make_analyzer: Callable[..., Server]) -> None:
    """An analyzer forwarding over OTLP/gRPC feeds a downstream analyzer the same spans."""
    downstream = make_analyzer()
    upstream = make_analyzer({"passthrough": {"endpoint": f"http://{downstream.grpc_address}", "protocol": "grpc"}})
    _post(upstream, encoded_spans("chain", [("chat", GEN, 0.1 * i) for i in range(1, 6)]))
    deadline = time.monotonic() + 10
    while not api(downstream, "/api/v1/stats?service=chain").json()["services"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert stage_row(downstream, "chain", "generation")["count"] == 5
    assert stage_row(upstream, "chain", "generation")["count"] == 5


def test_a_full_forwarding_queue_drops_the_oldest_and_counts_it(
    make_analyzer: Callable[..., Server], hanging_server: HangingServer
) -> None:
    """With the downstream hanging, requests beyond queue_size are dropped, counted, and ingest is not slowed."""
    server = make_analyzer(
        {"passthrough": {"endpoint": hanging_server.url, "queue_size": 1, "timeout": "1s", "max_elapsed": "1s"}}
    )
    body = encoded_spans("slow", [("chat", GEN, 0.1)])
    for _ in range(4):
        _post(server, body)
    assert stage_row(server, "slow", "generation")["count"] == 4
    assert _passthrough_counts(server).get("dropped") == 2  # one is in flight, one queued, two pushed out


def test_traces_only_backend_gets_only_traces_and_one_warning(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend answering 405 to /v1/metrics (Phoenix): by default each metrics export fails but one warning is
    logged, not one per request; with ``signals: [traces]`` metrics are not sent at all."""
    http_receiver.respond("/v1/metrics", status=405, body=b"Method Not Allowed")
    metrics = gauge_request("fwd", [("system.cpu.utilization", 0.5, {}, time.time())])

    def post_metrics(server: Server, n: int) -> None:
        for _ in range(n):
            url = f"http://{server.http_address}/v1/metrics"
            assert httpx.post(url, content=metrics, headers=PROTOBUF, timeout=10).status_code == 200

    with caplog.at_level(logging.WARNING, logger="ragotel.analyzer.passthrough"):
        every = make_analyzer({"passthrough": {"endpoint": http_receiver.url}})
        post_metrics(every, 20)
        deadline = time.monotonic() + 10
        while _passthrough_counts(every).get("failed", 0) < 20:
            assert time.monotonic() < deadline, _passthrough_counts(every)
            time.sleep(0.05)
        warnings = [r.getMessage() for r in caplog.records if r.name == "ragotel.analyzer.passthrough"]
        assert len(warnings) == 1, warnings
        assert "HTTP 405" in warnings[0]
        assert "leave it out of passthrough.signals" in warnings[0]

        caplog.clear()
        http_receiver.clear()
        traces_only = make_analyzer({"passthrough": {"endpoint": http_receiver.url, "signals": ["traces"]}})
        post_metrics(traces_only, 5)
        _post(traces_only, encoded_spans("fwd", [("chat", GEN, 0.1)]))
        (forwarded,) = http_receiver.wait_for(1, timeout=10)
        time.sleep(0.3)  # anything else would have been forwarded by now
        assert [r.path for r in http_receiver.requests] == ["/v1/traces"] == [forwarded.path]
        assert _passthrough_counts(traces_only) == {"sent": 1}
        assert [r for r in caplog.records if r.name == "ragotel.analyzer.passthrough"] == []
