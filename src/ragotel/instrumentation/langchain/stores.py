"""Any LangChain ``VectorStore``'s searches as ``vector_db`` spans — unless an instrumented client underneath made one.

A store backed by an instrumented client (Chroma, Qdrant, FAISS, LanceDB, Milvus, LangChain's in-memory store...)
already gets a precise ``vector_db`` span from that client; a second one from LangChain would count the query twice.
Which stores those are is not known here (other instrumentations add them), so the decision is made after the call:
the search runs with a watch in its context (:data:`~ragotel.operation.VECTOR_DB_WATCH_KEY`) that every
``vector_db`` operation opened underneath trips. When nothing tripped it, the span is recorded then, backdated to
the call's start, as the caller's child — the store's whole search, including embedding the query, whose own span
sits beside it. Only the outermost search of a call is counted (``similarity_search`` → ``similarity_search_with_
score`` inside a store is one search); ``as_retriever`` paths go through these methods.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ragotel import _guard
from ragotel import semconv as sc
from ragotel import telemetry as _telemetry
from ragotel.bounds import items
from ragotel.instrumentation._base import argument
from ragotel.instrumentation.langchain.models import COMPONENT
from ragotel.instrumentation.langchain.retrieval import IN_MEMORY_SYSTEM, store_name
from ragotel.operation import VECTOR_DB_WATCH_KEY, Operation

__all__ = ["SEARCH_METHODS", "search_wrapper", "store_system"]

# Method (sync and async) -> db.operation.name. The async defaults run the sync method in an executor, inside the
# same watch: one span.
SEARCH_METHODS: Final = {
    "similarity_search": "similarity_search",
    "asimilarity_search": "similarity_search",
    "similarity_search_with_score": "similarity_search_with_score",
    "asimilarity_search_with_score": "similarity_search_with_score",
    "similarity_search_by_vector": "similarity_search_by_vector",
    "asimilarity_search_by_vector": "similarity_search_by_vector",
    "similarity_search_with_score_by_vector": "similarity_search_with_score_by_vector",
    "asimilarity_search_with_score_by_vector": "similarity_search_with_score_by_vector",
    "similarity_search_with_relevance_scores": "similarity_search_with_relevance_scores",
    "asimilarity_search_with_relevance_scores": "similarity_search_with_relevance_scores",
    "max_marginal_relevance_search": "max_marginal_relevance_search",
    "amax_marginal_relevance_search": "max_marginal_relevance_search",
    "max_marginal_relevance_search_by_vector": "max_marginal_relevance_search_by_vector",
    "amax_marginal_relevance_search_by_vector": "max_marginal_relevance_search_by_vector",
    "search": "search",
    "asearch": "search",
}
_RELEVANCE: Final = "similarity_search_with_relevance_scores"  # scores normalised to 0..1, higher is better
# Packages whose classes are many stores: the class names the system; a dedicated package names it itself.
_SHARED_PACKAGES: Final = frozenset({"langchain_community", "langchain_core", "langchain_classic", "langchain"})


_systems: dict[type, str] = {}


def store_system(store: Any) -> str:
    """``db.system.name`` for a LangChain store: its integration package's name, else its class name, lowercase."""
    cls = type(store)
    found = _systems.get(cls)
    if found is not None:
        return found
    package = cls.__module__.partition(".")[0]
    if any(k.__name__ == "InMemoryVectorStore" for k in cls.__mro__):
        found = IN_MEMORY_SYSTEM
    elif package.startswith("langchain_") and package not in _SHARED_PACKAGES:
        found = package.removeprefix("langchain_")  # langchain_chroma -> chroma, langchain_milvus -> milvus
    else:
        found = cls.__name__.lower()  # langchain_community.vectorstores.FAISS -> faiss
    if len(_systems) < 1024:  # classes are few; never grow without bound
        _systems[cls] = found
    return found


