"""AWS Bedrock through boto3: ``bedrock-runtime`` Converse, ConverseStream, InvokeModel (+ response stream) spans.

botocore generates client classes per service at run time; every API call of every one goes through
``BaseClient._make_api_call(operation_name, api_params)``, which is hooked once, where it is defined. Calls of
other services, and of other Bedrock operations, go through untraced (the request extractor answers "not ours").
Event streams (``converse_stream``'s ``stream``, ``invoke_model_with_response_stream``'s ``body``) are followed in
place: the response dict is the caller's own, its stream entry a proxy that ends the span on every exit path.
InvokeModel bodies are the caller's stream and are never read: usage comes from Bedrock's token-count headers.
Prompts and completions are recorded only with content capture on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import wrapt

from ragotel import semconv as sc
from ragotel.bounds import TextBuffer, items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, argument
from ragotel.instrumentation._genai import (
    as_float,
    as_int,
    get,
    parameters,
    server_attributes,
    text_part,
    tool_call_part,
    tool_response_part,
)
from ragotel.streams import StreamReader, wrap_stream
from ragotel.telemetry import Operation

__all__ = ["BedrockInstrumentor"]

COMPONENT: Final = "bedrock"
SERVICE: Final = "bedrock-runtime"
_CONVERSE: Final = frozenset({"Converse", "ConverseStream"})
_INVOKE: Final = frozenset({"InvokeModel", "InvokeModelWithResponseStream"})
_STREAMS: Final = {"ConverseStream": "stream", "InvokeModelWithResponseStream": "body"}
_INFERENCE: Final = (
    ("maxTokens", sc.GEN_AI_REQUEST_MAX_TOKENS, as_int),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, as_float),
    ("topP", sc.GEN_AI_REQUEST_TOP_P, as_float),
    ("stopSequences", sc.GEN_AI_REQUEST_STOP_SEQUENCES, lambda v: [s for s in items(v) if isinstance(s, str)]),
)
# InvokeModel bodies are each model family's own JSON: the names the common families use for the same parameter.
_BODY: Final = (
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, as_int),
    ("max_gen_len", sc.GEN_AI_REQUEST_MAX_TOKENS, as_int),
    ("maxTokenCount", sc.GEN_AI_REQUEST_MAX_TOKENS, as_int),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, as_float),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P, as_float),
    ("topP", sc.GEN_AI_REQUEST_TOP_P, as_float),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K, as_float),
)
_TOKEN_HEADERS: Final = (
    ("x-amzn-bedrock-input-token-count", sc.GEN_AI_USAGE_INPUT_TOKENS),
    ("x-amzn-bedrock-output-token-count", sc.GEN_AI_USAGE_OUTPUT_TOKENS),
)
_MAX_BODY: Final = 1 << 20  # an InvokeModel body larger than this is not parsed for parameters


# -- request ----------------------------------------------------------------------------------------------------
def _service(instance: Any) -> str | None:
    return getattr(getattr(getattr(instance, "_service_model", None), "service_name", None), "lower", str)()


def _body(params: Mapping[str, Any]) -> Any:
    """The caller's InvokeModel JSON body as a dict (bytes or str; a file-like body is never read)."""
    body = params.get("body")
    if isinstance(body, bytes | bytearray | str) and len(body) <= _MAX_BODY:
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def api_call_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``bedrock-runtime`` model call: provider, server, model and the inference parameters; None for others."""
    operation = argument(args, kwargs, 0, "operation_name")
    if operation not in _CONVERSE and operation not in _INVOKE:
        return None
    if _service(instance) != SERVICE:
        return None
    params = argument(args, kwargs, 1, "api_params")
    if not isinstance(params, Mapping):
        return None
    attrs = server_attributes(getattr(getattr(instance, "meta", None), "endpoint_url", None))
    attrs[sc.GEN_AI_PROVIDER_NAME] = sc.PROVIDER_AWS_BEDROCK
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_CHAT
    model = params.get("modelId")
    if operation in _INVOKE and isinstance(model, str) and "embed" in model.lower():
        return None  # an embedding model: not a generation step (embedding spans for Bedrock are not made yet)
    if isinstance(model, str):
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    if operation in _CONVERSE:
        attrs.update(parameters(params.get("inferenceConfig"), _INFERENCE))
        extra = params.get("additionalModelRequestFields")
        attrs.update(parameters(extra, _BODY[-1:]))  # top_k, which Converse takes only there
    else:
        attrs.update(parameters(_body(params), _BODY))
    if operation in _STREAMS:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    return attrs


# -- response ---------------------------------------------------------------------------------------------------
def usage_attributes(usage: Any) -> dict[str, Any]:
    """Converse ``usage``: input counts every input token (uncached + cache read + cache written)."""
    uncached = as_int(get(usage, "inputTokens"))
    read = as_int(get(usage, "cacheReadInputTokens"))
    written = as_int(get(usage, "cacheWriteInputTokens"))
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: None if uncached is None else uncached + (read or 0) + (written or 0),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: as_int(get(usage, "outputTokens")),
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: read,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: written,
    }


def _header_usage(result: Any) -> dict[str, Any]:
    headers = get(get(result, "ResponseMetadata"), "HTTPHeaders")
    attrs: dict[str, Any] = {}
    for header, name in _TOKEN_HEADERS:
        value = get(headers, header)
        if isinstance(value, str) and value.isdigit():
            attrs[name] = int(value)
    return attrs


def api_call_response(instance: Any, result: Any) -> dict[str, Any]:
    """Converse: stop reason and usage; InvokeModel: usage from Bedrock's token-count headers (body never read)."""
    if get(result, "output") is None and get(result, "usage") is None:
        return _header_usage(result)
    reason = get(result, "stopReason")
    attrs = {sc.GEN_AI_RESPONSE_FINISH_REASONS: [reason] if isinstance(reason, str) else None}
    attrs.update(usage_attributes(get(result, "usage")))
    return attrs


