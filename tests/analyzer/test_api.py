"""The HTTP API: Prometheus /metrics, routing answers, extension routes, probes, signals and series."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from prometheus_client.parser import text_string_to_metric_families
from tests.analyzer.analyzer_helpers import api, emit_spans, gauge_request

from ragotel.analyzer.api.router import Request, Response
from ragotel.analyzer.server import Server

GEN = {"ragotel.stage": "generation", "ragotel.component": "openai"}


def _send(server: Server, n: int) -> None:
    exporter = OTLPSpanExporter(endpoint=f"http://{server.http_address}/v1/traces")
    emit_spans(exporter, "svc", [("chat", GEN, 0.1 * (i + 1)) for i in range(n)], error_indexes=[0])
    assert server.ingest.wait_idle()


def test_metrics_endpoint_is_prometheus_text_with_ingest_counters_and_stage_gauges(analyzer: Server) -> None:
    """/metrics parses as Prometheus text and reports accepted spans, requests and per-stage window values."""
    _send(analyzer, 4)
    response = api(analyzer, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("ragotel_analyzer_items_total", (("outcome", "accepted"), ("signal", "traces")))] == 4
    assert (
        samples[
            ("ragotel_analyzer_requests_total", (("outcome", "accepted"), ("signal", "traces"), ("transport", "http")))
        ]
        == 4  # SimpleSpanProcessor: one request per span
    )
    labels = (("component", "openai"), ("service", "svc"), ("stage", "generation"))
    assert samples[("ragotel_stage_error_ratio", labels)] == 0.25
    assert samples[("ragotel_stage_latency_seconds", (*labels[:1], ("quantile", "0.5"), *labels[1:]))] == pytest.approx(
        0.2, rel=0.01
    )
    assert samples[("ragotel_analyzer_series", ())] == 1
    assert ("process_resident_memory_bytes", ()) in samples


def test_routing_answers_404_405_and_json_errors(analyzer: Server) -> None:
    """Unknown paths are 404 and wrong methods 405 with Allow, both as JSON; HEAD is served like GET without a body."""
    missing = api(analyzer, "/api/v1/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "no such endpoint: /api/v1/nope", "status": 404})
    wrong = httpx.post(f"http://{analyzer.api_address}/api/v1/stats", timeout=10)
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET")
    head = httpx.head(f"http://{analyzer.api_address}/healthz", timeout=10)
    assert (head.status_code, head.content) == (200, b"")
    bad = api(analyzer, "/api/v1/series?limit=ten")
    assert bad.status_code == 400
    assert bad.json()["error"] == "query parameter limit: expected a non-negative integer, got 'ten'"


def test_added_routes_receive_the_request_and_failures_become_500(analyzer: Server) -> None:
    """An added route sees method, path, query, headers and body; a raising handler gives a JSON 500."""
    seen: list[Request] = []

    def echo(request: Request) -> Response:
        seen.append(request)
        return Response(201, {"got": request.query["x"]}, headers={"x-test": "1"})

    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    analyzer.add_route("POST", "/api/v1/echo", echo)
    analyzer.add_route("GET", "/api/v1/broken", broken)
    response = httpx.post(
        f"http://{analyzer.api_address}/api/v1/echo?x=1&x=2",
        content=b"payload",
        headers={"X-Custom": "yes"},
        timeout=10,
    )
    assert (response.status_code, response.json(), response.headers["x-test"]) == (201, {"got": "2"}, "1")
    assert (seen[0].method, seen[0].path, seen[0].body, seen[0].headers["x-custom"]) == (
        "POST",
        "/api/v1/echo",
        b"payload",
        "yes",
    )
    failed = api(analyzer, "/api/v1/broken")
    assert (failed.status_code, failed.json()["error"]) == (500, "internal error; see the analyzer log")
    assert api(analyzer, "/healthz").json() == {"status": "ok"}
    with pytest.raises(ValueError, match="already registered"):
        analyzer.add_route("GET", "/api/v1/broken", broken)


def test_signals_and_series_endpoints(analyzer: Server) -> None:
    """/api/v1/signals evaluates a signal with a label selector; /api/v1/series lists metric series with growth."""
    _send(analyzer, 2)
    httpx.post(
        f"http://{analyzer.http_address}/v1/metrics",
        content=gauge_request("svc", [("process.memory.usage", 5e6, {}, 1.8e9)]),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert analyzer.ingest.wait_idle()
    body = api(analyzer, "/api/v1/signals?signal=error_rate&stage=generation").json()
    assert body == {
        "signal": "error_rate",
        "values": [{"labels": {"service": "svc", "stage": "generation", "component": "openai"}, "value": 0.5}],
    }
    assert api(analyzer, "/api/v1/signals?signal=error_rate&stage=retrieval").json()["values"] == []
    assert api(analyzer, "/api/v1/signals?signal=nope").status_code == 400
    (series,) = api(analyzer, "/api/v1/series?service=svc").json()["series"]
    assert (series["name"], series["value"], series["kind"], series["growth"]) == (
        "process.memory.usage",
        5e6,
        "gauge",
        None,
    )
