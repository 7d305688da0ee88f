"""Extractors for LangChain chat models and LLMs (``generate``/``agenerate``/``stream``/``astream``): generation spans.

``invoke``, ``batch`` and the legacy helpers all route through ``generate``, so hooking ``generate`` and the streaming
entry points gives one span per call; a ``stream`` that falls back to ``invoke`` merges into the stream's span.
Provider usage wins over LangChain's own copy of it (see ``Operation._add_usage``), so a ``ChatOpenAI`` call over the
instrumented OpenAI client is counted once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ragotel import semconv as sc
from ragotel.bounds import MAX_ITEMS, TextBuffer, items
from ragotel.telemetry import Operation

COMPONENT: Final = "langchain"

# Integration package → GenAI semconv provider name (well-known values where the conventions define one).
_PROVIDER_BY_PACKAGE: Final = {
    "langchain_openai": "openai",
    "langchain_anthropic": "anthropic",
    "langchain_google_genai": "gcp.gemini",
    "langchain_google_vertexai": "gcp.vertex_ai",
    "langchain_aws": "aws.bedrock",
    "langchain_mistralai": "mistral_ai",
    "langchain_groq": "groq",
    "langchain_cohere": "cohere",
    "langchain_deepseek": "deepseek",
    "langchain_xai": "x_ai",
    "langchain_perplexity": "perplexity",
    "langchain_ibm": "ibm.watsonx.ai",
    "langchain_ollama": "ollama",
    "langchain_fireworks": "fireworks",
    "langchain_together": "together",
    "langchain_huggingface": "huggingface",
}
_ROLES: Final = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}
_MODEL_ATTRS: Final = ("model_name", "model", "model_id", "deployment_name")
# LangChain parameter → attribute; read from the call's kwargs, else from the model only when the user set it.
_PARAMS: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, float),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P, float),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K, float),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY, float),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY, float),
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, int),
    ("max_completion_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, int),
    ("max_output_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, int),
    ("seed", sc.GEN_AI_REQUEST_SEED, int),
)
_provider_cache: dict[type, str | None] = {}


def provider_of(instance: Any) -> str | None:
    """The provider a LangChain model/embeddings class talks to, from its package (cached per class)."""
    cls = type(instance)
    try:
        return _provider_cache[cls]
    except KeyError:
        pass
    name = cls.__name__
    package = cls.__module__.partition(".")[0]
    provider: str | None
    if "Azure" in name and package == "langchain_openai":
        provider = "azure.ai.openai"
    elif package in _PROVIDER_BY_PACKAGE:
        provider = _PROVIDER_BY_PACKAGE[package]
    elif package.startswith("langchain_") and package not in ("langchain_core", "langchain_community"):
        provider = package.removeprefix("langchain_")
    else:
        provider = None  # core fakes, community wrappers: unknown
    if len(_provider_cache) < 1024:
        _provider_cache[cls] = provider
    return provider


_model_attrs_cache: dict[type, tuple[str, ...]] = {}


def model_of(instance: Any, kwargs: Mapping[str, Any]) -> str | None:
    """The model a call asks for: a per-call ``model=`` override, else the model object's model field."""
    model = kwargs.get("model")
    if isinstance(model, str) and model:
        return model
    cls = type(instance)
    attrs = _model_attrs_cache.get(cls)
    if attrs is None:
        # Which model attributes this class has, found once: a miss on a pydantic model is a costly exception.
        attrs = tuple(a for a in _MODEL_ATTRS if hasattr(instance, a))
        if len(_model_attrs_cache) < 1024:
            _model_attrs_cache[cls] = attrs
    for attr in attrs:
        value = getattr(instance, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or None, read from the instance dict first: a miss on a pydantic model is a costly exception."""
    values = getattr(obj, "__dict__", None)
    if isinstance(values, dict) and name in values:
        return values[name]
    cls_attr = getattr(type(obj), name, None)  # properties and class attributes
    return getattr(obj, name, None) if cls_attr is not None else None


def _explicit(instance: Any) -> frozenset[str]:
    fields = getattr(instance, "model_fields_set", None)
    return frozenset(fields) if isinstance(fields, set | frozenset) else frozenset()


def _request(instance: Any, kwargs: Mapping[str, Any], operation: str, stop: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: provider_of(instance),
        sc.GEN_AI_REQUEST_MODEL: model_of(instance, kwargs),
    }
    explicit = _explicit(instance)
    for key, name, kind in _PARAMS:
        value = kwargs.get(key)
        if value is None and key in explicit:
            value = getattr(instance, key, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and name not in attrs:
            attrs[name] = kind(value)
    if stop is None and "stop" in explicit:
        stop = getattr(instance, "stop", None)
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list | tuple) and stop and all(isinstance(s, str) for s in stop):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    n = kwargs.get("n", getattr(instance, "n", None) if "n" in explicit else None)
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    return attrs


def chat_generate_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``BaseChatModel.generate(messages, stop=None, callbacks=None, **kwargs)``."""
    return _request(instance, kwargs, sc.OP_CHAT, kwargs.get("stop", args[1] if len(args) > 1 else None))


def llm_generate_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``BaseLLM.generate(prompts, stop=None, callbacks=None, **kwargs)``."""
    return _request(instance, kwargs, sc.OP_TEXT_COMPLETION, kwargs.get("stop", args[1] if len(args) > 1 else None))


def chat_stream_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``BaseChatModel.stream(input, config=None, *, stop=None, **kwargs)``."""
    attrs = _request(instance, kwargs, sc.OP_CHAT, kwargs.get("stop"))
    attrs[sc.GEN_AI_REQUEST_STREAM] = True
    return attrs


def llm_stream_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``BaseLLM.stream(input, config=None, *, stop=None, **kwargs)``."""
    attrs = _request(instance, kwargs, sc.OP_TEXT_COMPLETION, kwargs.get("stop"))
    attrs[sc.GEN_AI_REQUEST_STREAM] = True
    return attrs


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage_attrs(usage: Mapping[str, Any]) -> dict[str, Any]:
    """A LangChain ``UsageMetadata`` dict as attributes (details only when reported)."""
    in_details = usage.get("input_token_details") or {}
    out_details = usage.get("output_token_details") or {}
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: _int(usage.get("input_tokens")),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _int(usage.get("output_tokens")),
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _int(in_details.get("cache_read")),
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _int(out_details.get("reasoning")),
    }


def _metadata(generation: Any) -> dict[str, Any]:
    message = field(generation, "message")
    merged: dict[str, Any] = {}
    info = getattr(generation, "generation_info", None)
    if isinstance(info, Mapping):
        merged.update(info)
    meta = getattr(message, "response_metadata", None)
    if isinstance(meta, Mapping):
        merged.update(meta)
    return merged


def _finish_reason(meta: Mapping[str, Any]) -> str | None:
    reason = meta.get("finish_reason") or meta.get("stop_reason")
    return reason if isinstance(reason, str) else None


def generate_response(instance: Any, result: Any) -> dict[str, Any]:
    """An ``LLMResult``: response model, finish reasons, usage (summed over prompts, once per prompt)."""
    generations = items(getattr(result, "generations", None))
    attrs: dict[str, Any] = {}
    reasons: list[str] = []
    usage_in = usage_out = 0
    seen_usage = False
    for per_prompt in generations:
        for i, generation in enumerate(items(per_prompt)):
            meta = _metadata(generation)
            model = meta.get("model_name") or meta.get("model")
            if isinstance(model, str) and sc.GEN_AI_RESPONSE_MODEL not in attrs:
                attrs[sc.GEN_AI_RESPONSE_MODEL] = model
            reason = _finish_reason(meta)
            if reason:
                reasons.append(reason)
            usage = field(field(generation, "message"), "usage_metadata")
            if i == 0 and isinstance(usage, Mapping):  # every choice of one prompt carries the same usage
                seen_usage = True
                usage_in += _int(usage.get("input_tokens")) or 0
                usage_out += _int(usage.get("output_tokens")) or 0
                details = _usage_attrs(usage)
                for key in (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS):
                    if details[key] is not None:
                        attrs[key] = details[key]
    if reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    if seen_usage:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage_in
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage_out
    else:
        output = getattr(result, "llm_output", None)
        token_usage = output.get("token_usage") if isinstance(output, Mapping) else None
        if isinstance(token_usage, Mapping):
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = _int(token_usage.get("prompt_tokens"))
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = _int(token_usage.get("completion_tokens"))
        model = output.get("model_name") if isinstance(output, Mapping) else None
        if isinstance(model, str) and sc.GEN_AI_RESPONSE_MODEL not in attrs:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = model
    return attrs


# -- content (only with content capture on) -----------------------------------------------------------------------
def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for block in items(content) if isinstance(content, list) else ():
        if isinstance(block, str):
            parts.append({"type": "text", "content": block})
        elif isinstance(block, Mapping):
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                parts.append({"type": "text", "content": block["text"]})
            elif kind is not None:
                parts.append({"type": str(kind)})
    return parts


def message_to_semconv(message: Any) -> dict[str, Any]:
    """A LangChain ``BaseMessage`` (or plain string prompt) as a GenAI semconv message."""
    if isinstance(message, str):
        return {"role": "user", "parts": _parts(message)}
    role = _ROLES.get(getattr(message, "type", ""), str(getattr(message, "type", "user")))
    if role == "tool":
        response = {"type": "tool_call_response", "id": getattr(message, "tool_call_id", None)}
        response["response"] = getattr(message, "content", None)
        return {"role": role, "parts": [response]}
    parts = _parts(getattr(message, "content", None))
    for call in items(getattr(message, "tool_calls", None)):
        if isinstance(call, Mapping):
            parts.append(
                {"type": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": call.get("args")}
            )
    return {"role": role, "parts": parts}


def _flatten(prompts: Any) -> list[Any]:
    if not isinstance(prompts, list | tuple):  # never iterate a caller's generator
        return []
    out: list[Any] = []
    for prompt in items(prompts):
        out.extend(items(prompt) if isinstance(prompt, list | tuple) else [prompt])
    return out[:MAX_ITEMS]


def generate_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt messages (all prompts of a batch, in order)."""
    prompts = kwargs.get("messages", kwargs.get("prompts", args[0] if args else None))
    return {sc.GEN_AI_INPUT_MESSAGES: [message_to_semconv(m) for m in _flatten(prompts)]}


def stream_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The input of ``stream``: a string, a message list or a prompt value."""
    value = kwargs.get("input", args[0] if args else None)
    if isinstance(value, str):
        return {sc.GEN_AI_INPUT_MESSAGES: [message_to_semconv(value)]}
    to_messages = getattr(value, "to_messages", None)
    messages = to_messages() if callable(to_messages) else value
    return {sc.GEN_AI_INPUT_MESSAGES: [message_to_semconv(m) for m in _flatten([messages])]}


def generate_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The generations as output messages."""
    out = []
    for per_prompt in items(getattr(result, "generations", None)):
        for generation in items(per_prompt):
            message = field(generation, "message")
            semconv = message_to_semconv(message) if message is not None else message_to_semconv(generation.text)
            semconv["role"] = "assistant"
            semconv["finish_reason"] = _finish_reason(_metadata(generation))
            out.append(semconv)
    return {sc.GEN_AI_OUTPUT_MESSAGES: out}


# -- streams ------------------------------------------------------------------------------------------------------
class ModelStreamReader:
    """Follows ``AIMessageChunk``s (or LLM text chunks): response model, finish reason, summed usage metadata."""

    __slots__ = ("_details", "_finish", "_in", "_model", "_out", "_texts")

    def __init__(self) -> None:
        self._model: str | None = None
        self._finish: str | None = None
        self._in: int | None = None
        self._out: int | None = None
        self._details: dict[str, Any] = {}
        self._texts = TextBuffer()

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Note metadata and usage; keep text only when content may be captured."""
        if isinstance(chunk, str):
            self._texts.add(chunk, op.capture_limit)
            return
        meta = getattr(chunk, "response_metadata", None)
        if isinstance(meta, Mapping) and meta:
            model = meta.get("model_name") or meta.get("model")
            if isinstance(model, str):
                self._model = model
            self._finish = _finish_reason(meta) or self._finish
        usage = getattr(chunk, "usage_metadata", None)
        if isinstance(usage, Mapping):  # chunks add up, as LangChain's own merge does
            attrs = _usage_attrs(usage)
            if attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] is not None:
                self._in = (self._in or 0) + attrs[sc.GEN_AI_USAGE_INPUT_TOKENS]
            if attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] is not None:
                self._out = (self._out or 0) + attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS]
            for key in (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS):
                if attrs[key] is not None:
                    self._details[key] = attrs[key]
        limit = op.capture_limit
        if limit:
            content = getattr(chunk, "content", None)
            if isinstance(content, str) and content:
                self._texts.add(content, limit)
            else:
                for part in _parts(content):
                    if part.get("type") == "text":
                        self._texts.add(part["content"], limit)

    def on_end(self, op: Operation) -> None:
        """Record what was seen (also after an early end)."""
        attrs: dict[str, Any] = {
            sc.GEN_AI_RESPONSE_MODEL: self._model,
            sc.GEN_AI_RESPONSE_FINISH_REASONS: [self._finish] if self._finish else None,
            sc.GEN_AI_USAGE_INPUT_TOKENS: self._in,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: self._out,
        }
        attrs.update(self._details)
        op.set_attributes(attrs)
        if op.capture_content and self._texts:
            message: dict[str, Any] = {"role": "assistant", "finish_reason": self._finish}
            message["parts"] = [{"type": "text", "content": self._texts.text()}]
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [message])


def model_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """Every ``stream``/``astream`` result is followed."""
    return ModelStreamReader()
