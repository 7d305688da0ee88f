"""OpenAI client instrumentation: chat completions, completions, embeddings and responses — sync, async, streams, raw.

Hooks the resource methods where they are defined (``Completions.create``/``parse`` and their async twins, ...), so
``client.chat.completions.stream(...)``, ``with_raw_response`` and ``with_streaming_response`` all pass through the
same hooks once. Only request parameters the caller actually passed are recorded (the client's ``omit``/``NOT_GIVEN``
placeholders and its internal defaults never are). Prompts and completions are read only with content capture on.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Final

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.instrumentation._base import (
    ENVELOPE_LAZY,
    ENVELOPE_READY,
    RagotelInstrumentor,
    Target,
    end_stream,
)
from ragotel.telemetry import Operation

__all__ = ["OpenAIInstrumentor"]

COMPONENT: Final = "openai"
PROVIDER_OPENAI: Final = "openai"
PROVIDER_AZURE: Final = "azure.ai.openai"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_PLACEHOLDERS: Final = frozenset({"NotGiven", "Omit"})


# -- small readers ------------------------------------------------------------------------------------------------
def _given(value: Any) -> bool:
    """True for a value the caller really passed (not None, not the client's ``omit``/``NOT_GIVEN`` sentinels)."""
    return value is not None and type(value).__name__ not in _PLACEHOLDERS


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings (request params are TypedDicts), ``obj.key`` for response models."""
    if isinstance(obj, dict):  # TypedDict params are plain dicts
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# base URL object -> its attributes; the URL is immutable and parsing it costs more than the rest of the extractor.
_server_cache: dict[int, tuple[Any, dict[str, Any]]] = {}


def _client_attributes(instance: Any) -> dict[str, Any]:
    """Provider and server address/port of the client a resource belongs to."""
    client = getattr(instance, "_client", None)
    url = getattr(client, "base_url", None)
    cached = _server_cache.get(id(url))
    if cached is not None and cached[0] is url:
        return dict(cached[1])
    attrs: dict[str, Any] = {
        sc.GEN_AI_PROVIDER_NAME: PROVIDER_AZURE if "Azure" in type(client).__name__ else PROVIDER_OPENAI
    }
    host = getattr(url, "host", None)
    if host:
        attrs[sc.SERVER_ADDRESS] = host
        port = getattr(url, "port", None) or _DEFAULT_PORTS.get(getattr(url, "scheme", ""))
        if port:
            attrs[sc.SERVER_PORT] = port
    if url is not None:
        if len(_server_cache) >= 256:  # bounded: clients are few; a process making many just recomputes
            _server_cache.clear()
        _server_cache[id(url)] = (url, dict(attrs))
    return attrs


def _stop_sequences(stop: Any) -> list[str] | None:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list | tuple) and all(isinstance(s, str) for s in stop):
        return list(stop)
    return None


def _output_type(response_format: Any) -> str | None:
    if isinstance(response_format, type):  # .parse(response_format=<pydantic class>)
        return "json"
    kind = _get(response_format, "type")
    if kind in ("json_object", "json_schema"):
        return "json"
    return "text" if kind == "text" else None


def _sampling(kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    """Sampling parameters shared by chat and completions, each only when the caller passed it."""
    for key, name in (
        ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
        ("top_p", sc.GEN_AI_REQUEST_TOP_P),
        ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
        ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ):
        value = kwargs.get(key)
        if _given(value):
            attrs[name] = _float(value)
    seed = kwargs.get("seed")
    if _given(seed):
        attrs[sc.GEN_AI_REQUEST_SEED] = _int(seed)
    stop = kwargs.get("stop")
    if _given(stop):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = _stop_sequences(stop)
    n = kwargs.get("n")
    if _given(n) and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = _int(n)
    stream = kwargs.get("stream")
    if _given(stream):
        attrs[sc.GEN_AI_REQUEST_STREAM] = bool(stream)


def _usage(usage: Any) -> dict[str, Any]:
    """Token usage of a chat/completions (``prompt_tokens``...) or responses (``input_tokens``...) usage object."""
    if usage is None:
        return {}
    input_tokens = _get(usage, "prompt_tokens")
    output_tokens = _get(usage, "completion_tokens")
    in_details = _get(usage, "prompt_tokens_details")
    out_details = _get(usage, "completion_tokens_details")
    if input_tokens is None and output_tokens is None:
        input_tokens = _get(usage, "input_tokens")
        output_tokens = _get(usage, "output_tokens")
        in_details = _get(usage, "input_tokens_details")
        out_details = _get(usage, "output_tokens_details")
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: _int(input_tokens),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _int(output_tokens),
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _int(_get(in_details, "cached_tokens")) if in_details else None,
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _int(_get(out_details, "reasoning_tokens")) if out_details else None,
    }


def _is_stream(result: Any) -> bool:
    # An ABC check (cached per class), not hasattr: a missing attribute on a pydantic model raises expensively.
    return isinstance(result, Iterator | AsyncIterator)


_ENVELOPES: Final = frozenset({"LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"})


def envelope(result: Any) -> str | None:
    """Raw responses: a ``with_raw_response`` body is in memory unless streamed; a streaming response's is not."""
    name = type(result).__name__
    if name not in _ENVELOPES:
        return None
    if name == "LegacyAPIResponse" and not getattr(result, "_stream", True):
        return ENVELOPE_READY
    return ENVELOPE_LAZY


# -- content (called only with content capture on) ----------------------------------------------------------------
def _text_part(text: Any) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _parts(content: Any) -> list[dict[str, Any]]:
    """Message content (a string or typed parts) as GenAI semconv parts; non-text parts keep only their type."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_part(content)]
    parts: list[dict[str, Any]] = []
    if isinstance(content, Iterable):
        for part in content:
            kind = _get(part, "type")
            text = _get(part, "text")
            if isinstance(text, str) and kind in ("text", "input_text", "output_text", None):
                parts.append(_text_part(text))
            elif kind is not None:
                parts.append({"type": str(kind)})
    return parts


def _tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in tool_calls or ():
        function = _get(call, "function")
        parts.append(
            {
                "type": "tool_call",
                "id": _get(call, "id"),
                "name": _get(function, "name"),
                "arguments": _get(function, "arguments"),
            }
        )
    return parts


def _chat_message(message: Any) -> dict[str, Any]:
    role = _get(message, "role") or "user"
    if role == "tool":
        response = {"type": "tool_call_response", "id": _get(message, "tool_call_id"), "response": None}
        response["response"] = _get(message, "content")
        return {"role": "tool", "parts": [response]}
    parts = _parts(_get(message, "content")) + _tool_call_parts(_get(message, "tool_calls"))
    return {"role": role, "parts": parts}


def chat_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt messages as ``gen_ai.input.messages``."""
    messages = kwargs.get("messages")
    if not isinstance(messages, list | tuple):  # never iterate a caller's generator
        return {}
    return {sc.GEN_AI_INPUT_MESSAGES: [_chat_message(m) for m in messages]}


def chat_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The completion choices as ``gen_ai.output.messages``."""
    out = []
    for choice in _get(result, "choices") or ():
        message = _get(choice, "message")
        parts = _parts(_get(message, "content")) + _tool_call_parts(_get(message, "tool_calls"))
        out.append({"role": "assistant", "parts": parts, "finish_reason": _get(choice, "finish_reason")})
    return {sc.GEN_AI_OUTPUT_MESSAGES: out}


def completion_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt(s) of a legacy completion as user messages."""
    prompt = kwargs.get("prompt")
    if not _given(prompt):
        return {}
    prompts = prompt if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt) else [prompt]
    return {sc.GEN_AI_INPUT_MESSAGES: [{"role": "user", "parts": [_text_part(p)]} for p in prompts]}


