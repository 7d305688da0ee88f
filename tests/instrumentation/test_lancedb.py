"""LanceDB instrumentation with real local LanceDB tables (sync and async) in a temporary directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lancedb
import pytest
from lancedb.query import LanceVectorQueryBuilder
from lancedb.table import AsyncTable, LanceTable
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    break_response_extractors,
    exported_values,
    traced_without,
)

from ragotel import semconv as sc
from ragotel.instrumentation.lancedb import LanceDBInstrumentor
from ragotel.testing import Capture, capture

QUERY = [0.1, 0.2, 0.3, 0.4]
VECTOR_VALUE = 0.123456789


def _rows(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "vector": [VECTOR_VALUE + i, 0.2, 0.3 + i / 100, 0.4], "text": f"secret-doc {i}"}
        for i in range(start, start + n)
    ]


@pytest.fixture
def table(tmp_path: Path) -> LanceTable:
    db = lancedb.connect(tmp_path / "lance")
    return db.create_table("docs", data=_rows(0, 10))


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(LanceDBInstrumentor)


def _attrs(cap: Capture, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


def test_vector_search_span(cap: Capture, table: LanceTable) -> None:
    """search(v).limit(3).to_list() is one CLIENT span at execution with top_k, rows and the nearest distance."""
    results = table.search(QUERY).limit(3).to_list()
    assert len(cap.spans()) == 1
    span = cap.span("search docs")
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs == {
        sc.RAGOTEL_STAGE: "vector_db",
        sc.RAGOTEL_COMPONENT: "lancedb",
        sc.DB_SYSTEM_NAME: "lancedb",
        sc.DB_OPERATION_NAME: "search",
        sc.DB_COLLECTION_NAME: "docs",
        sc.RAGOTEL_DB_TOP_K: 3,
        sc.DB_RESPONSE_RETURNED_ROWS: 3,
        sc.RAGOTEL_DB_BEST_DISTANCE: pytest.approx(results[0]["_distance"]),
    }
    assert [p.attributes for p in cap.metrics(sc.M_DB_OPERATION_DURATION)] == [
        {sc.DB_SYSTEM_NAME: "lancedb", sc.DB_OPERATION_NAME: "search", sc.DB_COLLECTION_NAME: "docs"}
    ]


def test_plain_query_and_pandas_and_writes(cap: Capture, table: LanceTable) -> None:
    """A filtered scan via to_pandas, add, delete, update, count_rows and merge_insert are one span each."""
    table.search().where("id > 3").limit(2).to_pandas()
    table.add(_rows(20, 3))
    table.delete("id = 20")
    table.update(where="id = 21", values={"text": "secret-updated"})
    assert table.count_rows() == 12
    table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(_rows(30, 2))
    assert [s.name for s in cap.spans()] == [
        "search docs",
        "add docs",
        "delete docs",
        "update docs",
        "count docs",
        "merge_insert docs",
    ]
    assert _attrs(cap, "search docs")[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    assert sc.RAGOTEL_DB_BEST_DISTANCE not in _attrs(cap, "search docs")
    assert _attrs(cap, "add docs")[sc.DB_OPERATION_BATCH_SIZE] == 3
    assert _attrs(cap, "merge_insert docs")[sc.DB_OPERATION_BATCH_SIZE] == 2


def test_sync_call_running_async_inside_is_one_span(cap: Capture, table: LanceTable) -> None:
    """A sync add runs AsyncTable.add on LanceDB's loop thread: that merges into the caller's one span, its child."""
    with cap.tracer_provider.get_tracer("test").start_as_current_span("caller") as caller:
        table.add(_rows(40, 2))
    spans = cap.spans("add docs")
    assert len(spans) == 1
    assert spans[0].parent is not None
    assert spans[0].parent.span_id == caller.get_span_context().span_id


async def test_async_table_search_and_add(cap: Capture, table: LanceTable, tmp_path: Path) -> None:
    """AsyncTable.add and an async nearest_to query are awaited inside one span each with their results read."""
    db = await lancedb.connect_async(tmp_path / "lance")
    atable = await db.open_table("docs")
    await atable.add(_rows(50, 2))
    rows = await atable.query().nearest_to(QUERY).limit(2).to_list()
    assert [s.name for s in cap.spans()] == ["add docs", "search docs"]
    search = _attrs(cap, "search docs")
    assert search[sc.DB_RESPONSE_RETURNED_ROWS] == 2
    assert search[sc.RAGOTEL_DB_BEST_DISTANCE] == pytest.approx(rows[0]["_distance"])


def test_error_sets_status_and_error_type(cap: Capture, table: LanceTable) -> None:
    """A filter on a missing column re-raises LanceDB's error and ends the span ERROR with error.type."""
    with pytest.raises(Exception, match="nope") as raised:
        table.search().where("nope > 1").to_list()
    span = cap.span("search docs")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[sc.ERROR_TYPE].endswith(type(raised.value).__name__)


