"""Qdrant instrumentation against real `QdrantClient(":memory:")` / `AsyncQdrantClient(":memory:")` and real sockets."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException
from tests.instrumentation.instrumentation_helpers import Instrumented, break_response_extractors, exported_values
from tests.servers import HangingServer

from ragotel import semconv as sc
from ragotel.instrumentation.qdrant import QdrantInstrumentor
from ragotel.testing import Capture, capture

DIM = 3
# Distinctive values: if any of them shows up in an exported attribute, content leaked.
SECRETS = ("secret-doc", "tenant-filter", "1234567", "7654321")


def _vector(i: int) -> list[float]:
    return [0.1234567 + i, 0.7654321, float(i % 3)]


def _points(n: int, start: int = 0) -> list[models.PointStruct]:
    return [
        models.PointStruct(id=i, vector=_vector(i), payload={"text": f"secret-doc-{i}", "t": "tenant-filter"})
        for i in range(start, start + n)
    ]


def _client(n: int = 5) -> QdrantClient:
    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    if n:
        client.upsert("docs", points=_points(n))
    return client


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(QdrantInstrumentor)


@pytest.fixture
def cap_content(instrumented: Instrumented) -> Capture:
    return instrumented(QdrantInstrumentor, capture_content=True)


def _attrs(cap: Capture, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


def _filter() -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="t", match=models.MatchValue(value="tenant-filter"))])


def test_point_operations_make_one_client_span_each(cap: Capture) -> None:
    """Each public point method gives one CLIENT span named `{method} {collection}` with exact db attributes."""
    client = _client(0)
    client.upsert("docs", points=_points(5))
    result = client.query_points("docs", query=_vector(1), limit=3)
    client.query_batch_points("docs", requests=[models.QueryRequest(query=_vector(0), limit=2)] * 2)
    client.query_points_groups("docs", query=_vector(2), group_by="t", limit=2, group_size=2)
    client.scroll("docs", limit=4)
    assert client.count("docs").count == 5
    client.retrieve("docs", ids=[1, 2])
    client.set_payload("docs", payload={"k": 1}, points=[0])
    client.delete("docs", points_selector=models.PointIdsList(points=[3, 4]))

    methods = [
        "upsert",
        "query_points",
        "query_batch_points",
        "query_points_groups",
        "scroll",
        "count",
        "retrieve",
        "set_payload",
        "delete",
    ]
    assert [s.name for s in cap.spans()] == [f"{m} docs" for m in methods]
    for span in cap.spans():
        attrs = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT
        assert attrs[sc.DB_SYSTEM_NAME] == "qdrant"
        assert attrs[sc.DB_COLLECTION_NAME] == "docs"
        assert attrs[sc.RAGOTEL_STAGE] == "vector_db"
        assert attrs[sc.RAGOTEL_COMPONENT] == "qdrant"
        assert sc.SERVER_ADDRESS not in attrs  # local mode: no server
    assert _attrs(cap, "upsert docs")[sc.DB_OPERATION_BATCH_SIZE] == 5
    query = _attrs(cap, "query_points docs")
    assert query[sc.DB_OPERATION_NAME] == "query_points"
    assert query[sc.RAGOTEL_DB_TOP_K] == 3
    assert query[sc.DB_RESPONSE_RETURNED_ROWS] == 3
    assert isinstance(query[sc.RAGOTEL_DB_TOP_SCORE], float)
    assert query[sc.RAGOTEL_DB_TOP_SCORE] == pytest.approx(result.points[0].score)
    batch = _attrs(cap, "query_batch_points docs")
    assert batch[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert batch[sc.DB_RESPONSE_RETURNED_ROWS] == 4
    groups = _attrs(cap, "query_points_groups docs")
    assert groups[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    assert isinstance(groups[sc.RAGOTEL_DB_TOP_SCORE], float)
    assert _attrs(cap, "scroll docs")[sc.DB_RESPONSE_RETURNED_ROWS] == 4
    retrieve = _attrs(cap, "retrieve docs")
    assert retrieve[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert retrieve[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    assert _attrs(cap, "delete docs")[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert sc.DB_OPERATION_BATCH_SIZE not in _attrs(cap, "set_payload docs")  # one point is not a batch


def test_span_is_the_callers_child_and_metrics_recorded(cap: Capture) -> None:
    """A query made under the caller's span is its child; db.client.operation.duration carries the db labels."""
    client = _client()
    cap.clear()
    with cap.tracer_provider.get_tracer("test").start_as_current_span("caller") as caller:
        client.query_points("docs", query=_vector(0), limit=1)
    span = cap.span("query_points docs")
    assert span.parent is not None
    assert span.parent.span_id == caller.get_span_context().span_id
    points = [
        p for p in cap.metrics(sc.M_DB_OPERATION_DURATION) if p.attributes[sc.DB_OPERATION_NAME] == "query_points"
    ]
    assert [p.attributes for p in points] == [
        {sc.DB_SYSTEM_NAME: "qdrant", sc.DB_OPERATION_NAME: "query_points", sc.DB_COLLECTION_NAME: "docs"}
    ]