def completion_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The completion texts."""
    out = [
        {"role": "assistant", "parts": [_text_part(_get(c, "text"))], "finish_reason": _get(c, "finish_reason")}
        for c in _get(result, "choices") or ()
    ]
    return {sc.GEN_AI_OUTPUT_MESSAGES: out}


def embeddings_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The texts to embed (never the vectors)."""
    value = kwargs.get("input")
    return {sc.RAGOTEL_INPUT: value} if isinstance(value, str | list | tuple) else {}


def responses_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Instructions as ``gen_ai.system_instructions``, input as ``gen_ai.input.messages``."""
    attrs: dict[str, Any] = {}
    instructions = kwargs.get("instructions")
    if _given(instructions) and isinstance(instructions, str):
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = [_text_part(instructions)]
    value = kwargs.get("input")
    if isinstance(value, str):
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [{"role": "user", "parts": [_text_part(value)]}]
    elif isinstance(value, list | tuple):  # never iterate a caller's generator
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [
            {"role": _get(item, "role") or str(_get(item, "type")), "parts": _parts(_get(item, "content"))}
            for item in value
        ]
    return attrs


def responses_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The output message items of a response."""
    out = []
    for item in _get(result, "output") or ():
        if _get(item, "type") == "message":
            out.append({"role": _get(item, "role") or "assistant", "parts": _parts(_get(item, "content"))})
        elif _get(item, "type") == "function_call":
            call = {"type": "tool_call", "id": _get(item, "call_id"), "name": _get(item, "name")}
            call["arguments"] = _get(item, "arguments")
            out.append({"role": "assistant", "parts": [call]})
    if out:
        out[-1]["finish_reason"] = _responses_finish_reason(result)
    return {sc.GEN_AI_OUTPUT_MESSAGES: out}


