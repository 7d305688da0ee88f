"""Google Gen AI SDK (``google-genai``): ``generate_content`` (+ stream) and ``embed_content``, sync and async.

Hooked on the public ``Models`` / ``AsyncModels`` methods, so one call is one span even when automatic function
calling makes several requests inside it. The provider is ``gcp.gemini`` for the Gemini Developer API and
``gcp.vertex_ai`` for a Vertex AI client. Only parameters the caller set in ``config`` are recorded; prompts,
system instructions and answers only with content capture on; embedding vectors never.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ragotel import semconv as sc
from ragotel.bounds import TextBuffer, items
from ragotel.instrumentation._base import RagotelInstrumentor, Target
from ragotel.instrumentation._genai import (
    as_float,
    as_int,
    get,
    given,
    is_stream,
    parameters,
    server_attributes,
    stop_sequences,
    text_part,
    tool_call_part,
    tool_response_part,
)
from ragotel.telemetry import Operation

__all__ = ["GoogleGenAIInstrumentor"]

COMPONENT: Final = "google_genai"
_MODULE: Final = "google.genai.models"
_CONFIG: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, as_float),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P, as_float),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K, as_float),
    ("max_output_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, as_int),
    ("stop_sequences", sc.GEN_AI_REQUEST_STOP_SEQUENCES, stop_sequences),
    ("seed", sc.GEN_AI_REQUEST_SEED, as_int),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY, as_float),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY, as_float),
)


# -- request ----------------------------------------------------------------------------------------------------
def _common(instance: Any, kwargs: Mapping[str, Any], operation: str) -> dict[str, Any]:
    api = getattr(instance, "_api_client", None)
    attrs = server_attributes(get(getattr(api, "_http_options", None), "base_url"))
    attrs[sc.GEN_AI_PROVIDER_NAME] = (
        sc.PROVIDER_GCP_VERTEX_AI if getattr(api, "vertexai", False) else sc.PROVIDER_GCP_GEMINI
    )
    attrs[sc.GEN_AI_OPERATION_NAME] = operation
    model = kwargs.get("model")
    if isinstance(model, str):
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    return attrs


def _generate(stream: bool) -> Any:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, kwargs, sc.OP_GENERATE_CONTENT)
        config = kwargs.get("config")
        attrs.update(parameters(config, _CONFIG))
        count = as_int(get(config, "candidate_count"))
        if count is not None and count != 1:
            attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = count
        mime = get(config, "response_mime_type")
        if isinstance(mime, str):
            attrs[sc.GEN_AI_OUTPUT_TYPE] = "json" if "json" in mime else "text"
        if stream:
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        return attrs

    request.__name__ = "generate_content_stream_request" if stream else "generate_content_request"
    return request


def embed_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``embed_content``: model, how many contents, the requested dimensionality."""
    attrs = _common(instance, kwargs, sc.OP_EMBEDDINGS)
    contents = kwargs.get("contents")
    if isinstance(contents, list | tuple):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = len(contents)
    elif given(contents):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = 1
    dimensions = as_int(get(kwargs.get("config"), "output_dimensionality"))
    if dimensions is not None:
        attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimensions
    return attrs


# -- response ---------------------------------------------------------------------------------------------------
def _reason(value: Any) -> str | None:
    if isinstance(value, enum.Enum):
        value = value.value
    return value.lower() if isinstance(value, str) else None


def usage_attributes(usage: Any) -> dict[str, Any]:
    """``usage_metadata``: the prompt count includes cached tokens; thinking tokens count as output too."""
    if usage is None:
        return {}
    candidates = as_int(get(usage, "candidates_token_count"))
    thoughts = as_int(get(usage, "thoughts_token_count"))
    output = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: as_int(get(usage, "prompt_token_count")),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: output,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: as_int(get(usage, "cached_content_token_count")),
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: thoughts,
    }


def generate_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``GenerateContentResponse``: response id, model version, finish reasons, usage."""
    reasons = [r for r in (_reason(get(c, "finish_reason")) for c in items(get(result, "candidates"))) if r]
    attrs = {
        sc.GEN_AI_RESPONSE_ID: get(result, "response_id"),
        sc.GEN_AI_RESPONSE_MODEL: get(result, "model_version"),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: reasons or None,
    }
    attrs.update(usage_attributes(get(result, "usage_metadata")))
    return attrs


def embed_response(instance: Any, result: Any) -> dict[str, Any]:
    """An ``EmbedContentResponse``: the vectors' dimension (never the vectors)."""
    first = items(get(result, "embeddings"), 1)
    values = get(first[0], "values") if first else None
    return {sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(values) if isinstance(values, list) else None}


