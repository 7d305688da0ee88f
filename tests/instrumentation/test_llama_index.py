"""LlamaIndex instrumentation with real llama-index-core: VectorStoreIndex, MockLLM, MockEmbedding, a CustomLLM."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import Instrumented, exported_values

import ragotel
from ragotel import semconv as sc
from ragotel.instrumentation.llama_index import LlamaIndexInstrumentor
from ragotel.instrumentation.llama_index import extract as li_inst
from ragotel.testing import Capture, capture

DIM = 8
DOCS = [f"secret-doc-{i} explains topic {i} in detail" for i in range(5)]
QUESTION = "secret-question about topic 1?"
RAW = {
    "model": "scripted-1-0601",
    "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    "choices": [{"finish_reason": "stop"}],
}


class ScriptedLLM(CustomLLM):
    """A real CustomLLM (LlamaIndex's extension point): fixed answers with provider-style usage, or a failure."""

    model: str = "scripted-1"
    fail: bool = False
    fail_stream_at: int | None = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if self.fail:
            raise ConnectionError("provider down")
        return CompletionResponse(text="secret-answer", raw=RAW)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        fail_at = self.fail_stream_at

        def gen() -> CompletionResponseGen:
            text = ""
            for i, word in enumerate(["secret", "-", "stream", "!"]):
                if i == fail_at:
                    raise ConnectionError("stream reset")
                text += word
                yield CompletionResponse(text=text, delta=word, raw=RAW if i == 3 else None)

        return gen()


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=MockEmbedding(embed_dim=DIM))


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(LlamaIndexInstrumentor)


@pytest.fixture
def cap_content(instrumented: Instrumented) -> Capture:
    return instrumented(LlamaIndexInstrumentor, capture_content=True)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _parent(cap: Capture, span: ReadableSpan) -> str | None:
    if span.parent is None:
        return None
    names = {s.context.span_id: s.name for s in cap.spans()}
    return names.get(span.parent.span_id, "<outside>")


