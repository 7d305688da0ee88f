"""Milvus instrumentation with the real pymilvus MilvusClient on Milvus Lite (a local file; its server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from pymilvus import AsyncMilvusClient, MilvusClient
from pymilvus.exceptions import MilvusException
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    break_response_extractors,
    exported_values,
    traced_without,
)

from ragotel import semconv as sc
from ragotel.instrumentation.milvus import MilvusInstrumentor
from ragotel.testing import Capture, capture

VECTOR_VALUE = 0.123456789


def _rows(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "vector": [VECTOR_VALUE, 0.2 + i / 10, 0.3, 0.4], "text": f"secret-doc {i}"}
        for i in range(start, start + n)
    ]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusClient]:
    milvus = MilvusClient(str(tmp_path_factory.mktemp("milvus") / "lite.db"))
    milvus.create_collection("docs", dimension=4)
    milvus.insert("docs", _rows(0, 10))
    yield milvus
    milvus.close()


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(MilvusInstrumentor)


def _attrs(cap: Capture, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


def _server(client: MilvusClient) -> dict[str, Any]:
    host, port = client._config.address.rsplit(":", 1)
    return {sc.SERVER_ADDRESS: host, sc.SERVER_PORT: int(port)}


def test_search_span(cap: Capture, client: MilvusClient) -> None:
    """search(limit=3) is one CLIENT span with db attributes, the loopback server, top_k, rows and the best hit."""
    hits = client.search("docs", data=[[VECTOR_VALUE, 0.2, 0.3, 0.4]], limit=3, output_fields=["text"])
    span = cap.span("search docs")
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        sc.RAGOTEL_STAGE: "vector_db",
        sc.RAGOTEL_COMPONENT: "milvus",
        sc.DB_SYSTEM_NAME: "milvus",
        sc.DB_OPERATION_NAME: "search",
        sc.DB_COLLECTION_NAME: "docs",
        sc.RAGOTEL_DB_TOP_K: 3,
        sc.DB_RESPONSE_RETURNED_ROWS: 3,
        sc.RAGOTEL_DB_TOP_SCORE: pytest.approx(hits[0][0]["distance"]),
        **_server(client),
    }
    assert type(_attrs(cap, "search docs")[sc.RAGOTEL_DB_TOP_SCORE]) is float
    points = cap.metrics(sc.M_DB_OPERATION_DURATION)
    assert [p.attributes for p in points] == [
        {
            sc.DB_SYSTEM_NAME: "milvus",
            sc.DB_OPERATION_NAME: "search",
            sc.DB_COLLECTION_NAME: "docs",
            sc.SERVER_ADDRESS: "127.0.0.1",
        }
    ]


def test_batch_search_query_get_and_writes(cap: Capture, client: MilvusClient) -> None:
    """A two-query search, query, get, insert, upsert and delete are one span each with batch sizes and rows."""
    client.search("docs", data=[[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], limit=2)
    client.query("docs", filter="id < 3")
    client.get("docs", ids=[1, 2])
    client.insert("docs", _rows(100, 3))
    client.upsert("docs", _rows(100, 2))
    client.delete("docs", ids=[100, 101, 102])
    assert [s.name for s in cap.spans()] == [
        f"{op} docs" for op in ("search", "query", "get", "insert", "upsert", "delete")
    ]
    search = _attrs(cap, "search docs")
    assert search[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert search[sc.DB_RESPONSE_RETURNED_ROWS] == 4
    assert sc.RAGOTEL_DB_TOP_SCORE not in search  # several queries: no one best
    assert _attrs(cap, "query docs")[sc.DB_RESPONSE_RETURNED_ROWS] == 3
    assert _attrs(cap, "get docs")[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert _attrs(cap, "insert docs")[sc.DB_OPERATION_BATCH_SIZE] == 3
    assert _attrs(cap, "delete docs")[sc.DB_OPERATION_BATCH_SIZE] == 3


async def test_async_client(cap: Capture, client: MilvusClient) -> None:
    """AsyncMilvusClient against the same server: search is awaited inside its span, with its results read."""
    aclient = AsyncMilvusClient(uri=client._config.uri)
    try:
        hits = await aclient.search("docs", data=[[VECTOR_VALUE, 0.2, 0.3, 0.4]], limit=2)
    finally:
        await aclient.close()
    span = cap.span("search docs")
    assert dict(span.attributes or {})[sc.DB_RESPONSE_RETURNED_ROWS] == len(hits[0]) == 2
    assert span.end_time is not None
    assert span.end_time - span.start_time > 0


def test_error_sets_status_and_error_type(cap: Capture, client: MilvusClient) -> None:
    """A search of a missing collection re-raises pymilvus's error and ends the span ERROR with error.type."""
    with pytest.raises(MilvusException):
        client.search("missing", data=[[0.1, 0.2, 0.3, 0.4]], limit=1)
    span = cap.span("search missing")
    assert span.status.status_code is StatusCode.ERROR
    assert "Exception" in dict(span.attributes or {})[sc.ERROR_TYPE]


