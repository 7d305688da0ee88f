"""FakeAnthropic: a local HTTP server speaking the Anthropic Messages API wire format, for the real `anthropic` client.

`POST /v1/messages` answers a `Message` JSON body, or with `"stream": true` the SSE event stream (`message_start`,
`content_block_start`, `ping`, `content_block_delta`..., `content_block_stop`, `message_delta` with the final usage,
`message_stop`). Token counts are whitespace-separated words. Usage reports `cache_read_tokens` /
`cache_creation_tokens` as set on the server. Magic model names: `error-<status>` answers that status with the real
error body; `error-midstream` sends an SSE `error` event after the first events. `reshape` (a callable given each
non-streamed answer body) makes malformed answers for hostile tests.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ._http import HttpServerBase, RecordedRequest, RequestHandler

__all__ = ["FakeAnthropic"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


class FakeAnthropic(HttpServerBase):
    """Anthropic API stand-in on 127.0.0.1 (threaded, keep-alive, SSE streams); settings may change while it runs."""

    def __init__(
        self, port: int | None = None, *, reply: str = "A deterministic reply from the Anthropic stand-in."
    ) -> None:
        super().__init__(port)
        self.reply = reply
        self.chunks = 3
        self.delay = 0.0
        self.cache_read_tokens = 0
        self.cache_creation_tokens = 0
        self.reshape: Callable[[dict[str, Any]], Any] | None = None

    def _error(self, handler: RequestHandler, status: int, message: str) -> None:
        body = {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}
        handler.send_json(status, body, {"request-id": "req_" + uuid.uuid4().hex[:24]})

    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:
        if (request.method, request.path) != ("POST", "/v1/messages"):
            self._error(handler, 404, f"Not found: {request.method} {request.path}")
            return
        body = request.json if isinstance(request.json, dict) else {}
        model = str(body.get("model", ""))
        if model.startswith("error-") and model[6:].isdigit():
            self._error(handler, int(model[6:]), f"injected error for {model}")
            return
        if self.delay:
            time.sleep(self.delay)
        prompt = " ".join(_text_of(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
        uncached = _words(prompt) + _words(_text_of(body.get("system")))
        text = self.reply
        limit = body.get("max_tokens")
        reason = "end_turn"
        if isinstance(limit, int) and _words(text) > limit:
            text, reason = " ".join(text.split()[:limit]), "max_tokens"
        usage = {
            "input_tokens": uncached,
            "cache_creation_input_tokens": self.cache_creation_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "output_tokens": _words(text),
            "service_tier": "standard",
        }
        message = {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": model + "-20250101" if model else "claude-unknown",
            "content": [{"type": "text", "text": text}],
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            handler.send_json(200, message if self.reshape is None else self.reshape(message))
            return
        self._stream(handler, message, text, model)

    def _events(self, message: dict[str, Any], text: str) -> Iterator[dict[str, Any]]:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        yield {"type": "message_start", "message": start}
        yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        yield {"type": "ping"}
        size = max(1, -(-len(text) // self.chunks))
        for i in range(0, len(text), size):
            yield {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text[i : i + size]},
            }
        yield {"type": "content_block_stop", "index": 0}
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        yield {"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage["output_tokens"]}}
        yield {"type": "message_stop"}

    def _stream(self, handler: RequestHandler, message: dict[str, Any], text: str, model: str) -> None:
        handler.start_chunked(200, "text/event-stream; charset=utf-8", {"request-id": "req_stream"})
        try:
            for i, event in enumerate(self._events(message, text)):
                if i == 3 and model == "error-midstream":
                    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                    handler.write_chunk(b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n")
                    break
                handler.write_chunk(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
            handler.end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True


def main(argv: list[str] | None = None) -> int:
    """Run FakeAnthropic in the foreground until SIGINT/SIGTERM (benchmarks start it in its own process)."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.anthropic", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with FakeAnthropic(args.port or None) as server:
        print(f"FakeAnthropic listening on {server.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
