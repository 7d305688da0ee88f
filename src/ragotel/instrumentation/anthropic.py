"""Anthropic client instrumentation: Messages ``create`` / ``parse`` / ``stream`` (sync, async, beta) as generation.

Hooks the resource methods where they are defined, so ``with_raw_response`` and ``with_streaming_response`` pass
through the same hooks once. ``messages.stream(...)`` does not call ``create``: its request is made when the
returned manager is entered, and is traced from there (one span, ended with the stream on every exit path).
Usage follows the GenAI conventions: ``gen_ai.usage.input_tokens`` counts every input token (uncached, cache read
and cache written), with the cache parts also given on their own. Only parameters the caller passed are recorded;
prompts, system instructions and completions only with content capture on.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.bounds import TextBuffer, items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, make_wrapper
from ragotel.instrumentation._genai import (
    as_float,
    as_int,
    envelope,
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
from ragotel.telemetry import Operation, current_operation

__all__ = ["AnthropicInstrumentor"]

COMPONENT: Final = "anthropic"
_MESSAGES: Final = "anthropic.resources.messages.messages"
_BETA_MESSAGES: Final = "anthropic.resources.beta.messages.messages"
# The cloud-hosted clients answer for another provider than Anthropic's own API.
_PROVIDERS: Final = {"Bedrock": sc.PROVIDER_AWS_BEDROCK, "Vertex": sc.PROVIDER_GCP_VERTEX_AI}

_PARAMETERS: Final = (
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, as_int),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, as_float),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P, as_float),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K, as_float),
    ("stop_sequences", sc.GEN_AI_REQUEST_STOP_SEQUENCES, stop_sequences),
    ("stream", sc.GEN_AI_REQUEST_STREAM, bool),
)


# -- request / response ---------------------------------------------------------------------------------------------
def _provider(client: Any) -> str:
    name = type(client).__name__
    for marker, provider in _PROVIDERS.items():
        if marker in name:
            return provider
    return sc.PROVIDER_ANTHROPIC


def messages_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``messages.create``/``parse``/``stream``: provider, server, model and the sampling parameters passed."""
    client = getattr(instance, "_client", None)
    attrs = server_attributes(getattr(client, "base_url", None))
    attrs[sc.GEN_AI_PROVIDER_NAME] = _provider(client)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_CHAT
    model = kwargs.get("model")
    if given(model):
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    extra = kwargs.get("extra_body")
    # newer clients take sampling parameters only through `extra_body`, which wins over the named ones
    attrs.update(parameters({**kwargs, **extra} if isinstance(extra, Mapping) else kwargs, _PARAMETERS))
    if given(kwargs.get("output_format")) or given(get(kwargs.get("output_config"), "format")):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"
    return attrs


def usage_attributes(usage: Any) -> dict[str, Any]:
    """Token usage of a ``Usage`` / ``MessageDeltaUsage``: input counts every input token, cache parts given too."""
    if usage is None:
        return {}
    uncached = as_int(get(usage, "input_tokens"))
    read = as_int(get(usage, "cache_read_input_tokens"))
    written = as_int(get(usage, "cache_creation_input_tokens"))
    total = None if uncached is None else uncached + (read or 0) + (written or 0)
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: total,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: as_int(get(usage, "output_tokens")),
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: read,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: written,
    }


