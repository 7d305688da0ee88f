"""LangChain instrumentation with real langchain-core: fake chat models, in-memory vector store, LCEL sequences."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.language_models import FakeListLLM
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    assert_silent_without,
    break_and_collect,
    close,
    dropped,
    exhaust,
    exported_values,
    raise_in_loop,
)

import ragotel
from ragotel import semconv as sc
from ragotel.instrumentation.langchain import LangChainInstrumentor
from ragotel.instrumentation.langchain import retrieval as lc_retrieval
from ragotel.testing import Capture, capture

pytestmark = pytest.mark.timeout(60)

QUESTION = "walrus-question-4417"
DOCS = [f"kiwi-document-{i} about topic {i}" for i in range(6)]
ANSWER = "mango-answer-8812 with several words"


# -- fixtures and helpers -----------------------------------------------------------------------------------------
@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(LangChainInstrumentor)


@pytest.fixture
def cap_content(instrumented: Instrumented) -> Capture:
    return instrumented(LangChainInstrumentor, capture_content=True)


def _store(n: int = len(DOCS), cls: type[InMemoryVectorStore] = InMemoryVectorStore) -> InMemoryVectorStore:
    store = cls(embedding=DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(id=f"d{i}", page_content=text) for i, text in enumerate(DOCS[:n])])
    return store


def _model(n: int = 5) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=ANSWER)] * n))


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _one(cap: Capture) -> ReadableSpan:
    spans = cap.spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def _by_name(cap: Capture) -> dict[str, ReadableSpan]:
    spans = cap.spans()
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def _chain(store: InMemoryVectorStore, model: BaseChatModel) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Context: {context}"), ("human", "{question}")])
    retriever = store.as_retriever(search_kwargs={"k": 3})
    return {"context": retriever, "question": RunnablePassthrough()} | prompt | model | StrOutputParser()


class _ScoredStore(InMemoryVectorStore):
    """An in-memory store that reports relevance scores (cosine similarity mapped to 0..1)."""

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda similarity: (similarity + 1.0) / 2.0


class _ListRetriever(BaseRetriever):
    """A retriever that returns a fixed list (the same object every time) with scores in metadata."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if query == "fail":
            raise LookupError("index offline")
        return self.docs


# -- retrieval ----------------------------------------------------------------------------------------------------
def test_retriever_span_with_children(cap: Capture) -> None:
    """A retriever call is `retrieval {store}` with top_k and count; its embedding and store query are children."""
    store = _store()
    cap.clear()
    docs = store.as_retriever(search_kwargs={"k": 3}).invoke(QUESTION)
    assert len(docs) == 3
    spans = _by_name(cap)
    assert set(spans) == {"retrieval InMemoryVectorStore", "embeddings", "query InMemoryVectorStore"}
    retrieval = spans["retrieval InMemoryVectorStore"]
    assert retrieval.kind is SpanKind.INTERNAL
    attrs = _attrs(retrieval)
    assert attrs[sc.RAGOTEL_STAGE] == "retrieval"
    assert attrs[sc.RAGOTEL_COMPONENT] == "langchain"
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "retrieval"
    assert attrs[sc.GEN_AI_DATA_SOURCE_ID] == "InMemoryVectorStore"
    assert attrs[sc.GEN_AI_RETRIEVAL_TOP_K] == 3
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3
    assert _parent(spans["embeddings"]) == retrieval.context.span_id
    query = spans["query InMemoryVectorStore"]
    assert _parent(query) == retrieval.context.span_id
    assert query.kind is SpanKind.CLIENT
    qattrs = _attrs(query)
    assert qattrs[sc.DB_SYSTEM_NAME] == "in_memory"
    assert qattrs[sc.DB_OPERATION_NAME] == "query"
    assert qattrs[sc.DB_RESPONSE_RETURNED_ROWS] == 3
    assert isinstance(qattrs[sc.RAGOTEL_DB_TOP_SCORE], float)
    [docs_point] = cap.metrics(sc.M_RETRIEVAL_DOCUMENTS)
    assert (docs_point.count, docs_point.sum) == (1, 3)
    db_points = cap.metrics(sc.M_DB_OPERATION_DURATION)
    assert [p.count for p in db_points if p.attributes[sc.DB_OPERATION_NAME] == "query"] == [1]


