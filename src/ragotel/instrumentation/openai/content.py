"""OpenAI prompts and completions as GenAI semconv messages: called only with content capture on.

A caller's generator (of messages, prompts, inputs) is never iterated: only lists and tuples are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._genai import get, given, text_part
from ragotel.instrumentation.openai.extract import responses_finish_reason


def _parts(content: Any) -> list[dict[str, Any]]:
    """Message content (a string or typed parts) as GenAI semconv parts; non-text parts keep only their type."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for part in items(content):
        kind = get(part, "type")
        text = get(part, "text")
        if isinstance(text, str) and kind in ("text", "input_text", "output_text", None):
            parts.append(text_part(text))
        elif kind is not None:
            parts.append({"type": str(kind)})
    return parts


def _tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in items(tool_calls):
        function = get(call, "function")
        parts.append(
            {
                "type": "tool_call",
                "id": get(call, "id"),
                "name": get(function, "name"),
                "arguments": get(function, "arguments"),
            }
        )
    return parts


def _chat_message(message: Any) -> dict[str, Any]:
    role = get(message, "role") or "user"
    if role == "tool":
        response = {"type": "tool_call_response", "id": get(message, "tool_call_id"), "response": None}
        response["response"] = get(message, "content")
        return {"role": "tool", "parts": [response]}
    parts = _parts(get(message, "content")) + _tool_call_parts(get(message, "tool_calls"))
    return {"role": role, "parts": parts}


def chat_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt messages as ``gen_ai.input.messages``."""
    messages = kwargs.get("messages")
    if not isinstance(messages, list | tuple):  # never iterate a caller's generator
        return {}
    return {sc.GEN_AI_INPUT_MESSAGES: [_chat_message(m) for m in items(messages)]}


def chat_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The completion choices as ``gen_ai.output.messages``."""
    out = []
    for choice in items(get(result, "choices")):
        message = get(choice, "message")
        parts = _parts(get(message, "content")) + _tool_call_parts(get(message, "tool_calls"))
        out.append({"role": "assistant", "parts": parts, "finish_reason": get(choice, "finish_reason")})
    return {sc.GEN_AI_OUTPUT_MESSAGES: out}


def completion_request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt(s) of a legacy completion as user messages."""
    prompt = kwargs.get("prompt")
    if not given(prompt):
        return {}
    listed = items(prompt)
    prompts = listed if isinstance(prompt, list) and all(isinstance(p, str) for p in listed) else [prompt]
    return {sc.GEN_AI_INPUT_MESSAGES: [{"role": "user", "parts": [text_part(p)]} for p in prompts]}


def completion_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The completion texts."""
    out = [
        {"role": "assistant", "parts": [text_part(get(c, "text"))], "finish_reason": get(c, "finish_reason")}
        for c in items(get(result, "choices"))
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
    if given(instructions) and isinstance(instructions, str):
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = [text_part(instructions)]
    value = kwargs.get("input")
    if isinstance(value, str):
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [{"role": "user", "parts": [text_part(value)]}]
    elif isinstance(value, list | tuple):  # never iterate a caller's generator
        attrs[sc.GEN_AI_INPUT_MESSAGES] = [
            {"role": get(item, "role") or str(get(item, "type")), "parts": _parts(get(item, "content"))}
            for item in items(value)
        ]
    return attrs


def responses_response_content(instance: Any, result: Any) -> dict[str, Any]:
    """The output message items of a response."""
    out = []
    for item in items(get(result, "output")):
        if get(item, "type") == "message":
            out.append({"role": get(item, "role") or "assistant", "parts": _parts(get(item, "content"))})
        elif get(item, "type") == "function_call":
            call = {"type": "tool_call", "id": get(item, "call_id"), "name": get(item, "name")}
            call["arguments"] = get(item, "arguments")
            out.append({"role": "assistant", "parts": [call]})
    if out:
        out[-1]["finish_reason"] = responses_finish_reason(result)
    return {sc.GEN_AI_OUTPUT_MESSAGES: out}
