"""Cohere: chat (plain and streamed) as ``generation``, embed as ``embedding``, rerank as ``rerank`` spans.

Hooked on the raw clients (v2 ``RawV2Client``, v1 ``RawBaseCohere``, and their async twins) that ``chat`` /
``embed`` / ``rerank`` and ``with_raw_response`` all go through — one span per API call, also for a client created
before instrumenting (cohere binds ``ClientV2.chat`` on the instance at construction, so the public method cannot
be hooked for it) — and on the v2 raw ``chat_stream`` context manager, whose events the span follows to their end
on every exit path. Only parameters the caller passed are recorded (the client's ``OMIT`` placeholder is not a
value). Messages, texts, queries and documents are read only with content capture on; embeddings never.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import wrapt
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.bounds import TextBuffer, items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, _begin
from ragotel.streams import end_stream, wrap_stream
from ragotel.telemetry import Operation

__all__ = ["CohereInstrumentor"]

COMPONENT: Final = "cohere"
PROVIDER: Final = "cohere"
_RAW: Final = "cohere.v2.raw_client"
_RAW_V1: Final = "cohere.raw_base_client"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
# Cohere's finish reasons in the vocabulary the other providers' spans use (OpenAI's), so one query finds them all.
_FINISH: Final = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "error",
    "TIMEOUT": "error",
}
_SAMPLING: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("p", sc.GEN_AI_REQUEST_TOP_P),
    ("k", sc.GEN_AI_REQUEST_TOP_K),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
)


# -- small readers ------------------------------------------------------------------------------------------------
def _given(kwargs: Mapping[str, Any], name: str) -> Any:
    """A parameter the caller passed, else None (the client's ``OMIT`` is ``...``)."""
    value = kwargs.get(name)
    return None if value is ... else value


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _int(value: Any) -> int | None:
    """Cohere reports token counts as JSON numbers that the client parses as floats (``12.0``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _body(result: Any) -> Any:
    """The parsed answer: the raw client returns an ``HttpResponse`` whose ``data`` it is."""
    return getattr(result, "data", result)


@functools.lru_cache(maxsize=64)
def _server(base_url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(base_url)
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _common(instance: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.GEN_AI_PROVIDER_NAME: PROVIDER}
    get_base_url = getattr(getattr(instance, "_client_wrapper", None), "get_base_url", None)
    if get_base_url is not None:
        base_url = get_base_url()
        if isinstance(base_url, str):
            attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT] = _server(base_url)
    return attrs


def _usage(usage: Any) -> dict[str, Any]:
    """Tokens the model processed (``tokens``), else the tokens billed (``billed_units``)."""
    counts = _get(usage, "tokens") or _get(usage, "billed_units")
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: _int(_get(counts, "input_tokens")),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _int(_get(counts, "output_tokens")),
    }


def _finish_reasons(reason: Any) -> list[str] | None:
    return [_FINISH.get(reason, str(reason).lower())] if isinstance(reason, str) else None


# -- chat ---------------------------------------------------------------------------------------------------------
def _chat_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    attrs = _common(instance)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_CHAT
    attrs[sc.GEN_AI_REQUEST_MODEL] = _given(kwargs, "model")
    for name, key in _SAMPLING:
        value = _given(kwargs, name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[key] = float(value)
    attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = _int(_given(kwargs, "max_tokens"))
    attrs[sc.GEN_AI_REQUEST_SEED] = _int(_given(kwargs, "seed"))
    stop = _given(kwargs, "stop_sequences")
    if isinstance(stop, list | tuple):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in items(stop)]
    response_format = _given(kwargs, "response_format")
    if response_format is not None:
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json" if _get(response_format, "type") == "json_object" else "text"
    if stream:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    return attrs


def _chat_response(instance: Any, result: Any) -> dict[str, Any]:
    body = _body(result)
    attrs = {
        sc.GEN_AI_RESPONSE_ID: _get(body, "id") or _get(body, "response_id"),  # v2, v1
        sc.GEN_AI_RESPONSE_FINISH_REASONS: _finish_reasons(_get(body, "finish_reason")),
    }
    attrs.update(_usage(_get(body, "usage") or _get(body, "meta")))
    return attrs


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in items(content):
        kind = _get(part, "type")
        text = _get(part, "text")
        parts.append({"type": "text", "content": text} if isinstance(text, str) else {"type": str(kind)})
    return parts


def _chat_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    message = _given(kwargs, "message")  # v1: one message, the system prompt as ``preamble``
    if isinstance(message, str):
        content: dict[str, Any] = {sc.GEN_AI_INPUT_MESSAGES: [{"role": "user", "parts": _parts(message)}]}
        preamble = _given(kwargs, "preamble")
        if isinstance(preamble, str):
            content[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = _parts(preamble)
        return content
    messages = _given(kwargs, "messages")
    if not isinstance(messages, list | tuple):  # never iterate a caller's generator
        return None
    out = [{"role": _get(m, "role") or "user", "parts": _parts(_get(m, "content"))} for m in items(messages)]
    return {sc.GEN_AI_INPUT_MESSAGES: out}


def _chat_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    body = _body(result)
    message = _get(body, "message")
    text = _get(body, "text")  # v1
    parts = _parts(text if isinstance(text, str) else _get(message, "content"))
    for call in items(_get(message, "tool_calls")):
        function = _get(call, "function")
        name, arguments = _get(function, "name"), _get(function, "arguments")
        parts.append({"type": "tool_call", "id": _get(call, "id"), "name": name, "arguments": arguments})
    reasons = _finish_reasons(_get(body, "finish_reason"))
    finish = reasons[0] if reasons else None
    return {sc.GEN_AI_OUTPUT_MESSAGES: [{"role": "assistant", "parts": parts, "finish_reason": finish}]}


class _ChatStreamReader:
    """Follows v2 chat stream events: the id (message-start), text (content-delta), finish and usage (message-end)."""

    __slots__ = ("_end", "_id", "_text")

    def __init__(self) -> None:
        self._id: Any = None
        self._end: Any = None
        self._text = TextBuffer()

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        kind = _get(chunk, "type")
        if kind == "message-start":
            self._id = _get(chunk, "id")
        elif kind == "message-end":
            self._end = _get(chunk, "delta")
        elif kind == "content-delta" and op.capture_limit:
            text = _get(_get(_get(_get(chunk, "delta"), "message"), "content"), "text")
            if isinstance(text, str):
                self._text.add(text, op.capture_limit)

    def on_end(self, op: Operation) -> None:
        attrs: dict[str, Any] = {sc.GEN_AI_RESPONSE_ID: self._id}
        reasons = _finish_reasons(_get(self._end, "finish_reason"))
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        attrs.update(_usage(_get(self._end, "usage")))
        op.set_attributes(attrs)
        if op.capture_content and (self._text or reasons):
            text = [{"type": "text", "content": self._text.text()}]
            message = {"role": "assistant", "parts": text, "finish_reason": reasons[0] if reasons else None}
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [message])


# -- chat_stream ----------------------------------------------------------------------------------------------------
# The raw client's chat_stream is a (sync or async) context manager: the request goes out on entering it and the
# events come from the entered response's ``data``. ClientV2.chat_stream enters it and yields from ``data``, so the
# hook is here (for every client, also one created before instrumenting), and it is not a plain call: the span
# opens on entering, follows ``data`` like any stream, and ends on leaving the block at the latest.
_STREAM: Final = Target(
    _RAW,
    "RawV2Client.chat_stream",
    sc.STAGE_GENERATION,
    COMPONENT,
    request=functools.partial(_chat_request, stream=True),
    request_content=_chat_content,
)
_STREAM_WHERE: Final = "cohere chat_stream"


class _StreamResponse(wrapt.ObjectProxy):  # type: ignore[type-arg]  # generic only in wrapt's stubs
    """The entered raw response with its ``data`` (the events) followed; everything else forwarded."""

    def __init__(self, wrapped: Any, data: Any) -> None:
        super().__init__(wrapped)
        self._self_events = data

    @property
    def data(self) -> Any:
        """The response's events, followed by the span."""
        return self._self_events


class _StreamContext(wrapt.ObjectProxy):  # type: ignore[type-arg]  # generic only in wrapt's stubs
    """The raw ``chat_stream`` context manager: one span from entering (the request) to the last event or the exit."""

    def __init__(self, wrapped: Any, instance: Any, kwargs: Mapping[str, Any]) -> None:
        super().__init__(wrapped)
        self._self_instance = instance
        self._self_kwargs = kwargs
        self._self_events: Any = None

    def _self_begin(self) -> Operation | None:
        if not is_instrumentation_enabled():
            return None
        begin = functools.partial(_begin, _STREAM, self._self_instance, (), self._self_kwargs)
        return _guard.call(_STREAM_WHERE, begin, None)

    def _self_follow(self, op: Operation | None, response: Any) -> Any:
        if op is None:
            return response

        def follow() -> Any:
            op.detach()
            self._self_events = wrap_stream(response.data, op, _ChatStreamReader())
            return _StreamResponse(response, self._self_events)

        followed = _guard.call(_STREAM_WHERE, follow, None)
        if followed is None:
            op.end()
            return response
        return followed

    def _self_exit(self) -> None:
        end_stream(self._self_events)  # left before the last event: ended early (a no-op once ended)

    def __enter__(self) -> Any:
        op = self._self_begin()
        try:
            response = self.__wrapped__.__enter__()
        except BaseException as exc:
            if op is not None:
                op.fail(exc)
            raise
        return self._self_follow(op, response)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_exit()

    async def __aenter__(self) -> Any:
        op = self._self_begin()
        try:
            response = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            if op is not None:
                op.fail(exc)
            raise
        return self._self_follow(op, response)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_exit()


def _stream_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """wrapt wrapper of the raw ``chat_stream``: its context manager, followed (nothing is sent before entering)."""
    manager = wrapped(*args, **kwargs)
    if not is_instrumentation_enabled():
        return manager
    return _guard.call(_STREAM_WHERE, lambda: _StreamContext(manager, instance, kwargs), manager)


# -- embed --------------------------------------------------------------------------------------------------------
def _embed_inputs(kwargs: Mapping[str, Any]) -> Any:
    for name in ("texts", "inputs", "images"):
        value = _given(kwargs, name)
        if value is not None:
            return value
    return None


def _embed_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _common(instance)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_EMBEDDINGS
    attrs[sc.GEN_AI_REQUEST_MODEL] = _given(kwargs, "model")
    inputs = _embed_inputs(kwargs)
    attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = len(inputs) if isinstance(inputs, list | tuple) else None
    attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = _int(_given(kwargs, "output_dimension"))
    types = _given(kwargs, "embedding_types")
    if isinstance(types, list | tuple):
        attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [str(t) for t in items(types)]
    return attrs


def _embed_response(instance: Any, result: Any) -> dict[str, Any]:
    body = _body(result)
    meta = _get(body, "meta")
    counts = _get(meta, "tokens") or _get(meta, "billed_units")
    attrs: dict[str, Any] = {sc.GEN_AI_USAGE_INPUT_TOKENS: _int(_get(counts, "input_tokens"))}
    embeddings = _get(body, "embeddings")
    # by type ({"float": [[...]], "int8": ...}) or, for embedding_types not given on older APIs, a list of vectors
    by_type = embeddings.model_dump() if hasattr(embeddings, "model_dump") else embeddings
    vectors = next((v for v in by_type.values() if v), None) if isinstance(by_type, dict) else by_type
    first = items(vectors, 1)
    if first and isinstance(first[0], list | tuple):
        attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(first[0])
    return attrs


def _embed_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    texts = _given(kwargs, "texts")
    if not isinstance(texts, list | tuple):
        return None
    return {sc.RAGOTEL_INPUT: [t for t in items(texts) if isinstance(t, str)]}


# -- rerank -------------------------------------------------------------------------------------------------------
def _rerank_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = _common(instance)
    attrs[sc.RAGOTEL_RERANK_MODEL] = _given(kwargs, "model")
    documents = _given(kwargs, "documents")
    attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] = len(documents) if isinstance(documents, list | tuple) else None
    attrs[sc.GEN_AI_RETRIEVAL_TOP_K] = _int(_given(kwargs, "top_n"))
    return attrs


