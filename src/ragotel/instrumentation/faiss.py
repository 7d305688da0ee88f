"""FAISS: index ``search`` / ``range_search`` / ``add`` / ``add_with_ids`` / ``remove_ids`` as ``vector_db`` spans.

FAISS puts its Python ``search``, ``add``, ... on every index class that defines the C++ method (``IndexFlat``,
``IndexIVF``, ``IndexHNSW``, ``IndexBinaryFlat``, ... each has its own), so the instrumentor wraps each of those
where it is defined once faiss is imported; an index calls its sub-indexes in C++, so one Python call is one span.
An in-process index has no name: ``db.collection.name`` is its class (``IndexHNSWFlat``), which also says how it
searches. Result ids and distances are recorded only with content capture on; vectors never.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument
from ragotel.instrumentation._base import db_batch_size as _batch

__all__ = ["FaissInstrumentor"]

COMPONENT: Final = "faiss"
_METRIC_INNER_PRODUCT: Final = 0  # faiss.METRIC_INNER_PRODUCT: a similarity (higher is better); the rest are distances


def _common(instance: Any, operation: str) -> dict[str, Any]:
    return {
        sc.DB_SYSTEM_NAME: sc.DB_SYSTEM_FAISS,
        sc.DB_OPERATION_NAME: operation,
        sc.DB_COLLECTION_NAME: type(instance).__name__,
    }


def _rows(x: Any) -> int | None:
    """Vectors (or ids) in an array argument: the first dimension of a 2-d array, the length of a 1-d one."""
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape else None


def _similarity(instance: Any) -> bool:
    return getattr(instance, "metric_type", None) == _METRIC_INNER_PRODUCT


# -- extractors -------------------------------------------------------------------------------------------------
def _write(operation: str) -> Any:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, operation)
        attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(_rows(argument(args, kwargs, 0, "x")))
        return attrs

    request.__name__ = f"_{operation}_request"
    return request


def _search_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _common(instance, "search")
    attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(_rows(argument(args, kwargs, 0, "x")))
    k = argument(args, kwargs, 1, "k")
    if isinstance(k, int):
        attrs[sc.RAGOTEL_DB_TOP_K] = k
    return attrs


def _search_response(instance: Any, result: Any) -> dict[str, Any]:
    distances, labels = result
    found = labels >= 0  # -1 marks a missing neighbour (fewer vectors than k, or an empty IVF list)
    attrs: dict[str, Any] = {sc.DB_RESPONSE_RETURNED_ROWS: int(found.sum())}
    firsts = distances[:, 0][found[:, 0]] if distances.ndim == 2 and distances.shape[1] else distances[:0]
    if firsts.size:
        if _similarity(instance):
            attrs[sc.RAGOTEL_DB_TOP_SCORE] = float(firsts.max())
        else:
            attrs[sc.RAGOTEL_DB_BEST_DISTANCE] = float(firsts.min())
    return attrs


def _range_search_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _common(instance, "range_search")
    attrs[sc.DB_OPERATION_BATCH_SIZE] = _batch(_rows(argument(args, kwargs, 0, "x")))
    return attrs


def _range_search_response(instance: Any, result: Any) -> dict[str, Any]:
    return {sc.DB_RESPONSE_RETURNED_ROWS: len(result[2])}


def _search_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    distances, labels = result
    key = "score" if _similarity(instance) else "distance"
    per_query = [
        [{"id": int(i), key: float(d)} for i, d in zip(items(row_i), items(row_d), strict=False) if i >= 0]
        for row_i, row_d in zip(items(labels.tolist()), items(distances.tolist()), strict=False)
    ]
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: per_query[0] if len(per_query) == 1 else per_query}


_TABLE: Final[dict[str, dict[str, Any]]] = {
    "search": {"request": _search_request, "response": _search_response, "response_content": _search_result_content},
    "range_search": {"request": _range_search_request, "response": _range_search_response},
    "add": {"request": _write("add")},
    "add_with_ids": {"request": _write("add_with_ids")},
    "remove_ids": {"request": _write("remove_ids")},
}


def _target(cls: str, method: str) -> Target:
    return Target("faiss", f"{cls}.{method}", sc.STAGE_VECTOR_DB, COMPONENT, **_TABLE[method])


def _defining_classes(module: Any) -> list[tuple[str, str]]:
    """(class, method) for every faiss class that defines its own Python replacement of a traced method."""
    found = []
    for name, cls in sorted(vars(module).items()):
        if not inspect.isclass(cls) or name == "Index":
            continue
        for method in _TABLE:
            own = vars(cls).get(method)
            if getattr(own, "__name__", None) == f"replacement_{method}":
                found.append((name, method))
    return found


class FaissInstrumentor(RagotelInstrumentor):
    """Traces FAISS index searches and writes, on every index class, as ``vector_db`` spans."""

    library: ClassVar[str] = "faiss"
    targets: ClassVar[tuple[Target, ...]] = tuple(_target("Index", method) for method in _TABLE)
    # faiss ships as faiss-cpu, faiss-gpu, faiss-gpu-cu12 or conda's faiss: no one distribution to require.
    dependencies: ClassVar[tuple[str, ...]] = ()

    def _instrument_extra(self, **kwargs: Any) -> None:
        """Wrap each index class defining its own ``search``, ``add``, ... (the base ``Index`` is in ``targets``)."""
        module = sys.modules.get("faiss")
        if module is None:
            return
        seen: set[tuple[int, str]] = set()
        for cls, method in _defining_classes(module):
            wrap = functools.partial(self._wrap_target, _target(cls, method), seen)
            _guard.warned(f"instrumenting faiss.{cls}.{method}", wrap, None)
