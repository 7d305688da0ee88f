"""Qdrant: ``QdrantClient`` / ``AsyncQdrantClient`` point reads and writes as ``vector_db`` spans (db semconv).

Hooked on the public client methods only (they delegate to a local or remote backend, which is not wrapped, so
each call is one span). ``db.operation.name`` is the client method the application called (``query_points``,
``upsert``, ``upload_points`` ...). Iterables the caller passes (``upload_points(points=<generator>)``,
``upload_collection(vectors=<generator>)``) are never iterated, copied or replaced: a batch size is recorded only
when the argument has a length. Async methods are awaited inside the span, so it covers the whole request.
Filters, query documents and result payloads are recorded only with content capture on; vectors never are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ragotel import semconv as sc
from ragotel.bounds import MAX_ITEMS, items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument

__all__ = ["QdrantInstrumentor"]

COMPONENT: Final = "qdrant"
SYSTEM: Final = sc.DB_SYSTEM_QDRANT

Position = tuple[int, str]  # (index after self, keyword name) of an argument


def _count(value: Any) -> int | None:
    """How many points/ids/queries ``value`` holds, without ever iterating it (generators give None)."""
    if value is None or isinstance(value, str | bytes | dict):
        return None
    shape = getattr(value, "shape", None)  # numpy array of vectors
    if shape is not None:
        return int(shape[0]) if len(shape) > 1 else None
    for field in ("ids", "points"):  # models.Batch(ids=...), models.PointIdsList(points=...)
        inner = getattr(value, field, None)
        if isinstance(inner, list):
            return len(inner)
    if isinstance(value, list | tuple):
        return len(value)
    return None


def _score(point: Any) -> float | None:
    score = getattr(point, "score", None)
    return float(score) if isinstance(score, int | float) else None


# -- response extractors ----------------------------------------------------------------------------------------
def _points_response(instance: Any, result: Any) -> dict[str, Any]:
    """QueryResponse (``.points``) or a plain list of ScoredPoint: rows, and the first (best-ranked) score."""
    points = getattr(result, "points", result)
    attrs: dict[str, Any] = {sc.DB_RESPONSE_RETURNED_ROWS: len(points)}
    if points:
        # Qdrant ranks best first whatever the metric (a Euclid distance ascends), so the first score is the top.
        attrs[sc.RAGOTEL_DB_TOP_SCORE] = _score(points[0])
    return attrs


def _batch_response(instance: Any, result: Any) -> dict[str, Any]:
    # A best score across queries has no meaning without the metric's direction: rows only.
    return {sc.DB_RESPONSE_RETURNED_ROWS: sum(len(getattr(r, "points", r)) for r in items(result))}


def _groups_response(instance: Any, result: Any) -> dict[str, Any]:
    groups = items(result.groups)
    attrs: dict[str, Any] = {sc.DB_RESPONSE_RETURNED_ROWS: sum(len(g.hits) for g in groups)}
    if groups and groups[0].hits:
        attrs[sc.RAGOTEL_DB_TOP_SCORE] = _score(groups[0].hits[0])
    return attrs


def _scroll_response(instance: Any, result: Any) -> dict[str, Any]:
    records, _next_offset = result
    return {sc.DB_RESPONSE_RETURNED_ROWS: len(records)}


def _records_response(instance: Any, result: Any) -> dict[str, Any]:
    return {sc.DB_RESPONSE_RETURNED_ROWS: len(result)}


# -- content (only with content capture on) ---------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic models (Filter, Document ...)
    return dump(mode="json", exclude_none=True) if dump is not None else value


def _found(result: Any) -> list[Any]:
    if isinstance(result, tuple):  # scroll: (records, next_offset)
        result = result[0]
    groups = getattr(result, "groups", None)
    if groups is not None:
        return [hit for group in items(groups) for hit in items(group.hits)][:MAX_ITEMS]
    points = getattr(result, "points", result)
    return items(points) if isinstance(points, list) else []


def _documents_content(instance: Any, result: Any) -> dict[str, Any] | None:
    records = []
    for point in _found(result):
        record: dict[str, Any] = {"id": str(point.id)}
        score = _score(point)
        if score is not None:
            record["score"] = score
        if getattr(point, "payload", None):
            record["payload"] = point.payload
        records.append(record)
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: records}


@dataclass(frozen=True, slots=True)
class _Method:
    """How to read one client method: where its batch, limit, filter and text query are, and its result shape."""

    name: str
    batch: Position | None = None
    limit: Position | None = None
    filter: Position | None = None
    query: Position | None = None
    response: Callable[[Any, Any], dict[str, Any] | None] | None = None

    def request(self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            sc.DB_SYSTEM_NAME: SYSTEM,
            sc.DB_OPERATION_NAME: self.name,
            sc.DB_COLLECTION_NAME: argument(args, kwargs, 0, "collection_name"),
        }
        host = getattr(instance._client, "_host", None)  # remote backends only; local mode has no server
        if host is not None:
            attrs[sc.SERVER_ADDRESS] = host
            port = instance._client._grpc_port if instance._client._prefer_grpc else instance._client._port
            attrs[sc.SERVER_PORT] = port if isinstance(port, int) else None
        if self.batch is not None:
            count = _count(argument(args, kwargs, *self.batch))
            # Database semconv: only operations of two or more are batches; batch_size is never 1.
            attrs[sc.DB_OPERATION_BATCH_SIZE] = count if count is not None and count >= 2 else None
        if self.limit is not None:
            limit = argument(args, kwargs, *self.limit)
            attrs[sc.RAGOTEL_DB_TOP_K] = limit if isinstance(limit, int) else None
        return attrs

    def request_content(self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        text: dict[str, Any] = {}
        if self.query is not None:
            query = argument(args, kwargs, *self.query)
            if isinstance(getattr(query, "text", None), str):  # models.Document: text embedded by inference
                text["query"] = query.text
        if self.filter is not None:
            where = argument(args, kwargs, *self.filter)
            if where is not None and not isinstance(where, list):  # a list of ids is a selector, not a filter
                text["filter"] = _jsonable(getattr(where, "filter", where))
        return {sc.DB_QUERY_TEXT: text} if text else None


_POINTS: Final = "points"
_METHODS: Final = (
    _Method(
        "query_points",
        limit=(6, "limit"),
        filter=(4, "query_filter"),
        query=(1, "query"),
        response=_points_response,
    ),
    _Method("query_batch_points", batch=(1, "requests"), response=_batch_response),
    _Method(
        "query_points_groups",
        limit=(7, "limit"),
        filter=(5, "query_filter"),
        query=(2, "query"),
        response=_groups_response,
    ),
    # Removed in qdrant-client 1.13+; kept for older installs (a target missing here is skipped).
    _Method("search", limit=(4, "limit"), filter=(2, "query_filter"), response=_points_response),
    _Method("search_batch", batch=(1, "requests"), response=_batch_response),
    _Method("scroll", filter=(1, "scroll_filter"), response=_scroll_response),
    _Method("count", filter=(1, "count_filter")),
    _Method("retrieve", batch=(1, "ids"), response=_records_response),
    _Method("upsert", batch=(1, _POINTS)),
    _Method("upload_points", batch=(1, _POINTS)),
    _Method("upload_collection", batch=(1, "vectors")),
    _Method("update_vectors", batch=(1, _POINTS)),
    _Method("delete_vectors", batch=(2, _POINTS), filter=(2, _POINTS)),
    _Method("delete", batch=(1, "points_selector"), filter=(1, "points_selector")),
    _Method("set_payload", batch=(2, _POINTS), filter=(2, _POINTS)),
    _Method("overwrite_payload", batch=(2, _POINTS), filter=(2, _POINTS)),
    _Method("delete_payload", batch=(2, _POINTS), filter=(2, _POINTS)),
    _Method("clear_payload", batch=(1, "points_selector"), filter=(1, "points_selector")),
    _Method("batch_update_points", batch=(1, "update_operations")),
)


def _targets(module: str, cls: str) -> tuple[Target, ...]:
    return tuple(
        Target(
            module,
            f"{cls}.{m.name}",
            sc.STAGE_VECTOR_DB,
            COMPONENT,
            request=m.request,
            response=m.response,
            request_content=m.request_content if (m.filter or m.query) else None,
            response_content=_documents_content if m.response is not None else None,
        )
        for m in _METHODS
    )


class QdrantInstrumentor(RagotelInstrumentor):
    """Traces ``QdrantClient`` and ``AsyncQdrantClient`` point operations as ``vector_db`` spans."""

    library: ClassVar[str] = "qdrant"
    targets: ClassVar[tuple[Target, ...]] = (
        *_targets("qdrant_client.qdrant_client", "QdrantClient"),
        *_targets("qdrant_client.async_qdrant_client", "AsyncQdrantClient"),
    )
    dependencies: ClassVar[tuple[str, ...]] = ("qdrant-client >= 1.9",)
