"""NaN, infinite and absurd values cannot break the API or the rules, of their service or another (issue 10, item 3)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from tests.analyzer.analyzer_helpers import api, encoded_spans, gauge_request

from ragotel.analyzer.server import Server

PIPELINE = {"ragotel.stage": "pipeline"}
_PROTOBUF = {"content-type": "application/x-protobuf"}


def _gauge_json(service: str, name: str, values: list[Any], attributes: dict[str, str] | None = None) -> dict[str, Any]:
    """An OTLP/JSON metrics request: one gauge with one point per value (JSON spells NaN and inf as strings)."""
    attrs = [{"key": k, "value": {"stringValue": v}} for k, v in (attributes or {}).items()]
    now = time.time_ns()
    points = [{"asDouble": v, "timeUnixNano": str(now + i * 10**9), "attributes": attrs} for i, v in enumerate(values)]
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeMetrics": [{"metrics": [{"name": name, "unit": "1", "gauge": {"dataPoints": points}}]}],
            }
        ]
    }


def _healthy_service(server: Server) -> None:
    """A second service with spans and normal metrics, which nothing sent by another service may disturb."""
    base = f"http://{server.http_address}"
    spans = encoded_spans("rag-ok", [("rag", PIPELINE, 0.2)] * 5)
    assert httpx.post(f"{base}/v1/traces", content=spans, headers=_PROTOBUF).status_code == 200
    metrics = gauge_request("rag-ok", [("system.cpu.utilization", 0.25, {}, time.time())])
    assert httpx.post(f"{base}/v1/metrics", content=metrics, headers=_PROTOBUF).status_code == 200


def _assert_api_serves(server: Server) -> None:
    assert server.ingest.wait_idle()
    for path in ("/api/v1/stats", "/api/v1/series", "/api/v1/health", "/api/v1/stats?service=rag-ok"):
        assert api(server, path).status_code == 200, (path, api(server, path).text)
    ok = api(server, "/api/v1/stats?service=rag-ok").json()["services"][0]
    assert ok["stages"][0]["p95"] == pytest.approx(0.2, rel=0.01)
    assert ok["resources"]["cpu_utilization"] == 0.25


@pytest.mark.parametrize(
    ("name", "values", "attributes"),
    [
        ("system.cpu.utilization", ["NaN"], None),
        ("ragotel.dependency.health", ["NaN"], {"ragotel.dependency.name": "redis"}),
        ("process.memory.usage", ["Infinity", "-Infinity"], None),
    ],
)
def test_non_finite_points_are_rejected_through_partial_success(
    analyzer: Server, name: str, values: list[Any], attributes: dict[str, str] | None
) -> None:
    """A NaN/inf point is rejected and named in partial_success; every endpoint keeps answering for every service."""
    _healthy_service(analyzer)
    response = httpx.post(
        f"http://{analyzer.http_address}/v1/metrics", json=_gauge_json("rag-bad", name, values, attributes)
    )
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == str(len(values))
    assert partial["errorMessage"] == f"{len(values)} data point(s) with a NaN or infinite value (first in {name!r})"
    _assert_api_serves(analyzer)
    series = api(analyzer, "/api/v1/series?service=rag-bad").json()["series"]
    assert series == []


def test_huge_finite_memory_points_neither_break_stats_nor_fail_memory_leak(analyzer: Server) -> None:
    """1e308 points (their sums overflow) in one memory series: no growth for it, others unaffected, rule healthy."""
    _healthy_service(analyzer)
    body = _gauge_json("rag-bad", "process.memory.usage", [1e308, 1e308, 1e308, -1e308])
    assert httpx.post(f"http://{analyzer.http_address}/v1/metrics", json=body).status_code == 200
    _assert_api_serves(analyzer)
    bad = api(analyzer, "/api/v1/stats?service=rag-bad").json()["services"][0]
    assert bad["resources"]["memory_growth"] is None
    before = {r["name"]: r["evaluations"] for r in api(analyzer, "/api/v1/rules").json()["rules"]}["memory_leak"]
    deadline = time.monotonic() + 10
    while True:
        rule = {r["name"]: r for r in api(analyzer, "/api/v1/rules").json()["rules"]}["memory_leak"]
        if rule["evaluations"] > before:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (rule["failures"], rule["last_error"]) == (0, None)


def test_absurd_span_durations_do_not_poison_other_series(analyzer: Server) -> None:
    """A span from 0 to 2**64-1 ns (584 years) is counted with a finite latency; other services are unaffected."""
    _healthy_service(analyzer)
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="rag-bad")))
    span = resource.scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="rag", start_time_unix_nano=0, end_time_unix_nano=2**64 - 1
    )
    span.attributes.append(KeyValue(key="ragotel.stage", value=AnyValue(string_value="pipeline")))
    body = request.SerializeToString()
    assert httpx.post(f"http://{analyzer.http_address}/v1/traces", content=body, headers=_PROTOBUF).status_code == 200
    _assert_api_serves(analyzer)
    row = api(analyzer, "/api/v1/stats?service=rag-bad").json()["services"][0]["stages"][0]
    assert row["count"] == 1
    assert row["p99"] == pytest.approx((2**64 - 1) * 1e-9, rel=0.01)
    assert row["avg"] == pytest.approx((2**64 - 1) * 1e-9)


def test_windows_ignore_non_finite_points_that_bypass_the_receiver() -> None:
    """A MetricBatch built elsewhere (embedding) with NaN/inf points leaves the windows' reads finite and JSON-safe."""
    from ragotel.analyzer.windows import Windows
    from ragotel.analyzer.windows.records import MetricBatch, MetricPoint

    windows = Windows(60.0)
    now = time.time()
    dep = (("ragotel.dependency.name", "redis"),)
    points = [
        MetricPoint("rag-bad", "system.cpu.utilization", (), "gauge", "1", now, math.nan, 1),
        MetricPoint("rag-bad", "ragotel.dependency.health", dep, "gauge", "1", now, math.nan, 1),
        MetricPoint("rag-bad", "process.memory.usage", (), "gauge", "By", now, math.inf, 1),
        MetricPoint("rag-bad", "process.memory.usage", (), "gauge", "By", now + 1, -math.inf, 1),
        MetricPoint("rag-ok", "system.cpu.utilization", (), "gauge", "1", now, 0.25, 1),
    ]
    windows.add_metrics(MetricBatch(points, len(points), 0, ""), now=now)
    json.dumps([windows.stats(now=now), windows.health(now=now), windows.metric_series(now=now)], allow_nan=False)
    assert [v.value for v in windows.signal("cpu_utilization", now=now)] == [0.25]
    assert windows.signal("memory_growth", now=now) == []
    assert windows.signal("dependency_health", now=now) == []