def _check_rag_trace(cap: Capture) -> None:
    names = sorted(s.name for s in cap.spans())
    assert names == ["embeddings", "pipeline RetrieverQueryEngine", "retrieval SimpleVectorStore", "text_completion"]
    pipeline = cap.span("pipeline RetrieverQueryEngine")
    retrieval = cap.span("retrieval SimpleVectorStore")
    embedding = cap.span("embeddings")
    generation = cap.span("text_completion")
    assert _parent(cap, pipeline) is None
    assert _parent(cap, retrieval) == pipeline.name
    assert _parent(cap, embedding) == retrieval.name
    assert _parent(cap, generation) == pipeline.name
    assert len({s.context.trace_id for s in cap.spans()}) == 1
    assert _attrs(pipeline)[sc.RAGOTEL_STAGE] == "pipeline"
    assert _attrs(pipeline)[sc.RAGOTEL_PIPELINE_NAME] == "RetrieverQueryEngine"
    r = _attrs(retrieval)
    assert r[sc.RAGOTEL_STAGE] == "retrieval"
    assert r[sc.RAGOTEL_COMPONENT] == "llama_index"
    assert r[sc.GEN_AI_OPERATION_NAME] == "retrieval"
    assert r[sc.GEN_AI_DATA_SOURCE_ID] == "SimpleVectorStore"
    assert r[sc.GEN_AI_RETRIEVAL_TOP_K] == 2
    assert r[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    assert isinstance(r[sc.RAGOTEL_RETRIEVAL_TOP_SCORE], float)
    e = _attrs(embedding)
    assert e[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert e[sc.GEN_AI_PROVIDER_NAME] == "llama_index"
    assert e[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 1
    assert e[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == DIM
    assert embedding.kind is SpanKind.CLIENT
    g = _attrs(generation)
    assert g[sc.RAGOTEL_STAGE] == "generation"
    assert g[sc.GEN_AI_OPERATION_NAME] == "text_completion"
    assert generation.kind is SpanKind.CLIENT
    stages = sorted(p.attributes[sc.RAGOTEL_STAGE] for p in cap.metrics(sc.M_STAGE_DURATION))
    assert stages == ["pipeline", "retrieval"]  # embedding and generation: in gen_ai.client.operation.duration
    ops = sorted(p.attributes[sc.GEN_AI_OPERATION_NAME] for p in cap.metrics(sc.M_GEN_AI_OPERATION_DURATION))
    assert ops == ["embeddings", "retrieval", "text_completion"]
    docs = cap.metrics(sc.M_RETRIEVAL_DOCUMENTS)
    assert [(p.attributes, p.count, p.sum) for p in docs] == [({sc.RAGOTEL_COMPONENT: "llama_index"}, 1, 2)]


def test_query_engine_run_gives_one_correctly_parented_span_per_stage(cap: Capture, index: VectorStoreIndex) -> None:
    """One query: pipeline ⊃ retrieval ⊃ embedding, pipeline ⊃ generation; one span each, one trace, metrics once."""
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query(QUESTION)
    assert "secret-doc" in str(response)
    _check_rag_trace(cap)


async def test_async_query_engine_run_has_the_same_shape(cap: Capture, index: VectorStoreIndex) -> None:
    """aquery gives the same four spans with the same parents as query."""
    await index.as_query_engine(llm=MockLLM(), similarity_top_k=2).aquery(QUESTION)
    _check_rag_trace(cap)


def test_query_engine_inside_a_user_pipeline_adds_no_second_pipeline(cap: Capture, index: VectorStoreIndex) -> None:
    """Under ragotel.pipeline(), the query engine makes no pipeline span of its own; its steps nest in the user's."""
    with ragotel.pipeline("answer"):
        index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query(QUESTION)
    assert sorted(s.name for s in cap.spans()) == [
        "embeddings",
        "pipeline answer",
        "retrieval SimpleVectorStore",
        "text_completion",
    ]
    assert _parent(cap, cap.span("retrieval SimpleVectorStore")) == "pipeline answer"
    assert _attrs(cap.span("pipeline answer"))[sc.RAGOTEL_PIPELINE_NAME] == "answer"


def test_retriever_alone_and_embedding_batch(cap: Capture, index: VectorStoreIndex) -> None:
    """A bare retriever call is a root retrieval span; a batch embedding records its size and dimension."""
    nodes = index.as_retriever(similarity_top_k=3).retrieve("topic 2")
    assert len(nodes) == 3
    retrieval = cap.span("retrieval SimpleVectorStore")
    assert retrieval.parent is None
    assert _attrs(retrieval)[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3
    cap.clear()
    MockEmbedding(embed_dim=DIM).get_text_embedding_batch(["a", "b", "c"])
    attrs = _attrs(cap.span("embeddings"))
    assert attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 3
    assert attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == DIM


def test_llm_chat_and_complete_one_span_each_with_usage(cap: Capture) -> None:
    """chat on a CustomLLM (which calls complete inside) is ONE chat span; usage, model and finish reasons are read."""
    llm = ScriptedLLM()
    llm.chat([ChatMessage(role="user", content="hi")])
    span = cap.span("chat scripted-1")
    attrs = _attrs(span)
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "scripted-1"
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "scripted-1-0601"
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert len(cap.spans()) == 1
    llm.complete("hello")
    assert _attrs(cap.span("text_completion scripted-1"))[sc.GEN_AI_USAGE_INPUT_TOKENS] == 7
    tokens = sorted((p.attributes[sc.GEN_AI_TOKEN_TYPE], p.sum) for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE))
    assert tokens == [("input", 7), ("input", 7), ("output", 3), ("output", 3)]


async def test_async_chat_and_complete(cap: Capture) -> None:
    """achat and acomplete are one span each, ended after the await."""
    llm = ScriptedLLM()
    await llm.achat([ChatMessage(role="user", content="hi")])
    await llm.acomplete("hello")
    assert [s.name for s in cap.spans()] == ["chat scripted-1", "text_completion scripted-1"]


def test_llm_error_sets_status_and_error_type(cap: Capture) -> None:
    """A failing LLM call re-raises the provider's exception and ends the span ERROR with error.type."""
    with pytest.raises(ConnectionError, match="provider down"):
        ScriptedLLM(fail=True).complete("hello")
    span = cap.span("text_completion scripted-1")
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)[sc.ERROR_TYPE] == "ConnectionError"
    points = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert [p.attributes.get(sc.ERROR_TYPE) for p in points] == ["ConnectionError"]


def test_stream_exhausted_ends_once_with_first_chunk_and_usage(cap: Capture) -> None:
    """A consumed stream ends its one span at the end, with time to first chunk and the final chunk's usage."""
    llm = ScriptedLLM()
    chunks = list(llm.stream_complete("hello"))
    assert chunks[-1].text == "secret-stream!"
    span = cap.span("text_completion scripted-1")
    attrs = _attrs(span)
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert isinstance(attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK], float)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in attrs
    stream_chat = list(MockLLM().stream_chat([ChatMessage(role="user", content="abc")]))
    assert stream_chat
    assert len(cap.spans("chat")) == 1  # MockLLM.stream_chat -> stream_complete is one step


def test_stream_closed_broken_or_dropped_ends_early(cap: Capture) -> None:
    """close(), break + drop, and a stream never iterated then dropped each end their span once, marked early."""
    llm = ScriptedLLM()
    stream = llm.stream_complete("a")
    next(stream)
    stream.close()
    for _chunk in llm.stream_complete("b"):
        break
    del _chunk
    never = llm.stream_complete("c")
    del never
    gc.collect()
    spans = cap.spans("text_completion scripted-1")
    assert len(spans) == 3
    assert all(_attrs(s)[sc.RAGOTEL_STREAM_ENDED_EARLY] is True for s in spans)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_stream_exception_inside_the_loop_is_an_error(cap: Capture) -> None:
    """An exception raised by the stream mid-way re-raises to the caller and ends the span ERROR."""
    with pytest.raises(ConnectionError, match="stream reset"):
        for _ in ScriptedLLM(fail_stream_at=2).stream_complete("x"):
            pass
    span = cap.span("text_completion scripted-1")
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)[sc.ERROR_TYPE] == "ConnectionError"


async def test_async_stream_chat(cap: Capture) -> None:
    """astream_chat ends its span when the async stream is exhausted."""
    stream = await MockLLM().astream_chat([ChatMessage(role="user", content="abc")])
    assert [c async for c in stream]
    span = cap.span("chat")
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in _attrs(span)
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in _attrs(span)


def test_llm_class_defined_after_instrument_streams_with_its_context(cap: Capture) -> None:
    """A CustomLLM defined after instrument() is followed too; work done lazily in a streamed step nests/merges."""

    class LateLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="late-1")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text="x")

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
            def gen() -> CompletionResponseGen:
                # What an integration does lazily on the first step: embed, then call its provider client.
                MockEmbedding(embed_dim=DIM).get_query_embedding(prompt)
                with ragotel.generation("provider-model", provider="openai") as provider_call:
                    provider_call.record_usage(5, 2)
                yield CompletionResponse(text="late", delta="late", raw=RAW)

            return gen()

    chunks = list(LateLLM().stream_complete("hello"))
    assert [c.text for c in chunks] == ["late"]
    generations = [s for s in cap.spans() if _attrs(s)[sc.RAGOTEL_STAGE] == "generation"]
    assert len(generations) == 1  # the provider call merged into the stream's span: counted once
    attrs = _attrs(generations[0])
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 5  # the provider's own figures win over the framework's
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert _parent(cap, cap.span("embeddings")) == generations[0].name
    tokens = sorted((p.attributes[sc.GEN_AI_TOKEN_TYPE], p.sum) for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE))
    assert tokens == [("input", 5), ("output", 2)]


