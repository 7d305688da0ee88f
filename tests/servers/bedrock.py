"""FakeBedrock: a local HTTP server speaking the Bedrock Runtime REST wire format, for boto3's `bedrock-runtime` client.

Point the client at it with `endpoint_url=server.url` (any fake credentials: the SigV4 signature is not checked).
`POST /model/{modelId}/converse` and `/invoke` answer JSON; `/converse-stream` and `/invoke-with-response-stream`
answer `application/vnd.amazon.eventstream`: binary messages (prelude with total and header lengths, prelude CRC32,
typed headers `:event-type` / `:content-type` / `:message-type`, JSON payload, message CRC32), parsed by botocore
itself. InvokeModel speaks the Anthropic Messages body format and reports usage in Bedrock's token-count headers.
Token counts are whitespace-separated words. Magic model ids: `error-throttle` answers 429 `ThrottlingException`;
`error-midstream` sends a `modelStreamErrorException` after the first events. `reshape` (a callable given each
non-streamed Converse body) makes malformed answers for hostile tests.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

from ._http import HttpServerBase, RecordedRequest, RequestHandler

__all__ = ["FakeBedrock", "event_message"]


def _words(text: str) -> int:
    return len(text.split())


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length), prelude CRC, headers, payload, CRC."""
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(kind: str, body: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return event_message(headers, json.dumps(body).encode())


def _exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return event_message(headers, json.dumps({"message": message}).encode())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict))


class FakeBedrock(HttpServerBase):
    """Bedrock Runtime stand-in on 127.0.0.1; settings may change while it runs."""

    def __init__(
        self, port: int | None = None, *, reply: str = "A deterministic reply from the Bedrock stand-in."
    ) -> None:
        super().__init__(port)
        self.reply = reply
        self.chunks = 3
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.reshape: Callable[[dict[str, Any]], Any] | None = None

    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:
        parts = request.path.split("/")
        if request.method != "POST" or len(parts) != 4 or parts[1] != "model":
            handler.send_json(404, {"message": "UnknownOperationException"}, {"x-amzn-ErrorType": "UnknownOperation"})
            return
        model, action = unquote(parts[2]), parts[3]
        body = request.json if isinstance(request.json, dict) else {}
        if model == "error-throttle":
            headers = {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"}
            handler.send_json(429, {"message": "Too many requests, please wait before trying again."}, headers)
            return
        routes = {
            "converse": self._converse,
            "converse-stream": self._converse_stream,
            "invoke": self._invoke,
            "invoke-with-response-stream": self._invoke_stream,
        }
        route = routes.get(action)
        if route is None:
            handler.send_json(404, {"message": f"no action {action}"}, {"x-amzn-ErrorType": "UnknownOperation"})
            return
        route(handler, model, body)

    def _usage(self, prompt: str) -> dict[str, int]:
        uncached, output = _words(prompt), _words(self.reply)
        cached = self.cache_read_tokens + self.cache_write_tokens
        return {
            "inputTokens": uncached,
            "outputTokens": output,
            "totalTokens": uncached + output + cached,
            "cacheReadInputTokens": self.cache_read_tokens,
            "cacheWriteInputTokens": self.cache_write_tokens,
        }

    def _prompt(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        return " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))

    def _pieces(self) -> list[str]:
        size = max(1, -(-len(self.reply) // self.chunks))
        return [self.reply[i : i + size] for i in range(0, len(self.reply), size)]

    def _converse(self, handler: RequestHandler, model: str, body: dict[str, Any]) -> None:
        answer = {
            "output": {"message": {"role": "assistant", "content": [{"text": self.reply}]}},
            "stopReason": "end_turn",
            "usage": self._usage(self._prompt(body)),
            "metrics": {"latencyMs": 12},
        }
        handler.send_json(200, answer if self.reshape is None else self.reshape(answer))

    def _send_stream(self, handler: RequestHandler, messages: Iterator[bytes], model: str) -> None:
        handler.start_chunked(200, "application/vnd.amazon.eventstream")
        try:
            for i, message in enumerate(messages):
                if i == 2 and model == "error-midstream":
                    handler.write_chunk(_exception("modelStreamErrorException", "The model stream failed."))
                    break
                handler.write_chunk(message)
            handler.end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _converse_stream(self, handler: RequestHandler, model: str, body: dict[str, Any]) -> None:
        def events() -> Iterator[bytes]:
            yield _event("messageStart", {"role": "assistant"})
            for piece in self._pieces():
                yield _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
            yield _event("contentBlockStop", {"contentBlockIndex": 0})
            yield _event("messageStop", {"stopReason": "end_turn"})
            yield _event("metadata", {"usage": self._usage(self._prompt(body)), "metrics": {"latencyMs": 12}})

        self._send_stream(handler, events(), model)

    def _invoke(self, handler: RequestHandler, model: str, body: dict[str, Any]) -> None:
        prompt, output = _words(self._prompt(body)), _words(self.reply)
        answer = {
            "id": "msg_bdrk_01",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": self.reply}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt, "output_tokens": output},
        }
        headers = {
            "X-Amzn-Bedrock-Input-Token-Count": str(prompt),
            "X-Amzn-Bedrock-Output-Token-Count": str(output),
            "X-Amzn-Bedrock-Invocation-Latency": "12",
        }
        handler.send_json(200, answer, headers)

    def _invoke_stream(self, handler: RequestHandler, model: str, body: dict[str, Any]) -> None:
        prompt, output = _words(self._prompt(body)), _words(self.reply)

        def chunk(data: dict[str, Any]) -> bytes:
            return _event("chunk", {"bytes": base64.b64encode(json.dumps(data).encode()).decode()})

        def events() -> Iterator[bytes]:
            start = {"id": "msg_bdrk_02", "type": "message", "role": "assistant", "model": model, "content": []}
            yield chunk({"type": "message_start", "message": {**start, "usage": {"input_tokens": prompt}}})
            for piece in self._pieces():
                yield chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
            yield chunk(
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output}}
            )
            metrics = {"inputTokenCount": prompt, "outputTokenCount": output, "invocationLatency": 12}
            yield chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics})

        self._send_stream(handler, events(), model)
