"""Ollama client instrumentation: ``chat``, ``generate``, ``embed`` (+ legacy ``embeddings``), sync and async, streams.

Hooked on the client methods where they are defined (the module-level ``ollama.chat`` & co. call them). Sampling
parameters are read from ``options`` (a dict or ``Options``) only when set: ``num_predict`` is the max-tokens
limit. Usage is Ollama's ``prompt_eval_count`` / ``eval_count``, in the answer or in a stream's final (``done``)
chunk. Prompts and completions are recorded only with content capture on; embedding vectors never.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ragotel import semconv as sc
from ragotel.bounds import TextBuffer, items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument
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

__all__ = ["OllamaInstrumentor"]

COMPONENT: Final = "ollama"
_MODULE: Final = "ollama._client"
_OPTIONS: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, as_float),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P, as_float),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K, as_float),
    ("num_predict", sc.GEN_AI_REQUEST_MAX_TOKENS, as_int),
    ("stop", sc.GEN_AI_REQUEST_STOP_SEQUENCES, stop_sequences),
    ("seed", sc.GEN_AI_REQUEST_SEED, as_int),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY, as_float),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY, as_float),
)


# -- request ----------------------------------------------------------------------------------------------------
def _common(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], operation: str) -> dict[str, Any]:
    attrs = server_attributes(getattr(getattr(instance, "_client", None), "base_url", None))
    attrs[sc.GEN_AI_PROVIDER_NAME] = sc.PROVIDER_OLLAMA
    attrs[sc.GEN_AI_OPERATION_NAME] = operation
    model = argument(args, kwargs, 0, "model")
    if isinstance(model, str) and model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    return attrs


def _generation(operation: str) -> Any:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs = _common(instance, args, kwargs, operation)
        attrs.update(parameters(kwargs.get("options"), _OPTIONS))
        if kwargs.get("stream"):
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        output = kwargs.get("format")
        if output:
            attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"  # "json" or a JSON schema: Ollama has no other format
        return attrs

    request.__name__ = f"{operation}_request"
    return request


def embed_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``embed`` (``input``) or the legacy ``embeddings`` (one ``prompt``): model, inputs, requested dimensions."""
    attrs = _common(instance, args, kwargs, sc.OP_EMBEDDINGS)
    value = argument(args, kwargs, 1, "prompt" if "prompt" in kwargs else "input")
    if isinstance(value, str):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = 1
    elif isinstance(value, list | tuple):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = len(value)
    dimensions = as_int(kwargs.get("dimensions"))
    if dimensions is not None:
        attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimensions
    return attrs


# -- response ---------------------------------------------------------------------------------------------------
def final_attributes(result: Any) -> dict[str, Any]:
    """A chat / generate answer, or a stream's final chunk: model, done reason, token counts."""
    reason = get(result, "done_reason")
    return {
        sc.GEN_AI_RESPONSE_MODEL: get(result, "model"),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: [reason] if isinstance(reason, str) and reason else None,
        sc.GEN_AI_USAGE_INPUT_TOKENS: as_int(get(result, "prompt_eval_count")),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: as_int(get(result, "eval_count")),
    }


def generation_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``ChatResponse`` / ``GenerateResponse``."""
    return final_attributes(result)


def embed_response(instance: Any, result: Any) -> dict[str, Any]:
    """An ``EmbedResponse`` (or legacy ``EmbeddingsResponse``): model, input tokens, dimension (never the vectors)."""
    first = items(get(result, "embeddings"), 1) or [get(result, "embedding")]
    return {
        sc.GEN_AI_RESPONSE_MODEL: get(result, "model"),
        sc.GEN_AI_USAGE_INPUT_TOKENS: as_int(get(result, "prompt_eval_count")),
        sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(first[0]) if first and isinstance(first[0], list) else None,
    }


# -- content (only with content capture on) ---------------------------------------------------------------------
def _message(message: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    content = get(message, "content")
    if isinstance(content, str) and content:
        parts.append(text_part(content))
    for call in items(get(message, "tool_calls")):
        function = get(call, "function")
        parts.append(tool_call_part(None, get(function, "name"), get(function, "arguments")))
    role = get(message, "role") or "user"
    if role == "tool":
        return {"role": "tool", "parts": [tool_response_part(None, content)]}
    return {"role": str(role), "parts": parts}


def chat_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The messages as ``gen_ai.input.messages`` (a caller's generator is never iterated)."""
    messages = argument(args, kwargs, 1, "messages")
    if not isinstance(messages, list | tuple):
        return {}
    return {sc.GEN_AI_INPUT_MESSAGES: [_message(m) for m in items(messages)]}


