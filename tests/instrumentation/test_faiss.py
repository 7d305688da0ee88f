"""FAISS instrumentation with real faiss-cpu indexes (flat, HNSW, IVF, ID map, binary) in process."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import Instrumented, exported_values, traced_without

from ragotel import semconv as sc
from ragotel.instrumentation import faiss as faiss_instrumentation
from ragotel.instrumentation.faiss import FaissInstrumentor
from ragotel.testing import Capture, capture

DIM = 8


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(7).random((20, DIM), dtype=np.float32)


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(FaissInstrumentor)


def _attrs(cap: Capture, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


def test_flat_l2_add_and_search(cap: Capture, vectors: np.ndarray) -> None:
    """add and a batched search on IndexFlatL2 give CLIENT vector_db spans with db attributes and nearest distance."""
    index = faiss.IndexFlatL2(DIM)
    index.add(vectors)
    distances, labels = index.search(vectors[:3], 4)
    assert [s.name for s in cap.spans()] == ["add IndexFlatL2", "search IndexFlatL2"]
    assert cap.span("search IndexFlatL2").kind is SpanKind.CLIENT
    assert _attrs(cap, "add IndexFlatL2") == {
        sc.RAGOTEL_STAGE: "vector_db",
        sc.RAGOTEL_COMPONENT: "faiss",
        sc.DB_SYSTEM_NAME: "faiss",
        sc.DB_OPERATION_NAME: "add",
        sc.DB_COLLECTION_NAME: "IndexFlatL2",
        sc.DB_OPERATION_BATCH_SIZE: 20,
    }
    search = _attrs(cap, "search IndexFlatL2")
    assert search[sc.DB_OPERATION_BATCH_SIZE] == 3
    assert search[sc.RAGOTEL_DB_TOP_K] == 4
    assert search[sc.DB_RESPONSE_RETURNED_ROWS] == 12
    assert search[sc.RAGOTEL_DB_BEST_DISTANCE] == pytest.approx(float(distances[:, 0].min()))
    assert type(search[sc.RAGOTEL_DB_BEST_DISTANCE]) is float
    assert sc.RAGOTEL_DB_TOP_SCORE not in search
    points = cap.metrics(sc.M_DB_OPERATION_DURATION)
    assert {tuple(sorted(p.attributes.items())) for p in points} == {
        ((sc.DB_COLLECTION_NAME, "IndexFlatL2"), (sc.DB_OPERATION_NAME, op), (sc.DB_SYSTEM_NAME, "faiss"))
        for op in ("add", "search")
    }
    assert labels.shape == (3, 4)


def test_inner_product_reports_top_score_and_missing_neighbours(cap: Capture, vectors: np.ndarray) -> None:
    """An inner-product index reports the best similarity; k beyond the index size counts only real neighbours."""
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors[:3])
    distances, _ = index.search(vectors[:1], 5)
    search = _attrs(cap, "search IndexFlatIP")
    assert search[sc.DB_RESPONSE_RETURNED_ROWS] == 3
    assert search[sc.RAGOTEL_DB_TOP_SCORE] == pytest.approx(float(distances[0, 0]))
    assert sc.RAGOTEL_DB_BEST_DISTANCE not in search
    assert sc.DB_OPERATION_BATCH_SIZE not in search  # one query is not a batch


def test_every_index_class_is_one_span_per_call(cap: Capture, vectors: np.ndarray) -> None:
    """HNSW, IVF (with its quantizer), an ID map over a flat index and a binary index: one span per Python call."""
    hnsw = faiss.IndexHNSWFlat(DIM, 8)
    hnsw.add(vectors)
    hnsw.search(vectors[:1], 2)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(DIM), DIM, 2)
    ivf.train(vectors)
    ivf.add(vectors)
    ivf.search(vectors[:2], 2)
    idmap = faiss.IndexIDMap(faiss.IndexFlatL2(DIM))
    idmap.add_with_ids(vectors[:5], np.arange(100, 105))
    idmap.remove_ids(np.array([100, 101], dtype=np.int64))
    lims, _, found = idmap.range_search(vectors[2:3], 10.0)
    binary = faiss.IndexBinaryFlat(DIM * 8)
    codes = np.random.default_rng(1).integers(0, 256, (6, DIM), dtype=np.uint8)
    binary.add(codes)
    binary.search(codes[:1], 2)
    assert [s.name for s in cap.spans()] == [
        "add IndexHNSWFlat",
        "search IndexHNSWFlat",
        "add IndexIVFFlat",
        "search IndexIVFFlat",
        "add_with_ids IndexIDMap",
        "remove_ids IndexIDMap",
        "range_search IndexIDMap",
        "add IndexBinaryFlat",
        "search IndexBinaryFlat",
    ]
    assert _attrs(cap, "remove_ids IndexIDMap")[sc.DB_OPERATION_BATCH_SIZE] == 2
    assert _attrs(cap, "range_search IndexIDMap")[sc.DB_RESPONSE_RETURNED_ROWS] == len(found) == lims[-1]
    assert _attrs(cap, "search IndexBinaryFlat")[sc.RAGOTEL_DB_BEST_DISTANCE] == 0.0


def test_search_of_the_wrong_dimension_fails_the_span(cap: Capture, vectors: np.ndarray) -> None:
    """A query of the wrong dimension re-raises faiss's own error and the span is ERROR with error.type."""
    index = faiss.IndexFlatL2(DIM)
    with pytest.raises(AssertionError):
        index.search(np.zeros((1, DIM + 1), dtype=np.float32), 1)
    span = cap.span("search IndexFlatL2")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "AssertionError"


