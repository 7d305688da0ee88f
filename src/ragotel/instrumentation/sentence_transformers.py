"""sentence-transformers: ``SentenceTransformer.encode`` as ``embedding`` spans (model, batch size, dimension).

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


def _request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
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


class SentenceTransformersInstrumentor(RagotelInstrumentor):
    """Traces ``SentenceTransformer.encode`` as ``embedding`` spans."""

    library: ClassVar[str] = "sentence_transformers"
    targets: ClassVar[tuple[Target, ...]] = (
        Target(
            "sentence_transformers",
            "SentenceTransformer.encode",
            sc.STAGE_EMBEDDING,
            COMPONENT,
            request=_request,
            response=_response,
            request_content=_request_content,
        ),
    )
    dependencies: ClassVar[tuple[str, ...]] = ("sentence-transformers >= 3.0",)
