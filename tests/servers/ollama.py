"""FakeOllama: a local HTTP server speaking Ollama's REST API, for the real `ollama` client (`Client(host=server.url)`).

`POST /api/chat` and `/api/generate` answer one JSON object, or with `"stream": true` newline-delimited JSON
(`application/x-ndjson`): content chunks with `done: false`, then a final chunk with `done: true`, `done_reason` and
the token counts `prompt_eval_count` / `eval_count` and durations. `POST /api/embed` (and the legacy
`/api/embeddings`) answers unit vectors. Token
counts are whitespace-separated words. Magic model names: `missing` answers 404 `{"error": "model ... not found"}`;
`error-midstream` sends an `{"error": ...}` line after the first chunk. `reshape` (a callable given each
non-streamed chat answer body) makes malformed answers for hostile tests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from ._http import HttpServerBase, RecordedRequest, RequestHandler

__all__ = ["FakeOllama"]

_CREATED = "2026-01-01T00:00:00.000000Z"


class FakeOllama(HttpServerBase):
    """Ollama stand-in on 127.0.0.1; settings may change while it runs."""

    def __init__(
        self, port: int | None = None, *, reply: str = "A deterministic reply from the Ollama stand-in."
    ) -> None:
        super().__init__(port)
        self.reply = reply
        self.chunks = 3
        self.dimensions = 8
        self.reshape: Callable[[dict[str, Any]], Any] | None = None

    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        model = str(body.get("model", ""))
        if model == "missing":
            handler.send_json(404, {"error": f"model '{model}' not found"})
            return
        if (request.method, request.path) == ("POST", "/api/embeddings"):  # the legacy single-prompt endpoint
            handler.send_json(200, {"embedding": [1.0 / math.sqrt(self.dimensions)] * self.dimensions})
            return
        if (request.method, request.path) == ("POST", "/api/embed"):
            texts = body.get("input")
            count = 1 if isinstance(texts, str) else len(texts or [])
            vector = [1.0 / math.sqrt(self.dimensions)] * self.dimensions
            answer = {"model": model, "embeddings": [vector] * count, "total_duration": 1000, "load_duration": 10,
                      "prompt_eval_count": count}  # fmt: skip
            handler.send_json(200, answer)
            return
        if (request.method, request.path) not in (("POST", "/api/chat"), ("POST", "/api/generate")):
            handler.send_json(404, {"error": "404 page not found"})
            return
        chat = request.path == "/api/chat"
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages") or []) if chat else body.get("prompt")
        final = {
            "model": model,
            "created_at": _CREATED,
            "done": True,
            "done_reason": "stop",
            "total_duration": 5000,
            "load_duration": 100,
            "prompt_eval_count": len(str(prompt or "").split()),
            "prompt_eval_duration": 1000,
            "eval_count": len(self.reply.split()),
            "eval_duration": 3000,
        }
        if body.get("stream") is False:
            answer = {**final, **self._content(chat, self.reply)}
            handler.send_json(200, answer if self.reshape is None else self.reshape(answer))
            return
        handler.start_chunked(200, "application/x-ndjson")
        size = max(1, -(-len(self.reply) // self.chunks))
        try:
            for i in range(0, len(self.reply), size):
                if i and model == "error-midstream":
                    handler.write_chunk(
                        json.dumps({"error": "an error was encountered while running the model"}).encode() + b"\n"
                    )
                    handler.end_chunked()
                    return
                chunk = {
                    "model": model,
                    "created_at": _CREATED,
                    **self._content(chat, self.reply[i : i + size]),
                    "done": False,
                }
                handler.write_chunk(json.dumps(chunk).encode() + b"\n")
            handler.write_chunk(json.dumps({**final, **self._content(chat, "")}).encode() + b"\n")
            handler.end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    @staticmethod
    def _content(chat: bool, text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