def test_suppressed_instrumentation_makes_no_spans(cap: Capture, vectors: np.ndarray) -> None:
    """Inside suppress_instrumentation() add and search work and no span is made."""
    index = faiss.IndexFlatL2(DIM)
    with suppress_instrumentation():
        index.add(vectors)
        assert index.search(vectors[:1], 1)[1][0, 0] == 0
    assert cap.spans() == []


def test_uninstrument_restores_and_instrument_twice(vectors: np.ndarray) -> None:
    """A second instrument() adds no second span; after uninstrument() every class has its own method back."""
    originals = {cls: vars(cls)["search"] for cls in (faiss.Index, faiss.IndexFlat, faiss.IndexHNSW)}
    index = faiss.IndexFlatL2(DIM)
    index.add(vectors)
    with capture() as cap:
        inst = FaissInstrumentor()
        inst.instrument()
        FaissInstrumentor().instrument()
        index.search(vectors[:1], 1)
        assert len(cap.spans()) == 1
        inst.uninstrument()
        assert {cls: vars(cls)["search"] for cls in originals} == originals
        index.search(vectors[:1], 1)
        assert len(cap.spans()) == 1


def test_failing_extractor_returns_the_same_object(monkeypatch: pytest.MonkeyPatch, vectors: np.ndarray) -> None:
    """A search response extractor that raises never reaches the caller: search returns the very tuple faiss built."""
    seen: list[Any] = []

    def broken(instance: Any, result: Any) -> dict[str, Any]:
        seen.append(result)
        raise RuntimeError("extractor bug")

    table = dict(faiss_instrumentation._TABLE)
    table["search"] = {**table["search"], "response": broken}
    monkeypatch.setattr(faiss_instrumentation, "_TABLE", table)
    index = faiss.IndexFlatL2(DIM)
    index.add(vectors)
    with capture() as cap:
        inst = FaissInstrumentor()
        inst.instrument()
        try:
            result = index.search(vectors[:1], 2)
        finally:
            inst.uninstrument()
    assert result is seen[0]
    assert result[1][0, 0] == 0
    assert cap.span("search IndexFlatL2").end_time is not None


def test_unknown_version_missing_a_method_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, vectors: np.ndarray
) -> None:
    """A faiss without range_search on Index (a version we do not know) is reported at DEBUG; search is traced."""
    index = faiss.IndexFlatL2(DIM)

    def calls() -> None:
        index.add(vectors)
        index.search(vectors[:1], 1)

    cap = traced_without(monkeypatch, caplog, FaissInstrumentor, (faiss.Index, "range_search"), calls)
    assert [s.name for s in cap.spans()] == ["add IndexFlatL2", "search IndexFlatL2"]


def test_content_off_records_no_ids_distances_or_vectors(cap: Capture, vectors: np.ndarray) -> None:
    """With content capture off neither result ids, distances nor vector values appear in any exported value."""
    index = faiss.IndexIDMap(faiss.IndexFlatL2(DIM))
    index.add_with_ids(vectors, np.arange(7770, 7790))
    distances, _ = index.search(vectors[:2], 3)
    dump = exported_values(cap)
    assert "777" not in dump
    assert repr(float(distances[0, 1])) not in dump
    for value in vectors[0][:4].tolist():
        assert repr(value) not in dump


def test_content_on_records_ids_and_distances_never_vectors(instrumented: Instrumented, vectors: np.ndarray) -> None:
    """With content capture on the result ids and distances are recorded; vectors still are not."""
    cap = instrumented(FaissInstrumentor, capture_content=True)
    index = faiss.IndexIDMap(faiss.IndexFlatL2(DIM))
    index.add_with_ids(vectors, np.arange(7770, 7790))
    index.search(vectors[:1], 2)
    documents = _attrs(cap, "search IndexIDMap")[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    assert '"id": 7770' in documents
    assert '"distance": 0.0' in documents
    for value in vectors[0][:4].tolist():
        assert repr(value) not in exported_values(cap)
