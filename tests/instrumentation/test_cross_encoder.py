"""CrossEncoder rerank spans with a real, tiny BERT cross-encoder built locally from a config (no download)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from sentence_transformers import CrossEncoder
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    break_response_extractors,
    exported_values,
    traced_without,
)
from tests.instrumentation.tiny_cross_encoder import build

from ragotel import semconv as sc
from ragotel.instrumentation.sentence_transformers import SentenceTransformersInstrumentor
from ragotel.testing import Capture, capture

MODEL_NAME = "tiny-cross-encoder"
SPAN = f"rerank {MODEL_NAME}"
QUERY = "secret-query where is the cat"
DOCS = ["secret-doc the cat sat on the mat", "secret-doc a dog", "secret-doc birds fly in the sky"]
_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *["the", "a", "cat", "dog", "bird", "birds", "sat", "on", "mat", "fly", "in", "sky", "where", "is"],
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> CrossEncoder:
    """A one-layer BERT sequence classifier (one label) saved with its own vocabulary, loaded as a CrossEncoder."""
    return CrossEncoder(build(tmp_path_factory.mktemp("models"), _VOCAB), device="cpu")


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(SentenceTransformersInstrumentor)


def _attrs(cap: Capture) -> dict[str, Any]:
    return dict(cap.span(SPAN).attributes or {})


def test_rank_makes_one_rerank_span_with_the_contract(cap: Capture, model: CrossEncoder) -> None:
    """rank(top_k=2) is one INTERNAL rerank span (predict inside merges) with model, top_n, counts and best score."""
    ranking = model.rank(QUERY, DOCS, top_k=2)
    assert len(cap.spans()) == 1
    span = cap.span(SPAN)
    assert span.kind is SpanKind.INTERNAL
    attrs = _attrs(cap)
    assert attrs[sc.RAGOTEL_STAGE] == "rerank"
    assert attrs[sc.RAGOTEL_COMPONENT] == "sentence_transformers"
    assert attrs[sc.RAGOTEL_RERANK_MODEL] == MODEL_NAME
    assert attrs[sc.GEN_AI_RETRIEVAL_TOP_K] == 2
    assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 3
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    assert type(attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE]) is float
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(ranking[0]["score"])
    assert span.status.status_code is StatusCode.UNSET
    assert [p.attributes for p in cap.metrics(sc.M_STAGE_DURATION)] == [
        {sc.RAGOTEL_STAGE: "rerank", sc.RAGOTEL_COMPONENT: "sentence_transformers"}
    ]
    assert cap.metrics(sc.M_RETRIEVAL_DOCUMENTS) == []  # a rerank keeps documents, it retrieves none


def test_rank_without_top_k_records_no_top_n(cap: Capture, model: CrossEncoder) -> None:
    """rank() without top_k records no top_n (never a default) and returns every document."""
    model.rank(QUERY, DOCS)
    attrs = _attrs(cap)
    assert sc.GEN_AI_RETRIEVAL_TOP_K not in attrs
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3


def test_predict_pairs_and_single_pair(cap: Capture, model: CrossEncoder) -> None:
    """predict(pairs) counts the pairs and the best score; one (query, doc) pair is one document; tensors work."""
    scores = model.predict([(QUERY, d) for d in DOCS])
    model.predict((QUERY, DOCS[0]))
    model.predict([(QUERY, d) for d in DOCS[:2]], convert_to_tensor=True)
    spans = cap.spans(SPAN)
    assert len(spans) == 3
    first, single, tensor = (dict(s.attributes or {}) for s in spans)
    assert first[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 3
    assert first[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3
    assert first[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == pytest.approx(float(np.max(scores)))
    assert single[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 1
    assert single[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 1
    assert tensor[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    assert type(tensor[sc.RAGOTEL_RETRIEVAL_TOP_SCORE]) is float


def test_span_is_the_callers_child(cap: Capture, model: CrossEncoder) -> None:
    """A rank inside the caller's span is its child."""
    with cap.tracer_provider.get_tracer("test").start_as_current_span("caller") as caller:
        model.rank(QUERY, DOCS)
    span = cap.span(SPAN)
    assert span.parent is not None
    assert span.parent.span_id == caller.get_span_context().span_id


def test_error_sets_status_and_error_type(cap: Capture, model: CrossEncoder) -> None:
    """An input predict rejects re-raises the library's ValueError and ends the span ERROR with error.type."""
    with pytest.raises(ValueError, match="Unsupported input type"):
        model.predict([object()])
    span = cap.span(SPAN)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "ValueError"


def test_suppressed_instrumentation_makes_no_spans(cap: Capture, model: CrossEncoder) -> None:
    """Inside suppress_instrumentation() rank works and no span is made."""
    with suppress_instrumentation():
        assert len(model.rank(QUERY, DOCS)) == 3
    assert cap.spans() == []


def test_uninstrument_restores_and_instrument_twice(model: CrossEncoder) -> None:
    """A second instrument() adds no second span; after uninstrument() the methods are the originals, no spans."""
    originals = (CrossEncoder.__dict__["predict"], CrossEncoder.__dict__["rank"])
    with capture() as cap:
        inst = SentenceTransformersInstrumentor()
        inst.instrument()
        SentenceTransformersInstrumentor().instrument()
        model.rank(QUERY, DOCS)
        assert len(cap.spans()) == 1
        inst.uninstrument()
        assert (CrossEncoder.__dict__["predict"], CrossEncoder.__dict__["rank"]) == originals
        model.rank(QUERY, DOCS)
        assert len(cap.spans()) == 1


def test_failing_extractor_returns_the_same_object(monkeypatch: pytest.MonkeyPatch, model: CrossEncoder) -> None:
    """A rank response extractor that raises never reaches the caller: rank returns the very list it built."""
    seen = break_response_extractors(monkeypatch, SentenceTransformersInstrumentor, lambda m: m.endswith(".rank"))
    with capture() as cap:
        inst = SentenceTransformersInstrumentor()
        inst.instrument()
        try:
            result = model.rank(QUERY, DOCS, top_k=2)
        finally:
            inst.uninstrument()
    assert result is seen[0]
    assert len(result) == 2
    assert cap.span(SPAN).end_time is not None


def test_unknown_version_without_rank_still_traces_predict(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, model: CrossEncoder
) -> None:
    """A CrossEncoder without rank (a version we do not know) is reported at DEBUG and predict is still traced."""
    pairs = [(QUERY, DOCS[0]), (QUERY, DOCS[1])]
    missing = (CrossEncoder, "rank")
    cap = traced_without(monkeypatch, caplog, SentenceTransformersInstrumentor, missing, lambda: model.predict(pairs))
    assert dict(cap.span(SPAN).attributes or {})[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 2


def test_content_off_records_no_query_or_documents(cap: Capture, model: CrossEncoder) -> None:
    """With content capture off no query or document text appears in any exported value."""
    model.rank(QUERY, DOCS, return_documents=True)
    model.predict([(QUERY, d) for d in DOCS])
    assert "secret-" not in exported_values(cap)


def test_content_on_records_query_and_ranking(instrumented: Instrumented, model: CrossEncoder) -> None:
    """With content capture on the query and the ranking (ids, scores, returned texts) are recorded."""
    cap = instrumented(SentenceTransformersInstrumentor, capture_content=True)
    model.rank(QUERY, DOCS, top_k=1, return_documents=True)
    attrs = _attrs(cap)
    assert attrs[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == QUERY
    assert '"corpus_id"' in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    assert "secret-doc" in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
