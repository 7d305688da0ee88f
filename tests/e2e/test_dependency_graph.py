"""The dependency graph end to end: a real instrumented RAG app (Chroma, the loopback LLM, a Redis cache with its
health check) and real analyzers; a two-service call over HTTP with W3C trace context; a graph of 1,000+ nodes."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import chromadb
import openai
import pytest
import redis
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from tests.servers import FakeOpenAI, RedisServer

import ragotel
from ragotel import health
from ragotel.analyzer.config.loading import load_config
from ragotel.analyzer.server import Server

SERVICE = "rag-graph"
CACHE = "answer-cache"
# Short windows and quick rules keep the test in seconds; the pipeline error rule fires after 1 s of errors.
ANALYZER = {
    "window": "10s",
    "evaluation_interval": "0.2s",
    "receivers": {"grpc": {"enabled": False}, "http": {"endpoint": "127.0.0.1:0"}},
    "api": {"endpoint": "127.0.0.1:0"},
    "log": {"level": "warning"},
    "limits": {"memory_limit": 0},
    "rules": [
        {
            "name": "high_error_rate",
            "signal": "error_rate",
            "match": {"stage": "pipeline"},
            "condition": "greater_than",
            "threshold": 0.2,
            "for": "1s",
            "min_requests": 3,
            "min_errors": 2,
            "severity": "critical",
        },
        {
            "name": "service_unavailable",
            "signal": "dependency_health",
            "condition": "less_than",
            "threshold": 1,
            "for": "0s",
            "severity": "critical",
        },
    ],
}


def _analyzer(tmp_path: Path, *, api: dict[str, Any] | None = None) -> Server:
    config = {**ANALYZER, "state": {"path": str(tmp_path / "analyzer.db")}}
    config["api"] = {**ANALYZER["api"], **(api or {})}  # type: ignore[dict-item]
    server = Server(load_config([], config))
    server.start()
    return server


def _get(server: Server, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{server.api_address}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _graph(server: Server, query: str = "") -> dict[str, Any]:
    status, doc = _get(server, f"/api/v1/dependencies{query}")
    assert status == 200, doc
    return doc  # type: ignore[no-any-return]


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _providers(server: Server, service: str) -> tuple[TracerProvider, MeterProvider]:
    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://{server.http_address}/v1/traces"), schedule_delay_millis=100
        )
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"http://{server.http_address}/v1/metrics"), export_interval_millis=200
    )
    return tracer_provider, MeterProvider(resource=resource, metric_readers=[reader])


@dataclass
class RagApp:
    """A small RAG service: a Redis answer cache, retrieval from Chroma, generation by the loopback LLM."""

    cache: redis.Redis
    collection: Any
    llm: openai.OpenAI

    def ask(self, question: str) -> str:
        with ragotel.pipeline("answer"):
            key = f"answers:{question}"
            cached = self.cache.get(key)  # raises ConnectionError while Redis is down: the request fails
            if cached is not None:
                self.cache.delete(key)
            with ragotel.retrieval("docs", top_k=2):
                found = self.collection.query(query_embeddings=[[0.1, 0.2, 0.3]], n_results=2)
            context = " ".join(found["documents"][0])
            reply = self.llm.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"{context}\n{question}"}]
            )
            answer = reply.choices[0].message.content or ""
            self.cache.set(key, answer, ex=60)
            return answer


@dataclass
class Live:
    server: Server
    app: RagApp
    redis: RedisServer


@pytest.fixture
def live(tmp_path: Path, fake_openai: FakeOpenAI, redis_server: RedisServer) -> Iterator[Live]:
    """The analyzer, and the app instrumented by ragotel exporting to it, with a health check on its Redis cache."""
    server = _analyzer(tmp_path)
    tracer_provider, meter_provider = _providers(server, SERVICE)
    handle = ragotel.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        libraries=["chromadb", "openai"],
        host_metrics=False,
    )
    health.register(CACHE, health.redis_check(redis_server.url), kind="cache", interval=0.2, timeout=1.0)
    try:
        client = chromadb.EphemeralClient()
        collection = client.get_or_create_collection(f"docs-{time.monotonic_ns()}")
        collection.add(
            ids=["a", "b", "c"],
            documents=["ragotel traces stages", "the analyzer alerts", "health checks probe dependencies"],
            embeddings=[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.2, 0.2, 0.2]],
        )
        cache = redis.Redis.from_url(redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        llm = openai.OpenAI(base_url=fake_openai.base_url, api_key="test-key", max_retries=0)
        yield Live(server, RagApp(cache, collection, llm), redis_server)
    finally:
        health.unregister(CACHE)
        handle.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()
        server.stop()


def _node(graph: dict[str, Any], predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((n for n in graph["nodes"] if predicate(n)), None)


def _edge(graph: dict[str, Any], source: str, target: str) -> dict[str, Any] | None:
    return next((e for e in graph["edges"] if e["source"] == source and e["target"] == target), None)


def _ask_many(app: RagApp, n: int) -> int:
    failed = 0
    for i in range(n):
        try:
            app.ask(f"question {i % 5}")
        except redis.ConnectionError:
            failed += 1
    return failed


def test_graph_of_a_rag_service_and_its_redis_outage_named_once(live: Live) -> None:
    """The graph shows service -> stages -> LLM / vector DB / cache with plausible figures, and when the real Redis
    dies its node turns down and every alert raised names that one dependency as primary cause, once."""
    assert _ask_many(live.app, 20) == 0
    service_id = f"service:{SERVICE}"

    def healthy_graph() -> dict[str, Any] | None:
        graph = _graph(live.server, f"?service={SERVICE}")
        cache = _node(graph, lambda n: n["type"] == "cache")
        llm_edges = [e for e in graph["edges"] if e["target"].startswith("dependency:llm/")]
        if cache is None or cache["health"] != "up" or not llm_edges or llm_edges[0]["requests"] < 20:
            return None
        return graph

    graph = _wait(healthy_graph, 20, "the healthy graph")
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes[service_id]["kind"] == "service"
    assert nodes[service_id]["health"] == "up"
    stages = {n["type"]: n for n in graph["nodes"] if n["kind"] == "stage"}
    assert {"pipeline", "retrieval", "vector_db", "generation"} <= set(stages)
    for stage in stages.values():
        edge = _edge(graph, service_id, stage["id"])
        assert edge is not None
        assert edge["requests"] >= 20
        assert edge["error_rate"] == 0.0
        assert edge["request_rate"] > 0
        assert 0 < edge["p95"] < 5
    llm = _node(graph, lambda n: n["type"] == "llm")
    assert llm is not None
    assert llm["attributes"]["provider"] == "openai"
    assert llm["attributes"]["server.address"] == "127.0.0.1"
    assert llm["health"] == "up"
    llm_edge = _edge(graph, stages["generation"]["id"], llm["id"])
    assert llm_edge is not None
    assert llm_edge["requests"] == 20
    assert llm_edge["error_rate"] == 0.0
    assert 0 < llm_edge["p95"] < 5
    assert llm_edge["via"] == "spans"
    vector_db = _node(graph, lambda n: n["type"] == "vector_db")
    assert vector_db is not None
    assert vector_db["attributes"]["db.system.name"] == "chroma"
    vdb_edge = _edge(graph, stages["vector_db"]["id"], vector_db["id"])
    assert vdb_edge is not None
    assert vdb_edge["requests"] >= 20
    assert vdb_edge["p95"] is not None
    cache = _node(graph, lambda n: n["type"] == "cache")
    assert cache is not None
    assert cache["name"] == CACHE
    assert cache["health_checks"] == [CACHE]
    probe_edge = _edge(graph, service_id, cache["id"])
    assert probe_edge is not None
    assert probe_edge["via"] == "health_check"
    assert probe_edge["requests"] >= 1
    assert probe_edge["error_rate"] == 0.0

    live.redis.kill()  # SIGKILL: the cache dies, as in an outage
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            _ask_many(live.app, 1)
            stop.wait(0.05)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:

        def alerts_fired() -> list[dict[str, Any]] | None:
            _, doc = _get(live.server, "/api/v1/alerts?status=firing")
            rules = {a["rule"] for a in doc["alerts"]}
            return doc["alerts"] if {"service_unavailable", "high_error_rate"} <= rules else None

        alerts = _wait(alerts_fired, 30, "service_unavailable and high_error_rate to fire")
        graph = _graph(live.server)
    finally:
        stop.set()
        worker.join(timeout=10)
    cache = _node(graph, lambda n: n["type"] == "cache")
    assert cache is not None
    assert cache["health"] == "down"
    assert cache["failing_checks"] == [CACHE]
    for alert in alerts:
        diagnosis = alert["diagnosis"]
        assert diagnosis["primary_cause"] == "dependency_down", (alert["rule"], diagnosis)
        assert diagnosis["dependency"]["id"] == cache["id"], diagnosis
        assert diagnosis["dependency"]["upstream"].startswith(service_id)
        naming = [c for c in diagnosis["possible_causes"] if c["cause"] == "dependency_down"]
        assert len(naming) == 1, diagnosis["possible_causes"]
        assert naming[0]["component"] == CACHE
        assert CACHE in naming[0]["summary"]


class _Backend(BaseHTTPRequestHandler):
    """Service B: answers /ok, fails /fail; each request is a SERVER span continuing the caller's trace."""

    tracer: Any = None

    def do_GET(self) -> None:
        context = TraceContextTextMapPropagator().extract({k.lower(): v for k, v in self.headers.items()})
        with self.tracer.start_as_current_span("GET /answer", context=context, kind=SpanKind.SERVER) as span:
            time.sleep(0.02)
            status = 500 if self.path == "/fail" else 200
            if status == 500:
                span.set_status(StatusCode.ERROR)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_cross_service_edge_from_w3c_trace_context(tmp_path: Path) -> None:
    """A CLIENT span in one service whose child SERVER span (W3C traceparent over real HTTP) is in another becomes
    an edge between the two services, with the calls' count, error rate and the client's p95."""
    server = _analyzer(tmp_path)
    front_traces, front_metrics = _providers(server, "front-door")
    back_traces, back_metrics = _providers(server, "rag-backend")
    _Backend.tracer = back_traces.get_tracer("backend")
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    tracer = front_traces.get_tracer("front")
    try:
        for i in range(12):
            path = "/fail" if i % 4 == 0 else "/ok"
            with tracer.start_as_current_span(f"GET {path}", kind=SpanKind.CLIENT) as span:
                headers: dict[str, str] = {}
                TraceContextTextMapPropagator().inject(headers)
                request = urllib.request.Request(f"http://127.0.0.1:{backend.server_port}{path}", headers=headers)
                try:
                    urllib.request.urlopen(request, timeout=5).close()
                except urllib.error.HTTPError:
                    span.set_status(StatusCode.ERROR)
        back_traces.force_flush()
        front_traces.force_flush()

        def edge() -> dict[str, Any] | None:
            found = _edge(_graph(server), "service:front-door", "service:rag-backend")
            return found if found is not None and found["requests"] == 12 else None

        found = _wait(edge, 15, "the cross-service edge")
        assert found["via"] == "calls"
        assert found["error_rate"] == pytest.approx(3 / 12)
        assert 0.02 <= found["p95"] < 5
        graph = _graph(server, "?service=front-door")
        assert {n["id"] for n in graph["nodes"]} == {
            "service:front-door",
            "stage:front-door/other/",  # spans without ragotel.stage
            "service:rag-backend",
            "stage:rag-backend/other/",
        }
        callers = _graph(server, "?service=rag-backend")
        assert {n["id"] for n in callers["nodes"]} == {
            "service:front-door",
            "service:rag-backend",
            "stage:rag-backend/other/",
        }
    finally:
        backend.shutdown()
        backend.server_close()
        for provider in (front_traces, back_traces, front_metrics, back_metrics):
            provider.shutdown()
        server.stop()