def test_suppressed_instrumentation_makes_no_spans(cap: Capture, client: MilvusClient) -> None:
    """Inside suppress_instrumentation() search and query work and no span is made."""
    with suppress_instrumentation():
        assert len(client.search("docs", data=[[0.1, 0.2, 0.3, 0.4]], limit=1)[0]) == 1
        client.query("docs", filter="id < 2")
    assert cap.spans() == []


def test_uninstrument_restores_and_instrument_twice(client: MilvusClient) -> None:
    """A second instrument() adds no second span; after uninstrument() search is the original and silent."""
    original = MilvusClient.__dict__["search"]
    with capture() as cap:
        inst = MilvusInstrumentor()
        inst.instrument()
        MilvusInstrumentor().instrument()
        client.search("docs", data=[[0.1, 0.2, 0.3, 0.4]], limit=1)
        assert len(cap.spans()) == 1
        inst.uninstrument()
        assert MilvusClient.__dict__["search"] is original
        client.search("docs", data=[[0.1, 0.2, 0.3, 0.4]], limit=1)
        assert len(cap.spans()) == 1


def test_failing_extractor_returns_the_same_object(monkeypatch: pytest.MonkeyPatch, client: MilvusClient) -> None:
    """A search response extractor that raises never reaches the caller: search returns the very result it built."""
    seen = break_response_extractors(monkeypatch, MilvusInstrumentor, lambda m: m == "MilvusClient.search")
    with capture() as cap:
        inst = MilvusInstrumentor()
        inst.instrument()
        try:
            result = client.search("docs", data=[[0.1, 0.2, 0.3, 0.4]], limit=2)
        finally:
            inst.uninstrument()
    assert result is seen[0]
    assert len(result[0]) == 2
    assert cap.span("search docs").end_time is not None


def test_unknown_version_missing_a_method_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, client: MilvusClient
) -> None:
    """A pymilvus without hybrid_search (a version we do not know) is reported at DEBUG; search is still traced."""

    def call() -> None:
        client.search("docs", data=[[0.1, 0.2, 0.3, 0.4]], limit=1)

    cap = traced_without(monkeypatch, caplog, MilvusInstrumentor, (MilvusClient, "hybrid_search"), call)
    assert [s.name for s in cap.spans()] == ["search docs"]


def test_content_off_records_no_entities_filters_or_vectors(cap: Capture, client: MilvusClient) -> None:
    """With content capture off no entity text, filter or vector value appears in any exported value."""
    client.search("docs", data=[[0.1, 0.2, 0.3, 0.4]], limit=2, output_fields=["text", "vector"])
    client.query("docs", filter="text == 'secret-filter'", output_fields=["text", "vector"])
    client.get("docs", ids=[1])
    dump = exported_values(cap)
    assert "secret-" not in dump
    assert str(VECTOR_VALUE)[:8] not in dump


def test_content_on_records_entities_and_filters_never_vectors(
    instrumented: Instrumented, client: MilvusClient
) -> None:
    """With content capture on the filter and the scalar fields of hits are recorded; vectors are not."""
    cap = instrumented(MilvusInstrumentor, capture_content=True)
    client.search("docs", data=[[0.1, 0.2, 0.3, 0.4]], limit=2, filter="id < 5", output_fields=["text", "vector"])
    attrs = _attrs(cap, "search docs")
    assert attrs[sc.DB_QUERY_TEXT] == "id < 5"
    assert "secret-doc" in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    assert '"distance"' in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    assert str(VECTOR_VALUE)[:8] not in exported_values(cap)
