"""FakeGemini: a local HTTP server speaking the Gemini Developer API wire format, for the `google-genai` client.

`POST /{v1,v1beta}/models/{model}:generateContent` answers a `GenerateContentResponse`; `:streamGenerateContent?alt=sse`
answers the same as server-sent events (`data: {...}` per chunk, usage in every chunk, the finish reason in the
last); `:embedContent` / `:batchEmbedContents` answer unit vectors. Point the client at it with
`http_options={"base_url": server.url}`. Token counts are whitespace-separated words. Magic model names:
`error-<status>` answers that status with the real `{"error": {code, message, status}}` body; `error-midstream`
drops the connection after the first chunk. `reshape` (a callable given each non-streamed generate answer body)
makes malformed answers for hostile tests.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import Any

from ._http import HttpServerBase, RecordedRequest, RequestHandler

__all__ = ["FakeGemini"]

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


def _text_of(contents: Any) -> str:
    if isinstance(contents, dict):
        contents = [contents]
    texts: list[str] = []
    for content in contents or []:
        for part in content.get("parts") or [] if isinstance(content, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return " ".join(texts)


class FakeGemini(HttpServerBase):
    """Gemini API stand-in on 127.0.0.1; settings may change while it runs."""

    def __init__(
        self, port: int | None = None, *, reply: str = "A deterministic reply from the Gemini stand-in."
    ) -> None:
        super().__init__(port)
        self.reply = reply
        self.chunks = 3
        self.cached_tokens = 0
        self.thoughts_tokens = 0
        self.dimensions = 8
        self.reshape: Callable[[dict[str, Any]], Any] | None = None

    def _error(self, handler: RequestHandler, status: int, message: str) -> None:
        body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
        handler.send_json(status, body)

    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:
        version, _, rest = request.path.lstrip("/").partition("/")
        if (
            request.method != "POST"
            or version not in ("v1", "v1beta")
            or not rest.startswith("models/")
            or ":" not in rest
        ):
            self._error(handler, 404, f"not found: {request.path}")
            return
        model, action = rest.removeprefix("models/").rsplit(":", 1)
        body = request.json if isinstance(request.json, dict) else {}
        if model.startswith("error-") and model[6:].isdigit():
            self._error(handler, int(model[6:]), f"injected error for {model}")
            return
        if action == "generateContent":
            answer = self._answer(model, body, self.reply, "STOP")
            handler.send_json(200, answer if self.reshape is None else self.reshape(answer))
        elif action == "streamGenerateContent":
            self._stream(handler, model, body)
        elif action == "embedContent":
            handler.send_json(200, {"embedding": {"values": self._vector()}})
        elif action == "batchEmbedContents":
            requests = body.get("requests") or []
            handler.send_json(200, {"embeddings": [{"values": self._vector()} for _ in requests]})
        else:
            self._error(handler, 404, f"no action {action}")

    def _vector(self) -> list[float]:
        return [1.0 / math.sqrt(self.dimensions)] * self.dimensions

    def _answer(self, model: str, body: dict[str, Any], text: str, reason: str | None) -> dict[str, Any]:
        prompt = len(_text_of(body.get("contents")).split()) + self.cached_tokens
        output = len(self.reply.split())
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if reason:
            candidate["finishReason"] = reason
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": output,
                "cachedContentTokenCount": self.cached_tokens,
                "thoughtsTokenCount": self.thoughts_tokens,
                "totalTokenCount": prompt + output + self.thoughts_tokens,
            },
            "modelVersion": f"{model}-001",
            "responseId": "resp-" + uuid.uuid4().hex[:16],
        }

    def _stream(self, handler: RequestHandler, model: str, body: dict[str, Any]) -> None:
        size = max(1, -(-len(self.reply) // self.chunks))
        pieces = [self.reply[i : i + size] for i in range(0, len(self.reply), size)]
        handler.start_chunked(200, "text/event-stream")
        try:
            for i, piece in enumerate(pieces):
                if i == 1 and model == "error-midstream":
                    handler.abort()
                    return
                chunk = self._answer(model, body, piece, "STOP" if i == len(pieces) - 1 else None)
                handler.write_chunk(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
            handler.end_chunked()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