def _rerank_response(instance: Any, result: Any) -> dict[str, Any]:
    results = _get(_body(result), "results")
    scores = [float(s) for s in (_get(r, "relevance_score") for r in items(results)) if isinstance(s, int | float)]
    attrs: dict[str, Any] = {sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(results) if isinstance(results, list) else None}
    if scores:
        attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] = max(scores)
    return attrs


def _rerank_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    query = _given(kwargs, "query")
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: query} if isinstance(query, str) else None


def _rerank_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    ranking = [
        {"index": _get(r, "index"), "score": _get(r, "relevance_score")} for r in items(_get(_body(result), "results"))
    ]
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: ranking}


def _raw_targets(module: str, raw: str) -> list[Target]:
    """chat, embed and rerank on one raw client class: v1 and v2 answers are read by the same extractors."""
    return [
        Target(
            module,
            f"{raw}.chat",
            sc.STAGE_GENERATION,
            COMPONENT,
            request=functools.partial(_chat_request, stream=False),
            response=_chat_response,
            request_content=_chat_content,
            response_content=_chat_result_content,
        ),
        Target(
            module,
            f"{raw}.embed",
            sc.STAGE_EMBEDDING,
            COMPONENT,
            request=_embed_request,
            response=_embed_response,
            request_content=_embed_content,
        ),
        Target(
            module,
            f"{raw}.rerank",
            sc.STAGE_RERANK,
            COMPONENT,
            request=_rerank_request,
            response=_rerank_response,
            request_content=_rerank_content,
            response_content=_rerank_result_content,
        ),
    ]