def test_generators_passed_by_the_caller_are_never_consumed(cap: Capture) -> None:
    """upload_points(points=<generator>) and upload_collection(vectors=<generator>) store every point (10 of 10)."""
    client = _client(0)
    client.upload_points("docs", points=(p for p in _points(10)), batch_size=3, wait=True)
    assert client.count("docs").count == 10
    client.upload_collection(
        "docs",
        vectors=(_vector(i) for i in range(10, 20)),
        ids=iter(range(10, 20)),
        payload=({"text": f"secret-doc-{i}"} for i in range(10)),
        batch_size=4,
        wait=True,
    )
    assert client.count("docs").count == 20
    for name in ("upload_points docs", "upload_collection docs"):
        attrs = _attrs(cap, name)
        assert sc.DB_OPERATION_BATCH_SIZE not in attrs  # a generator has no length, and is never counted by us
    client.upload_points("docs", points=_points(4, start=20))
    assert len(cap.spans("upload_points docs")) == 2
    assert cap.spans("upload_points docs")[1].attributes[sc.DB_OPERATION_BATCH_SIZE] == 4  # type: ignore[index]


async def test_async_client_spans_cover_the_awaited_call(cap: Capture) -> None:
    """AsyncQdrantClient spans start before and end after the awaited work (not at coroutine creation)."""
    client = AsyncQdrantClient(":memory:")
    await client.create_collection("docs", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    points = _points(3000)
    before = time.time_ns()
    await client.upsert("docs", points=points)
    after = time.time_ns()
    span = cap.span("upsert docs")
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time <= span.end_time <= after
    assert (span.end_time - span.start_time) >= 0.5 * (after - before)
    assert dict(span.attributes or {})[sc.DB_OPERATION_BATCH_SIZE] == 3000
    result = await client.query_points("docs", query=_vector(2), limit=4)
    query = _attrs(cap, "query_points docs")
    assert query[sc.DB_RESPONSE_RETURNED_ROWS] == 4
    assert query[sc.RAGOTEL_DB_TOP_SCORE] == pytest.approx(result.points[0].score)
    client.upload_points("docs", points=(p for p in _points(10, start=5000)))  # sync on the async client
    assert (await client.count("docs")).count == 3010
    assert [s.name for s in cap.spans()][-2:] == ["upload_points docs", "count docs"]
    await client.close()


async def test_async_remote_timeout_span_lasts_the_whole_wait(cap: Capture, hanging_server: HangingServer) -> None:
    """Against a server that never answers, the async span lasts the ~1 s timeout and ends ERROR with error.type."""
    client = AsyncQdrantClient(url=hanging_server.url, timeout=1, check_compatibility=False)
    started = time.monotonic()
    with pytest.raises(ResponseHandlingException):
        await client.query_points("docs", query=_vector(0), limit=2)
    waited = time.monotonic() - started
    span = cap.span("query_points docs")
    assert span.start_time is not None
    assert span.end_time is not None
    duration = (span.end_time - span.start_time) / 1e9
    assert duration >= 0.9
    assert duration >= 0.9 * waited
    assert span.status.status_code is StatusCode.ERROR
    attrs = dict(span.attributes or {})
    assert attrs[sc.ERROR_TYPE] == "qdrant_client.http.exceptions.ResponseHandlingException"
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[sc.SERVER_PORT] == hanging_server.port
    await client.close()


def test_sync_error_sets_status_and_error_type(cap: Capture) -> None:
    """A query on a missing collection re-raises Qdrant's error and ends the span ERROR with its error.type."""
    client = _client(0)
    with pytest.raises(ValueError, match="not found"):
        client.query_points("missing", query=_vector(0))
    span = cap.span("query_points missing")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "ValueError"


def test_suppressed_instrumentation_makes_no_spans(cap: Capture) -> None:
    """Inside suppress_instrumentation() Qdrant calls work and no span is made."""
    client = _client()
    cap.clear()
    with suppress_instrumentation():
        assert len(client.query_points("docs", query=_vector(0), limit=2).points) == 2
    assert cap.spans() == []


def test_uninstrument_restores_originals_and_stops_spans() -> None:
    """After uninstrument() the client methods are the original functions again and no span is made."""
    sync_original = QdrantClient.__dict__["query_points"]
    async_original = AsyncQdrantClient.__dict__["query_points"]
    upload_original = QdrantClient.__dict__["upload_points"]
    with capture() as cap:
        inst = QdrantInstrumentor()
        inst.instrument()
        assert QdrantClient.__dict__["query_points"] is not sync_original
        inst.uninstrument()
        assert QdrantClient.__dict__["query_points"] is sync_original
        assert AsyncQdrantClient.__dict__["query_points"] is async_original
        assert QdrantClient.__dict__["upload_points"] is upload_original
        _client().query_points("docs", query=_vector(0))
        assert cap.spans() == []


def test_instrument_twice_does_not_double_spans(cap: Capture) -> None:
    """A second instrument() is a no-op: one call, one span."""
    QdrantInstrumentor().instrument()
    client = _client()
    cap.clear()
    client.count("docs")
    assert len(cap.spans()) == 1


def test_failing_extractor_returns_the_same_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """A response extractor that raises never reaches the caller: the call returns the very object Qdrant returned."""
    seen = break_response_extractors(
        monkeypatch, QdrantInstrumentor, lambda method: method == "QdrantClient.query_points"
    )
    with capture() as cap:
        inst = QdrantInstrumentor()
        inst.instrument()
        try:
            client = _client()
            result = client.query_points("docs", query=_vector(0), limit=2)
        finally:
            inst.uninstrument()
    assert result is seen[0]
    assert len(result.points) == 2
    assert cap.span("query_points docs").end_time is not None


def test_content_off_records_no_payloads_filters_or_vectors(cap: Capture) -> None:
    """With content capture off no payload text, filter value or vector value appears in any exported attribute."""
    client = _client()
    client.query_points("docs", query=_vector(1), query_filter=_filter(), limit=3, with_vectors=True)
    client.scroll("docs", scroll_filter=_filter(), with_vectors=True)
    client.count("docs", count_filter=_filter())
    client.delete("docs", points_selector=models.FilterSelector(filter=_filter()))
    assert len(cap.spans()) == 5
    dump = exported_values(cap)
    for secret in SECRETS:
        assert secret not in dump


def test_content_on_records_filters_and_payloads_never_vectors(cap_content: Capture) -> None:
    """With content capture on, the filter and result payloads are recorded; vectors still never are."""
    client = _client()
    client.query_points("docs", query=_vector(1), query_filter=_filter(), limit=3, with_vectors=True)
    attrs = _attrs(cap_content, "query_points docs")
    assert "tenant-filter" in attrs[sc.DB_QUERY_TEXT]
    assert "secret-doc-1" in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    dump = exported_values(cap_content)
    assert "1234567" not in dump
    assert "7654321" not in dump
