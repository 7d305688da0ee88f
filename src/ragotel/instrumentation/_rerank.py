"""What every framework's rerank span records, read the same way for LangChain, LlamaIndex and Haystack.

A rerank span carries the model (``ragotel.rerank.model``), the ``top_n`` asked for (``gen_ai.retrieval.top_k``,
only when the caller set one), the documents given (``ragotel.rerank.input_document_count``), the documents returned
(``ragotel.retrieval.document_count``) and their best score (``ragotel.retrieval.top_score``, in the reranker's own
scale). A reranker the framework calls that is instrumented itself (a cross-encoder, a rerank API) is the same stage
directly inside, so it merges into the framework's span: one span per rerank, with the inner model's name and scores.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

from ragotel import semconv as sc

__all__ = ["is_reranker", "rerank_request", "rerank_response", "top_n_of"]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_reranker(instance: Any) -> bool:
    """A document post-processor that reranks: its class says so (``...Rerank``/``...Ranker``) or it has a top_n.

    Filters and extractors (an embeddings filter, an LLM extractor, a metadata replacer) are not rerank steps.
    """
    name = type(instance).__name__.lower()
    return "rerank" in name or "ranker" in name or _int(getattr(instance, "top_n", None)) is not None


def top_n_of(instance: Any) -> int | None:
    """The reranker's ``top_n``/``top_k`` (a positive int), else None."""
    for attr in ("top_n", "top_k"):
        value = _int(getattr(instance, attr, None))
        if value is not None and value > 0:
            return value
    return None


def rerank_request(model: str | None, top_n: int | None, documents: Any) -> dict[str, Any]:
    """The attributes known before the rerank: model, top_n and how many documents it was given."""
    return {
        sc.RAGOTEL_RERANK_MODEL: model if isinstance(model, str) and model else None,
        sc.GEN_AI_RETRIEVAL_TOP_K: _int(top_n),
        sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT: len(documents) if isinstance(documents, list | tuple) else None,
    }


def rerank_response(returned: Any, scores: Iterable[Any]) -> dict[str, Any]:
    """Documents returned and the best of their ``scores`` (non-numbers skipped)."""
    found = [float(s) for s in scores if isinstance(s, numbers.Real) and not isinstance(s, bool)]  # numpy too
    return {
        sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(returned) if isinstance(returned, list | tuple) else None,
        sc.RAGOTEL_RETRIEVAL_TOP_SCORE: max(found) if found else None,
    }