def message_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``Message``: id, model, stop reason, usage."""
    reason = get(result, "stop_reason")
    attrs = {
        sc.GEN_AI_RESPONSE_ID: get(result, "id"),
        sc.GEN_AI_RESPONSE_MODEL: get(result, "model"),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: [reason] if isinstance(reason, str) else None,
    }
    attrs.update(usage_attributes(get(result, "usage")))
    return attrs


# -- content (only with content capture on) ---------------------------------------------------------------------
def _parts(content: Any) -> list[dict[str, Any]]:
    """Message content (a string or content blocks) as GenAI parts; other blocks keep only their type."""
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for block in items(content):
        kind = get(block, "type")
        if kind == "text":
            parts.append(text_part(get(block, "text")))
        elif kind == "tool_use":
            parts.append(tool_call_part(get(block, "id"), get(block, "name"), get(block, "input")))
        elif kind == "tool_result":
            parts.append(tool_response_part(get(block, "tool_use_id"), get(block, "content")))
        elif kind is not None:
            parts.append({"type": str(kind)})
    return parts


def messages_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The system prompt as ``gen_ai.system_instructions`` and the messages as ``gen_ai.input.messages``."""
    attrs: dict[str, Any] = {}
    system = kwargs.get("system")
    if given(system):
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = _parts(system)
    messages = kwargs.get("messages")
    if isinstance(messages, list | tuple):  # never iterate a caller's generator
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [
            {"role": get(m, "role") or "user", "parts": _parts(get(m, "content"))} for m in items(messages)
        ]
    return attrs


def message_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The answer's content blocks as one assistant message."""
    message = {
        "role": "assistant",
        "parts": _parts(get(result, "content")),
        "finish_reason": get(result, "stop_reason"),
    }
    return {sc.GEN_AI_OUTPUT_MESSAGES: [message]}


# -- streams ----------------------------------------------------------------------------------------------------
class MessageStreamReader:
    """Follows raw stream events: ``message_start`` (id, model, input usage), ``message_delta`` (stop, usage).

    Text deltas are accumulated only with content capture on.
    """

    __slots__ = ("_reason", "_start", "_text", "_usage")

    def __init__(self) -> None:
        self._start: Any = None
        self._usage: dict[str, Any] = {}
        self._reason: Any = None
        self._text = TextBuffer()

    def _note_usage(self, usage: Any) -> None:
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = as_int(get(usage, key))
            if value is not None:  # message_delta counts are cumulative: the latest wins
                self._usage[key] = value

    def on_chunk(self, op: Operation, event: Any) -> None:
        """Note the start, the stop reason and usage; accumulate text only when content may be captured."""
        kind = get(event, "type")
        if kind == "message_start":
            self._start = get(event, "message")
            self._note_usage(get(self._start, "usage"))
        elif kind == "message_delta":
            self._reason = get(get(event, "delta"), "stop_reason") or self._reason
            self._note_usage(get(event, "usage"))
        elif kind == "content_block_delta" and op.capture_limit:
            text = get(get(event, "delta"), "text")
            if isinstance(text, str):
                self._text.add(text, op.capture_limit)

    def on_end(self, op: Operation) -> None:
        """Record what the stream showed (also when it ended early: whatever was seen)."""
        attrs = usage_attributes(self._usage) if self._usage else {}
        if self._start is not None:
            attrs[sc.GEN_AI_RESPONSE_ID] = get(self._start, "id")
            attrs[sc.GEN_AI_RESPONSE_MODEL] = get(self._start, "model")
        if isinstance(self._reason, str):
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [self._reason]
        op.set_attributes(attrs)
        if op.capture_content and (self._text or self._reason):
            message = {"role": "assistant", "parts": [text_part(self._text.text())], "finish_reason": self._reason}
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [message])


