"""OpenInference names for backends that read them (Phoenix, Arize): the span kind of each stage, and end attributes.

Opt-in (``RAGOTEL_OPENINFERENCE=true``): an :class:`~ragotel.operation.Operation` then adds the kind when it starts a
span and :func:`end_attributes` when it ends one, both derived from what the span already carries. Nothing here
runs when the setting is off. Pure functions: they never touch a span.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ragotel import semconv as sc

__all__ = ["SPAN_KINDS", "end_attributes"]

# A vector database call is the data access of a retrieval (or an index write): RETRIEVER keeps it with the retrieval
# it serves in Phoenix's views. TOOL would say "an external function the model chose to call", which it is not.
SPAN_KINDS: Final[Mapping[str, str]] = {
    sc.STAGE_PIPELINE: "CHAIN",
    sc.STAGE_RETRIEVAL: "RETRIEVER",
    sc.STAGE_RERANK: "RERANKER",
    sc.STAGE_EMBEDDING: "EMBEDDING",
    sc.STAGE_VECTOR_DB: "RETRIEVER",
    sc.STAGE_GENERATION: "LLM",
}

# Captured content in order of preference: the first name a span carries becomes input.value / output.value.
_INPUTS: Final = (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_RETRIEVAL_QUERY_TEXT, sc.DB_QUERY_TEXT, sc.RAGOTEL_INPUT)
_OUTPUTS: Final = (sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_RETRIEVAL_DOCUMENTS, sc.RAGOTEL_OUTPUT)
_MODEL_NAMES: Final[Mapping[str, str]] = {
    sc.STAGE_GENERATION: sc.OI_LLM_MODEL_NAME,
    sc.STAGE_EMBEDDING: sc.OI_EMBEDDING_MODEL_NAME,
    sc.STAGE_RERANK: sc.OI_RERANKER_MODEL_NAME,
}
_TEXT: Final = "text/plain"
_JSON: Final = "application/json"


def end_attributes(
    stage: str,
    attributes: Mapping[str, Any],
    input_tokens: int | None,
    output_tokens: int | None,
    *,
    capture_content: bool,
) -> dict[str, Any]:
    """The OpenInference attributes for a span of ``stage`` carrying ``attributes`` with this token usage.

    ``input.value`` / ``output.value`` come only from content the span already holds, and only when content capture
    is on: with it off the span holds no content, and nothing is copied even if another processor added some.
    """
    out: dict[str, Any] = {}
    model_key = _MODEL_NAMES.get(stage)
    if model_key is not None:
        model = attributes.get(sc.GEN_AI_RESPONSE_MODEL) or attributes.get(sc.GEN_AI_REQUEST_MODEL)
        if stage == sc.STAGE_RERANK:
            model = attributes.get(sc.RAGOTEL_RERANK_MODEL) or model
        if model:
            out[model_key] = model
    provider = attributes.get(sc.GEN_AI_PROVIDER_NAME)
    if provider and stage == sc.STAGE_GENERATION:
        out[sc.OI_LLM_PROVIDER] = provider
    if input_tokens is not None:
        out[sc.OI_LLM_TOKEN_COUNT_PROMPT] = input_tokens
    if output_tokens is not None:
        out[sc.OI_LLM_TOKEN_COUNT_COMPLETION] = output_tokens
    if input_tokens is not None or output_tokens is not None:
        out[sc.OI_LLM_TOKEN_COUNT_TOTAL] = (input_tokens or 0) + (output_tokens or 0)
    user = attributes.get(sc.ENDUSER_ID)
    if user:
        out[sc.OI_USER_ID] = user
    if capture_content:
        _content(out, attributes, _INPUTS, sc.OI_INPUT_VALUE, sc.OI_INPUT_MIME_TYPE)
        _content(out, attributes, _OUTPUTS, sc.OI_OUTPUT_VALUE, sc.OI_OUTPUT_MIME_TYPE)
    return out


def _content(out: dict[str, Any], attributes: Mapping[str, Any], names: tuple[str, ...], value: str, mime: str) -> None:
    for name in names:
        text = attributes.get(name)
        if isinstance(text, str) and text:
            out[value] = text
            # Captured structures are JSON (see Operation.capture); one cut at the length limit no longer parses.
            whole_json = text[0] in "[{" and not text.endswith("…")
            out[mime] = _JSON if whole_json else _TEXT
            return
