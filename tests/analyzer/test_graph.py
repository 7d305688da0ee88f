"""The dependency graph in the windows: CLIENT/SERVER pairing in either arrival order, bounds, and the diagnosis
that walks it (SDK-made spans fed through the analyzer's own decoder, on a simulated clock)."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from tests.analyzer.alerting_helpers import T0, Harness, feed
from tests.analyzer.analyzer_helpers import encoded_spans, gauge_request

from ragotel.analyzer.windows import Windows

T0_NS = 1_700_000_000_000_000_000


def _call(client_service: str, server_service: str, *, failed: bool = False) -> tuple[bytes, bytes]:
    """One call from ``client_service`` to ``server_service``: the encoded CLIENT span and SERVER span (its child)."""
    encoded = []
    client_memory, server_memory = InMemorySpanExporter(), InMemorySpanExporter()
    providers = []
    for service, memory in ((client_service, client_memory), (server_service, server_memory)):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        providers.append(provider)
    client = providers[0].get_tracer("t").start_span("GET /x", kind=SpanKind.CLIENT, start_time=T0_NS)
    server = (
        providers[1]
        .get_tracer("t")
        .start_span("GET /x", kind=SpanKind.SERVER, context=set_span_in_context(client), start_time=T0_NS + 1_000_000)
    )
    if failed:
        server.set_status(Status(StatusCode.ERROR))
    server.end(end_time=T0_NS + 200_000_000)
    client.end(end_time=T0_NS + 250_000_000)
    for memory in (client_memory, server_memory):
        encoded.append(bytes(encode_spans(memory.get_finished_spans()).SerializeToString()))
    for provider in providers:
        provider.shutdown()
    return encoded[0], encoded[1]


@pytest.fixture
def windows() -> Windows:
    """Windows of 10 s on a clock stopped at T0, holding at most 4 graph edges."""
    return Windows(10.0, clock=lambda: T0, max_edges=4)


def test_client_and_server_spans_pair_whichever_arrives_first(windows: Windows) -> None:
    """A SERVER span arriving before its CLIENT parent and one arriving after both make the edge A -> B; the error
    of either side counts; the p95 is the client's duration."""
    client, server = _call("front", "back")
    feed(windows, "traces", server, T0)
    feed(windows, "traces", client, T0 + 0.5)
    client, server = _call("front", "back", failed=True)
    feed(windows, "traces", client, T0 + 1)
    feed(windows, "traces", server, T0 + 1.5)
    graph = windows.dependencies(now=T0 + 2)
    edges = [e for e in graph["edges"] if e["source"] == "service:front" and e["target"] == "service:back"]
    assert len(edges) == 1
    assert edges[0]["requests"] == 2
    assert edges[0]["error_rate"] == 0.5
    assert edges[0]["p95"] == pytest.approx(0.25, rel=0.02)
    assert edges[0]["via"] == "calls"
    assert len(windows.pairs) == 0
    assert windows.pairs.counts["paired"] == 2


def test_unpaired_halves_expire_and_the_edges_are_capped(windows: Windows) -> None:
    """A SERVER span whose CLIENT never comes waits only ``ttl``; past ``max_edges`` new edges are counted, not kept."""
    _, server = _call("front", "back")
    feed(windows, "traces", server, T0)
    assert len(windows.pairs) == 1
    windows.expire(T0 + windows.pairs.ttl + 1)
    assert len(windows.pairs) == 0
    assert windows.pairs.counts["expired"] == 1
    for i in range(6):
        attributes = {"ragotel.stage": "generation", "gen_ai.provider.name": "openai", "server.address": f"h{i}"}
        feed(windows, "traces", encoded_spans("svc", [("chat", attributes, 0.1)]), T0 + 40)
    graph = windows.dependencies(now=T0 + 40)
    assert len([n for n in graph["nodes"] if n["kind"] == "dependency"]) == 4
    assert windows.snapshot_counts()["graph_overflow"] == 2


LLM = {"ragotel.stage": "generation", "ragotel.component": "openai", "gen_ai.provider.name": "openai"}