def messages_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader when ``create(stream=True)`` (or the stream helper's request) returned a stream."""
    return MessageStreamReader() if is_stream(result) else None


def _target(module: str, method: str, is_async: bool) -> Target:
    return Target(
        module,
        method,
        sc.STAGE_GENERATION,
        COMPONENT,
        request=messages_request,
        response=message_response,
        request_content=messages_request_content,
        response_content=message_response_content,
        stream=messages_stream,
        is_async=is_async,  # `create` is decorated: a sync function returning a coroutine on the async client
        envelope=envelope,
    )


def _targets() -> tuple[Target, ...]:
    return tuple(
        _target(module, f"{prefix}Messages.{method}", prefix == "Async")
        for module in (_MESSAGES, _BETA_MESSAGES)
        for prefix in ("", "Async")
        for method in ("create", "parse")
    )


# -- the stream helper: traced when its manager makes the request -------------------------------------------------
def _call_through(request: Any) -> Any:
    return lambda *args, **kwargs: request()


def _follow(wrapper: Any, is_async: bool, instance: Any, kwargs: dict[str, Any], manager: Any) -> None:
    """Replace the manager's pending request with the same request traced by ``wrapper`` (as ``create``)."""
    attr = next((name for name in vars(manager) if name.endswith("__api_request")), None)
    if attr is None:
        return
    request = getattr(manager, attr)
    body = {**kwargs, "stream": True}
    if is_async:  # an un-awaited coroutine: the manager awaits what it finds there
        setattr(manager, attr, wrapper(lambda *a, **k: request, instance, (), body))
    else:
        setattr(manager, attr, functools.partial(wrapper, _call_through(request), instance, (), body))


def _stream_helper(is_async: bool, wrapper: Any) -> Any:
    def helper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        manager = wrapped(*args, **kwargs)
        follow = functools.partial(_follow, wrapper, is_async, instance, kwargs, manager)
        _guard.call("anthropic: following messages.stream", follow, None)
        return manager

    return helper


# -- the client's own call span -------------------------------------------------------------------------------------
def _quiet_tracer(original: property) -> property:
    """The client's ``_tracer`` property, giving no tracer while a ragotel generation step records the call.

    Recent clients make a span of their own for every call; under ragotel's span it would be a second span with the
    same ``gen_ai.*`` usage for one logical call (summed twice by any backend adding usage up).
    """
    getter = original.fget

    def fget(client: Any) -> Any:
        op = current_operation()
        if op is not None and op.stage == sc.STAGE_GENERATION:
            return None
        return getter(client) if getter is not None else None

    return property(fget, doc=original.__doc__)


class AnthropicInstrumentor(RagotelInstrumentor):
    """Spans and metrics for the ``anthropic`` client (``Anthropic``, ``AsyncAnthropic``, Bedrock and Vertex)."""

    library: ClassVar[str] = "anthropic"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("anthropic >= 0.30",)

    def _instrument_extra(self, **kwargs: Any) -> None:
        self._ragotel_helpers: list[tuple[Any, str]] = []
        self._ragotel_tracer: tuple[Any, property] | None = None
        _guard.call("anthropic: the client's own call span", self._quiet_client_spans, None)
        for module in (_MESSAGES, _BETA_MESSAGES):
            for prefix in ("", "Async"):
                wrap = functools.partial(self._wrap_helper, module, f"{prefix}Messages", prefix == "Async")
                _guard.call(f"anthropic: stream helper of {module}", wrap, None)

    def _quiet_client_spans(self) -> None:
        owner = __import__("anthropic._base_client", fromlist=["BaseClient"]).BaseClient
        original = vars(owner).get("_tracer")
        if isinstance(original, property):  # clients without their own spans have none
            owner._tracer = _quiet_tracer(original)
            self._ragotel_tracer = (owner, original)

    def _wrap_helper(self, module_name: str, class_name: str, is_async: bool) -> None:
        owner = getattr(__import__(module_name, fromlist=[class_name]), class_name)
        if "stream" not in vars(owner):
            return
        target = _target(module_name, f"{class_name}.stream", is_async)
        wrapper = make_wrapper(target, None)
        wrapt.wrap_function_wrapper(owner, "stream", _stream_helper(is_async, wrapper))
        self._ragotel_helpers.append((owner, "stream"))

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        for owner, name in getattr(self, "_ragotel_helpers", []):
            _guard.call(f"unwrapping {owner!r}.{name}", functools.partial(unwrap, owner, name), None)
        self._ragotel_helpers = []
        restore = getattr(self, "_ragotel_tracer", None)
        if restore is not None:
            owner, original = restore
            owner._tracer = original
            self._ragotel_tracer = None