async def test_async_retriever(cap: Capture) -> None:
    """`ainvoke` gives the same spans, nested the same way."""
    store = _store()
    cap.clear()
    await store.as_retriever(search_kwargs={"k": 2}).ainvoke(QUESTION)
    spans = _by_name(cap)
    retrieval = spans["retrieval InMemoryVectorStore"]
    assert _attrs(retrieval)[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    assert _parent(spans["embeddings"]) == retrieval.context.span_id
    assert _parent(spans["query InMemoryVectorStore"]) == retrieval.context.span_id


def test_scored_retrieval_top_score(cap: Capture) -> None:
    """`similarity_score_threshold` retrieval is one retrieval span carrying the best relevance score."""
    store = _store(cls=_ScoredStore)
    expected = max(s for _, s in store.similarity_search_with_relevance_scores(QUESTION, k=3))
    cap.clear()
    retriever = store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.0})
    docs = retriever.invoke(QUESTION)
    retrievals = [s for s in cap.spans() if _attrs(s)[sc.RAGOTEL_STAGE] == "retrieval"]
    assert len(retrievals) == 1  # the scored search merged into the retriever's span
    attrs = _attrs(retrievals[0])
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(expected)
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == len(docs)


def test_custom_retriever_scores_from_metadata_and_identity(cap: Capture) -> None:
    """A retriever's own documents come back as the same list; scores in metadata give the top score."""
    docs = [
        Document(page_content="a", metadata={"relevance_score": 0.25}),
        Document(page_content="b", metadata={"score": 0.75}),
    ]
    retriever = _ListRetriever(docs=docs)
    assert retriever.invoke(QUESTION) is retriever.docs
    attrs = _attrs(cap.span("retrieval _ListRetriever"))
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == 0.75
    assert sc.GEN_AI_RETRIEVAL_TOP_K not in attrs  # never set by the user


def test_retriever_error(cap: Capture) -> None:
    """A failing retriever re-raises the same exception; the span is ERROR with its type."""
    retriever = _ListRetriever(docs=[])
    with pytest.raises(LookupError, match="index offline"):
        retriever.invoke("fail")
    span = _one(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)[sc.ERROR_TYPE] == "LookupError"


