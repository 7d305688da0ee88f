"""Chroma: ``Collection`` / ``AsyncCollection`` reads and writes as ``vector_db`` spans (db semconv, no content).

Hooked on the collection methods the application calls, so the span is made on the caller's thread, in the
caller's context, before Chroma hands work to its own threads or the Rust bindings. ``server.address`` /
``server.port`` are set for HTTP clients only; an embedded (ephemeral or persistent) client has no server and
the attributes are omitted. Documents, query texts, filters and result ids are recorded only with content
capture on; embeddings (query or stored vectors) are never recorded.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument
from ragotel.instrumentation._base import db_batch_size as _batch

__all__ = ["ChromaInstrumentor"]

COMPONENT: Final = "chromadb"
SYSTEM: Final = sc.DB_SYSTEM_CHROMA


@functools.lru_cache(maxsize=64)
def _server(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _common(instance: Any, operation: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.DB_SYSTEM_NAME: SYSTEM,
        sc.DB_OPERATION_NAME: operation,
        sc.DB_COLLECTION_NAME: instance.name,
        sc.DB_NAMESPACE: getattr(instance, "database", None),
    }
    get_url = getattr(instance._client, "get_api_url", None)  # HTTP clients only
    if get_url is not None:
        host, port = _server(get_url())
        attrs[sc.SERVER_ADDRESS] = host
        attrs[sc.SERVER_PORT] = port
    return attrs


def _count(value: Any) -> int | None:
    """How many records or queries ``value`` holds: one id/text/vector, a list of them, or a 2-d array."""
    if value is None:
        return None
    if isinstance(value, str | bytes):
        return 1
    shape = getattr(value, "shape", None)  # numpy array: 1-d is one vector, 2-d is a batch
    if shape is not None:
        return 1 if len(shape) == 1 else int(shape[0])
    if isinstance(value, Sequence):
        if value and isinstance(value[0], int | float):
            return 1  # a single vector given as a list of numbers
        return len(value)
    return None


# -- request extractors -----------------------------------------------------------------------------------------
def _write(operation: str) -> Any:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, operation)
        attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(_count(argument(args, kwargs, 0, "ids")))
        return attrs

    request.__name__ = f"_{operation}_request"
    return request


def _query_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _common(instance, "query")
    queries = _count(argument(args, kwargs, 0, "query_embeddings"))
    if queries is None:
        queries = _count(argument(args, kwargs, 1, "query_texts"))
    attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(queries)
    n_results = argument(args, kwargs, 5, "n_results")  # only when sent, never the default
    if isinstance(n_results, int):
        attrs[sc.RAGOTEL_DB_TOP_K] = n_results
    return attrs


def _read(operation: str, limit_index: int) -> Any:
    """``get(ids, where, limit, ...)`` / ``peek(limit)``: the ``limit`` passed is the top-k."""

    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, operation)
        limit = argument(args, kwargs, limit_index, "limit")
        if isinstance(limit, int):
            attrs[sc.RAGOTEL_DB_TOP_K] = limit
        return attrs

    request.__name__ = f"_{operation}_request"
    return request


def _count_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return _common(instance, "count")


# -- response extractors ----------------------------------------------------------------------------------------
def _query_response(instance: Any, result: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.DB_RESPONSE_RETURNED_ROWS: sum(len(row) for row in items(result["ids"]))}
    distances = result.get("distances")
    if distances:
        # Chroma returns each query's neighbours nearest first, and every metric it offers is a distance.
        firsts = [float(row[0]) for row in items(distances) if row]
        if firsts:
            attrs[sc.RAGOTEL_DB_BEST_DISTANCE] = min(firsts)
    return attrs


def _get_response(instance: Any, result: Any) -> dict[str, Any]:
    return {sc.DB_RESPONSE_RETURNED_ROWS: len(result["ids"] or [])}


# -- content (only with content capture on) ---------------------------------------------------------------------
def _filters(args: tuple[Any, ...], kwargs: Mapping[str, Any], where_at: int, document_at: int) -> dict[str, Any]:
    found = {
        "where": argument(args, kwargs, where_at, "where"),
        "where_document": argument(args, kwargs, document_at, "where_document"),
    }
    return {k: v for k, v in found.items() if v}


def _query_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    text: dict[str, Any] = {}
    texts = argument(args, kwargs, 1, "query_texts")
    if texts:
        text["query_texts"] = [texts] if isinstance(texts, str) else items(texts)
    text.update(_filters(args, kwargs, 6, 7))
    return {sc.DB_QUERY_TEXT: text} if text else None


def _get_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    text = _filters(args, kwargs, 1, 4)
    return {sc.DB_QUERY_TEXT: text} if text else None


def _delete_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    text = _filters(args, kwargs, 1, 2)
    return {sc.DB_QUERY_TEXT: text} if text else None


def _records(ids: Sequence[Any], distances: Sequence[Any] | None, documents: Sequence[Any] | None) -> list[Any]:
    records: list[dict[str, Any]] = []
    for i, record_id in enumerate(items(ids)):
        record: dict[str, Any] = {"id": str(record_id)}
        if distances is not None and i < len(distances):
            record["distance"] = float(distances[i])
        if documents is not None and i < len(documents) and documents[i] is not None:
            record["document"] = documents[i]
        records.append(record)
    return records


def _query_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    ids = items(result["ids"])
    distances = items(result.get("distances")) or [None] * len(ids)
    documents = items(result.get("documents")) or [None] * len(ids)
    per_query = [_records(row, distances[q], documents[q]) for q, row in enumerate(ids)]
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: per_query[0] if len(per_query) == 1 else per_query}


def _get_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: _records(result["ids"] or [], None, result.get("documents"))}


def _targets(module: str, cls: str) -> tuple[Target, ...]:
    def target(method: str, request: Any, **extra: Any) -> Target:
        return Target(module, f"{cls}.{method}", sc.STAGE_VECTOR_DB, COMPONENT, request=request, **extra)

    return (
        target("add", _write("add")),
        target("upsert", _write("upsert")),
        target("update", _write("update")),
        target("delete", _write("delete"), request_content=_delete_content),
        target(
            "query",
            _query_request,
            response=_query_response,
            request_content=_query_content,
            response_content=_query_result_content,
        ),
        target(
            "get",
            _read("get", 2),
            response=_get_response,
            request_content=_get_content,
            response_content=_get_result_content,
        ),
        target("peek", _read("peek", 0), response=_get_response, response_content=_get_result_content),
        target("count", _count_request),
    )


class ChromaInstrumentor(RagotelInstrumentor):
    """Traces Chroma collection operations (sync ``Collection`` and ``AsyncCollection``) as ``vector_db`` spans."""

    library: ClassVar[str] = "chromadb"
    targets: ClassVar[tuple[Target, ...]] = (
        *_targets("chromadb.api.models.Collection", "Collection"),
        *_targets("chromadb.api.models.AsyncCollection", "AsyncCollection"),
    )
    dependencies: ClassVar[tuple[str, ...]] = ("chromadb >= 0.5",)
