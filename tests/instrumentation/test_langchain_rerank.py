"""LangChain rerankers with real langchain-classic compressors over a real (tiny, locally built) cross-encoder."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
from langchain_core.callbacks import Callbacks
from langchain_core.cross_encoders import BaseCrossEncoder
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from sentence_transformers import CrossEncoder
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    exported_values,
    span_attributes,
    spans_of_stage,
)
from tests.instrumentation.tiny_cross_encoder import NAME, cross_encoder_path

from ragotel import semconv as sc
from ragotel.instrumentation.langchain import LangChainInstrumentor
from ragotel.instrumentation.sentence_transformers import SentenceTransformersInstrumentor
from ragotel.testing import Capture

__all__ = ["cross_encoder_path"]  # the session fixture, used by name

pytestmark = pytest.mark.timeout(120)

QUERY = "walrus question about the kiwi"
TEXTS = ["the cat on the dog", "kiwi passage about plum", "a bird of the fish", "mango topic", "otter subject"]


class LocalCrossEncoder(BaseCrossEncoder):
    """LangChain's cross-encoder interface over a sentence-transformers CrossEncoder (as langchain-community's)."""

    def __init__(self, path: str, *, fail: bool = False) -> None:
        self.model_name = NAME
        self.client = CrossEncoder(path, device="cpu")
        self.fail = fail

    def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        if self.fail:
            raise MemoryError("model evicted")
        return [float(s) for s in self.client.predict(text_pairs)]


class KeepShort(BaseDocumentCompressor):
    """A compressor that filters (not a reranker): returns the caller's short documents, no reordering."""

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return [d for d in documents if len(d.page_content) < 12]


@pytest.fixture(scope="module")
def encoder(cross_encoder_path: str) -> LocalCrossEncoder:
    return LocalCrossEncoder(cross_encoder_path)


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(LangChainInstrumentor)


def _docs() -> list[Document]:
    return [Document(id=f"d{i}", page_content=t) for i, t in enumerate(TEXTS)]


def test_cross_encoder_reranker_is_one_rerank_span(cap: Capture, encoder: LocalCrossEncoder) -> None:
    """`CrossEncoderReranker` is one INTERNAL rerank span with model, top_n, input and output counts and the best
    score (from the cross-encoder, which merges into it)."""
    docs = _docs()
    kept = CrossEncoderReranker(model=encoder, top_n=2).compress_documents(docs, QUERY)
    assert len(kept) == 2
    [span] = spans_of_stage(cap, "rerank")
    assert span.name == f"rerank {NAME}"
    assert span.kind is SpanKind.INTERNAL
    attrs = span_attributes(span)
    assert attrs[sc.RAGOTEL_COMPONENT] == "langchain"
    assert attrs[sc.RAGOTEL_RERANK_MODEL] == NAME
    assert attrs[sc.GEN_AI_RETRIEVAL_TOP_K] == 2
    assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 5
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    with suppress_instrumentation():
        best = max(encoder.score([(QUERY, d.page_content) for d in docs]))
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(best)
    assert type(attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT]) is int
    [point] = [p for p in cap.metrics(sc.M_STAGE_DURATION) if p.attributes[sc.RAGOTEL_STAGE] == "rerank"]
    assert point.count == 1