def test_vector_store_operations(cap: Capture) -> None:
    """In-memory store writes, gets and deletes are vector_db spans (the store has no client underneath)."""
    store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=8))
    store.add_texts(["one", "two"], ids=["a", "b"])
    assert [d.id for d in store.get_by_ids(["a"])] == ["a"]
    store.delete(["a"])
    names = [s.name for s in cap.spans() if _attrs(s)[sc.RAGOTEL_STAGE] == "vector_db"]
    assert names == ["add InMemoryVectorStore", "get InMemoryVectorStore", "delete InMemoryVectorStore"]
    add = _attrs(cap.span("add InMemoryVectorStore"))
    assert add[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert _attrs(cap.span("get InMemoryVectorStore"))[sc.DB_RESPONSE_RETURNED_ROWS] == 1


# -- embeddings ---------------------------------------------------------------------------------------------------
def test_embeddings_spans(cap: Capture) -> None:
    """`embed_documents`/`embed_query` (sync and async) are embedding spans with batch size and dimension."""
    emb = DeterministicFakeEmbedding(size=12)
    emb.embed_documents(["x", "y", "z"])
    emb.embed_query("q")
    asyncio.run(emb.aembed_documents(["x"]))
    spans = cap.spans()
    assert [s.name for s in spans] == ["embeddings", "embeddings", "embeddings"]
    first = _attrs(spans[0])
    assert spans[0].kind is SpanKind.CLIENT
    assert first[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert first[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 3
    assert first[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 12
    assert _attrs(spans[1])[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 1
    assert [p.count for p in cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)] == [3]  # aembed → embed_documents merged


def test_embeddings_class_defined_after_instrument(cap: Capture) -> None:
    """An Embeddings class defined after instrument() is wrapped at its first instantiation, where it defines."""

    class Later(Embeddings):
        model = "later-model"

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0] for _ in texts]

        def embed_query(self, text: str) -> list[float]:
            return [1.0, 0.0]

    class EvenLater(Later):
        pass

    vectors = Later().embed_documents(["a", "b"])
    assert vectors == [[1.0, 0.0], [1.0, 0.0]]
    EvenLater().embed_query("a")
    spans = cap.spans()
    assert [s.name for s in spans] == ["embeddings later-model", "embeddings later-model"]
    assert "__wrapped__" not in vars(EvenLater)  # inherited method wrapped once, on Later


def test_embeddings_uninstrument_restores() -> None:
    """Uninstrument restores the embedding methods; classes still construct normally and record nothing."""
    before = inspect.getattr_static(DeterministicFakeEmbedding, "embed_documents")
    with capture() as cap:
        inst = LangChainInstrumentor()
        inst.instrument()
        assert inspect.getattr_static(DeterministicFakeEmbedding, "embed_documents") is not before
        inst.uninstrument()
        assert inspect.getattr_static(DeterministicFakeEmbedding, "embed_documents") is before
        DeterministicFakeEmbedding(size=4).embed_query("x")

        class AfterUninstrument(Embeddings):
            def __init__(self, dim: int) -> None:
                self.dim = dim

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return [[0.0] * self.dim for _ in texts]

            def embed_query(self, text: str) -> list[float]:
                return [0.0] * self.dim

        assert AfterUninstrument(3).embed_query("x") == [0.0, 0.0, 0.0]
        assert "embed_query" not in {n for n, v in vars(AfterUninstrument).items() if hasattr(v, "__wrapped__")}
        assert cap.spans() == []


# -- chat models and LLMs -----------------------------------------------------------------------------------------
def test_chat_model_invoke_one_span(cap: Capture) -> None:
    """`invoke` → generate → one `chat` generation span; the result is untouched."""
    message = _model().invoke(QUESTION)
    assert message.content == ANSWER
    span = _one(cap)
    assert span.name == "chat"
    assert span.kind is SpanKind.CLIENT
    attrs = _attrs(span)
    assert attrs[sc.RAGOTEL_STAGE] == "generation"
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert sc.GEN_AI_PROVIDER_NAME not in attrs  # a core fake: no provider invented
    assert [p.count for p in cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)] == [1]


async def test_chat_model_async_and_batch(cap: Capture) -> None:
    """`ainvoke` is one span; `batch` (thread pool) is one span per input."""
    model = _model()
    await model.ainvoke(QUESTION)
    assert len(cap.spans()) == 1
    model.batch(["a", "b", "c"])
    assert len(cap.spans()) == 4


def test_chat_model_usage_from_message_metadata(cap: Capture) -> None:
    """A model reporting usage in its message metadata (no instrumented provider below) records it once."""
    usage = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18, "input_token_details": {"cache_read": 3}}
    model = GenericFakeChatModel(messages=iter([AIMessage(content=ANSWER, usage_metadata=usage)]))
    model.invoke(QUESTION)
    attrs = _attrs(_one(cap))
    assert (attrs[sc.GEN_AI_USAGE_INPUT_TOKENS], attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == (11, 7)
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 3
    tokens = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: (p.count, p.sum) for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)}
    assert tokens == {"input": (1, 11), "output": (1, 7)}


def test_llm_text_completion(cap: Capture) -> None:
    """A (non-chat) LLM is a `text_completion` span."""
    FakeListLLM(responses=[ANSWER]).invoke(QUESTION)
    assert _attrs(cap.span("text_completion"))[sc.GEN_AI_OPERATION_NAME] == "text_completion"