def test_suppressed_instrumentation_makes_no_spans(cap: Capture, index: VectorStoreIndex) -> None:
    """Inside suppress_instrumentation() a query runs and no span is made."""
    with suppress_instrumentation():
        index.as_query_engine(llm=MockLLM()).query(QUESTION)
        list(MockLLM().stream_complete("abc"))
    assert cap.spans() == []


def test_uninstrument_removes_the_handlers_and_stops_spans(index: VectorStoreIndex) -> None:
    """uninstrument() restores the dispatcher's handlers, the stream methods and BaseLLM; no span is made."""
    root = get_dispatcher()
    span_handlers, event_handlers = list(root.span_handlers), list(root.event_handlers)
    stream_original = MockLLM.__dict__["stream_complete"]
    astream_original = CustomLLM.__dict__["astream_chat"]
    with capture() as cap:
        inst = LlamaIndexInstrumentor()
        inst.instrument()
        assert len(root.span_handlers) == len(span_handlers) + 1
        assert MockLLM.__dict__["stream_complete"] is not stream_original
        inst.uninstrument()
        assert root.span_handlers == span_handlers
        assert MockLLM.__dict__["stream_complete"] is stream_original
        assert CustomLLM.__dict__["astream_chat"] is astream_original
        assert "__init_subclass__" not in vars(BaseLLM)
        assert all(a is b for a, b in zip(root.span_handlers, span_handlers, strict=True))
        assert all(a is b for a, b in zip(root.event_handlers, event_handlers, strict=True))
        index.as_query_engine(llm=MockLLM()).query(QUESTION)
        assert cap.spans() == []