def _attr(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


HOSTILE = '<img src=x onerror="alert(1)">\u202e&amp;'


def _many_services(count: int) -> bytes:
    """One export request: ``count`` services, each with a generation stage calling an LLM at its own server."""
    request = ExportTraceServiceRequest()
    for i in range(count):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(_attr("service.name", f"svc-{i:04d}" if i else HOSTILE))
        spans = resource_spans.scope_spans.add().spans
        for j in range(2):
            span = spans.add(
                trace_id=(i * 2 + j + 1).to_bytes(16, "big"),
                span_id=(i * 2 + j + 1).to_bytes(8, "big"),
                name="chat",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=1_000_000_000,
                end_time_unix_nano=1_000_000_000 + 100_000_000 * (j + 1),
            )
            span.attributes.extend(
                [
                    _attr("ragotel.stage", "generation"),
                    _attr("ragotel.component", "openai"),
                    _attr("gen_ai.provider.name", "openai"),
                    _attr("server.address", f"llm-{i}.internal"),
                ]
            )
            if j:
                span.status.code = Status.STATUS_CODE_ERROR
    return request.SerializeToString()


def test_a_graph_of_thousands_of_nodes_is_folded_past_its_limit(tmp_path: Path) -> None:
    """1,500 services (4,500 nodes) sent through the real receiver: the document keeps the limit, folds the rest
    into one aggregate node per kind with every request accounted for, carries hostile names as they came, and
    answers a bad limit with a 400."""
    server = _analyzer(tmp_path)
    try:
        body = _many_services(1500)
        request = urllib.request.Request(
            f"http://{server.http_address}/v1/traces",
            data=body,
            headers={"content-type": "application/x-protobuf"},
        )
        urllib.request.urlopen(request, timeout=30).close()
        assert server.ingest.wait_idle(30)
        full = _graph(server, "?limit=100000")
        assert not full["truncated"]
        assert len(full["nodes"]) == 4500
        total = sum(e["requests"] for e in full["edges"])
        assert total == 1500 * 2 * 2  # service -> stage and stage -> llm, two spans each

        graph = _graph(server)
        assert graph["truncated"]
        assert graph["limit"] == 1000
        assert len(graph["nodes"]) == 1000
        ids = {n["id"] for n in graph["nodes"]}
        assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])
        aggregates = {n["kind"]: n for n in graph["nodes"] if n["id"].startswith("aggregate:")}
        assert set(aggregates) == {"service", "stage", "dependency"}
        folded = sum(int(n["attributes"]["aggregated"]) for n in aggregates.values())
        assert folded == 4500 - (1000 - len(aggregates))
        assert sum(e["requests"] for e in graph["edges"]) == total
        edge = _edge(graph, "aggregate:stage", "aggregate:dependency")
        assert edge is not None
        assert edge["error_rate"] == pytest.approx(0.5)
        assert edge["p95"] == pytest.approx(0.2, 0.02)
        assert all(
            n["health"] == "degraded" or n["health"] == "down" for n in graph["nodes"] if n["kind"] == "dependency"
        )

        hostile = _graph(server, "?service=" + urllib.parse.quote(HOSTILE))
        assert {n["name"] for n in hostile["nodes"] if n["kind"] == "service"} == {HOSTILE}
        assert len(hostile["nodes"]) == 3
        assert not hostile["truncated"]
        assert _graph(server, "?service=nobody")["nodes"] == []
        assert len(_graph(server, "?limit=10")["nodes"]) == 10
        for bad in ("abc", "0", "-1", "1e3", "100001"):
            status, doc = _get(server, f"/api/v1/dependencies?limit={bad}")
            assert status == 400, (bad, doc)
            assert "limit" in doc["error"]
    finally:
        server.stop()


def test_the_graph_needs_the_api_token_like_the_rest_of_the_api(tmp_path: Path) -> None:
    """With API auth on, the dependency graph answers 401 without the bearer token and 200 with it."""
    (tmp_path / "api-token").write_text("graph-token\n")
    server = _analyzer(tmp_path, api={"auth": {"token_file": str(tmp_path / "api-token")}})
    try:
        status, doc = _get(server, "/api/v1/dependencies")
        assert status == 401, doc
        request = urllib.request.Request(
            f"http://{server.api_address}/api/v1/dependencies", headers={"Authorization": "Bearer graph-token"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read())["nodes"] == []
    finally:
        server.stop()