def test_a_failing_llm_edge_is_named_once_as_the_cause_of_the_alerts_above_it(tmp_path: Path) -> None:
    """With no health check at all, an LLM failing most calls is down in the graph, and the alerts on the generation
    stage and on the pipeline above it both name that dependency as primary cause, once each."""
    rules = [
        {"name": "gen_errors", "signal": "error_rate", "match": {"stage": "generation"}, "threshold": 0.1},
        {"name": "pipeline_errors", "signal": "error_rate", "match": {"stage": "pipeline"}, "threshold": 0.1},
    ]
    h = Harness(tmp_path, rules)
    try:
        llm = {**LLM, "server.address": "api.openai.com"}
        feed(h.windows, "traces", encoded_spans("rag", [("chat", llm, 0.5)] * 10, error_indexes=range(8)), h.now)
        h.spans("rag", "pipeline", "custom", [0.6] * 10, errors=8)
        h.spans("rag", "vector_db", "chroma", [0.01] * 10)
        h.tick(0.5)
        assert h.states() == {"gen_errors": "firing", "pipeline_errors": "firing"}
        graph = h.windows.dependencies(now=h.now)
        llm_node = next(n for n in graph["nodes"] if n["type"] == "llm")
        assert llm_node["id"] == "dependency:llm/openai/api.openai.com"
        assert llm_node["health"] == "down"
        for alert in h.engine.firing():
            diagnosis = alert.snapshot().diagnosis
            assert diagnosis is not None
            assert diagnosis.primary_cause == "dependency_down"
            assert diagnosis.dependency is not None
            assert diagnosis.dependency["id"] == llm_node["id"]
            named = [c for c in diagnosis.possible_causes if c.cause == "dependency_down"]
            assert [c.component for c in named] == ["openai @ api.openai.com"]
    finally:
        h.close()


def test_a_healthy_graph_leaves_the_diagnosis_as_it_was(tmp_path: Path) -> None:
    """A slow but healthy LLM is no dependency_down: the stage the evidence points at stays the primary cause."""
    rules = [{"name": "gen_errors", "signal": "error_rate", "match": {"stage": "generation"}, "threshold": 0.01}]
    h = Harness(tmp_path, rules)
    try:
        llm = {**LLM, "server.address": "api.openai.com"}
        # one failure in 40 calls: degraded at most, never down
        feed(h.windows, "traces", encoded_spans("rag", [("chat", llm, 0.5)] * 40, error_indexes=[0]), h.now)
        h.tick(0.5)
        diagnosis = h.engine.firing()[0].snapshot().diagnosis
        assert diagnosis is not None
        assert diagnosis.primary_cause == "generation_errors"
        assert diagnosis.dependency is None
    finally:
        h.close()


def test_a_failing_downstream_service_is_named_as_the_cause_of_its_callers_alert(tmp_path: Path) -> None:
    """Calls from one service into another failing (CLIENT -> SERVER pairs) make the callee down in the graph, and
    the caller's pipeline alert names that service as its primary cause."""
    rules = [{"name": "pipeline_errors", "signal": "error_rate", "match": {"stage": "pipeline"}, "threshold": 0.1}]
    h = Harness(tmp_path, rules)
    try:
        for i in range(6):
            client, server = _call("front", "back", failed=i > 0)
            feed(h.windows, "traces", server, h.now)
            feed(h.windows, "traces", client, h.now)
        h.spans("front", "pipeline", "custom", [0.3] * 6, errors=5)
        h.tick(0.5)
        (alert,) = h.engine.firing()
        diagnosis = alert.snapshot().diagnosis
        assert diagnosis is not None
        assert diagnosis.primary_cause == "dependency_down"
        assert diagnosis.dependency is not None
        assert diagnosis.dependency["id"] == "service:back"
        assert "back (service) is down" in diagnosis.possible_causes[0].summary
    finally:
        h.close()


def test_calls_nobody_answers_become_an_http_dependency_with_its_health_check(windows: Windows) -> None:
    """CLIENT spans naming a server.address that sends no spans are counted, once their wait ends, on an edge to
    an HTTP dependency, and the service's http health check reports on that node instead of making its own."""
    attributes = {"server.address": "reranker.internal"}
    provider = TracerProvider(resource=Resource.create({"service.name": "front"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(4):
        span = provider.get_tracer("t").start_span(
            "POST", kind=SpanKind.CLIENT, attributes=attributes, start_time=T0_NS
        )
        if i == 0:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=T0_NS + 50_000_000)
    provider.shutdown()
    feed(windows, "traces", bytes(encode_spans(memory.get_finished_spans()).SerializeToString()), T0)
    later = T0 + windows.pairs.ttl + 1
    windows.expire(later)
    health = [
        (
            "ragotel.dependency.health",
            0.0,
            {"ragotel.dependency.name": "reranker", "ragotel.dependency.kind": "http"},
            later,
        )
    ]
    feed(windows, "metrics", gauge_request("front", health), later)
    graph = windows.dependencies(now=later)
    (node,) = [n for n in graph["nodes"] if n["kind"] == "dependency"]
    assert node["id"] == "dependency:http/reranker.internal"
    assert node["health_checks"] == ["reranker"]
    assert node["health"] == "down"
    calls = next(e for e in graph["edges"] if e["target"] == node["id"] and e["via"] == "calls")
    assert calls["requests"] == 4
    assert calls["error_rate"] == 0.25
    assert calls["p95"] == pytest.approx(0.05, rel=0.02)
