"""LlamaIndex rerankers with real llama-index-core: SentenceTransformerRerank over a tiny local cross-encoder, and
LLMRerank over a real CustomLLM, alone and inside a query engine."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.postprocessor import LLMRerank, SentenceTransformerRerank, SimilarityPostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    exported_values,
    span_attributes,
    spans_of_stage,
)
from tests.instrumentation.tiny_cross_encoder import NAME, cross_encoder_path

from ragotel import semconv as sc
from ragotel.instrumentation.llama_index import LlamaIndexInstrumentor
from ragotel.instrumentation.sentence_transformers import SentenceTransformersInstrumentor
from ragotel.testing import Capture

__all__ = ["cross_encoder_path"]  # the session fixture, used by name

pytestmark = pytest.mark.timeout(120)

QUERY = "walrus question about the kiwi"
TEXTS = ["the cat on the dog", "kiwi passage about plum", "a bird of the fish", "mango topic", "otter subject"]


class JudgeLLM(CustomLLM):
    """A real CustomLLM that answers LLMRerank's prompt in its format (documents 2 and 1 relevant)."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="judge-1")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="Doc: 2, Relevance: 9\nDoc: 1, Relevance: 4\n")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


@pytest.fixture(scope="module")
def sbert(cross_encoder_path: str) -> SentenceTransformerRerank:
    return SentenceTransformerRerank(model=cross_encoder_path, top_n=2, device="cpu")


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(LlamaIndexInstrumentor)


def _nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=f"n{i}", text=t), score=0.1 * i) for i, t in enumerate(TEXTS)]


def test_sentence_transformer_rerank_is_one_rerank_span(cap: Capture, sbert: SentenceTransformerRerank) -> None:
    """`SentenceTransformerRerank.postprocess_nodes` is one rerank span: model, top_n, counts and the best score."""
    kept = sbert.postprocess_nodes(_nodes(), query_str=QUERY)
    assert len(kept) == 2
    [span] = spans_of_stage(cap, "rerank")
    attrs = span_attributes(span)
    assert attrs[sc.RAGOTEL_COMPONENT] == "llama_index"
    assert attrs[sc.RAGOTEL_RERANK_MODEL].endswith(NAME)
    assert attrs[sc.GEN_AI_RETRIEVAL_TOP_K] == 2
    assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 5
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(float(kept[0].score))


async def test_llm_rerank_in_a_query_engine(cap: Capture) -> None:
    """In a query engine (sync and async) LLMRerank is the pipeline's rerank child; its LLM call nests under it."""
    index = VectorStoreIndex.from_documents([Document(text=t) for t in TEXTS], embed_model=MockEmbedding(embed_dim=8))
    rerank = LLMRerank(llm=JudgeLLM(), top_n=2, choice_batch_size=5)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=4, node_postprocessors=[rerank])
    cap.clear()
    engine.query(QUERY)
    await engine.aquery(QUERY)
    pipelines = spans_of_stage(cap, "pipeline")
    reranks = spans_of_stage(cap, "rerank")
    assert len(pipelines) == 2
    assert len(reranks) == 2
    for pipeline, span in zip(pipelines, reranks, strict=True):
        assert span.parent is not None
        assert span.parent.span_id == pipeline.context.span_id
        attrs = span_attributes(span)
        assert attrs[sc.RAGOTEL_RERANK_MODEL] == "judge-1"
        assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 4
        assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
        assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == 9.0
    judge_calls = [s for s in spans_of_stage(cap, "generation") if s.name == "text_completion judge-1"]
    assert {s.parent.span_id for s in judge_calls if s.parent} == {s.context.span_id for s in reranks}


def test_filters_untraced_errors_recorded(cap: Capture, sbert: SentenceTransformerRerank) -> None:
    """A filtering postprocessor is untraced; a reranker's error reaches the caller unchanged, span ERROR."""
    nodes = _nodes()
    kept = SimilarityPostprocessor(similarity_cutoff=0.25).postprocess_nodes(nodes)
    assert [n.node.node_id for n in kept] == ["n3", "n4"]
    assert cap.spans() == []
    with pytest.raises(ValueError, match="query bundle"):
        sbert.postprocess_nodes(nodes)  # no query: LlamaIndex's own error
    [span] = spans_of_stage(cap, "rerank")
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE] == "ValueError"


def test_content_off_then_on(instrumented: Instrumented, sbert: SentenceTransformerRerank) -> None:
    """Off, no exported value holds the query or a text; on, the query and the kept ids and scores."""
    off = instrumented(LlamaIndexInstrumentor)
    sbert.postprocess_nodes(_nodes(), query_bundle=QueryBundle(QUERY))
    values = exported_values(off)
    assert QUERY not in values
    assert all(t not in values for t in TEXTS)
    on = instrumented(LlamaIndexInstrumentor, capture_content=True)
    sbert.postprocess_nodes(_nodes(), query_bundle=QueryBundle(QUERY))
    [span] = spans_of_stage(on, "rerank")
    assert span_attributes(span)[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == QUERY
    assert '"id": "n' in span_attributes(span)[sc.GEN_AI_RETRIEVAL_DOCUMENTS]


def test_malformed_answer_suppression_and_uninstrument(cap: Capture) -> None:
    """An unknown reranker answering oddly gets its own object back; suppressed and uninstrumented: no spans."""
    odd = object()

    class VendorRerank(SimilarityPostprocessor):
        def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> Any:
            return odd

    assert VendorRerank().postprocess_nodes(_nodes()) is odd
    [span] = spans_of_stage(cap, "rerank")
    assert span.status.status_code is StatusCode.UNSET
    cap.clear()
    with suppress_instrumentation():
        VendorRerank().postprocess_nodes(_nodes())
    LlamaIndexInstrumentor().uninstrument()
    VendorRerank().postprocess_nodes(_nodes())
    assert cap.spans() == []


def test_instrumented_cross_encoder_underneath_counts_once(
    instrumented: Instrumented, sbert: SentenceTransformerRerank
) -> None:
    """With sentence-transformers instrumented too, the CrossEncoder call merges into the postprocessor's span: one
    rerank span, named after the cross-encoder, counted once in the stage metric."""
    cap = instrumented(LlamaIndexInstrumentor, SentenceTransformersInstrumentor)
    kept = sbert.postprocess_nodes(_nodes(), query_str=QUERY)
    [span] = spans_of_stage(cap, "rerank")
    assert span.name == f"rerank {NAME}"
    attrs = span_attributes(span)
    assert attrs[sc.RAGOTEL_COMPONENT] == "llama_index"
    assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 5
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(float(kept[0].score))
    [point] = [p for p in cap.metrics(sc.M_STAGE_DURATION) if p.attributes[sc.RAGOTEL_STAGE] == "rerank"]
    assert point.count == 1