def _targets() -> tuple[Target, ...]:
    rows: list[Target] = []
    for prefix in ("", "Async"):
        rows += _raw_targets(_RAW, f"{prefix}RawV2Client")
        rows += _raw_targets(_RAW_V1, f"{prefix}RawBaseCohere")  # v1, ``cohere.Client``
    return tuple(rows)


class CohereInstrumentor(RagotelInstrumentor):
    """Traces the Cohere clients (v2 and v1, sync and async): chat, v2 chat_stream, embed, rerank."""

    library: ClassVar[str] = "cohere"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("cohere >= 5.0",)

    def _instrument_extra(self, **kwargs: Any) -> None:
        """Follow the raw v2 ``chat_stream`` context managers (sync and async), see :class:`_StreamContext`."""
        module = sys.modules.get(_RAW)
        for cls in ("RawV2Client", "AsyncRawV2Client"):
            owner = getattr(module, cls, None)
            if owner is None or "chat_stream" not in vars(owner):
                _guard.report(f"cohere: target {_RAW}.{cls}.chat_stream not found", LookupError())
                continue
            _guard.warned(f"instrumenting {_RAW}.{cls}.chat_stream", functools.partial(self._wrap_stream, owner), None)

    def _wrap_stream(self, owner: type) -> None:
        wrapt.wrap_function_wrapper(owner, "chat_stream", _stream_wrapper)
        self._ragotel_wrapped.append((owner, "chat_stream"))
