"""FakeOpenAI: a local HTTP server speaking the OpenAI REST wire format, for the real `openai` client.

Usable without pytest (benchmarks, the example app): `python -m tests.servers.openai --port 8000`, then point the client
at `base_url="http://127.0.0.1:8000/v1"`. Endpoints: chat and legacy completions, embeddings, responses, models.

Determinism: token counts are whitespace-separated words; embeddings are unit vectors seeded by a hash of the input;
the reply is `FakeOpenAI.reply` (a string, or a callable taking the request JSON).

Magic model names (any endpoint): `error-<status>` answers that status with the real error body (e.g. `error-429`);
`error-midstream` sends part of a stream and then an SSE error event (plain calls get a 500);
`error-disconnect` drops the connection (streams: after the first chunk).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import random
import signal
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._http import HttpServerBase, RecordedRequest, RequestHandler

__all__ = ["DEFAULT_RESPONSE_MODELS", "FakeOpenAI", "InjectedError", "main"]

DEFAULT_RESPONSE_MODELS: dict[str, str] = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-instruct": "gpt-3.5-turbo-instruct",
    "text-embedding-3-small": "text-embedding-3-small",
    "text-embedding-3-large": "text-embedding-3-large",
    "text-embedding-ada-002": "text-embedding-ada-002",
}

DEFAULT_REPLY = "This is a deterministic reply from the local OpenAI stand-in."

_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    # status: (message, type, code) as the real API sends them
    400: ("Invalid request (injected by FakeOpenAI).", "invalid_request_error", None),
    401: (
        "Incorrect API key provided: sk-fake. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    409: ("The server is busy with a conflicting request.", "invalid_request_error", None),
    422: ("Unprocessable request (injected by FakeOpenAI).", "invalid_request_error", None),
    429: (
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit 3, Used 3, "
        "Requested 1. Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@dataclass(frozen=True, slots=True)
class InjectedError:
    """An error answer: HTTP status plus the `{"error": {message, type, param, code}}` body and extra headers."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _error_for(status: int, model: str = "", **overrides: Any) -> InjectedError:
    message, type_, code = _ERROR_DEFAULTS.get(status, (f"Error {status} (injected by FakeOpenAI).", "api_error", None))
    return InjectedError(
        status=status,
        message=overrides.get("message") or message.format(model=model or "unknown"),
        type=overrides.get("type") or type_,
        code=overrides.get("code", code),
        param=overrides.get("param"),
        headers=dict(overrides.get("headers") or {}),
    )


def count_tokens(text: str) -> int:
    """The fake tokenizer: whitespace-separated words."""
    return len(text.split())