def test_chat_model_error(cap: Capture) -> None:
    """A model that fails re-raises unchanged and the span is ERROR."""
    model = GenericFakeChatModel(messages=iter([]))
    with pytest.raises(StopIteration):
        model.invoke(QUESTION)
    span = _one(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)[sc.ERROR_TYPE] == "StopIteration"


@pytest.mark.parametrize(
    ("consume", "early"),
    [(exhaust, False), (break_and_collect, True), (close, True), (dropped, True), (raise_in_loop, True)],
    ids=["exhausted", "break-gc", "close", "dropped", "exception-in-loop"],
)
def test_chat_stream_exit_paths(cap: Capture, consume: Callable[[Any], None], early: bool) -> None:
    """A chat model stream's span ends once on every exit path; an early end is marked."""
    stream = _model().stream(QUESTION)
    consume(stream)
    del stream
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs.get(sc.RAGOTEL_STREAM_ENDED_EARLY, False) is early
    assert [p.count for p in cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)] == [1]


async def test_async_chat_stream(cap: Capture) -> None:
    """`astream` exhausted and closed early: one span each, the early one marked."""
    model = _model()
    chunks = [c.content async for c in model.astream(QUESTION)]
    assert "".join(str(c) for c in chunks) == ANSWER
    stream = model.astream(QUESTION)
    await stream.__anext__()
    await stream.aclose()
    spans = [_attrs(s) for s in cap.spans()]
    assert len(spans) == 2
    assert [a.get(sc.RAGOTEL_STREAM_ENDED_EARLY, False) for a in spans] == [False, True]


# -- pipelines ----------------------------------------------------------------------------------------------------
def test_rag_chain_trace_shape(cap: Capture) -> None:
    """A top-level LCEL chain is the pipeline root; retrieval and generation are its children in one trace."""
    store = _store()
    cap.clear()
    answer = _chain(store, _model()).invoke(QUESTION, config={"run_name": "qa"})
    assert answer == ANSWER
    spans = _by_name(cap)
    assert set(spans) == {
        "pipeline qa",
        "retrieval InMemoryVectorStore",
        "embeddings",
        "query InMemoryVectorStore",
        "chat",
    }
    root = spans["pipeline qa"]
    assert root.parent is None
    assert _attrs(root)[sc.RAGOTEL_STAGE] == "pipeline"
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}
    assert _parent(spans["retrieval InMemoryVectorStore"]) == root.context.span_id
    assert _parent(spans["chat"]) == root.context.span_id


async def test_rag_chain_async_and_stream(cap: Capture) -> None:
    """`ainvoke`, `stream` and `astream` of a chain each give one pipeline root that lasts over the stream."""
    store = _store()
    chain = _chain(store, _model(10))
    cap.clear()
    await chain.ainvoke(QUESTION)
    assert "".join(chain.stream(QUESTION)) == ANSWER
    assert "".join([c async for c in chain.astream(QUESTION)]) == ANSWER
    roots = [s for s in cap.spans() if s.parent is None]
    assert [s.name for s in roots] == ["pipeline RunnableSequence"] * 3
    root_ids = {s.context.span_id for s in roots}
    for span in cap.spans():
        if span.parent is not None:
            assert span.context.trace_id in {r.context.trace_id for r in roots}
    chats = [s for s in cap.spans() if s.name == "chat"]
    assert len(chats) == 3
    assert {_parent(s) for s in chats} == root_ids


def test_nested_sequence_is_not_another_pipeline(cap: Capture) -> None:
    """A sequence inside a sequence, or inside the user's own pipeline stage, adds no pipeline span."""
    inner = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
    outer = RunnableLambda(lambda x: x) | inner | RunnableLambda(str)
    assert outer.invoke(1) == "4"
    assert [s.name for s in cap.spans()] == ["pipeline RunnableSequence"]
    cap.clear()
    with ragotel.pipeline("mine"):
        inner.invoke(1)
    assert [s.name for s in cap.spans()] == ["pipeline mine"]