def chat_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The answer message."""
    out = _message(get(result, "message"))
    out["role"] = "assistant"
    out["finish_reason"] = get(result, "done_reason")
    return {sc.GEN_AI_OUTPUT_MESSAGES: [out]}


def generate_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt (and ``system``) of a ``generate`` call."""
    attrs: dict[str, Any] = {}
    system = kwargs.get("system")
    if isinstance(system, str):
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = [text_part(system)]
    prompt = argument(args, kwargs, 1, "prompt")
    if given(prompt):
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [{"role": "user", "parts": [text_part(prompt)]}]
    return attrs


def generate_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The generated text."""
    message = {"role": "assistant", "parts": [text_part(get(result, "response"))]}
    message["finish_reason"] = get(result, "done_reason")
    return {sc.GEN_AI_OUTPUT_MESSAGES: [message]}


def embed_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The texts to embed (never the vectors)."""
    value = argument(args, kwargs, 1, "prompt" if "prompt" in kwargs else "input")
    return {sc.RAGOTEL_INPUT: value} if isinstance(value, str | list | tuple) else {}


# -- streams ----------------------------------------------------------------------------------------------------
class ChunkStreamReader:
    """Follows NDJSON chunks: the final (``done``) chunk has the reason and counts; text only with content on."""

    __slots__ = ("_chat", "_final", "_model", "_text")

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._model: Any = None
        self._final: Any = None
        self._text = TextBuffer()

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Note the model and the final chunk; accumulate text only when content may be captured."""
        self._model = self._model or get(chunk, "model")
        if get(chunk, "done"):
            self._final = chunk
        if op.capture_limit:
            text = get(get(chunk, "message"), "content") if self._chat else get(chunk, "response")
            if isinstance(text, str):
                self._text.add(text, op.capture_limit)

    def on_end(self, op: Operation) -> None:
        """Record what the stream showed (also when it ended early: whatever was seen)."""
        attrs = final_attributes(self._final) if self._final is not None else {}
        attrs[sc.GEN_AI_RESPONSE_MODEL] = attrs.get(sc.GEN_AI_RESPONSE_MODEL) or self._model
        op.set_attributes(attrs)
        if op.capture_content and (self._text or self._final is not None):
            reason = get(self._final, "done_reason")
            message = {"role": "assistant", "parts": [text_part(self._text.text())], "finish_reason": reason}
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [message])


def chat_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader when ``chat(stream=True)`` returned a stream."""
    return ChunkStreamReader(chat=True) if is_stream(result) else None


def generate_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader when ``generate(stream=True)`` returned a stream."""
    return ChunkStreamReader(chat=False) if is_stream(result) else None


def _targets() -> tuple[Target, ...]:
    rows: list[Target] = []
    gen, emb = sc.STAGE_GENERATION, sc.STAGE_EMBEDDING
    for cls, is_async in (("Client", False), ("AsyncClient", True)):
        rows += [
            Target(_MODULE, f"{cls}.chat", gen, COMPONENT, request=_generation(sc.OP_CHAT),
                   response=generation_response, request_content=chat_request_content,
                   response_content=chat_response_content, stream=chat_stream, is_async=is_async),
            Target(_MODULE, f"{cls}.generate", gen, COMPONENT, request=_generation(sc.OP_TEXT_COMPLETION),
                   response=generation_response, request_content=generate_request_content,
                   response_content=generate_response_content, stream=generate_stream, is_async=is_async),
            Target(_MODULE, f"{cls}.embed", emb, COMPONENT, request=embed_request, response=embed_response,
                   request_content=embed_request_content, is_async=is_async),
            Target(_MODULE, f"{cls}.embeddings", emb, COMPONENT, request=embed_request, response=embed_response,
                   request_content=embed_request_content, is_async=is_async),
        ]  # fmt: skip
    return tuple(rows)


class OllamaInstrumentor(RagotelInstrumentor):
    """Spans and metrics for the ``ollama`` client (``Client``, ``AsyncClient`` and the module-level functions)."""

    library: ClassVar[str] = "ollama"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("ollama >= 0.4",)
