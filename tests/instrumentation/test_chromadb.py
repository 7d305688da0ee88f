"""Chroma instrumentation against real embedded clients and a real `chroma run` server on 127.0.0.1."""

from __future__ import annotations

import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.api.models.AsyncCollection import AsyncCollection
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import Instrumented, break_response_extractors, exported_values
from tests.servers._process import ManagedProcess, ProcessServer

from ragotel import semconv as sc
from ragotel.instrumentation import chromadb as chroma_inst
from ragotel.instrumentation.chromadb import ChromaInstrumentor
from ragotel.testing import Capture, capture

# Distinctive values: if any of them shows up in an exported attribute, content leaked.
VECTORS = [[0.1234567, 0.7654321, 0.0], [0.0, 0.1111119, 0.9999917], [0.5555553, 0.0, 0.4444447]]
QUERY_VECTOR = [0.9876543, 0.0123457, 0.0]
DOCUMENTS = ["secret-doc-alpha", "secret-doc-beta", "secret-doc-gamma"]
SECRETS = ("secret-doc", "secret-query", "1234567", "7654321", "9876543", "0123457", "tenant-filter")


def _settings() -> Settings:
    # A fresh object per client: HttpClient writes its host and API implementation into the settings it is given.
    return Settings(anonymized_telemetry=False)


class ChromaServer(ProcessServer):
    """A real Chroma server (`chroma run`, shipped with the chromadb wheel) on a free port, data in a temp dir."""

    def start(self) -> None:
        binary = shutil.which("chroma")
        if binary is None:
            raise RuntimeError("the `chroma` CLI is missing: `pip install chromadb` provides it")
        argv = [binary, "run", "--path", str(self.tmp_path / "data"), "--host", self.host, "--port", str(self.port)]
        self._launch(ManagedProcess(argv, self.tmp_path / "chroma.log"), self._ready)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/api/v2/heartbeat", timeout=0.5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


class KeywordEmbedding(chromadb.EmbeddingFunction):  # type: ignore[type-arg]
    """A deterministic local embedding function (Chroma's default one would download a model)."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Any) -> Any:
        return [[float(len(text)), 1.0, 0.0] for text in input]

    @staticmethod
    def name() -> str:
        return "keyword-test"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> KeywordEmbedding:
        return KeywordEmbedding()


@pytest.fixture(scope="module")
def chroma_server() -> Iterator[ChromaServer]:
    with ChromaServer() as server:
        yield server


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(ChromaInstrumentor)


@pytest.fixture
def cap_content(instrumented: Instrumented) -> Capture:
    return instrumented(ChromaInstrumentor, capture_content=True)


def _collection(client: Any, **kwargs: Any) -> Collection:
    return client.create_collection(f"c-{uuid.uuid4().hex[:12]}", embedding_function=None, **kwargs)


def _filled(client: Any) -> Collection:
    col = _collection(client)
    col.add(ids=["a", "b", "c"], embeddings=VECTORS, documents=DOCUMENTS)
    return col


def _attrs(cap: Capture, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


def test_every_operation_makes_one_client_span_with_db_semconv(cap: Capture) -> None:
    """add/upsert/update/query/get/peek/count/delete on an ephemeral client each give one CLIENT span, exact types."""
    client = chromadb.EphemeralClient(settings=_settings())
    col = _filled(client)
    name = col.name
    col.upsert(ids=["d", "e"], embeddings=[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    col.update(ids="a", embeddings=[VECTORS[0]])
    result = col.query(query_embeddings=[QUERY_VECTOR], n_results=2)
    col.get(ids=["a", "b"])
    col.peek(limit=3)
    assert col.count() == 5
    col.delete(ids=["e"])

    names = [s.name for s in cap.spans()]
    ops = ["add", "upsert", "update", "query", "get", "peek", "count", "delete"]
    assert names == [f"{op} {name}" for op in ops]
    for span in cap.spans():
        attrs = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT
        assert attrs[sc.DB_SYSTEM_NAME] == "chroma"
        assert attrs[sc.DB_COLLECTION_NAME] == name
        assert attrs[sc.RAGOTEL_STAGE] == "vector_db"
        assert attrs[sc.RAGOTEL_COMPONENT] == "chromadb"
        assert sc.SERVER_ADDRESS not in attrs  # embedded: no server
    assert _attrs(cap, f"add {name}")[sc.DB_OPERATION_BATCH_SIZE] == 3
    assert _attrs(cap, f"upsert {name}")[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert sc.DB_OPERATION_BATCH_SIZE not in _attrs(cap, f"update {name}")  # one record is not a batch
    query = _attrs(cap, f"query {name}")
    assert query[sc.DB_OPERATION_NAME] == "query"
    assert query[sc.RAGOTEL_DB_TOP_K] == 2
    assert query[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    best = query[sc.RAGOTEL_DB_BEST_DISTANCE]
    assert isinstance(best, float)
    assert best == pytest.approx(float(result["distances"][0][0]))  # type: ignore[index]
    assert _attrs(cap, f"get {name}")[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    assert sc.RAGOTEL_DB_TOP_K not in _attrs(cap, f"get {name}")  # no limit sent: no default recorded
    assert _attrs(cap, f"peek {name}")[sc.RAGOTEL_DB_TOP_K] == 3
    assert _attrs(cap, f"peek {name}")[sc.DB_RESPONSE_RETURNED_ROWS] == 3


def test_batch_query_counts_queries_and_rows(cap: Capture) -> None:
    """A two-query call is a batch of 2; returned rows sum both result lists; best distance is the nearest of all."""
    col = _filled(chromadb.EphemeralClient(settings=_settings()))
    result = col.query(query_embeddings=[QUERY_VECTOR, VECTORS[1]], n_results=3)
    attrs = _attrs(cap, f"query {col.name}")
    assert attrs[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert attrs[sc.DB_RESPONSE_RETURNED_ROWS] == 6
    distances = result["distances"]
    assert distances is not None
    assert attrs[sc.RAGOTEL_DB_BEST_DISTANCE] == pytest.approx(min(float(d[0]) for d in distances))


def test_persistent_client_span_is_the_callers_child_and_metrics(cap: Capture, tmp_path: Path) -> None:
    """On a persistent client the query span is a child of the caller's span, and db/stage metrics are recorded."""
    col = _filled(chromadb.PersistentClient(path=str(tmp_path), settings=_settings()))
    tracer = cap.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        col.query(query_embeddings=QUERY_VECTOR, n_results=1)
    span = cap.span(f"query {col.name}")
    assert span.parent is not None
    assert span.parent.span_id == caller.get_span_context().span_id
    assert span.context.trace_id == caller.get_span_context().trace_id
    points = [p for p in cap.metrics(sc.M_DB_OPERATION_DURATION) if p.attributes[sc.DB_OPERATION_NAME] == "query"]
    assert len(points) == 1
    assert points[0].count == 1
    assert points[0].attributes == {
        sc.DB_SYSTEM_NAME: "chroma",
        sc.DB_OPERATION_NAME: "query",
        sc.DB_COLLECTION_NAME: col.name,
    }
    assert cap.metrics(sc.M_STAGE_DURATION) == []  # a vector_db step's duration is db.client.operation.duration


