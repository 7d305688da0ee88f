"""Milvus (``pymilvus`` ``MilvusClient`` / ``AsyncMilvusClient``, Milvus Lite included) as ``vector_db`` spans.

The client's public data methods — search, hybrid_search, query, get, insert, upsert, delete — one span per call.
``server.address`` / ``server.port`` are the server the client talks to (Milvus Lite runs one on loopback).
``db.system.name=milvus`` (no upstream value). Filters and result entities are recorded only with content capture
on; vectors never.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument
from ragotel.instrumentation._base import db_batch_size as _batch

__all__ = ["MilvusInstrumentor"]

COMPONENT: Final = "milvus"


@functools.lru_cache(maxsize=64)
def _server(address: str) -> tuple[str | None, int | None]:
    host, _, port = address.rpartition(":")
    return (host or None), (int(port) if port.isdigit() else None)


def _common(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], operation: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.DB_SYSTEM_NAME: sc.DB_SYSTEM_MILVUS,
        sc.DB_OPERATION_NAME: operation,
        sc.DB_COLLECTION_NAME: argument(args, kwargs, 0, "collection_name"),
    }
    config = getattr(instance, "_config", None)
    address = getattr(config, "address", None)
    if isinstance(address, str) and address:
        attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT] = _server(address)
    db_name = getattr(config, "db_name", None)
    if isinstance(db_name, str) and db_name:
        attrs[sc.DB_NAMESPACE] = db_name
    return attrs


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, dict | str | int):
        return 1
    return len(value) if isinstance(value, list | tuple) else None


def _queries(data: Any) -> int | None:
    """Query vectors in ``search(data=...)``: a list of vectors (or a 2-d array), or one vector."""
    shape = getattr(data, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) == 2 else 1
    if not isinstance(data, list | tuple) or not data:
        return None
    return len(data) if not isinstance(data[0], int | float) else 1


# -- extractors -------------------------------------------------------------------------------------------------
def _write(operation: str, data_name: str) -> Any:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, args, kwargs, operation)
        attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(_count(argument(args, kwargs, 1, data_name)))
        return attrs

    request.__name__ = f"_{operation}_request"
    return request


def _search(operation: str, limit_index: int) -> Any:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, args, kwargs, operation)
        data = argument(args, kwargs, 1, "data" if operation == "search" else "reqs")
        if operation == "search":
            attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(_queries(data))
        limit = argument(args, kwargs, limit_index, "limit")  # only when sent, never the client's default
        if isinstance(limit, int):
            attrs[sc.RAGOTEL_DB_TOP_K] = limit
        return attrs

    request.__name__ = f"_{operation}_request"
    return request


def _rows(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], operation: str) -> dict[str, Any]:
    return _common(instance, args, kwargs, operation)


def _search_response(instance: Any, result: Any) -> dict[str, Any]:
    hits = [items(per_query) for per_query in items(result)]
    attrs: dict[str, Any] = {sc.DB_RESPONSE_RETURNED_ROWS: sum(len(h) for h in hits)}
    if len(hits) == 1 and hits[0]:
        # As for Qdrant: the best-ranked hit's value whatever the metric (Milvus ranks hits best first; its "distance"
        # is a similarity for COSINE, the default, and IP, a distance for L2), the result does not say which.
        attrs[sc.RAGOTEL_DB_TOP_SCORE] = float(hits[0][0]["distance"])
    return attrs


def _entities_response(instance: Any, result: Any) -> dict[str, Any]:
    return {sc.DB_RESPONSE_RETURNED_ROWS: len(result)}


def _filter_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    found = kwargs.get("filter")
    return {sc.DB_QUERY_TEXT: found} if isinstance(found, str) and found else None


def _search_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    per_query = [
        [{"id": h.get("id"), "distance": h.get("distance"), **_scalars(h.get("entity"))} for h in items(hits)]
        for hits in items(result)
    ]
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: per_query[0] if len(per_query) == 1 else per_query}


def _entities_content(instance: Any, result: Any) -> dict[str, Any] | None:
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: [_scalars(e) for e in items(result)]}


def _scalars(entity: Any) -> dict[str, Any]:
    """An entity's fields without vectors (lists of numbers, or bytes for binary vectors)."""
    if not isinstance(entity, Mapping):
        return {}
    return {k: v for k, v in entity.items() if not isinstance(v, list | tuple | bytes)}


def _targets() -> tuple[Target, ...]:
    vdb = sc.STAGE_VECTOR_DB
    rows: list[Target] = []
    for module, cls in (
        ("pymilvus.milvus_client.milvus_client", "MilvusClient"),
        ("pymilvus.milvus_client.async_milvus_client", "AsyncMilvusClient"),
    ):

        def target(method: str, request: Any, **extra: Any) -> Target:
            return Target(module, f"{cls}.{method}", vdb, COMPONENT, request=request, **extra)  # noqa: B023

        rows += [
            target(
                "search",
                _search("search", 3),
                response=_search_response,
                request_content=_filter_content,
                response_content=_search_result_content,
            ),
            target("hybrid_search", _search("hybrid_search", 3), response=_search_response,
                   response_content=_search_result_content),
            target("query", functools.partial(_rows, operation="query"), response=_entities_response,
                   request_content=_filter_content, response_content=_entities_content),
            target("get", _write("get", "ids"), response=_entities_response, response_content=_entities_content),
            target("insert", _write("insert", "data")),
            target("upsert", _write("upsert", "data")),
            target("delete", _write("delete", "ids"), request_content=_filter_content),
        ]  # fmt: skip
    return tuple(rows)


class MilvusInstrumentor(RagotelInstrumentor):
    """Traces ``MilvusClient`` and ``AsyncMilvusClient`` data operations as ``vector_db`` spans."""

    library: ClassVar[str] = "milvus"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("pymilvus >= 2.4",)
