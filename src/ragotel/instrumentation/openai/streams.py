"""Stream readers for OpenAI chat/completion chunks and Responses API events: ids, model, finish reasons, usage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragotel import semconv as sc
from ragotel.bounds import TextBuffer, items
from ragotel.instrumentation._genai import is_stream, text_part
from ragotel.instrumentation.openai.content import responses_response_content
from ragotel.instrumentation.openai.extract import responses_response, usage_attributes
from ragotel.telemetry import Operation


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
        self._texts: dict[int, TextBuffer] = {}

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Note ids, finish reasons and usage; accumulate text only when content may be captured."""
        if self._first is None:
            self._first = chunk
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = usage
        limit = op.capture_limit
        for choice in items(getattr(chunk, "choices", None)):
            index = getattr(choice, "index", 0) or 0
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self._finish[index] = reason
            if limit:
                text = getattr(getattr(choice, "delta", None), "content", None) if self._chat else choice.text
                if isinstance(text, str) and text:
                    self._texts.setdefault(index, TextBuffer()).add(text, limit)

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
        attrs.update(usage_attributes(self._usage))
        op.set_attributes(attrs)
        if op.capture_content and (self._texts or self._finish):
            indexes = sorted(set(self._texts) | set(self._finish))
            messages = [
                {
                    "role": "assistant",
                    "parts": [text_part(self._texts[i].text() if i in self._texts else "")],
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
        self._texts = TextBuffer()

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
                self._texts.add(delta, op.capture_limit)

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
            op.capture(sc.GEN_AI_OUTPUT_MESSAGES, [{"role": "assistant", "parts": [text_part(self._texts.text())]}])


def chat_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader when ``create(stream=True)`` returned a stream."""
    return ChoiceStreamReader(chat=True) if is_stream(result) else None


def completion_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader for a streamed legacy completion."""
    return ChoiceStreamReader(chat=False) if is_stream(result) else None


def responses_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> Any:
    """A reader for a streamed response."""
    return ResponsesStreamReader() if is_stream(result) else None