def test_error_sets_status_and_error_type(cap: Capture) -> None:
    """A rejected add (wrong dimension) re-raises Chroma's own exception and ends the span as ERROR with error.type."""
    col = _filled(chromadb.EphemeralClient(settings=_settings()))
    cap.clear()
    with pytest.raises(Exception) as info:
        col.add(ids=["x"], embeddings=[[1.0, 2.0]])
    span = cap.span(f"add {col.name}")
    assert span.status.status_code is StatusCode.ERROR
    error_type = dict(span.attributes or {})[sc.ERROR_TYPE]
    assert error_type == f"{type(info.value).__module__}.{type(info.value).__qualname__}"
    points = [p for p in cap.metrics(sc.M_DB_OPERATION_DURATION) if p.attributes.get(sc.ERROR_TYPE)]
    assert [p.attributes[sc.ERROR_TYPE] for p in points] == [error_type]


def test_http_client_records_server_and_async_collection(cap: Capture, chroma_server: ChromaServer) -> None:
    """A sync HttpClient span carries server.address/port of the real server."""
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server.port, settings=_settings())
    col = _filled(client)
    col.query(query_embeddings=[QUERY_VECTOR], n_results=1)
    attrs = _attrs(cap, f"query {col.name}")
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[sc.SERVER_PORT] == chroma_server.port
    assert attrs[sc.DB_RESPONSE_RETURNED_ROWS] == 1


