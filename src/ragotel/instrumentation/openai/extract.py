"""OpenAI request and response extractors: provider, server, the parameters the caller passed, response, usage.

Pure functions over the client's keyword arguments and response models; none touches a span. Only parameters the
caller actually passed are read (the client's ``omit`` / ``NOT_GIVEN`` placeholders count as not passed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._genai import as_float, as_int, get, given, stop_sequences

COMPONENT: Final = "openai"
PROVIDER_OPENAI: Final = "openai"
PROVIDER_AZURE: Final = "azure.ai.openai"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


# -- small readers ------------------------------------------------------------------------------------------------
_int = as_int
_float = as_float


# base URL object -> its attributes; the URL is immutable and parsing it costs more than the rest of the extractor.
_server_cache: dict[int, tuple[Any, dict[str, Any]]] = {}


def client_attributes(instance: Any) -> dict[str, Any]:
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


def _output_type(response_format: Any) -> str | None:
    if isinstance(response_format, type):  # .parse(response_format=<pydantic class>)
        return "json"
    kind = get(response_format, "type")
    if kind in ("json_object", "json_schema"):
        return "json"
    return "text" if kind == "text" else None


_FLOAT_PARAMETERS: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
)


def _request(
    instance: Any, kwargs: Mapping[str, Any], operation: str, max_tokens_keys: tuple[str, ...] = ()
) -> dict[str, Any]:
    """What every request extractor starts with: client, operation, model and the first max-tokens key passed."""
    attrs = client_attributes(instance)
    attrs[sc.GEN_AI_OPERATION_NAME] = operation
    model = kwargs.get("model")
    if given(model):
        attrs[sc.GEN_AI_REQUEST_MODEL] = str(model)
    for key in max_tokens_keys:
        max_tokens = kwargs.get(key)
        if given(max_tokens):
            attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = _int(max_tokens)
            break
    return attrs


def _floats(kwargs: Mapping[str, Any], attrs: dict[str, Any], parameters: tuple[tuple[str, str], ...]) -> None:
    for key, name in parameters:
        value = kwargs.get(key)
        if given(value):
            attrs[name] = _float(value)


def _stream(kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    stream = kwargs.get("stream")
    if given(stream):
        attrs[sc.GEN_AI_REQUEST_STREAM] = bool(stream)


def _service_tier(kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    tier = kwargs.get("service_tier")
    if given(tier) and tier != "auto":
        attrs[sc.GEN_AI_OPENAI_REQUEST_SERVICE_TIER] = str(tier)


def _sampling(kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    """Sampling parameters shared by chat and completions, each only when the caller passed it."""
    _floats(kwargs, attrs, _FLOAT_PARAMETERS)
    seed = kwargs.get("seed")
    if given(seed):
        attrs[sc.GEN_AI_REQUEST_SEED] = _int(seed)
    stop = kwargs.get("stop")
    if given(stop):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = stop_sequences(stop)
    n = kwargs.get("n")
    if given(n) and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = _int(n)
    _stream(kwargs, attrs)


def usage_attributes(usage: Any) -> dict[str, Any]:
    """Token usage of a chat/completions (``prompt_tokens``...) or responses (``input_tokens``...) usage object."""
    if usage is None:
        return {}
    input_tokens = get(usage, "prompt_tokens")
    output_tokens = get(usage, "completion_tokens")
    in_details = get(usage, "prompt_tokens_details")
    out_details = get(usage, "completion_tokens_details")
    if input_tokens is None and output_tokens is None:
        input_tokens = get(usage, "input_tokens")
        output_tokens = get(usage, "output_tokens")
        in_details = get(usage, "input_tokens_details")
        out_details = get(usage, "output_tokens_details")
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: _int(input_tokens),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _int(output_tokens),
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _int(get(in_details, "cached_tokens")) if in_details else None,
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _int(get(out_details, "reasoning_tokens")) if out_details else None,
    }


# -- request / response extractors --------------------------------------------------------------------------------
def chat_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``chat.completions.create``/``parse``: operation, provider, server, model and the parameters passed."""
    attrs = _request(instance, kwargs, sc.OP_CHAT, ("max_completion_tokens", "max_tokens"))
    _sampling(kwargs, attrs)
    _service_tier(kwargs, attrs)
    response_format = kwargs.get("response_format")
    if given(response_format):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = _output_type(response_format)
    return attrs


def completion_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Legacy ``completions.create``."""
    attrs = _request(instance, kwargs, sc.OP_TEXT_COMPLETION, ("max_tokens",))
    _sampling(kwargs, attrs)
    return attrs


def embeddings_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``embeddings.create``: model, batch size, requested dimensions and encoding format."""
    attrs = _request(instance, kwargs, sc.OP_EMBEDDINGS)
    value = kwargs.get("input")
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = 1
    elif isinstance(value, list | tuple):
        attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] = len(value)
    dimensions = kwargs.get("dimensions")
    if given(dimensions):
        attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = _int(dimensions)
    encoding = kwargs.get("encoding_format")
    if given(encoding):
        attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [str(encoding)]
    return attrs


def responses_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``responses.create``/``parse``."""
    attrs = _request(instance, kwargs, sc.OP_CHAT, ("max_output_tokens",))
    _floats(kwargs, attrs, _FLOAT_PARAMETERS[:2])  # temperature, top_p
    _stream(kwargs, attrs)
    _service_tier(kwargs, attrs)
    text_format = kwargs.get("text_format")
    if given(text_format):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json"
    return attrs


def chat_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``ChatCompletion`` (or legacy ``Completion``): id, model, finish reasons, usage, fingerprint, tier."""
    reasons = [r for r in (get(c, "finish_reason") for c in items(get(result, "choices"))) if isinstance(r, str)]
    attrs = {
        sc.GEN_AI_RESPONSE_ID: get(result, "id"),
        sc.GEN_AI_RESPONSE_MODEL: get(result, "model"),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: reasons or None,
        sc.GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT: get(result, "system_fingerprint"),
        sc.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: get(result, "service_tier"),
    }
    attrs.update(usage_attributes(get(result, "usage")))
    return attrs


def embeddings_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``CreateEmbeddingResponse``: model, input tokens, vector dimension (never the vectors)."""
    attrs: dict[str, Any] = {sc.GEN_AI_RESPONSE_MODEL: get(result, "model")}
    usage = get(result, "usage")
    attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = _int(get(usage, "prompt_tokens"))
    data = items(get(result, "data"), 1)
    if data:
        vector = get(data[0], "embedding")
        if isinstance(vector, list):
            attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(vector)
    return attrs


def responses_finish_reason(result: Any) -> str | None:
    status = get(result, "status")
    if status == "completed":
        return "stop"
    if status == "incomplete":
        reason = get(get(result, "incomplete_details"), "reason")
        return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    return "error" if status == "failed" else None


def responses_response(instance: Any, result: Any) -> dict[str, Any]:
    """A ``Response``: id, model, status as finish reason, usage, service tier."""
    reason = responses_finish_reason(result)
    attrs = {
        sc.GEN_AI_RESPONSE_ID: get(result, "id"),
        sc.GEN_AI_RESPONSE_MODEL: get(result, "model"),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: [reason] if reason else None,
        sc.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: get(result, "service_tier"),
    }
    attrs.update(usage_attributes(get(result, "usage")))
    return attrs