# -- request / response extractors --------------------------------------------------------------------------------
def chat_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``chat.completions.create``/``parse``: operation, provider, server, model and the parameters passed."""
    attrs = _client_attributes(instance)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_CHAT
    model = kwargs.get("model")
    if _given(model):
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    max_tokens = kwargs.get("max_completion_tokens")
    if not _given(max_tokens):
        max_tokens = kwargs.get("max_tokens")
    if _given(max_tokens):
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = _int(max_tokens)
    _sampling(kwargs, attrs)
    tier = kwargs.get("service_tier")
    if _given(tier) and tier != "auto":
        attrs[sc.GEN_AI_OPENAI_REQUEST_SERVICE_TIER] = str(tier)
    response_format = kwargs.get("response_format")
    if _given(response_format):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = _output_type(response_format)
    return attrs


def completion_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Legacy ``completions.create``."""
    attrs = _client_attributes(instance)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_TEXT_COMPLETION
    model = kwargs.get("model")
    if _given(model):
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    max_tokens = kwargs.get("max_tokens")
    if _given(max_tokens):
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = _int(max_tokens)
    _sampling(kwargs, attrs)
    return attrs


def embeddings_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``embeddings.create``: model, batch size, requested dimensions and encoding format."""
    attrs = _client_attributes(instance)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_EMBEDDINGS
    model = kwargs.get("model")
    if _given(model):
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    value = kwargs.get("input")
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = 1
    elif isinstance(value, list | tuple):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = len(value)
    dimensions = kwargs.get("dimensions")
    if _given(dimensions):
        attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = _int(dimensions)
    encoding = kwargs.get("encoding_format")
    if _given(encoding):
        attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [str(encoding)]
    return attrs


def responses_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``responses.create``/``parse``."""
    attrs = _client_attributes(instance)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_CHAT
    model = kwargs.get("model")
    if _given(model):
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    max_tokens = kwargs.get("max_output_tokens")
    if _given(max_tokens):
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = _int(max_tokens)
    for key, name in (("temperature", sc.GEN_AI_REQUEST_TEMPERATURE), ("top_p", sc.GEN_AI_REQUEST_TOP_P)):
        value = kwargs.get(key)
        if _given(value):
            attrs[name] = _float(value)
    stream = kwargs.get("stream")
    if _given(stream):
        attrs[sc.GEN_AI_REQUEST_STREAM] = bool(stream)
    tier = kwargs.get("service_tier")
    if _given(tier) and tier != "auto":
        attrs[sc.GEN_AI_OPENAI_REQUEST_SERVICE_TIER] = str(tier)
    text_format = kwargs.get("text_format")
    if _given(text_format):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"
    return attrs


def chat_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``ChatCompletion`` (or legacy ``Completion``): id, model, finish reasons, usage, fingerprint, tier."""
    reasons = [r for r in (_get(c, "finish_reason") for c in _get(result, "choices") or ()) if isinstance(r, str)]
    attrs = {
        sc.GEN_AI_RESPONSE_ID: _get(result, "id"),
        sc.GEN_AI_RESPONSE_MODEL: _get(result, "model"),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: reasons or None,
        sc.GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT: _get(result, "system_fingerprint"),
        sc.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: _get(result, "service_tier"),
    }
    attrs.update(_usage(_get(result, "usage")))
    return attrs


def embeddings_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``CreateEmbeddingResponse``: model, input tokens, vector dimension (never the vectors)."""
    attrs: dict[str, Any] = {sc.GEN_AI_RESPONSE_MODEL: _get(result, "model")}
    usage = _get(result, "usage")
    attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = _int(_get(usage, "prompt_tokens"))
    data = _get(result, "data")
    if data:
        vector = _get(data[0], "embedding")
        if isinstance(vector, list):
            attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(vector)
    return attrs