# -- content (only with content capture on) ---------------------------------------------------------------------
def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for block in items(content):
        if get(block, "text") is not None:
            parts.append(text_part(get(block, "text")))
        elif get(block, "toolUse") is not None:
            use = get(block, "toolUse")
            parts.append(tool_call_part(get(use, "toolUseId"), get(use, "name"), get(use, "input")))
        elif get(block, "toolResult") is not None:
            result = get(block, "toolResult")
            parts.append(tool_response_part(get(result, "toolUseId"), get(result, "content")))
        elif get(block, "type") == "text":  # InvokeModel bodies in the Messages format
            parts.append(text_part(get(block, "text")))
        elif isinstance(block, Mapping) and block:
            parts.append({"type": str(get(block, "type") or next(iter(block)))})
    return parts


def _messages(messages: Any) -> list[dict[str, Any]]:
    return [{"role": get(m, "role") or "user", "parts": _parts(get(m, "content"))} for m in items(messages)]


def api_call_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """System prompt and messages of a Converse call, or of an InvokeModel body in a messages / prompt format."""
    params = argument(args, kwargs, 1, "api_params")
    source = params if "messages" in params else (_body(params) or {})
    attrs: dict[str, Any] = {}
    system = get(source, "system")
    if system is not None:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = _parts(system)
    if isinstance(get(source, "messages"), list):
        attrs[sc.GEN_AI_INPUT_MESSAGES] = _messages(get(source, "messages"))
    else:
        prompt = get(source, "prompt") or get(source, "inputText")
        if isinstance(prompt, str):
            attrs[sc.GEN_AI_INPUT_MESSAGES] = [{"role": "user", "parts": [text_part(prompt)]}]
    return attrs


def api_call_response_content(instance: Any, result: Any) -> dict[str, Any] | None:
    """The Converse answer message (an InvokeModel body is the caller's stream and is not read)."""
    message = get(get(result, "output"), "message")
    if message is None:
        return None
    out = {"role": get(message, "role") or "assistant", "parts": _parts(get(message, "content"))}
    out["finish_reason"] = get(result, "stopReason")
    return {sc.GEN_AI_OUTPUT_MESSAGES: [out]}