def test_instrument_twice_does_not_double_spans(cap: Capture) -> None:
    """A second instrument() is a no-op: one call, one span."""
    LlamaIndexInstrumentor().instrument()
    ScriptedLLM().complete("x")
    assert len(cap.spans()) == 1


def test_failing_extractors_return_the_same_object(monkeypatch: pytest.MonkeyPatch, index: VectorStoreIndex) -> None:
    """Extractors that raise never reach the caller: retrieve returns the very list LlamaIndex built, spans end."""
    seen: list[Any] = []

    def broken(result: Any) -> Sequence[Any]:
        seen.append(result)
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(li_inst, "_scored", broken)
    with capture() as cap:
        inst = LlamaIndexInstrumentor()
        inst.instrument()
        try:
            nodes = index.as_retriever(similarity_top_k=2).retrieve("topic 3")
            monkeypatch.setattr(li_inst, "_provider", lambda cls: 1 / 0)  # request side fails: call goes through
            response = ScriptedLLM().complete("x")
        finally:
            inst.uninstrument()
    assert nodes is seen[0]
    assert len(nodes) == 2
    assert response.text == "secret-answer"
    assert sorted(s.name for s in cap.spans()) == ["embeddings", "retrieval SimpleVectorStore"]


def test_content_off_records_no_query_documents_prompts_or_vectors(cap: Capture, index: VectorStoreIndex) -> None:
    """With content capture off, no question, document, prompt, answer or vector shows in any exported attribute."""
    index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query(QUESTION)
    ScriptedLLM().chat([ChatMessage(role="user", content="secret-prompt")])
    list(ScriptedLLM().stream_complete("secret-prompt"))
    dump = exported_values(cap)
    for secret in ("secret-question", "secret-doc", "secret-prompt", "secret-answer", "secret-stream", "0.5, 0.5"):
        assert secret not in dump


def test_content_on_records_query_documents_and_messages(cap_content: Capture, index: VectorStoreIndex) -> None:
    """With content capture on, the question, retrieved documents, prompt and answer are recorded."""
    index.as_query_engine(llm=ScriptedLLM(), similarity_top_k=2).query(QUESTION)
    retrieval = _attrs(cap_content.span("retrieval SimpleVectorStore"))
    assert retrieval[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == QUESTION
    assert "secret-doc" in retrieval[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    generation = _attrs(cap_content.span("text_completion scripted-1"))
    assert QUESTION in generation[sc.GEN_AI_INPUT_MESSAGES]
    assert "secret-answer" in generation[sc.GEN_AI_OUTPUT_MESSAGES]
    pipeline = _attrs(cap_content.span("pipeline RetrieverQueryEngine"))
    assert pipeline[sc.RAGOTEL_INPUT] == QUESTION
    assert "0.5, 0.5" not in exported_values(cap_content)  # MockEmbedding's vectors are never recorded
