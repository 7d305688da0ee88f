"""LangChain vector stores without an instrumented client (a real VectorStore subclass) and with Chroma underneath,
and `RunnableSequence.batch` pipelines, with real langchain-core, langchain-chroma and chromadb."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Any

import chromadb
import pytest
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import VectorStore
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    exported_values,
    parent_id,
    span_attributes,
    spans_of_stage,
)

import ragotel
from ragotel import semconv as sc
from ragotel.instrumentation.chromadb import ChromaInstrumentor
from ragotel.instrumentation.langchain import LangChainInstrumentor
from ragotel.instrumentation.langchain import stores as lc_stores
from ragotel.testing import Capture, capture

pytestmark = pytest.mark.timeout(60)

QUESTION = "otter-question-5521"
TEXTS = [f"plum-passage-{i} on subject {i}" for i in range(6)]
SEARCH = "similarity_search notes"


class TinyStore(VectorStore):
    """A store of its own (no client any instrumentation knows): cosine similarity over a Python list."""

    def __init__(self, embedding: Embeddings, *, fail: bool = False) -> None:
        self.collection_name = "notes"
        self._embedding = embedding
        self._rows: list[tuple[Document, list[float]]] = []
        self.fail = fail

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict[Any, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        texts = list(texts)
        ids = [f"t{len(self._rows) + i}" for i in range(len(texts))]
        for doc_id, text, vector in zip(ids, texts, self._embedding.embed_documents(texts), strict=True):
            self._rows.append((Document(id=doc_id, page_content=text), vector))
        return ids

    @classmethod
    def from_texts(
        cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[Any, Any]] | None = None, **kwargs: Any
    ) -> TinyStore:
        store = cls(embedding)
        store.add_texts(texts)
        return store

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        if self.fail:
            raise ConnectionError("store offline")
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k)

    def similarity_search_with_score_by_vector(self, vector: list[float], k: int = 4) -> list[tuple[Document, float]]:
        def cosine(other: list[float]) -> float:
            dot = sum(a * b for a, b in zip(vector, other, strict=True))
            return dot / (math.sqrt(sum(a * a for a in vector)) * math.sqrt(sum(b * b for b in other)))

        scored = sorted(((doc, cosine(vec)) for doc, vec in self._rows), key=lambda pair: -pair[1])
        return scored[:k]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k)]

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        return self.similarity_search(query, k)

    def _select_relevance_score_fn(self) -> Any:
        return lambda similarity: (similarity + 1.0) / 2.0


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(LangChainInstrumentor)


def _store(**kwargs: Any) -> TinyStore:
    store = TinyStore(DeterministicFakeEmbedding(size=16), **kwargs)
    store.add_texts(TEXTS)
    return store


# -- a store with no instrumented client --------------------------------------------------------------------------
def test_unknown_store_search_is_one_backdated_vector_db_span(cap: Capture) -> None:
    """`similarity_search` on a store of its own is one CLIENT vector_db span (nested searches inside count once),
    the caller's child, covering the whole call, with db attributes and the rows returned."""
    store = _store()
    cap.clear()
    with cap.tracer_provider.get_tracer("t").start_as_current_span("caller") as caller:
        docs = store.similarity_search(QUESTION, k=3)
    assert len(docs) == 3
    [span] = spans_of_stage(cap, "vector_db")
    assert span.name == SEARCH
    assert span.kind is SpanKind.CLIENT
    assert parent_id(span) == caller.get_span_context().span_id
    attrs = span_attributes(span)
    assert attrs[sc.RAGOTEL_COMPONENT] == "langchain"
    assert attrs[sc.DB_SYSTEM_NAME] == "tinystore"
    assert attrs[sc.DB_OPERATION_NAME] == "similarity_search"
    assert attrs[sc.DB_COLLECTION_NAME] == "notes"
    assert attrs[sc.RAGOTEL_DB_TOP_K] == 3
    assert attrs[sc.DB_RESPONSE_RETURNED_ROWS] == 3
    assert sc.RAGOTEL_DB_TOP_SCORE not in attrs  # a raw score's direction is the store's business
    [embedding] = spans_of_stage(cap, "embedding")
    assert span.start_time is not None
    assert embedding.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= embedding.start_time
    assert embedding.end_time <= span.end_time
    [point] = [p for p in cap.metrics(sc.M_DB_OPERATION_DURATION) if p.attributes[sc.DB_SYSTEM_NAME] == "tinystore"]
    assert point.count == 1


