"""Readers every LLM-provider module shares: values the caller really passed, typed numbers, the server of a URL.

Pure functions over request keyword arguments, response models and plain JSON; none touches a span or raises on
an odd shape (it yields None instead, and a None attribute is never recorded).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final
from urllib.parse import urlsplit

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import ENVELOPE_LAZY, ENVELOPE_READY

__all__ = [
    "as_float",
    "as_int",
    "envelope",
    "get",
    "given",
    "is_stream",
    "parameters",
    "server_attributes",
    "stop_sequences",
    "text_part",
    "tool_call_part",
    "tool_response_part",
]

_PLACEHOLDERS: Final = frozenset({"NotGiven", "Omit", "_NotGiven", "_Omit"})
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


def given(value: Any) -> bool:
    """True for a value the caller really passed (not None, not a client's ``omit``/``NOT_GIVEN`` sentinels)."""
    return value is not None and type(value).__name__ not in _PLACEHOLDERS


def get(obj: Any, key: str) -> Any:
    """``obj[key]`` for dicts (request params, JSON bodies), ``obj.key`` for response models; None when absent."""
    if isinstance(obj, dict):  # a plain type check: an ABC check costs more, on every attribute read
        return obj.get(key)
    return getattr(obj, key, None)


def as_int(value: Any) -> int | None:
    """``value`` when it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: Any) -> float | None:
    """``value`` as a float when it is a number (not a bool), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def stop_sequences(stop: Any) -> list[str] | None:
    """One stop string or a list of them as a list of strings; None for anything else."""
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list | tuple):
        stops = items(stop)
        return stops if all(isinstance(s, str) for s in stops) else None
    return None


def text_part(text: Any) -> dict[str, Any]:
    """A GenAI semconv text part."""
    return {"type": "text", "content": text}


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A GenAI semconv tool-call part (the model asking for a tool)."""
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_response_part(call_id: Any, response: Any) -> dict[str, Any]:
    """A GenAI semconv tool-call response part (the tool's answer sent back)."""
    return {"type": "tool_call_response", "id": call_id, "response": response}


def parameters(source: Any, table: tuple[tuple[str, str, Any], ...]) -> dict[str, Any]:
    """Attributes for the request parameters present in ``source``: rows of (key, attribute, converter)."""
    attrs: dict[str, Any] = {}
    for key, name, convert in table:
        value = get(source, key)
        if given(value):
            attrs[name] = convert(value)
    return attrs


@functools.lru_cache(maxsize=256)
def _server(url: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
        port = parts.port
    except ValueError:
        return None, None
    return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme)


def server_attributes(url: Any) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of a base URL (a string or an httpx URL); empty when there is none."""
    if url is None:
        return {}
    host, port = _server(str(url))
    if not host:
        return {}
    return {sc.SERVER_ADDRESS: host, sc.SERVER_PORT: port}


# -- Stainless-generated clients (openai, anthropic) ----------------------------------------------------------
def is_stream(result: Any) -> bool:
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
