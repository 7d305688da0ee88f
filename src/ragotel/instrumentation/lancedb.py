"""LanceDB (local tables): searches and writes as ``vector_db`` spans, sync ``LanceTable`` and ``AsyncTable``.

A search is lazy in LanceDB (``table.search(v).limit(k)`` builds a query), so its span is the query's execution:
``to_arrow`` of each query builder, which ``to_list`` / ``to_pandas`` / ``to_pydantic`` go through. A sync table
runs its async twin on LanceDB's background loop; that inner call merges into the sync call's span (one span).
``db.system.name=lancedb`` (no upstream value). Query text, filters and result rows are recorded only with
content capture on; vectors never.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument
from ragotel.instrumentation._base import db_batch_size as _batch

__all__ = ["LanceDBInstrumentor"]

COMPONENT: Final = "lancedb"
_TABLE: Final = "lancedb.table"
_QUERY: Final = "lancedb.query"
_DISTANCE: Final = "_distance"
_SCORES: Final = ("_relevance_score", "_score")  # hybrid / reranked, then full-text: higher is better


def _common(table: Any, operation: str) -> dict[str, Any]:
    return {
        sc.DB_SYSTEM_NAME: sc.DB_SYSTEM_LANCEDB,
        sc.DB_OPERATION_NAME: operation,
        sc.DB_COLLECTION_NAME: getattr(table, "name", None),
    }


def _count(data: Any) -> int | None:
    """Rows in what ``add`` / ``merge_insert`` accept: a list of rows, an Arrow table or a DataFrame."""
    if isinstance(data, list | tuple):
        return len(data)
    rows = getattr(data, "num_rows", None)
    if isinstance(rows, int):
        return rows
    shape = getattr(data, "shape", None)  # pandas / polars DataFrame
    return int(shape[0]) if isinstance(shape, tuple) and shape else None


# -- writes -------------------------------------------------------------------------------------------------------
def _write(operation: str, data_index: int | None, data_name: str = "data") -> Any:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, operation)
        if data_index is not None:
            attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(_count(argument(args, kwargs, data_index, data_name)))
        return attrs

    request.__name__ = f"_{operation}_request"
    return request


def _where_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    where = argument(args, kwargs, 0, "where")
    return {sc.DB_QUERY_TEXT: str(where)} if where is not None else None


# -- searches -----------------------------------------------------------------------------------------------------
def _search_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _common(instance._table, "search")
    limit = getattr(instance, "_limit", None)  # sync builders only: the async query keeps it in Rust
    if isinstance(limit, int):
        attrs[sc.RAGOTEL_DB_TOP_K] = limit
    return attrs


def _column_extreme(table: Any, name: str, best: Any) -> float | None:
    # LanceDB returns rows best first; the first 1024 bound the cost should a query return them in another order.
    values = [v for v in table.column(name).slice(0, 1024).to_pylist() if isinstance(v, int | float)]
    return float(best(values)) if values else None


def _search_response(instance: Any, result: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.DB_RESPONSE_RETURNED_ROWS: result.num_rows}
    if not result.num_rows:
        return attrs
    names = result.column_names
    score = next((n for n in _SCORES if n in names), None)
    if score is not None:
        attrs[sc.RAGOTEL_DB_TOP_SCORE] = _column_extreme(result, score, max)
    elif _DISTANCE in names:
        attrs[sc.RAGOTEL_DB_BEST_DISTANCE] = _column_extreme(result, _DISTANCE, min)
    return attrs


def _search_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    found = {"text": getattr(instance, "_str_query", None) or getattr(instance, "_query_string", None)}
    found["where"] = getattr(instance, "_where", None)
    text = {k: str(v) for k, v in found.items() if isinstance(v, str) and v}
    return {sc.DB_QUERY_TEXT: text} if text else None


def _search_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    # Scalar columns only: vectors (list columns) are never recorded.
    rows = items(result.slice(0, 64).to_pylist())
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: [{k: v for k, v in r.items() if not isinstance(v, list)} for r in rows]}


def _targets() -> tuple[Target, ...]:
    vdb = sc.STAGE_VECTOR_DB
    rows: list[Target] = []
    for cls in ("LanceTable", "AsyncTable"):
        rows += [
            Target(_TABLE, f"{cls}.add", vdb, COMPONENT, request=_write("add", 0)),
            Target(_TABLE, f"{cls}._do_merge", vdb, COMPONENT, request=_write("merge_insert", 1, "new_data")),
            Target(
                _TABLE, f"{cls}.delete", vdb, COMPONENT, request=_write("delete", None), request_content=_where_content
            ),
            Target(_TABLE, f"{cls}.update", vdb, COMPONENT, request=_write("update", None)),
            Target(_TABLE, f"{cls}.count_rows", vdb, COMPONENT, request=_write("count", None)),
        ]
    for builder in (
        "LanceVectorQueryBuilder",
        "LanceFtsQueryBuilder",
        "LanceEmptyQueryBuilder",
        "LanceHybridQueryBuilder",
        "AsyncQueryBase",
    ):
        rows.append(
            Target(
                _QUERY,
                f"{builder}.to_arrow",
                vdb,
                COMPONENT,
                request=_search_request,
                response=_search_response,
                request_content=_search_content,
                response_content=_search_result_content,
            )
        )
    return tuple(rows)


class LanceDBInstrumentor(RagotelInstrumentor):
    """Traces local LanceDB tables (sync and async): searches, add, merge_insert, delete, update, count_rows."""

    library: ClassVar[str] = "lancedb"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("lancedb >= 0.20",)