async def test_async_and_inside_a_compression_retriever(cap: Capture, encoder: LocalCrossEncoder) -> None:
    """`acompress_documents` is one span; inside a `ContextualCompressionRetriever` the rerank is the retrieval's
    child and the retrieval counts the documents kept."""
    reranker = CrossEncoderReranker(model=encoder, top_n=3)
    await reranker.acompress_documents(_docs(), QUERY)
    assert len(spans_of_stage(cap, "rerank")) == 1
    cap.clear()
    store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=8))
    store.add_documents(_docs())
    cap.clear()
    retriever = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=store.as_retriever())
    assert len(retriever.invoke(QUERY)) == 3
    retrievals = [s for s in cap.spans() if span_attributes(s)[sc.RAGOTEL_STAGE] == "retrieval"]
    [retrieval] = retrievals
    [rerank] = spans_of_stage(cap, "rerank")
    assert rerank.parent is not None
    assert rerank.parent.span_id == retrieval.context.span_id
    assert span_attributes(rerank)[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 4  # the base retriever's default k
    assert span_attributes(retrieval)[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3


def test_filter_is_not_a_rerank_and_error_is_recorded(cap: Capture, cross_encoder_path: str) -> None:
    """A filtering compressor is untraced and returns its own result; a failing reranker re-raises, span ERROR."""
    docs = _docs()
    assert [d.id for d in KeepShort().compress_documents(docs, QUERY)] == ["d3"]
    assert spans_of_stage(cap, "rerank") == []
    failing = CrossEncoderReranker(model=LocalCrossEncoder(cross_encoder_path, fail=True), top_n=2)
    with pytest.raises(MemoryError, match="model evicted"):
        failing.compress_documents(docs, QUERY)
    [span] = spans_of_stage(cap, "rerank")
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE] == "MemoryError"


def test_malformed_answer_and_unknown_reranker_change_nothing(cap: Capture) -> None:
    """A reranker of a kind LangChain does not ship, answering with an odd shape, gets back its very own object."""
    odd = ({"not": "documents"},)

    class VendorRerank(BaseDocumentCompressor):
        top_n: int = 1

        def compress_documents(
            self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
        ) -> Sequence[Document]:
            return odd  # type: ignore[return-value]

    assert VendorRerank().compress_documents(_docs(), QUERY) is odd
    [span] = spans_of_stage(cap, "rerank")
    assert span_attributes(span)[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 1
    assert span.status.status_code is StatusCode.UNSET


def test_content_off_by_default_and_on(instrumented: Instrumented, encoder: LocalCrossEncoder) -> None:
    """Off, no exported value holds the query or a document; on, the query and the kept ids are recorded."""
    cap = instrumented(LangChainInstrumentor)
    CrossEncoderReranker(model=encoder, top_n=2).compress_documents(_docs(), QUERY)
    values = exported_values(cap)
    assert QUERY not in values
    assert all(t not in values for t in TEXTS)
    on = instrumented(LangChainInstrumentor, capture_content=True)
    CrossEncoderReranker(model=encoder, top_n=2).compress_documents(_docs(), QUERY)
    [span] = spans_of_stage(on, "rerank")
    assert span_attributes(span)[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == QUERY
    assert '"id": "d' in span_attributes(span)[sc.GEN_AI_RETRIEVAL_DOCUMENTS]


def test_suppressed_twice_and_uninstrumented(cap: Capture, encoder: LocalCrossEncoder) -> None:
    """Suppression records nothing; instrumenting twice doubles nothing; uninstrument stops recording."""
    reranker = CrossEncoderReranker(model=encoder, top_n=2)
    with suppress_instrumentation():
        reranker.compress_documents(_docs(), QUERY)
    assert cap.spans() == []
    LangChainInstrumentor().instrument()
    reranker.compress_documents(_docs(), QUERY)
    assert len(spans_of_stage(cap, "rerank")) == 1
    LangChainInstrumentor().uninstrument()
    cap.clear()
    reranker.compress_documents(_docs(), QUERY)
    assert cap.spans() == []


def test_instrumented_cross_encoder_underneath_counts_once(
    instrumented: Instrumented, encoder: LocalCrossEncoder
) -> None:
    """With sentence-transformers instrumented too, `CrossEncoderReranker` → `score` → `CrossEncoder.predict` is one
    rerank span (the innermost names it), counted once in the stage metric."""
    cap = instrumented(LangChainInstrumentor, SentenceTransformersInstrumentor)
    CrossEncoderReranker(model=encoder, top_n=2).compress_documents(_docs(), QUERY)
    [span] = spans_of_stage(cap, "rerank")
    attrs = span_attributes(span)
    assert attrs[sc.RAGOTEL_COMPONENT] == "langchain"
    assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 5
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    [point] = [p for p in cap.metrics(sc.M_STAGE_DURATION) if p.attributes[sc.RAGOTEL_STAGE] == "rerank"]
    assert point.count == 1