# -- extractors (pure) -----------------------------------------------------------------------------------------------
def _request(instance: Any, operation: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    k = argument(args, kwargs, 1, "k")
    return {
        sc.DB_SYSTEM_NAME: store_system(instance),
        sc.DB_OPERATION_NAME: operation,
        sc.DB_COLLECTION_NAME: store_name(instance),
        sc.RAGOTEL_DB_TOP_K: k if isinstance(k, int) and not isinstance(k, bool) else None,
    }


def _response(operation: str, result: Any) -> dict[str, Any]:
    if not isinstance(result, list):
        return {}
    attrs: dict[str, Any] = {sc.DB_RESPONSE_RETURNED_ROWS: len(result)}
    if operation == _RELEVANCE:  # other scores may be distances: their direction depends on the store's metric
        scores = [float(r[1]) for r in items(result) if isinstance(r, tuple) and isinstance(r[1], int | float)]
        attrs[sc.RAGOTEL_DB_TOP_SCORE] = max(scores) if scores else None
    return attrs


def _request_content(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    query = argument(args, kwargs, 0, "query")
    return {sc.DB_QUERY_TEXT: query} if isinstance(query, str) else {}


def _response_content(result: Any) -> dict[str, Any]:
    records = []
    for row in items(result) if isinstance(result, list) else ():
        doc, score = (row[0], row[1]) if isinstance(row, tuple) and len(row) >= 2 else (row, None)
        record: dict[str, Any] = {"id": getattr(doc, "id", None)}
        if isinstance(score, int | float):
            record["score"] = float(score)
        records.append(record)
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: records}


# -- the deferred step -----------------------------------------------------------------------------------------------
class _Search:
    """One outermost store search: when it started, and whether a client ``vector_db`` step ran inside it."""

    __slots__ = ("covered", "started")

    def __init__(self) -> None:
        self.covered = False
        self.started = (time.time_ns(), time.perf_counter())

    def __call__(self) -> None:
        """Tripped by a ``vector_db`` operation opened inside the search."""
        self.covered = True

    def record(
        self,
        instance: Any,
        operation: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        result: Any,
        exc: BaseException | None,
    ) -> None:
        """Record the search as a span now (backdated), unless a client underneath recorded it. Never raises."""
        if self.covered:
            return
        where = f"langchain vector store search ({operation})"
        none: dict[str, Any] = {}
        attrs = _guard.call(where, functools.partial(_request, instance, operation, args, kwargs), none)
        op = _telemetry.current()._open(sc.STAGE_VECTOR_DB, COMPONENT, attrs, attach=False, started=self.started)
        _guard.call(where, functools.partial(_read, op, operation, args, kwargs, result, exc), None)
        op.end(exc)


def _read(
    op: Operation, operation: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any, exc: Any
) -> None:
    if op.capture_content:
        for key, value in _request_content(args, kwargs).items():
            op.capture(key, value)
    if exc is not None:
        return
    op.set_attributes(_response(operation, result))
    if op.capture_content:
        for key, value in _response_content(result).items():
            op.capture(key, value)


def _begin() -> tuple[_Search, object] | None:
    """Start watching, unless suppressed or inside another search (then the call is part of that one)."""
    if not is_instrumentation_enabled() or otel_context.get_value(VECTOR_DB_WATCH_KEY) is not None:
        return None
    search = _Search()
    return search, otel_context.attach(otel_context.set_value(VECTOR_DB_WATCH_KEY, search))


def search_wrapper(method: str) -> Callable[[Any], Callable[..., Any]]:
    """The wrapper factory for one search method name (see :class:`~ragotel.instrumentation._classes.SubclassHook`)."""
    operation = SEARCH_METHODS[method]
    where = f"langchain vector store search ({method})"

    def end(started: tuple[_Search, object], instance: Any, args: Any, kwargs: Any, result: Any, exc: Any) -> None:
        search, token = started
        otel_context.detach(token)  # type: ignore[arg-type]  # the token attach() returned
        search.record(instance, operation, args, kwargs, result, exc)

    def factory(original: Any) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(original):

            async def async_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                started = _guard.call(where, _begin, None)
                if started is None:
                    return await wrapped(*args, **kwargs)
                try:
                    result = await wrapped(*args, **kwargs)
                except BaseException as exc:
                    end(started, instance, args, kwargs, None, exc)
                    raise
                end(started, instance, args, kwargs, result, None)
                return result

            return async_wrapper

        def sync_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            started = _guard.call(where, _begin, None)
            if started is None:
                return wrapped(*args, **kwargs)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                end(started, instance, args, kwargs, None, exc)
                raise
            end(started, instance, args, kwargs, result, None)
            return result

        return sync_wrapper

    return factory