# -- content (only with content capture on) ---------------------------------------------------------------------
def _parts(content: Any) -> list[dict[str, Any]]:
    """A string, a ``Content`` or a list of parts as GenAI parts; non-text parts keep only their kind."""
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    inner = get(content, "parts")
    for part in items(inner if inner is not None else content):
        if isinstance(part, str):
            parts.append(text_part(part))
        elif get(part, "text") is not None:
            parts.append(text_part(get(part, "text")))
        elif get(part, "function_call") is not None:
            call = get(part, "function_call")
            parts.append(tool_call_part(get(call, "id"), get(call, "name"), get(call, "args")))
        elif get(part, "function_response") is not None:
            response = get(part, "function_response")
            parts.append(tool_response_part(get(response, "id"), get(response, "response")))
        else:
            parts.append({"type": "other"})
    return parts


def _role(content: Any) -> str:
    role = get(content, "role")
    return "assistant" if role == "model" else str(role or "user")


def generate_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``config.system_instruction`` and the contents (a string, one content, or a list of contents / parts)."""
    attrs: dict[str, Any] = {}
    system = get(kwargs.get("config"), "system_instruction")
    if given(system):
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = _parts(system)
    contents = kwargs.get("contents")
    if isinstance(contents, list | tuple) and any(get(c, "parts") is not None for c in items(contents)):
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [{"role": _role(c), "parts": _parts(c)} for c in items(contents)]
    elif isinstance(contents, str | list | tuple) or get(contents, "parts") is not None:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [{"role": _role(contents), "parts": _parts(contents)}]
    return attrs


def generate_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """Each candidate as an assistant message."""
    out = [
        {"role": "assistant", "parts": _parts(get(c, "content")), "finish_reason": _reason(get(c, "finish_reason"))}
        for c in items(get(result, "candidates"))
    ]
    return {sc.GEN_AI_OUTPUT_MESSAGES: out}


def embed_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The texts to embed (never the vectors)."""
    contents = kwargs.get("contents")
    if isinstance(contents, str):
        return {sc.RAGOTEL_INPUT: contents}
    texts = [t for c in items(contents) for t in ([c] if isinstance(c, str) else [p["content"] for p in _parts(c)])]
    return {sc.RAGOTEL_INPUT: texts} if texts else {}


# -- streams ----------------------------------------------------------------------------------------------------
class GenerateStreamReader:
    """Follows streamed ``GenerateContentResponse`` chunks: the last usage, id, model and finish reasons seen."""

    __slots__ = ("_id", "_model", "_reasons", "_text", "_usage")

    def __init__(self) -> None:
        self._id: Any = None
        self._model: Any = None
        self._usage: Any = None
        self._reasons: dict[int, str] = {}
        self._text = TextBuffer()

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Note ids, usage (cumulative: the latest wins) and finish reasons; text only with content capture on."""
        self._id = get(chunk, "response_id") or self._id
        self._model = get(chunk, "model_version") or self._model
        self._usage = get(chunk, "usage_metadata") or self._usage
        for i, candidate in enumerate(items(get(chunk, "candidates"))):
            reason = _reason(get(candidate, "finish_reason"))
            if reason:
                self._reasons[as_int(get(candidate, "index")) or i] = reason
            if op.capture_limit and i == 0:
                for part in _parts(get(candidate, "content")):
                    if isinstance(part.get("content"), str):
                        self._text.add(part["content"], op.capture_limit)

    def on_end(self, op: Operation) -> None:
        """Record what the stream showed (also when it ended early: whatever was seen)."""
        attrs = {sc.GEN_AI_RESPONSE_ID: self._id, sc.GEN_AI_RESPONSE_MODEL: self._model}
        if self._reasons:
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [self._reasons[i] for i in sorted(self._reasons)]
        attrs.update(usage_attributes(self._usage))
        op.set_attributes(attrs)
        if op.capture_content and (self._text or self._reasons):
            reason = self._reasons.get(min(self._reasons)) if self._reasons else None
            message = {"role": "assistant", "parts": [text_part(self._text.text())], "finish_reason": reason}
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [message])


def generate_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader for the iterator ``generate_content_stream`` returns."""
    return GenerateStreamReader() if is_stream(result) else None


def _targets() -> tuple[Target, ...]:
    rows: list[Target] = []
    for cls, is_async in (("Models", False), ("AsyncModels", True)):
        gen, emb = sc.STAGE_GENERATION, sc.STAGE_EMBEDDING
        rows += [
            Target(_MODULE, f"{cls}.generate_content", gen, COMPONENT, request=_generate(False),
                   response=generate_response, request_content=generate_request_content,
                   response_content=generate_response_content, is_async=is_async),
            Target(_MODULE, f"{cls}.generate_content_stream", gen, COMPONENT, request=_generate(True),
                   request_content=generate_request_content, stream=generate_stream, is_async=is_async),
            Target(_MODULE, f"{cls}.embed_content", emb, COMPONENT, request=embed_request, response=embed_response,
                   request_content=embed_request_content, is_async=is_async),
        ]  # fmt: skip
    return tuple(rows)


class GoogleGenAIInstrumentor(RagotelInstrumentor):
    """Spans and metrics for the ``google-genai`` client (``genai.Client`` and its ``aio`` twin)."""

    library: ClassVar[str] = "google_genai"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("google-genai >= 1.0",)
