"""FakeCohere: a local HTTP server speaking Cohere's REST wire format: v2 chat (plain, SSE stream), embed, rerank;
v1 chat, embed and rerank (the legacy `cohere.Client`).

For the real `cohere` client: `cohere.ClientV2(api_key=..., base_url=server.url)`. Usable without pytest
(benchmarks): `python -m tests.servers.cohere --port 8001`.

Determinism: token counts are whitespace-separated words; embeddings are unit vectors seeded by a hash of the text;
rerank scores count the query's words found in each document (ties broken by position), scaled into (0, 1].
Magic model names: `error-<status>` answers that status with Cohere's error body (`{"id", "message"}`).
`reshape` (a callable given each non-streamed answer body, returning the body to send) makes malformed answers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ._http import HttpServerBase, RecordedRequest, RequestHandler

__all__ = ["FakeCohere", "main"]

DEFAULT_REPLY = "A deterministic reply from the local Cohere stand-in."
_ERROR_MESSAGES = {
    400: "invalid request: injected by FakeCohere",
    401: "invalid api token",
    404: "model '{model}' not found, make sure the correct model ID was used and that you have access to the model.",
    429: "You are using a Trial key, which is limited to 10 API calls / minute.",
    500: "internal server error, this has been reported to our developers",
}


def _words(text: str) -> int:
    return len(text.split())


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    counts = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return {"billed_units": dict(counts), "tokens": dict(counts)}


def _vector(text: str, dim: int) -> list[float]:
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    raw = [rng.uniform(-1.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


class FakeCohere(HttpServerBase):
    """Cohere v2 stand-in on 127.0.0.1: `/v2/chat` (plain and SSE stream), `/v2/embed`, `/v2/rerank`.

    Attributes may be changed while it runs: `reply`, `chunks` (content-delta events per stream), `chunk_delay`,
    `embedding_dim`, `api_key` (when set, `Authorization: Bearer <key>` is required, else 401), `reshape`.
    """

    def __init__(
        self, port: int | None = None, *, host: str = "127.0.0.1", reply: str = DEFAULT_REPLY, chunks: int = 4
    ) -> None:
        super().__init__(port, host=host)
        self.reply = reply
        self.chunks = chunks
        self.chunk_delay = 0.0
        self.embedding_dim = 32
        self.api_key: str | None = None
        self.reshape: Callable[[dict[str, Any]], Any] | None = None
        self._lock = threading.Lock()
        self.streams_completed = 0

    # -- dispatch ----------------------------------------------------------------------------------------------------
    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            handler.send_json(401, {"id": str(uuid.uuid4()), "message": _ERROR_MESSAGES[401]})
            return
        body = request.json if isinstance(request.json, dict) else {}
        model = str(body.get("model", ""))
        if model.startswith("error-") and model[6:].isdigit():
            status = int(model[6:])
            message = _ERROR_MESSAGES.get(status, f"error {status}").format(model=model)
            handler.send_json(status, {"id": str(uuid.uuid4()), "message": message})
            return
        routes = {
            "/v2/chat": self._chat,
            "/v2/embed": self._embed,
            "/v2/rerank": self._rerank,
            "/v1/chat": self._chat_v1,
            "/v1/embed": self._embed_v1,
            "/v1/rerank": self._rerank,  # v1 and v2 answer a rerank alike
        }
        route = routes.get(request.path)
        if route is None or request.method != "POST":
            handler.send_json(404, {"message": f"no route for {request.method} {request.path}"})
            return
        if request.path == "/v2/chat" and body.get("stream"):
            self._chat_stream(body, handler)
            return
        answer = route(body)
        handler.send_json(200, self.reshape(answer) if self.reshape is not None else answer)

    # -- endpoints -----------------------------------------------------------------------------------------------------
    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        return sum(_words(_message_text(m)) for m in body.get("messages") or [])

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "finish_reason": "MAX_TOKENS" if body.get("max_tokens") == 1 else "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": self.reply}]},
            "usage": _usage(self._prompt_tokens(body), _words(self.reply)),
        }

    def _chat_v1(self, body: dict[str, Any]) -> dict[str, Any]:
        tokens = _words(str(body.get("message", ""))) + _words(str(body.get("preamble", "")))
        return {
            "response_id": str(uuid.uuid4()),
            "generation_id": str(uuid.uuid4()),
            "text": self.reply,
            "finish_reason": "COMPLETE",
            "chat_history": [],
            "meta": {"api_version": {"version": "1"}, **_usage(tokens, _words(self.reply))},
        }

    def _embed_v1(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._embed(body)
        if not body.get("embedding_types"):  # without embedding_types v1 answers plain float vectors
            answer["response_type"] = "embeddings_floats"
            answer["embeddings"] = answer["embeddings"]["float"]
        return answer

    def _events(self, body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        words = self.reply.split(" ")
        n = max(1, min(self.chunks, len(words)))
        size = math.ceil(len(words) / n)
        pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        message_id = str(uuid.uuid4())
        start_message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        yield "message-start", {"id": message_id, "type": "message-start", "delta": {"message": start_message}}
        content = {"type": "text", "text": ""}
        yield "content-start", {"type": "content-start", "index": 0, "delta": {"message": {"content": content}}}
        for i, piece in enumerate(pieces):
            text = piece if i == 0 else " " + piece
            delta = {"message": {"content": {"text": text}}}
            yield "content-delta", {"type": "content-delta", "index": 0, "delta": delta}
        yield "content-end", {"type": "content-end", "index": 0}
        usage = _usage(self._prompt_tokens(body), _words(self.reply))
        yield "message-end", {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}}

    def _chat_stream(self, body: dict[str, Any], handler: RequestHandler) -> None:
        handler.start_chunked(200, "text/event-stream")
        try:
            for event, data in self._events(body):
                handler.write_chunk(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
            handler.end_chunked()
        except OSError:  # the client hung up mid-stream (close, break): normal in these tests
            handler.close_connection = True
            return
        with self._lock:
            self.streams_completed += 1

    def _embed(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = [str(t) for t in body.get("texts") or []]
        dim = int(body.get("output_dimension") or self.embedding_dim)
        tokens = sum(_words(t) for t in texts)
        return {
            "id": str(uuid.uuid4()),
            "response_type": "embeddings_by_type",
            "embeddings": {"float": [_vector(t, dim) for t in texts]},
            "texts": texts,
            "meta": {
                "api_version": {"version": "2"},
                "billed_units": {"input_tokens": tokens},
                "tokens": {"input_tokens": tokens},
            },
        }

    def _rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        query = set(str(body.get("query", "")).lower().split())
        documents = [str(d.get("text", "")) if isinstance(d, dict) else str(d) for d in body.get("documents") or []]
        scored = []
        for i, doc in enumerate(documents):
            hits = len(query & set(doc.lower().split()))
            scored.append((hits / (len(query) or 1) * 0.9 + 0.1 / (i + 2), i))
        scored.sort(reverse=True)
        top_n = body.get("top_n")
        if isinstance(top_n, int):
            scored = scored[:top_n]
        return {
            "id": str(uuid.uuid4()),
            "results": [{"index": i, "relevance_score": round(score, 6)} for score, i in scored],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }


def main(argv: list[str] | None = None) -> int:
    """Run FakeCohere in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Cohere v2 API stand-in on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = FakeCohere(args.port or None)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(f"FakeCohere listening on {server.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
