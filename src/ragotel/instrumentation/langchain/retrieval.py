"""Extractors for LangChain retrievers, vector stores and embeddings: retrieval, vector_db and embedding spans.

Query text, document ids/scores and texts to embed are read only with content capture on; vectors never.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import argument
from ragotel.instrumentation.langchain.models import field, model_of, provider_of

# Where retrievers and rerankers leave a document's score in its metadata.
_SCORE_KEYS: Final = ("score", "relevance_score", "_similarity_score", "similarity_score")
_STORE_NAME_ATTRS: Final = ("collection_name", "_collection_name", "index_name", "table_name")
IN_MEMORY_SYSTEM: Final = "in_memory"


def store_name(store: Any) -> str:
    """A vector store's collection/index name when it has one, else its class name."""
    for attr in _STORE_NAME_ATTRS:
        value = getattr(store, attr, None)
        if isinstance(value, str) and value:
            return value
    name = getattr(getattr(store, "_collection", None), "name", None)
    return name if isinstance(name, str) and name else type(store).__name__


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _score(doc: Any) -> float | None:
    meta = getattr(doc, "metadata", None)
    if not isinstance(meta, Mapping):
        return None
    for key in _SCORE_KEYS:
        value = meta.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _query(args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str) -> Any:
    return kwargs.get(name, args[0] if args else None)


# -- retrievers ---------------------------------------------------------------------------------------------------
def retriever_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``BaseRetriever.invoke(input, config=None, **kwargs)``: data source and the k the caller configured."""
    store = field(instance, "vectorstore")
    attrs: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: sc.OP_RETRIEVAL}
    if store is not None:
        attrs[sc.GEN_AI_DATA_SOURCE_ID] = store_name(store)
        search_kwargs = field(instance, "search_kwargs")
        k = kwargs.get("k")
        if k is None and isinstance(search_kwargs, Mapping):
            k = search_kwargs.get("k")
        attrs[sc.GEN_AI_RETRIEVAL_TOP_K] = _int(k)
    else:
        attrs[sc.GEN_AI_DATA_SOURCE_ID] = field(instance, "name") or type(instance).__name__
        fields = getattr(instance, "model_fields_set", None) or ()
        if "k" in fields:  # only a k the user set, never the class default
            attrs[sc.GEN_AI_RETRIEVAL_TOP_K] = _int(field(instance, "k"))
    return attrs


def retriever_response(instance: Any, result: Any) -> dict[str, Any]:
    """A list of ``Document``s: count, and the best score when the documents carry one in their metadata."""
    if not isinstance(result, list):
        return {}
    scores = [s for s in (_score(d) for d in items(result)) if s is not None]
    return {
        sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(result),
        sc.RAGOTEL_RETRIEVAL_TOP_SCORE: max(scores) if scores else None,
    }


def retriever_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The query text."""
    query = _query(args, kwargs, "input")
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: query} if isinstance(query, str) else {}


def _documents(pairs: list[tuple[Any, float | None]]) -> dict[str, Any]:
    docs = [{"id": getattr(doc, "id", None), "score": score} for doc, score in pairs]
    ids = [str(d["id"]) for d in docs if d["id"] is not None]
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: docs, sc.RAGOTEL_RETRIEVAL_DOCUMENT_IDS: ids or None}


def retriever_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """Document ids and scores (never their text)."""
    return _documents([(doc, _score(doc)) for doc in items(result)]) if isinstance(result, list) else {}


# -- scored search on any vector store (a retrieval step; merges into a retriever's span) ------------------------
def scored_search_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``VectorStore.similarity_search_with_relevance_scores(query, k=4, **kwargs)``."""
    k = kwargs.get("k", args[1] if len(args) > 1 else None)
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_RETRIEVAL,
        sc.GEN_AI_DATA_SOURCE_ID: store_name(instance),
        sc.GEN_AI_RETRIEVAL_TOP_K: _int(k),
    }


def _pairs(result: Any) -> list[tuple[Any, float | None]]:
    out: list[tuple[Any, float | None]] = []
    for item in items(result) if isinstance(result, list) else ():
        if isinstance(item, tuple) and len(item) >= 2:
            score = item[1]
            out.append((item[0], float(score) if isinstance(score, int | float) else None))
    return out


def scored_search_response(instance: Any, result: Any) -> dict[str, Any]:
    """``[(Document, relevance score)]``: count and best score."""
    scores = [s for _, s in _pairs(result) if s is not None]
    return {
        sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(result) if isinstance(result, list) else None,
        sc.RAGOTEL_RETRIEVAL_TOP_SCORE: max(scores) if scores else None,
    }


def scored_search_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The query text."""
    query = _query(args, kwargs, "query")
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: query} if isinstance(query, str) else {}


