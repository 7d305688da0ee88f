"""Extractors for LangChain rerankers: reranking document compressors and cross-encoders → ``rerank`` spans.

``BaseDocumentCompressor.compress_documents`` (+ async) of a compressor that reranks (``CrossEncoderReranker``,
``CohereRerank``, ``LLMListwiseRerank``, ``FlashrankRerank``, ... — see :func:`~.._rerank.is_reranker`) is the
rerank step; filters and extractors call through untraced. ``BaseCrossEncoder.score`` is a rerank step too: inside a
compressor it merges into the compressor's span and gives it the model and the best score (``CrossEncoderReranker``
returns its documents without scores).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import argument
from ragotel.instrumentation._rerank import is_reranker, rerank_request, rerank_response, top_n_of
from ragotel.instrumentation.langchain.models import field, model_of
from ragotel.instrumentation.langchain.retrieval import _documents, _score

__all__ = [
    "compress_request",
    "compress_request_content",
    "compress_response",
    "compress_response_content",
    "score_request",
    "score_response",
]

_MODEL_FIELDS: Final = ("model", "llm", "client", "ranker")


def _model_name(value: Any) -> str | None:
    """A model given as a name, or as an object (a cross-encoder, a chat model) that names its model."""
    if isinstance(value, str):
        return value
    if value is None:
        return None
    name = field(value, "model_name") or model_of(value, {})
    return name if isinstance(name, str) else None


def _reranker_model(instance: Any) -> str | None:
    for attr in _MODEL_FIELDS:
        name = _model_name(field(instance, attr))
        if name:
            return name
    return None


def compress_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """``compress_documents(documents, query, callbacks=None)`` of a reranking compressor; None for the others."""
    if not is_reranker(instance):
        return None
    return rerank_request(_reranker_model(instance), top_n_of(instance), argument(args, kwargs, 0, "documents"))


def compress_response(instance: Any, result: Any) -> dict[str, Any]:
    """The documents kept and the best relevance score their metadata carries (Cohere, Flashrank, Jina ...)."""
    docs = list(result) if isinstance(result, list | tuple) else None
    return rerank_response(docs, (_score(d) for d in items(docs or [])))


def compress_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The query."""
    query = argument(args, kwargs, 1, "query")
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: query} if isinstance(query, str) else {}


def compress_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """Ids and scores of the documents kept."""
    return _documents([(d, _score(d)) for d in items(result)]) if isinstance(result, list | tuple) else {}


def score_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``BaseCrossEncoder.score(text_pairs)``: the model and how many documents it scores."""
    return rerank_request(_model_name(instance), None, argument(args, kwargs, 0, "text_pairs"))


def score_response(instance: Any, result: Any) -> dict[str, Any]:
    """The best score (the documents returned are the compressor's to count)."""
    if hasattr(result, "tolist"):  # a numpy array, as sentence-transformers returns
        result = result.tolist()
    scores = list(result) if isinstance(result, list | tuple) else []
    return {sc.RAGOTEL_RETRIEVAL_TOP_SCORE: rerank_response(None, scores)[sc.RAGOTEL_RETRIEVAL_TOP_SCORE]}