def test_retriever_paths_and_relevance_score(cap: Capture) -> None:
    """`as_retriever` (similarity, mmr, score threshold) gives a retrieval span with one vector_db child each;
    relevance-scored searches carry the best score."""
    store = _store()
    for search_type, kwargs in (
        ("similarity", {"k": 2}),
        ("mmr", {"k": 2}),
        ("similarity_score_threshold", {"score_threshold": 0.0, "k": 2}),
    ):
        cap.clear()
        store.as_retriever(search_type=search_type, search_kwargs=kwargs).invoke(QUESTION)
        [retrieval] = spans_of_stage(cap, "retrieval")
        [db] = spans_of_stage(cap, "vector_db")
        assert parent_id(db) == retrieval.context.span_id, search_type
        assert span_attributes(db)[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    assert span_attributes(db)[sc.DB_OPERATION_NAME] == "similarity_search_with_score"  # under the scored retrieval
    cap.clear()
    pairs = store.similarity_search_with_relevance_scores(QUESTION, k=2)
    [db] = spans_of_stage(cap, "vector_db")
    assert sc.RAGOTEL_DB_TOP_SCORE not in span_attributes(
        db
    )  # the raw inner search; the retrieval span has the relevance
    [retrieval] = spans_of_stage(cap, "retrieval")
    assert span_attributes(retrieval)[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(max(s for _, s in pairs))


async def test_async_searches_one_span_each(cap: Capture) -> None:
    """Async searches (LangChain's executor defaults) are one vector_db span each, the awaiting caller's child."""
    store = _store()
    cap.clear()
    await store.asimilarity_search(QUESTION, k=2)
    await store.amax_marginal_relevance_search(QUESTION, k=1)
    await store.as_retriever().ainvoke(QUESTION)
    names = [span_attributes(s)[sc.DB_OPERATION_NAME] for s in spans_of_stage(cap, "vector_db")]
    assert names == ["similarity_search", "max_marginal_relevance_search", "similarity_search"]


def test_failing_search_reraises_and_records_error(cap: Capture) -> None:
    """A store error reaches the caller unchanged; the span is ERROR with `error.type`."""
    store = _store(fail=True)
    cap.clear()
    with pytest.raises(ConnectionError, match="store offline"):
        store.similarity_search(QUESTION)
    [span] = spans_of_stage(cap, "vector_db")
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE] == "ConnectionError"


def test_malformed_answer_changes_nothing(cap: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store answering with an unexpected shape, or a failing extractor, returns the very same object."""
    store = _store()
    odd = {"not": "a list"}
    monkeypatch.setattr(TinyStore, "similarity_search_by_vector", lambda self, embedding, k=4, **kw: odd)
    assert store.similarity_search_by_vector([0.0] * 16) is odd

    def broken(operation: str, result: Any) -> dict[str, Any]:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(lc_stores, "_response", broken)
    cap.clear()
    docs = store.similarity_search(QUESTION, k=2)
    assert [d.id for d in docs] == [d.id for d in store.similarity_search(QUESTION, k=2)]
    assert len(spans_of_stage(cap, "vector_db")) == 2  # recorded without the result attributes
    assert all(sc.DB_RESPONSE_RETURNED_ROWS not in span_attributes(s) for s in spans_of_stage(cap, "vector_db"))


def test_store_with_unknown_methods_still_runs(cap: Capture) -> None:
    """A store class written after instrument(), with methods LangChain does not define, runs and is traced."""

    class Later(TinyStore):
        def hybrid_search(self, query: str) -> list[Document]:  # not a LangChain method: left alone
            return self.similarity_search(query, k=1)

    store = Later(DeterministicFakeEmbedding(size=8))
    store.add_texts(["a", "b"])
    cap.clear()
    assert len(store.hybrid_search("q")) == 1
    assert [s.name for s in spans_of_stage(cap, "vector_db")] == [SEARCH]


def test_content_capture_off_and_on(instrumented: Instrumented) -> None:
    """Off, no exported value holds the query; on, the span has `db.query.text` and the ids found."""
    store = _store()
    with capture() as off:
        inst = LangChainInstrumentor()
        inst.instrument()
        try:
            store.similarity_search(QUESTION, k=2)
        finally:
            inst.uninstrument()
    assert off.spans()
    assert QUESTION not in exported_values(off)
    on = instrumented(LangChainInstrumentor, capture_content=True)
    store.similarity_search(QUESTION, k=2)
    [span] = spans_of_stage(on, "vector_db")
    assert span_attributes(span)[sc.DB_QUERY_TEXT] == QUESTION
    assert '"id": "t' in span_attributes(span)[sc.GEN_AI_RETRIEVAL_DOCUMENTS]


def test_suppressed_uninstrumented_and_instrumented_twice(cap: Capture) -> None:
    """Suppression records nothing; a second instrument() doubles nothing; uninstrument stops recording."""
    store = _store()
    cap.clear()
    with suppress_instrumentation():
        store.similarity_search(QUESTION)
    assert cap.spans() == []
    LangChainInstrumentor().instrument()
    store.similarity_search(QUESTION)
    assert len(spans_of_stage(cap, "vector_db")) == 1
    LangChainInstrumentor().uninstrument()
    cap.clear()
    store.similarity_search(QUESTION)
    assert cap.spans() == []


# -- a store with an instrumented client underneath ---------------------------------------------------------------
def test_chroma_underneath_makes_exactly_one_vector_db_span(instrumented: Instrumented) -> None:
    """With langchain-chroma over the instrumented Chroma client, a search and a retriever make one vector_db span
    each: Chroma's own, never a second one from LangChain."""
    cap = instrumented(LangChainInstrumentor, ChromaInstrumentor)
    client = chromadb.EphemeralClient()
    store = Chroma(collection_name="lc-notes", embedding_function=DeterministicFakeEmbedding(size=16), client=client)
    store.add_texts(TEXTS, ids=[f"c{i}" for i in range(len(TEXTS))])
    cap.clear()
    store.similarity_search(QUESTION, k=2)
    store.as_retriever(search_kwargs={"k": 2}).invoke(QUESTION)
    asyncio.run(store.asimilarity_search(QUESTION, k=2))
    spans = spans_of_stage(cap, "vector_db")
    assert [(span_attributes(s)[sc.RAGOTEL_COMPONENT], s.name) for s in spans] == [("chromadb", "query lc-notes")] * 3
    points = cap.metrics(sc.M_DB_OPERATION_DURATION)
    assert sum(p.count for p in points if p.attributes[sc.DB_OPERATION_NAME] == "query") == 3


# -- RunnableSequence.batch ---------------------------------------------------------------------------------------
def _chain(store: VectorStore, answers: int) -> Any:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="kiwi-answer")] * answers))
    prompt = ChatPromptTemplate.from_messages([("system", "Context: {context}"), ("human", "{question}")])
    retriever = store.as_retriever(search_kwargs={"k": 2})
    return {"context": retriever, "question": RunnablePassthrough()} | prompt | model | StrOutputParser()


