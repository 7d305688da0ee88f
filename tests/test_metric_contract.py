"""The metric contract of DESIGN.md section 3: which histograms each stage records, with exactly which attributes."""

from __future__ import annotations

import pytest

import ragotel
from ragotel import semconv as sc
from ragotel import telemetry as _telemetry
from ragotel.testing import Capture, capture


def _points(cap: Capture) -> dict[str, list[tuple[dict[str, object], int | None]]]:
    out: dict[str, list[tuple[dict[str, object], int | None]]] = {}
    for p in cap.metrics():
        out.setdefault(p.name, []).append((p.attributes, p.count))
    return out


def _run_all_stages() -> None:
    with ragotel.pipeline("rag"):
        with ragotel.retrieval("docs", top_k=2) as op:
            op.add_documents([("a", 0.9), ("b", 0.4)])
        with ragotel.rerank("ranker", top_n=1):
            pass
        with ragotel.embedding("e5", provider="local"):
            pass
        with ragotel.generation("gpt-4o", provider="openai") as op:
            op.record_usage(7, 3)
        db_attrs = {sc.DB_SYSTEM_NAME: "chroma", sc.DB_OPERATION_NAME: "query", sc.DB_COLLECTION_NAME: "docs"}
        _telemetry.current().start(sc.STAGE_VECTOR_DB, "chromadb", db_attrs).end()


def test_each_stage_records_its_duration_in_exactly_one_histogram() -> None:
    """stage.duration only for pipeline/retrieval/rerank; generation and embedding in the GenAI histogram, vector_db
    in the DB one, each with exactly its semconv attributes (retrieval, a GenAI operation too, records both)."""
    with capture() as cap:
        _run_all_stages()
        points = _points(cap)
    assert sorted(points[sc.M_STAGE_DURATION], key=str) == sorted(
        [
            ({sc.RAGOTEL_STAGE: "pipeline", sc.RAGOTEL_COMPONENT: "custom"}, 1),
            ({sc.RAGOTEL_STAGE: "retrieval", sc.RAGOTEL_COMPONENT: "custom"}, 1),
            ({sc.RAGOTEL_STAGE: "rerank", sc.RAGOTEL_COMPONENT: "custom"}, 1),
        ],
        key=str,
    )
    assert sorted(points[sc.M_GEN_AI_OPERATION_DURATION], key=str) == sorted(
        [
            ({sc.GEN_AI_OPERATION_NAME: "retrieval"}, 1),
            (
                {
                    sc.GEN_AI_OPERATION_NAME: "embeddings",
                    sc.GEN_AI_REQUEST_MODEL: "e5",
                    sc.GEN_AI_PROVIDER_NAME: "local",
                },
                1,
            ),
            (
                {
                    sc.GEN_AI_OPERATION_NAME: "chat",
                    sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
                    sc.GEN_AI_PROVIDER_NAME: "openai",
                },
                1,
            ),
        ],
        key=str,
    )
    assert points[sc.M_DB_OPERATION_DURATION] == [
        ({sc.DB_SYSTEM_NAME: "chroma", sc.DB_OPERATION_NAME: "query", sc.DB_COLLECTION_NAME: "docs"}, 1)
    ]
    chat = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_PROVIDER_NAME: "openai"}
    assert sorted(points[sc.M_GEN_AI_TOKEN_USAGE], key=str) == sorted(
        [({**chat, sc.GEN_AI_TOKEN_TYPE: "input"}, 1), ({**chat, sc.GEN_AI_TOKEN_TYPE: "output"}, 1)], key=str
    )
    assert points[sc.M_RETRIEVAL_DOCUMENTS] == [({sc.RAGOTEL_COMPONENT: "custom"}, 1)]
    assert set(points) == {
        sc.M_STAGE_DURATION,
        sc.M_GEN_AI_OPERATION_DURATION,
        sc.M_DB_OPERATION_DURATION,
        sc.M_GEN_AI_TOKEN_USAGE,
        sc.M_RETRIEVAL_DOCUMENTS,
    }


@pytest.mark.parametrize(
    ("stage", "metric", "attributes"),
    [
        (sc.STAGE_RERANK, sc.M_STAGE_DURATION, {sc.RAGOTEL_STAGE: "rerank", sc.RAGOTEL_COMPONENT: "custom"}),
        (sc.STAGE_GENERATION, sc.M_GEN_AI_OPERATION_DURATION, {sc.GEN_AI_OPERATION_NAME: "chat"}),
        (sc.STAGE_EMBEDDING, sc.M_GEN_AI_OPERATION_DURATION, {sc.GEN_AI_OPERATION_NAME: "embeddings"}),
        (sc.STAGE_VECTOR_DB, sc.M_DB_OPERATION_DURATION, {}),
    ],
)
def test_a_failed_step_carries_error_type_in_its_duration_histogram(
    stage: str, metric: str, attributes: dict[str, object]
) -> None:
    """A failed step's one duration point carries error.type; a generation/embedding step without an operation name
    is still counted, under the stage's default GenAI operation."""
    with capture() as cap:
        _telemetry.current().start(stage, "custom", {}).fail(TimeoutError("slow"))
        points = _points(cap)
    durations = {
        name: p
        for name, p in points.items()
        if name in (sc.M_STAGE_DURATION, sc.M_GEN_AI_OPERATION_DURATION, sc.M_DB_OPERATION_DURATION)
    }
    assert durations == {metric: [({**attributes, sc.ERROR_TYPE: "TimeoutError"}, 1)]}


def test_duration_exemplar_points_at_the_steps_own_span() -> None:
    """The duration point of a sampled step carries one exemplar whose span id is the step's own span."""
    with capture() as cap:
        with ragotel.pipeline("outer"), ragotel.rerank("ranker"):
            pass
        data = cap.reader.get_metrics_data()
        spans = {s.name: s.context.span_id for s in cap.spans()}
    assert data is not None
    exemplars = {
        dict(p.attributes or {})[sc.RAGOTEL_STAGE]: [e.span_id for e in p.exemplars]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == sc.M_STAGE_DURATION
        for p in m.data.data_points
    }
    assert exemplars == {"pipeline": [spans["pipeline outer"]], "rerank": [spans["rerank ranker"]]}


def test_start_plans_are_bounded_and_never_keep_long_text() -> None:
    """Distinct request attributes beyond the cache bound, or a long text value, never grow the start-plan cache
    past its bound, and the spans still carry exactly the attributes given."""
    with capture() as cap:
        tel = _telemetry.current()
        for i in range(1100):
            tel.start(sc.STAGE_RERANK, "custom", {sc.RAGOTEL_RERANK_MODEL: f"m{i}"}).end()
        long_text = "x" * 10_000
        tel.start(sc.STAGE_RETRIEVAL, "custom", {sc.GEN_AI_DATA_SOURCE_ID: long_text}).end()
        assert len(tel._start_plans) <= 1024
        assert all(len(str(v)) <= 256 for key in tel._start_plans for _, v in key[3])
        spans = cap.spans()
    assert len(spans) == 1101
    assert (spans[0].attributes or {})[sc.RAGOTEL_RERANK_MODEL] == "m0"
    assert (spans[-1].attributes or {})[sc.GEN_AI_DATA_SOURCE_ID].startswith("xxx")