async def test_async_collection_spans_cover_the_await(cap: Capture, chroma_server: ChromaServer) -> None:
    """AsyncCollection calls give spans that enclose the awaited request, success and server-side error alike."""
    client = await chromadb.AsyncHttpClient(host="127.0.0.1", port=chroma_server.port, settings=_settings())
    col = await client.create_collection(f"a-{uuid.uuid4().hex[:12]}", embedding_function=None)
    assert isinstance(col, AsyncCollection)
    await col.add(ids=["a", "b", "c"], embeddings=VECTORS)
    before = time.time_ns()
    result = await col.query(query_embeddings=[QUERY_VECTOR], n_results=2)
    after = time.time_ns()
    assert len(result["ids"][0]) == 2
    span = cap.span(f"query {col.name}")
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time <= span.end_time <= after
    # The span must cover the awaited HTTP round trip, not just the creation of the coroutine.
    assert (span.end_time - span.start_time) >= 0.5 * (after - before)
    attrs = dict(span.attributes or {})
    assert attrs[sc.SERVER_PORT] == chroma_server.port
    assert attrs[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    assert await col.count() == 3
    with pytest.raises(Exception):
        await col.query(query_embeddings=[[1.0, 2.0]], n_results=1)
    failed = [s for s in cap.spans(f"query {col.name}") if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert sc.ERROR_TYPE in (failed[0].attributes or {})
    assert len(cap.spans(f"count {col.name}")) == 1


def test_suppressed_instrumentation_makes_no_spans(cap: Capture) -> None:
    """Inside suppress_instrumentation() Chroma calls work and no span is made."""
    col = _filled(chromadb.EphemeralClient(settings=_settings()))
    cap.clear()
    with suppress_instrumentation():
        col.query(query_embeddings=[QUERY_VECTOR], n_results=1)
    assert cap.spans() == []


def test_uninstrument_restores_originals_and_stops_spans() -> None:
    """After uninstrument() the collection methods are the original functions again and no span is made."""
    originals = {name: Collection.__dict__[name] for name in ("add", "query", "get", "count")}
    async_original = AsyncCollection.__dict__["query"]
    with capture() as cap:
        inst = ChromaInstrumentor()
        inst.instrument()
        assert Collection.__dict__["query"] is not originals["query"]
        inst.uninstrument()
        for name, original in originals.items():
            assert Collection.__dict__[name] is original
        assert AsyncCollection.__dict__["query"] is async_original
        col = _filled(chromadb.EphemeralClient(settings=_settings()))
        col.query(query_embeddings=[QUERY_VECTOR], n_results=1)
        assert cap.spans() == []


def test_instrument_twice_does_not_double_spans(cap: Capture) -> None:
    """A second instrument() is a no-op: one call, one span."""
    ChromaInstrumentor().instrument()
    col = _collection(chromadb.EphemeralClient(settings=_settings()))
    col.add(ids=["a"], embeddings=[VECTORS[0]])
    assert len(cap.spans()) == 1


def test_failing_extractors_return_the_same_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """A response extractor that raises never reaches the caller: query returns the very object Chroma returned."""
    seen = break_response_extractors(monkeypatch, ChromaInstrumentor, lambda method: method.endswith(".query"))
    monkeypatch.setattr(chroma_inst, "_common", lambda *a: 1 / 0)  # the request side fails too, for `add`
    with capture() as cap:
        inst = ChromaInstrumentor()
        inst.instrument()
        try:
            client = chromadb.EphemeralClient(settings=_settings())
            col = _collection(client)
            col.add(ids=["a"], embeddings=[VECTORS[0]])  # request extractor fails: call goes through untraced
            monkeypatch.setattr(chroma_inst, "_common", lambda instance, op: {sc.DB_OPERATION_NAME: op})
            result = col.query(query_embeddings=[QUERY_VECTOR], n_results=1)
        finally:
            inst.uninstrument()
    assert seen
    assert result is seen[0]
    assert result["ids"] == [["a"]]
    assert [s.name for s in cap.spans()] == ["query"]  # the span still ended


def test_content_off_records_no_documents_vectors_or_queries(cap: Capture) -> None:
    """With content capture off no document, query text, filter or vector value appears in any exported attribute."""
    col = chromadb.EphemeralClient(settings=_settings()).create_collection(
        f"t-{uuid.uuid4().hex[:12]}", embedding_function=KeywordEmbedding()
    )
    col.add(ids=["a", "b", "c"], embeddings=VECTORS, documents=DOCUMENTS, metadatas=[{"t": "tenant-filter"}] * 3)
    col.query(query_texts=["secret-query"], n_results=2, where={"t": "tenant-filter"})
    col.query(query_embeddings=[QUERY_VECTOR], n_results=2, include=["documents", "embeddings", "distances"])
    col.get(where={"t": "tenant-filter"}, include=["documents", "embeddings"])
    col.delete(where={"t": "tenant-filter"})
    assert len(cap.spans()) == 5
    dump = exported_values(cap)
    for secret in SECRETS:
        assert secret not in dump


def test_content_on_records_texts_and_documents_but_never_vectors(cap_content: Capture) -> None:
    """With content capture on, query text, filters and documents are recorded; embeddings still never are."""
    col = chromadb.EphemeralClient(settings=_settings()).create_collection(
        f"t-{uuid.uuid4().hex[:12]}", embedding_function=KeywordEmbedding()
    )
    col.add(ids=["a", "b", "c"], embeddings=VECTORS, documents=DOCUMENTS, metadatas=[{"t": "tenant-filter"}] * 3)
    col.query(
        query_texts=["secret-query"], n_results=2, where={"t": "tenant-filter"}, include=["documents", "embeddings"]
    )
    attrs = _attrs(cap_content, f"query {col.name}")
    assert "secret-query" in attrs[sc.DB_QUERY_TEXT]
    assert "tenant-filter" in attrs[sc.DB_QUERY_TEXT]
    assert "secret-doc" in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    dump = exported_values(cap_content)
    for vector_digits in ("1234567", "7654321", "1111119", "9999917"):
        assert vector_digits not in dump