@pytest.mark.parametrize("use_async", [False, True])
def test_batch_is_one_pipeline_holding_every_input(cap: Capture, use_async: bool) -> None:
    """`batch` / `abatch` make one pipeline span with the batch size; every input's steps nest in its trace."""
    chain = _chain(_store(), 3)
    cap.clear()
    questions = [f"{QUESTION}-{i}" for i in range(3)]
    answers = asyncio.run(chain.abatch(questions)) if use_async else chain.batch(questions)
    assert answers == ["kiwi-answer"] * 3
    [pipeline] = spans_of_stage(cap, "pipeline")
    assert span_attributes(pipeline)[sc.RAGOTEL_PIPELINE_BATCH_SIZE] == 3
    assert len(spans_of_stage(cap, "retrieval")) == 3
    assert len(spans_of_stage(cap, "generation")) == 3
    assert {s.context.trace_id for s in cap.spans()} == {pipeline.context.trace_id}
    assert all(
        parent_id(s) == pipeline.context.span_id
        for s in spans_of_stage(cap, "retrieval") + spans_of_stage(cap, "generation")
    )


def test_batch_inside_a_pipeline_adds_no_pipeline(cap: Capture) -> None:
    """A batch run inside the app's own pipeline is part of it, not a second pipeline."""
    chain = _chain(_store(), 2)
    cap.clear()
    with ragotel.pipeline("outer"):
        chain.batch(["a", "b"])
    assert [s.name for s in spans_of_stage(cap, "pipeline")] == ["pipeline outer"]