def _text_of(content: Any) -> str:
    """Text of a chat/responses message content: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _split(text: str, parts: int) -> list[str]:
    """`text` cut into `parts` contiguous pieces of near-equal length (fewer if the text is shorter)."""
    parts = max(1, min(parts, len(text))) if text else 1
    size, extra = divmod(len(text), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _truncate_words(text: str, limit: int | None) -> tuple[str, bool]:
    if limit is None or count_tokens(text) <= limit:
        return text, False
    return " ".join(text.split()[: max(limit, 0)]), True


def _example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments satisfying a JSON-schema object's required properties with placeholder values."""
    samples = {"string": "example", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    result: dict[str, Any] = {}
    for name in schema.get("required") or []:
        prop = properties.get(name) or {}
        if prop.get("enum"):
            result[name] = prop["enum"][0]
        else:
            kind = prop.get("type", "string")
            result[name] = samples.get(kind if isinstance(kind, str) else kind[0], "example")
    return result


def _id(prefix: str, n: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:n]


class _ClientGone(Exception):
    """The client hung up mid-response."""


class FakeOpenAI(HttpServerBase):
    """OpenAI REST stand-in on 127.0.0.1. Threaded, HTTP/1.1 keep-alive, SSE streams with chunked encoding.

    Every attribute below may be changed while the server runs (plain attribute writes; each request reads them once):
    `reply` (str or callable(request_json) -> str), `chunks` (content deltas per stream), `delay` (seconds before the
    response headers), `first_chunk_delay` (seconds between stream headers and the first event), `chunk_delay`
    (seconds between stream events), `embedding_dim`, `api_key` (when set, `Authorization: Bearer <key>` is
    required, else 401), `response_models` (request model -> response model), `cached_tokens`, `reasoning_tokens`,
    `system_fingerprint`, `service_tier`, `call_tools`, `tool_arguments` (below) and `reshape` (a callable given
    each non-streamed chat, completion, embeddings or responses answer body, returning the body to send: malformed
    answers for hostile tests). Requests are recorded in
    `.requests` (see HttpServerBase). A `reply` callable runs on the request's thread, so it may also sleep.

    Tool calling (chat completions): when the request offers function `tools`, `tool_choice` is not `none` and the last
    message is not a `tool` result, the answer is one call of the chosen (or first) tool, finish_reason `tool_calls`;
    its arguments are `tool_arguments` (a dict, or a callable taking the tool's `function` object) or, when None,
    placeholders for the schema's required properties. Set `call_tools = False` to always answer with text.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        reply: str | Callable[[dict[str, Any]], str] = DEFAULT_REPLY,
        chunks: int = 4,
        delay: float = 0.0,
        first_chunk_delay: float = 0.0,
        chunk_delay: float = 0.0,
        embedding_dim: int = 64,
        api_key: str | None = None,
        response_models: dict[str, str] | None = None,
    ) -> None:
        super().__init__(port, host=host)
        self.reply = reply
        self.chunks = chunks
        self.delay = delay
        self.first_chunk_delay = first_chunk_delay
        self.chunk_delay = chunk_delay
        self.embedding_dim = embedding_dim
        self.api_key = api_key
        self.response_models = dict(DEFAULT_RESPONSE_MODELS if response_models is None else response_models)
        self.cached_tokens = 0
        self.reasoning_tokens = 0
        self.call_tools = True
        self.tool_arguments: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.system_fingerprint = "fp_fake0000001"
        self.service_tier = "default"
        self.reshape: Callable[[dict[str, Any]], Any] | None = None
        self._failures: list[tuple[str | None, InjectedError, list[int]]] = []
        self._stats_lock = threading.Lock()
        self.streams_completed = 0
        self.streams_aborted = 0
        self.in_flight = 0
        self.max_in_flight = 0

    # -- public helpers ------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What to pass as the openai client's `base_url`."""
        return f"{self.url}/v1"

    def fail_next(
        self,
        status: int = 500,
        times: int = 1,
        *,
        message: str | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        """Answer the next `times` requests (to `path`, e.g. `/v1/chat/completions`; None = any) with an API error.

        The body carries the real API's default message/type/code for `status` unless overridden. `retry_after_ms`
        adds the `retry-after-ms` header the openai client honours (so retry tests need not sleep).
        """
        extra = dict(headers or {})
        if retry_after_ms is not None:
            extra["retry-after-ms"] = str(retry_after_ms)
        if status < 100 or times >= 100:
            raise ValueError(f"fail_next(status={status}, times={times}): the first positional argument is `status`")
        kwargs: dict[str, Any] = {"message": message, "type": type, "param": param, "headers": extra}
        if code is not None:
            kwargs["code"] = code
        error = _error_for(status, **kwargs)
        with self._stats_lock:
            self._failures.append((path, error, [times]))

    def reset(self) -> None:
        """Forget recorded requests and pending failures; counters back to zero (settings are kept)."""
        self.clear()
        with self._stats_lock:
            self._failures.clear()
            self.streams_completed = self.streams_aborted = 0
            self.max_in_flight = self.in_flight

    def _reshape(self, payload: dict[str, Any]) -> Any:
        reshape = self.reshape
        return payload if reshape is None else reshape(payload)

    def json_bodies(self, path: str | None = None) -> list[Any]:
        """Parsed JSON bodies of the requests received (optionally only those to `path`), oldest first."""
        return [r.json for r in self.requests if path is None or r.path == path]

    def embedding_for(self, text: str | list[int], dimensions: int | None = None) -> list[float]:
        """The vector this server returns for `text` (a string or a token list): unit length, float32-exact."""
        dim = dimensions or self.embedding_dim
        seed = hashlib.sha256(json.dumps(text).encode()).digest()
        rng = random.Random(int.from_bytes(seed[:8], "big"))
        raw = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        norm = math.sqrt(sum(v * v for v in raw)) or 1.0
        packed = struct.pack(f"<{dim}f", *(v / norm for v in raw))
        return list(struct.unpack(f"<{dim}f", packed))

    # -- dispatch ------------------------------------------------------------------------------------------------
    def _take_failure(self, path: str) -> InjectedError | None:
        with self._stats_lock:
            for i, (want, error, left) in enumerate(self._failures):
                if want is None or want == path:
                    left[0] -= 1
                    if left[0] <= 0:
                        del self._failures[i]
                    return error
        return None

    def _headers(self, started: float) -> dict[str, str]:
        return {
            "x-request-id": _id("req_", 32),
            "openai-version": "2020-10-01",
            "openai-organization": "org-fake",
            "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
        }

    def _send_error(self, handler: RequestHandler, error: InjectedError, started: float) -> None:
        headers = self._headers(started)
        headers.update(error.headers)
        handler.send_json(error.status, error.body(), headers)

    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:
        started = time.monotonic()
        with self._stats_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(request, handler, started)
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            with self._stats_lock:
                self.in_flight -= 1

    def _answer(self, request: RecordedRequest, handler: RequestHandler, started: float) -> None:
        if self.api_key is not None:
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                given = auth.removeprefix("Bearer ").strip()
                message = (
                    f"Incorrect API key provided: {given[:3]}***{given[-4:]}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                    if given
                    else "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
                self._send_error(handler, _error_for(401, message=message), started)
                return
        route = self._routes().get((request.method, request.path))
        if route is None and request.method == "GET" and request.path.startswith("/v1/models/"):
            route = self._model
        if route is None:
            error = _error_for(404, message=f"Invalid URL ({request.method} {request.path})", code=None)
            self._send_error(handler, error, started)
            return
        body: dict[str, Any] = {}
        if request.method == "POST":
            if not isinstance(request.json, dict):
                message = (
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
                    "JSON. If you have trouble figuring out how to fix this, please contact us through our help "
                    "center at help.openai.com.)"
                )
                self._send_error(handler, _error_for(400, message=message), started)
                return
            body = request.json
        injected = self._take_failure(request.path)
        model = str(body.get("model", ""))
        if injected is None and model.startswith("error-") and model[6:].isdigit():
            injected = _error_for(int(model[6:]), model=model)
        if self.delay:
            time.sleep(self.delay)
        if injected is not None:
            self._send_error(handler, injected, started)
            return
        if model == "error-disconnect" and not body.get("stream"):
            handler.abort()
            return
        if model == "error-midstream" and not body.get("stream"):
            self._send_error(handler, _error_for(500), started)
            return
        try:
            route(request, body, handler, started)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A malformed parameter the handlers did not validate one by one: answer 400 like the real API would,
            # instead of dropping the connection (only possible while no response byte has been sent).
            if not handler.wfile_started:
                self._send_error(handler, _error_for(400, message=f"Invalid request: {exc!r}"), started)
            else:
                raise _ClientGone from exc

    def _routes(
        self,
    ) -> dict[tuple[str, str], Callable[[RecordedRequest, dict[str, Any], RequestHandler, float], None]]:
        return {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/responses"): self._responses,
            ("GET", "/v1/models"): self._models,
        }

    def _missing(self, body: dict[str, Any], *names: str) -> InjectedError | None:
        for name in names:
            if name not in body or body[name] is None:
                return _error_for(
                    400, message=f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
                )
        return None

    def _reply_text(self, body: dict[str, Any]) -> str:
        reply = self.reply
        return reply(body) if callable(reply) else reply

    def _response_model(self, model: str) -> str:
        return self.response_models.get(model, model)

    # -- streaming -----------------------------------------------------------------------------------------------
    def _stream(
        self, handler: RequestHandler, started: float, events: Iterator[tuple[str | None, Any]], model: str
    ) -> None:
        """Send SSE events; `None` data means the literal `[DONE]`. Honours delays and the disconnect/error magic."""
        handler.start_chunked(200, "text/event-stream; charset=utf-8", self._headers(started))
        if self.first_chunk_delay:
            time.sleep(self.first_chunk_delay)
        try:
            for i, (event, data) in enumerate(events):
                if i and self.chunk_delay:
                    time.sleep(self.chunk_delay)
                if i == 2 and model in ("error-disconnect", "error-midstream"):
                    if model == "error-disconnect":
                        handler.abort()
                        raise _ClientGone
                    error = _error_for(500)
                    payload: dict[str, Any] = error.body()
                    if event is not None:  # Responses API: a typed `error` event, not an `{"error": ...}` body
                        payload = {"type": "error", "code": error.type, "message": error.message,
                                   "param": error.param, "sequence_number": i}  # fmt: skip
                    prefix = b"" if event is None else b"event: error\n"
                    handler.write_chunk(prefix + b"data: " + json.dumps(payload).encode() + b"\n\n")
                    break
                prefix = b"" if event is None else f"event: {event}\n".encode()
                line = b"[DONE]" if data is None else json.dumps(data).encode()
                handler.write_chunk(prefix + b"data: " + line + b"\n\n")
            handler.end_chunked()
        except (BrokenPipeError, ConnectionResetError, _ClientGone):
            with self._stats_lock:
                self.streams_aborted += 1
            raise _ClientGone from None
        with self._stats_lock:
            self.streams_completed += 1

    # -- chat completions ----------------------------------------------------------------------------------------
    def _chat_usage(self, prompt: int, completion: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, prompt), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _chat(self, request: RecordedRequest, body: dict[str, Any], handler: RequestHandler, started: float) -> None:
        missing = self._missing(body, "model", "messages")
        if missing is None and (not isinstance(body["messages"], list) or not body["messages"]):
            missing = _error_for(
                400,
                message="Invalid 'messages': empty array. Expected an array with minimum length 1.",
                param="messages",
            )
        if missing is not None:
            self._send_error(handler, missing, started)
            return
        model = str(body["model"])
        n = int(body.get("n") or 1)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        tool_call = self._pick_tool_call(body)
        if tool_call is not None:
            text, finish = "", "tool_calls"
            completion_tokens = max(1, count_tokens(tool_call["function"]["arguments"])) * n
        else:
            text, truncated = _truncate_words(self._reply_text(body), limit)
            finish = "length" if truncated else "stop"
            completion_tokens = count_tokens(text) * n
        prompt_tokens = sum(count_tokens(_text_of(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
        common = {
            "id": _id("chatcmpl-"),
            "created": int(time.time()),
            "model": self._response_model(model),
            "service_tier": self.service_tier,
            "system_fingerprint": self.system_fingerprint,
        }
        usage = self._chat_usage(prompt_tokens, completion_tokens)
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if tool_call is not None:
                message.update(content=None, tool_calls=[tool_call])
            choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)]
            payload = {**common, "object": "chat.completion", "choices": choices, "usage": usage}
            handler.send_json(200, self._reshape(payload), self._headers(started))
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk_base = {**common, "object": "chat.completion.chunk"}
        if include_usage:
            chunk_base["usage"] = None

        def delta(index: int, d: dict[str, Any], finish_reason: str | None = None) -> tuple[None, Any]:
            choice = {"index": index, "delta": d, "logprobs": None, "finish_reason": finish_reason}
            return None, {**chunk_base, "choices": [choice]}

        def events() -> Iterator[tuple[str | None, Any]]:
            for i in range(n):
                if tool_call is None:
                    yield delta(i, {"role": "assistant", "content": "", "refusal": None})
                    for piece in _split(text, self.chunks):
                        yield delta(i, {"content": piece})
                else:
                    fn = tool_call["function"]
                    head = {"index": 0, "id": tool_call["id"], "type": "function",
                            "function": {"name": fn["name"], "arguments": ""}}  # fmt: skip
                    yield delta(i, {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None})
                    for piece in _split(fn["arguments"], self.chunks):
                        yield delta(i, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                yield delta(i, {}, finish)
            if include_usage:
                yield None, {**chunk_base, "choices": [], "usage": usage}
            yield None, None

        self._stream(handler, started, events(), model)

    def _pick_tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A tool call when the request offers function tools, tool_choice is not `none`, and the last message is not
        a tool result (so an agent loop calls one tool, then gets the text reply)."""
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        choice = body.get("tool_choice", "auto")
        messages = body.get("messages") or []
        if not self.call_tools or not tools or choice == "none":
            return None
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
            return None
        tool = tools[0]["function"]
        if isinstance(choice, dict) and choice.get("type") == "function":
            wanted = (choice.get("function") or {}).get("name")
            tool = next((t["function"] for t in tools if t["function"].get("name") == wanted), tool)
        arguments = self.tool_arguments(tool) if callable(self.tool_arguments) else self.tool_arguments
        if arguments is None:
            arguments = _example_arguments(tool.get("parameters") or {})
        return {"id": _id("call_"), "type": "function",
                "function": {"name": tool.get("name", ""), "arguments": json.dumps(arguments)}}  # fmt: skip

    # -- legacy completions --------------------------------------------------------------------------------------
    def _completions(
        self, request: RecordedRequest, body: dict[str, Any], handler: RequestHandler, started: float
    ) -> None:
        missing = self._missing(body, "model", "prompt")
        if missing is not None:
            self._send_error(handler, missing, started)
            return
        model = str(body["model"])
        prompts = body["prompt"] if isinstance(body["prompt"], list) and body["prompt"] else [body["prompt"]]
        prompts = [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompts]
        n = int(body.get("n") or 1)
        text, truncated = _truncate_words(self._reply_text(body), body.get("max_tokens"))
        finish = "length" if truncated else "stop"
        prompt_tokens = sum(count_tokens(p) for p in prompts)
        completion_tokens = count_tokens(text) * n * len(prompts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip
        common = {
            "id": _id("cmpl-"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": self._response_model(model),
            "system_fingerprint": self.system_fingerprint,
        }
        count = n * len(prompts)
        if not body.get("stream"):
            choices = [{"text": text, "index": i, "logprobs": None, "finish_reason": finish} for i in range(count)]
            handler.send_json(
                200, self._reshape({**common, "choices": choices, "usage": usage}), self._headers(started)
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[tuple[str | None, Any]]:
            for i in range(count):
                for piece in _split(text, self.chunks):
                    yield None, {**common, "choices": [{"text": piece, "index": i, "logprobs": None,
                                                          "finish_reason": None}]}  # fmt: skip
                yield None, {**common, "choices": [{"text": "", "index": i, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                yield None, {**common, "choices": [], "usage": usage}
            yield None, None

        self._stream(handler, started, events(), model)

    # -- embeddings ----------------------------------------------------------------------------------------------
    def _embeddings(
        self, request: RecordedRequest, body: dict[str, Any], handler: RequestHandler, started: float
    ) -> None:
        missing = self._missing(body, "model", "input")
        if missing is not None:
            self._send_error(handler, missing, started)
            return
        raw = body["input"]
        inputs: list[Any]
        if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)):
            inputs = [raw]
        elif isinstance(raw, list):
            inputs = raw
        else:
            inputs = []
        if not inputs or any(x in ("", []) or not isinstance(x, (str, list)) for x in inputs):
            message = (
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
            )
            self._send_error(handler, _error_for(400, message=message), started)
            return
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            message = f"Invalid value for 'encoding_format': '{encoding}'. Supported values are: 'float' and 'base64'."
            self._send_error(handler, _error_for(400, message=message, param="encoding_format"), started)
            return
        dims = body.get("dimensions")
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            vector = self.embedding_for(item, int(dims) if dims else None)
            tokens += count_tokens(item) if isinstance(item, str) else len(item)
            value: Any = vector
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        payload = {
            "object": "list",
            "data": data,
            "model": self._response_model(str(body["model"])),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        handler.send_json(200, self._reshape(payload), self._headers(started))

    # -- responses -----------------------------------------------------------------------------------------------
    def _responses(
        self, request: RecordedRequest, body: dict[str, Any], handler: RequestHandler, started: float
    ) -> None:
        missing = self._missing(body, "model")
        if missing is not None:
            self._send_error(handler, missing, started)
            return
        model = str(body["model"])
        raw = body.get("input", "")
        if isinstance(raw, list):
            prompt = " ".join(_text_of(item.get("content")) for item in raw if isinstance(item, dict))
        else:
            prompt = str(raw)
        instructions = body.get("instructions")
        input_tokens = count_tokens(prompt) + (count_tokens(instructions) if isinstance(instructions, str) else 0)
        text, truncated = _truncate_words(self._reply_text(body), body.get("max_output_tokens"))
        output_tokens = count_tokens(text)
        response_id, item_id = _id("resp_", 32), _id("msg_", 32)
        created = int(time.time())

        def message(status: str, content: str | None) -> dict[str, Any]:
            parts = (
                [] if content is None else [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}]
            )
            return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": parts}

        def response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"}
                if truncated and status != "in_progress"
                else None,
                "instructions": instructions,
                "max_output_tokens": body.get("max_output_tokens"),
                "model": self._response_model(model),
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "service_tier": self.service_tier,
                "store": bool(body.get("store", True)),
                "temperature": body.get("temperature", 1.0),
                "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools", []),
                "top_p": body.get("top_p", 1.0),
                "truncation": "disabled",
                "usage": usage,
                "user": body.get("user"),
                "metadata": body.get("metadata") or {},
            }

        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": min(self.cached_tokens, input_tokens), "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        }
        final_status = "incomplete" if truncated else "completed"
        final = response(final_status, [message("completed", text)], usage)
        if not body.get("stream"):
            handler.send_json(200, self._reshape(final), self._headers(started))
            return

        def events() -> Iterator[tuple[str | None, Any]]:
            seq = iter(range(1_000_000))

            def ev(kind: str, **fields: Any) -> tuple[str, Any]:
                return kind, {"type": kind, "sequence_number": next(seq), **fields}

            yield ev("response.created", response=response("in_progress", [], None))
            yield ev("response.in_progress", response=response("in_progress", [], None))
            yield ev("response.output_item.added", output_index=0, item=message("in_progress", None))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            loc = {"item_id": item_id, "output_index": 0, "content_index": 0}
            yield ev("response.content_part.added", **loc, part=part)
            for piece in _split(text, self.chunks):
                yield ev("response.output_text.delta", **loc, delta=piece, logprobs=[])
            yield ev("response.output_text.done", **loc, text=text, logprobs=[])
            yield ev("response.content_part.done", **loc, part={**part, "text": text})
            yield ev("response.output_item.done", output_index=0, item=message("completed", text))
            yield ev(f"response.{final_status}", response=final)

        self._stream(handler, started, events(), model)

    # -- models --------------------------------------------------------------------------------------------------
    def _model_object(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}

    def _models(self, request: RecordedRequest, body: dict[str, Any], handler: RequestHandler, started: float) -> None:
        data = [self._model_object(m) for m in sorted(self.response_models)]
        handler.send_json(200, {"object": "list", "data": data}, self._headers(started))

    def _model(self, request: RecordedRequest, body: dict[str, Any], handler: RequestHandler, started: float) -> None:
        model_id = request.path.removeprefix("/v1/models/")
        if model_id not in self.response_models:
            self._send_error(handler, _error_for(404, model=model_id), started)
            return
        handler.send_json(200, self._model_object(model_id), self._headers(started))


def main(argv: list[str] | None = None) -> int:
    """Run FakeOpenAI in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.openai", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each response")
    parser.add_argument("--first-chunk-delay", type=float, default=0.0)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream events")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    args = parser.parse_args(argv)
    server = FakeOpenAI(
        args.port or None,
        host=args.host,
        reply=args.reply,
        chunks=args.chunks,
        delay=args.delay,
        first_chunk_delay=args.first_chunk_delay,
        chunk_delay=args.chunk_delay,
        embedding_dim=args.embedding_dim,
        api_key=args.api_key,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(f"FakeOpenAI listening on {server.base_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