def test_suppressed_instrumentation_makes_no_spans(cap: Capture, table: LanceTable) -> None:
    """Inside suppress_instrumentation() search and add work and no span is made."""
    with suppress_instrumentation():
        table.add(_rows(60, 1))
        assert len(table.search(QUERY).limit(1).to_list()) == 1
    assert cap.spans() == []


def test_uninstrument_restores_and_instrument_twice(table: LanceTable) -> None:
    """A second instrument() adds no second span; after uninstrument() to_arrow is the original and silent."""
    original = LanceVectorQueryBuilder.__dict__["to_arrow"]
    with capture() as cap:
        inst = LanceDBInstrumentor()
        inst.instrument()
        LanceDBInstrumentor().instrument()
        table.search(QUERY).limit(1).to_list()
        assert len(cap.spans()) == 1
        inst.uninstrument()
        assert LanceVectorQueryBuilder.__dict__["to_arrow"] is original
        table.search(QUERY).limit(1).to_list()
        assert len(cap.spans()) == 1


def test_failing_extractor_returns_the_same_object(monkeypatch: pytest.MonkeyPatch, table: LanceTable) -> None:
    """A search response extractor that raises never reaches the caller: to_arrow returns the table it built."""
    seen = break_response_extractors(monkeypatch, LanceDBInstrumentor, lambda m: m.endswith(".to_arrow"))
    with capture() as cap:
        inst = LanceDBInstrumentor()
        inst.instrument()
        try:
            result = table.search(QUERY).limit(2).to_arrow()
        finally:
            inst.uninstrument()
    assert result is seen[0]
    assert result.num_rows == 2
    assert cap.span("search docs").end_time is not None


def test_unknown_version_missing_a_method_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, table: LanceTable
) -> None:
    """A LanceDB without AsyncTable._do_merge (a version we do not know) is reported at DEBUG; search is traced."""
    search = table.search(QUERY).limit(1)
    cap = traced_without(monkeypatch, caplog, LanceDBInstrumentor, (AsyncTable, "_do_merge"), search.to_list)
    assert [s.name for s in cap.spans()] == ["search docs"]


def test_content_off_records_no_rows_filters_or_vectors(cap: Capture, table: LanceTable) -> None:
    """With content capture off no row text, filter or vector value appears in any exported value."""
    table.search(QUERY).limit(3).to_list()
    table.search().where("text = 'secret-filter'").to_list()
    table.delete("text = 'secret-delete'")
    dump = exported_values(cap)
    assert "secret-" not in dump
    assert str(VECTOR_VALUE)[:8] not in dump


def test_content_on_records_rows_and_filters_never_vectors(instrumented: Instrumented, table: LanceTable) -> None:
    """With content capture on the filter and the scalar columns of result rows are recorded; vectors are not."""
    cap = instrumented(LanceDBInstrumentor, capture_content=True)
    table.search(QUERY).where("id < 5").limit(2).to_list()
    attrs = _attrs(cap, "search docs")
    assert "id < 5" in attrs[sc.DB_QUERY_TEXT]
    assert "secret-doc" in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    assert '"_distance"' in attrs[sc.GEN_AI_RETRIEVAL_DOCUMENTS]
    assert str(VECTOR_VALUE)[:8] not in exported_values(cap)