# -- content ------------------------------------------------------------------------------------------------------
def test_content_capture_off_records_no_text(cap: Capture) -> None:
    """With capture off, no question, document text or answer appears anywhere in the exported spans."""
    store = _store()
    chain = _chain(store, _model(3))
    chain.invoke(QUESTION)
    exhaust(chain.stream(QUESTION))
    dump = exported_values(cap)
    for text in ("walrus-question", "kiwi-document", "mango-answer"):
        assert text not in dump


def test_content_capture_on(cap_content: Capture) -> None:
    """With capture on: the query and document ids on retrieval, messages on generation, texts on embeddings."""
    store = _store()
    cap_content.clear()
    _chain(store, _model()).invoke(QUESTION)
    spans = _by_name(cap_content)
    retrieval = _attrs(spans["retrieval InMemoryVectorStore"])
    assert retrieval[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == QUESTION
    documents = json.loads(retrieval[sc.GEN_AI_RETRIEVAL_DOCUMENTS])
    assert len(documents) == 3
    assert all(d["id"].startswith("d") for d in documents)
    chat = _attrs(spans["chat"])
    inputs = json.loads(chat[sc.GEN_AI_INPUT_MESSAGES])
    assert [m["role"] for m in inputs] == ["system", "user"]
    assert inputs[1]["parts"] == [{"type": "text", "content": QUESTION}]
    outputs = json.loads(chat[sc.GEN_AI_OUTPUT_MESSAGES])
    assert outputs[0]["parts"] == [{"type": "text", "content": ANSWER}]
    assert _attrs(spans["embeddings"])[sc.RAGOTEL_INPUT] == QUESTION


# -- the conventions checklist ------------------------------------------------------------------------------------
def test_suppressed_makes_no_spans(cap: Capture) -> None:
    """Inside `suppress_instrumentation()` LangChain runs and nothing is recorded."""
    store = _store()
    cap.clear()
    with suppress_instrumentation():
        assert _chain(store, _model()).invoke(QUESTION) == ANSWER
    assert cap.spans() == []


def test_uninstrument_restores_originals() -> None:
    """Uninstrument restores every hooked callable and stops recording."""
    hooked = [(BaseRetriever, "invoke"), (BaseChatModel, "generate"), (InMemoryVectorStore, "add_documents")]
    originals = [inspect.getattr_static(owner, name) for owner, name in hooked]
    with capture() as cap:
        inst = LangChainInstrumentor()
        inst.instrument()
        inst.uninstrument()
        assert [inspect.getattr_static(owner, name) for owner, name in hooked] == originals
        _chain(_store(), _model()).invoke(QUESTION)
        assert cap.spans() == []


def test_instrument_twice_no_double_spans(cap: Capture) -> None:
    """A second instrument() does not double any span."""
    LangChainInstrumentor().instrument()
    _model().invoke(QUESTION)
    DeterministicFakeEmbedding(size=4).embed_query("x")
    assert [s.name for s in cap.spans()] == ["chat", "embeddings"]


def test_extractor_failure_keeps_the_result(cap: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing extractor leaves the retriever's result the very same object; the span still ends."""

    def broken(doc: Any) -> float:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(lc_retrieval, "_score", broken)
    retriever = _ListRetriever(docs=[Document(page_content="a")])
    assert retriever.invoke(QUESTION) is retriever.docs
    span = _one(cap)
    assert span.status.status_code is StatusCode.UNSET
    assert sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT not in _attrs(span)


def test_missing_library_is_silent(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With langchain-core not importable (as under `opentelemetry-instrument`), instrumenting logs no warning."""
    assert_silent_without("langchain_core", LangChainInstrumentor, (BaseRetriever, "invoke"), monkeypatch, caplog)
