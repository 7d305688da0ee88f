"""How ragotel names what it records: span names from a step's attributes, ``error.type`` from an exception."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ragotel import semconv as sc

__all__ = ["error_type", "span_name"]


def span_name(stage: str, attributes: Mapping[str, Any]) -> str:
    """Span naming of DESIGN.md section 3, derived from the attributes so every caller names alike."""
    if stage in (sc.STAGE_GENERATION, sc.STAGE_EMBEDDING):
        default_op = sc.OP_CHAT if stage == sc.STAGE_GENERATION else sc.OP_EMBEDDINGS
        op = attributes.get(sc.GEN_AI_OPERATION_NAME) or default_op
        model = attributes.get(sc.GEN_AI_REQUEST_MODEL)
        return f"{op} {model}" if model else str(op)
    if stage == sc.STAGE_RETRIEVAL:
        source = attributes.get(sc.GEN_AI_DATA_SOURCE_ID)
        return f"retrieval {source}" if source else "retrieval"
    if stage == sc.STAGE_VECTOR_DB:
        op = attributes.get(sc.DB_OPERATION_NAME) or "query"
        collection = attributes.get(sc.DB_COLLECTION_NAME)
        return f"{op} {collection}" if collection else str(op)
    if stage == sc.STAGE_RERANK:
        model = attributes.get(sc.RAGOTEL_RERANK_MODEL) or attributes.get(sc.GEN_AI_REQUEST_MODEL)
        return f"rerank {model}" if model else "rerank"
    name = attributes.get(sc.RAGOTEL_PIPELINE_NAME)
    return f"pipeline {name}" if name else "pipeline"


def error_type(exc: BaseException) -> str:
    """``error.type`` of an exception: its class path, as the package exports it when it re-exports the class."""
    cls = type(exc)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    # The public path when the package re-exports the class: `openai.RateLimitError`, not
    # `openai._exceptions.RateLimitError` (stable across a library's internal moves, and what users search for).
    top = module.partition(".")[0]
    if top != module and getattr(sys.modules.get(top), cls.__qualname__, None) is cls:
        return f"{top}.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"