def _responses_finish_reason(result: Any) -> str | None:
    status = _get(result, "status")
    if status == "completed":
        return "stop"
    if status == "incomplete":
        reason = _get(_get(result, "incomplete_details"), "reason")
        return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    return "error" if status == "failed" else None


def responses_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``Response``: id, model, status as finish reason, usage, service tier."""
    reason = _responses_finish_reason(result)
    attrs = {
        sc.GEN_AI_RESPONSE_ID: _get(result, "id"),
        sc.GEN_AI_RESPONSE_MODEL: _get(result, "model"),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: [reason] if reason else None,
        sc.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: _get(result, "service_tier"),
    }
    attrs.update(_usage(_get(result, "usage")))
    return attrs


# -- streams ------------------------------------------------------------------------------------------------------
class ChoiceStreamReader:
    """Follows ``ChatCompletionChunk``/``Completion`` chunks: id, model, finish reasons, the include_usage chunk.

    Completion text is accumulated only with content capture on.
    """

    __slots__ = ("_chat", "_finish", "_first", "_texts", "_usage")

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._first: Any = None
        self._usage: Any = None
        self._finish: dict[int, str] = {}
        self._texts: dict[int, list[str]] = {}

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Note ids, finish reasons and usage; accumulate text only when content may be captured."""
        if self._first is None:
            self._first = chunk
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = usage
        capture = op.capture_content
        for choice in getattr(chunk, "choices", None) or ():
            index = getattr(choice, "index", 0) or 0
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self._finish[index] = reason
            if capture:
                text = getattr(getattr(choice, "delta", None), "content", None) if self._chat else choice.text
                if text:
                    self._texts.setdefault(index, []).append(text)

    def on_end(self, op: Operation) -> None:
        """Record what the stream showed (also when it ended early: whatever was seen)."""
        first = self._first
        attrs: dict[str, Any] = {}
        if first is not None:
            attrs[sc.GEN_AI_RESPONSE_ID] = getattr(first, "id", None)
            attrs[sc.GEN_AI_RESPONSE_MODEL] = getattr(first, "model", None)
            attrs[sc.GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = getattr(first, "system_fingerprint", None)
            attrs[sc.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER] = getattr(first, "service_tier", None)
        if self._finish:
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [self._finish[i] for i in sorted(self._finish)]
        attrs.update(_usage(self._usage))
        op.set_attributes(attrs)
        if op.capture_content and (self._texts or self._finish):
            indexes = sorted(set(self._texts) | set(self._finish))
            messages = [
                {
                    "role": "assistant",
                    "parts": [_text_part("".join(self._texts.get(i, ())))],
                    "finish_reason": self._finish.get(i),
                }
                for i in indexes
            ]
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, messages)


class ResponsesStreamReader:
    """Follows Responses API stream events; the final ``response.completed``/``incomplete``/``failed`` has it all."""

    __slots__ = ("_final", "_started", "_texts")

    def __init__(self) -> None:
        self._started: Any = None
        self._final: Any = None
        self._texts: list[str] = []

    def on_chunk(self, op: Operation, event: Any) -> None:
        """Keep the created and final response objects; text deltas only with content capture on."""
        kind = getattr(event, "type", None)
        if kind == "response.created":
            self._started = getattr(event, "response", None)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self._final = getattr(event, "response", None)
        elif kind == "response.output_text.delta" and op.capture_content:
            delta = getattr(event, "delta", None)
            if isinstance(delta, str):
                self._texts.append(delta)

    def on_end(self, op: Operation) -> None:
        """Record the final response (or the started one, when the stream ended before it)."""
        final = self._final
        if final is not None:
            op.set_attributes(responses_response(None, final))
            if op.capture_content:
                for key, value in responses_response_content(None, final).items():
                    op.capture(key, value)
            return
        if self._started is not None:
            op.set_attributes(
                {
                    sc.GEN_AI_RESPONSE_ID: getattr(self._started, "id", None),
                    sc.GEN_AI_RESPONSE_MODEL: getattr(self._started, "model", None),
                }
            )
        if op.capture_content and self._texts:
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [{"role": "assistant", "parts": [_text_part("".join(self._texts))]}])


