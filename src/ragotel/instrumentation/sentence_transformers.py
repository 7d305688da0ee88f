"""sentence-transformers: ``SentenceTransformer.encode`` as ``embedding`` spans, ``CrossEncoder`` as ``rerank`` spans.

``CrossEncoder.predict`` / ``rank`` give one ``rerank`` span per call (``rank`` calls ``predict``: the two merge)
with the model, ``top_k`` as top_n when passed, the documents (pairs) scored and returned, and the best score.
Query and document texts are recorded only with content capture on.
``encode_query`` / ``encode_document`` go through ``encode``, so each call is one span. The model is the hub id
the model was loaded from, or the basename of a local directory. Input texts are recorded only with content
capture on; embeddings never are. No token usage is reported: counting would mean tokenising on the app's thread.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument

__all__ = ["SentenceTransformersInstrumentor"]

COMPONENT: Final = "sentence_transformers"
PROVIDER: Final = "sentence_transformers"

_names: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def _model_name(model: Any) -> str | None:
    """Hub id (``sentence-transformers/all-MiniLM-L6-v2``) or local directory basename; cached per model object."""
    try:
        return _names[model]
    except KeyError:
        pass
    name: str | None = None
    card = getattr(model, "model_card_data", None)
    for field in ("model_id", "base_model"):
        value = getattr(card, field, None)
        if isinstance(value, str) and value:
            name = value
            break
    if name is None:
        first = next(iter(getattr(model, "_modules", {}).values()), None)
        config = getattr(getattr(first, "auto_model", None), "config", None)
        path = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
        if isinstance(path, str) and path:
            name = os.path.basename(os.path.normpath(path)) if os.path.isdir(path) else path
    _names[model] = name
    return name


def _inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    if "sentences" in kwargs:  # the pre-6.0 keyword, still accepted (deprecated) by sentence-transformers
        return kwargs["sentences"]
    return argument(args, kwargs, 0, "inputs")


def _embed_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    inputs = _inputs(args, kwargs)
    batch = len(inputs) if isinstance(inputs, list | tuple) else 1
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EMBEDDINGS,
        sc.GEN_AI_PROVIDER_NAME: PROVIDER,
        sc.GEN_AI_REQUEST_MODEL: _model_name(instance),
        sc.RAGOTEL_EMBEDDING_BATCH_SIZE: batch,
    }


def _response(instance: Any, result: Any) -> dict[str, Any] | None:
    if isinstance(result, list):  # convert_to_numpy=False: a list of tensors
        if not result:
            return None
        result = result[0]
    shape = getattr(result, "shape", None)  # numpy array or torch tensor; dicts (token embeddings) have none
    if not shape:
        return None
    return {sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: int(shape[-1])}


def _request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    inputs = _inputs(args, kwargs)
    texts = [inputs] if isinstance(inputs, str) else [t for t in items(inputs) if isinstance(t, str)]
    return {sc.RAGOTEL_INPUT: texts} if texts else None


# -- CrossEncoder -----------------------------------------------------------------------------------------------
def _pairs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    if "sentences" in kwargs:  # the pre-4.0 keyword
        return kwargs["sentences"]
    return argument(args, kwargs, 0, "inputs")


def _pair_count(pairs: Any) -> int | None:
    """Pairs in ``predict``'s input: a list of pairs, or one pair (two strings) counted as 1."""
    if not isinstance(pairs, list | tuple):
        return None
    if len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        return 1
    return len(pairs)


def _rerank_common(instance: Any) -> dict[str, Any]:
    return {sc.RAGOTEL_RERANK_MODEL: _model_name(instance)}


def _predict_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _rerank_common(instance)
    attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] = _pair_count(_pairs(args, kwargs))
    return attrs


def _predict_response(instance: Any, result: Any) -> dict[str, Any] | None:
    shape = getattr(result, "shape", None)  # numpy array or tensor; a list of tensors when not converted
    if shape is None:
        return {sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(result)} if isinstance(result, list) else None
    if len(shape) == 0:
        return {sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: 1, sc.RAGOTEL_RETRIEVAL_TOP_SCORE: float(result)}
    attrs: dict[str, Any] = {sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: int(shape[0])}
    if len(shape) == 1 and shape[0]:  # one relevance score per pair; several labels per pair have no single best
        attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] = float(result.max())
    return attrs


def _rank_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _rerank_common(instance)
    documents = argument(args, kwargs, 1, "documents")
    attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] = len(documents) if isinstance(documents, list | tuple) else None
    top_k = argument(args, kwargs, 2, "top_k")
    if isinstance(top_k, int):
        attrs[sc.GEN_AI_RETRIEVAL_TOP_K] = top_k
    return attrs


def _rank_response(instance: Any, result: Any) -> dict[str, Any]:
    # rank() returns its results best first; max() keeps that true for a version that does not sort.
    scores = [float(r["score"]) for r in items(result)]
    attrs: dict[str, Any] = {sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(result)}
    if scores:
        attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] = max(scores)
    return attrs


def _rank_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    query = argument(args, kwargs, 0, "query")
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: query} if isinstance(query, str) else None


def _rank_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    ranking = [{k: r[k] for k in ("corpus_id", "score", "text") if k in r} for r in items(result)]
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: ranking}


def _predict_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    pairs = _pairs(args, kwargs)
    if _pair_count(pairs) == 1:
        pairs = [pairs]
    texts = [list(p) for p in items(pairs) if isinstance(p, list | tuple)]
    return {sc.RAGOTEL_INPUT: texts} if texts else None


class SentenceTransformersInstrumentor(RagotelInstrumentor):
    """Traces ``SentenceTransformer.encode`` as ``embedding`` spans and ``CrossEncoder`` scoring as ``rerank`` spans."""

    library: ClassVar[str] = "sentence_transformers"
    targets: ClassVar[tuple[Target, ...]] = (
        Target(
            "sentence_transformers",
            "SentenceTransformer.encode",
            sc.STAGE_EMBEDDING,
            COMPONENT,
            request=_embed_request,
            response=_response,
            request_content=_request_content,
        ),
        Target(
            "sentence_transformers",
            "CrossEncoder.predict",
            sc.STAGE_RERANK,
            COMPONENT,
            request=_predict_request,
            response=_predict_response,
            request_content=_predict_content,
        ),
        Target(
            "sentence_transformers",
            "CrossEncoder.rank",
            sc.STAGE_RERANK,
            COMPONENT,
            request=_rank_request,
            response=_rank_response,
            request_content=_rank_content,
            response_content=_rank_result_content,
        ),
    )
    dependencies: ClassVar[tuple[str, ...]] = ("sentence-transformers >= 3.0",)