def scored_search_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """Document ids and scores."""
    return _documents(_pairs(result))


# -- InMemoryVectorStore (no client of its own underneath: its operations are the vector_db steps) -------------
def _db(instance: Any, operation: str) -> dict[str, Any]:
    return {
        sc.DB_SYSTEM_NAME: IN_MEMORY_SYSTEM,
        sc.DB_OPERATION_NAME: operation,
        sc.DB_COLLECTION_NAME: type(instance).__name__,
    }


def in_memory_query_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``_similarity_search_with_score_by_vector(embedding, k=4, filter=None)``: the one search every path uses."""
    return _db(instance, "query")


def in_memory_query_response(instance: Any, result: Any) -> dict[str, Any]:
    """``[(Document, similarity, vector)]``: rows returned and the best similarity (never the vectors)."""
    scores = [s for _, s in _pairs(result) if s is not None]
    return {
        sc.DB_RESPONSE_RETURNED_ROWS: len(result) if isinstance(result, list) else None,
        sc.RAGOTEL_DB_TOP_SCORE: max(scores) if scores else None,
    }


def _batch_request(operation: str, keyword: str | None) -> Callable[..., dict[str, Any]]:
    """An ``InMemoryVectorStore`` call whose first argument (or ``keyword``, unless positional-only) is the batch."""

    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _db(instance, operation)
        batch = argument(args, kwargs, 0, keyword) if keyword is not None else (args[0] if args else None)
        if isinstance(batch, list | tuple):
            attrs[sc.DB_OPERATION_BATCH_SIZE] = len(batch)
        return attrs

    request.__name__ = f"in_memory_{operation}_request"
    return request


in_memory_add_request = _batch_request("add", "documents")  # add_documents(documents, ids=None)
in_memory_delete_request = _batch_request("delete", "ids")  # delete(ids=None)
in_memory_get_request = _batch_request("get", None)  # get_by_ids(ids, /)


def rows_response(instance: Any, result: Any) -> dict[str, Any]:
    """Rows a get returned."""
    return {sc.DB_RESPONSE_RETURNED_ROWS: len(result)} if isinstance(result, list) else {}


# -- embeddings ---------------------------------------------------------------------------------------------------
def _embedding_attrs(instance: Any, batch: int | None) -> dict[str, Any]:
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EMBEDDINGS,
        sc.GEN_AI_PROVIDER_NAME: provider_of(instance),
        sc.GEN_AI_REQUEST_MODEL: model_of(instance, {}),
        sc.RAGOTEL_EMBEDDING_BATCH_SIZE: batch,
    }


def embed_documents_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``embed_documents(texts)``: model, provider and batch size."""
    texts = kwargs.get("texts", args[0] if args else None)
    return _embedding_attrs(instance, len(texts) if isinstance(texts, list | tuple) else None)


def embed_query_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``embed_query(text)``."""
    return _embedding_attrs(instance, 1)


def embed_documents_response(instance: Any, result: Any) -> dict[str, Any]:
    """The vectors' dimension (never the vectors)."""
    if isinstance(result, list) and result and hasattr(result[0], "__len__"):
        return {sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(result[0])}
    return {}


def embed_query_response(instance: Any, result: Any) -> dict[str, Any]:
    """The vector's dimension."""
    return {sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(result)} if isinstance(result, list) else {}


def embed_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The text(s) to embed."""
    value = kwargs.get("texts", kwargs.get("text", args[0] if args else None))
    return {sc.RAGOTEL_INPUT: value} if isinstance(value, str | list | tuple) else {}