def chat_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader when ``create(stream=True)`` returned a stream."""
    return ChoiceStreamReader(chat=True) if _is_stream(result) else None


def completion_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader for a streamed legacy completion."""
    return ChoiceStreamReader(chat=False) if _is_stream(result) else None


def responses_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader for a streamed response."""
    return ResponsesStreamReader() if _is_stream(result) else None


# -- targets ------------------------------------------------------------------------------------------------------
_CHAT = "openai.resources.chat.completions.completions"
_COMPLETIONS = "openai.resources.completions"
_EMBEDDINGS = "openai.resources.embeddings"
_RESPONSES = "openai.resources.responses.responses"


def _targets() -> tuple[Target, ...]:
    gen, emb = sc.STAGE_GENERATION, sc.STAGE_EMBEDDING
    rows: list[Target] = []
    # (module, class, methods, request, response, request content, response content, stream, stage)
    table = (
        (_CHAT, "Completions", ("create", "parse"), chat_request, chat_response,
         chat_request_content, chat_response_content, chat_stream, gen),
        (_COMPLETIONS, "Completions", ("create",), completion_request, chat_response,
         completion_request_content, completion_response_content, completion_stream, gen),
        (_EMBEDDINGS, "Embeddings", ("create",), embeddings_request, embeddings_response,
         embeddings_request_content, None, None, emb),
        (_RESPONSES, "Responses", ("create", "parse"), responses_request, responses_response,
         responses_request_content, responses_response_content, responses_stream, gen),
    )  # fmt: skip
    for module, cls, methods, request, response, req_content, resp_content, stream, stage in table:
        for prefix, is_async in (("", False), ("Async", True)):
            for method in methods:
                rows.append(
                    Target(
                        module,
                        f"{prefix}{cls}.{method}",
                        stage,
                        COMPONENT,
                        request=request,
                        response=response,
                        request_content=req_content,
                        response_content=resp_content,
                        stream=stream,
                        # the async `create`s are sync functions (a decorator) returning a coroutine
                        is_async=is_async,
                        envelope=envelope,
                    )
                )
    return tuple(rows)


# The `.stream()` helpers wrap our stream in their own object and close only the HTTP response on exit:
# closing that object must also end the span (otherwise it would last until garbage collection).
_HELPER_STREAMS: Final = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream", False),
    ("openai.lib.streaming.chat._completions", "AsyncChatCompletionStream", True),
    ("openai.lib.streaming.responses._responses", "ResponseStream", False),
    ("openai.lib.streaming.responses._responses", "AsyncResponseStream", True),
)


def _close_helper_sync(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        raw = getattr(instance, "_raw_stream", None)
        _guard.call("ending the followed stream", lambda: end_stream(raw), None)


async def _close_helper_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        raw = getattr(instance, "_raw_stream", None)
        _guard.call("ending the followed stream", lambda: end_stream(raw), None)


class OpenAIInstrumentor(RagotelInstrumentor):
    """Spans and metrics for the ``openai`` client (``OpenAI``, ``AsyncOpenAI``, Azure variants)."""

    library: ClassVar[str] = "openai"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("openai >= 1.40",)

    def _instrument_extra(self, **kwargs: Any) -> None:
        self._ragotel_helpers: list[tuple[Any, str]] = []
        for module_name, class_name, is_async in _HELPER_STREAMS:
            try:
                module = __import__(module_name, fromlist=[class_name])
                owner = getattr(module, class_name)
                if "close" not in vars(owner):
                    continue
                wrapt.wrap_function_wrapper(owner, "close", _close_helper_async if is_async else _close_helper_sync)
                self._ragotel_helpers.append((owner, "close"))
            except Exception as exc:  # noqa: BLE001 - a helper missing in this version must not stop the rest
                _guard.report(f"openai: stream helper {module_name}.{class_name}", exc)

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        for owner, name in getattr(self, "_ragotel_helpers", []):
            _guard.call(f"unwrapping {owner!r}.{name}", functools.partial(unwrap, owner, name), None)
        self._ragotel_helpers = []