# -- event streams ----------------------------------------------------------------------------------------------
class _Events(wrapt.ObjectProxy):  # type: ignore[type-arg]  # generic only in wrapt's stubs, not at runtime
    """An ``EventStream`` (iterable once, not an iterator) seen as an iterator; every other attribute forwarded."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._self_iterator: Any = None

    def __iter__(self) -> _Events:
        return self

    def __next__(self) -> Any:
        if self._self_iterator is None:
            self._self_iterator = iter(self.__wrapped__)
        return next(self._self_iterator)


class EventStreamReader:
    """Follows Converse stream events (stop reason, metadata usage) or InvokeModel chunks (invocation metrics)."""

    __slots__ = ("_reason", "_text", "_usage")

    def __init__(self) -> None:
        self._reason: Any = None
        self._usage: dict[str, Any] = {}
        self._text = TextBuffer()

    def on_chunk(self, op: Operation, event: Any) -> None:
        """Note stop reason and usage; accumulate text only when content may be captured."""
        if not isinstance(event, Mapping):
            return
        if "chunk" in event:
            self._on_invoke_chunk(op, get(get(event, "chunk"), "bytes"))
        elif "messageStop" in event:
            self._reason = get(event["messageStop"], "stopReason")
        elif "metadata" in event:
            self._usage = usage_attributes(get(event["metadata"], "usage"))
        elif "contentBlockDelta" in event and op.capture_limit:
            text = get(get(event["contentBlockDelta"], "delta"), "text")
            if isinstance(text, str):
                self._text.add(text, op.capture_limit)

    def _on_invoke_chunk(self, op: Operation, data: Any) -> None:
        if not isinstance(data, bytes) or len(data) > _MAX_BODY:
            return
        chunk = json.loads(data)
        metrics = get(chunk, "amazon-bedrock-invocationMetrics")
        if metrics is not None:
            self._usage = {
                sc.GEN_AI_USAGE_INPUT_TOKENS: as_int(get(metrics, "inputTokenCount")),
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: as_int(get(metrics, "outputTokenCount")),
            }
        reason = get(get(chunk, "delta"), "stop_reason") or get(chunk, "stop_reason")
        if isinstance(reason, str):
            self._reason = reason
        text = get(get(chunk, "delta"), "text") or get(chunk, "outputText") or get(chunk, "generation")
        if isinstance(text, str) and op.capture_limit:
            self._text.add(text, op.capture_limit)

    def on_end(self, op: Operation) -> None:
        """Record what the stream showed (also when it ended early: whatever was seen)."""
        attrs = dict(self._usage)
        if isinstance(self._reason, str):
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [self._reason]
        op.set_attributes(attrs)
        if op.capture_content and (self._text or self._reason):
            message = {"role": "assistant", "parts": [text_part(self._text.text())], "finish_reason": self._reason}
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [message])


def api_call_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader for the streamed operations (their event stream is followed in place by :func:`follow_stream`)."""
    return EventStreamReader() if argument(args, kwargs, 0, "operation_name") in _STREAMS else None


def follow_stream(result: Any, op: Operation, reader: StreamReader) -> bool:
    """Put a proxy following the event stream in the caller's response dict; True when it now owns ``op``."""
    key = next((k for k in _STREAMS.values() if k in result), None) if isinstance(result, dict) else None
    if key is None or not op.recording:
        return False
    result[key] = wrap_stream(_Events(result[key]), op, reader)
    return True


class BedrockInstrumentor(RagotelInstrumentor):
    """Spans and metrics for ``bedrock-runtime`` model calls made through boto3 / botocore clients."""

    library: ClassVar[str] = "bedrock"
    targets: ClassVar[tuple[Target, ...]] = (
        Target(
            "botocore.client",
            "BaseClient._make_api_call",
            sc.STAGE_GENERATION,
            COMPONENT,
            request=api_call_request,
            response=api_call_response,
            request_content=api_call_request_content,
            response_content=api_call_response_content,
            stream=api_call_stream,
            is_async=False,
            follow=follow_stream,
        ),
    )
    dependencies: ClassVar[tuple[str, ...]] = ("botocore >= 1.34",)
