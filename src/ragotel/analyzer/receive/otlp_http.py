"""OTLP/HTTP receiver (ASGI): /v1/traces, /v1/metrics, /v1/logs in protobuf or JSON, optionally gzip/deflate.

Answers follow the OTLP/HTTP specification: 200 with an Export*ServiceResponse (``partial_success`` when items
were rejected) in the request's content type; 400/413/415 with a ``google.rpc.Status`` body; 401 without a valid
bearer token; 404/405 for other paths and methods; 408 (connection closed) for a body not received within the
read timeout; 503 with ``Retry-After`` when overloaded (retryable).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from ragotel.analyzer.receive.auth import TokenAuth
from ragotel.analyzer.receive.export import ExportHandler, status_body
from ragotel.analyzer.receive.ingest import Refused
from ragotel.analyzer.receive.payload import JSON, PROTOBUF, PayloadError, decompress, media_type

__all__ = ["OtlpHttpApp"]

_PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}


class OtlpHttpApp:
    """The ASGI application of the OTLP/HTTP receiver."""

    def __init__(self, handler: ExportHandler, auth: TokenAuth, max_body_size: int, read_timeout: float = 10.0) -> None:
        self._handler = handler
        self._auth = auth
        self._limit = max_body_size
        self._read_timeout = read_timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point; the body is read in full (up to the limit) before any decoding."""
        if scope["type"] != "http":
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        media = media_type(headers.get(b"content-type", b"").decode("latin-1"))
        signal = _PATHS.get(scope["path"], "none")
        try:
            status, body, extra = await self._handle(scope, headers, media, signal, receive)
        except PayloadError as exc:
            client = scope.get("client") or ("?", "?")
            peer = f"{client[0]}:{client[1]}"
            self._handler.bad_request("http", signal, exc, peer)
            status, body, extra = exc.status, status_body(exc.grpc_code, exc.reason, media or JSON), []
            extra = _ERROR_HEADERS.get(exc.status, [])
        else:
            outcome = "accepted" if status == 200 else f"error_{status}"
            self._handler.metrics.requests.labels("http", signal, outcome).inc()
        response_headers = [
            (b"content-type", (media or JSON).encode()),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(
        self, scope: dict[str, Any], headers: dict[bytes, bytes], media: str | None, signal: str, receive: Any
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if signal == "none":
            raise PayloadError(
                404, "NOT_FOUND", f"no OTLP endpoint at {scope['path']} (use /v1/traces, /v1/metrics, /v1/logs)"
            )
        if scope["method"] != "POST":
            raise PayloadError(405, "UNIMPLEMENTED", f"method {scope['method']} not allowed; use POST")
        authorization = headers.get(b"authorization")
        if not self._auth.check(authorization.decode("latin-1") if authorization else None):
            raise PayloadError(401, "UNAUTHENTICATED", "missing or invalid bearer token")
        if media is None:
            raise PayloadError(
                415,
                "INVALID_ARGUMENT",
                f"unsupported Content-Type {headers.get(b'content-type', b'').decode('latin-1')!r}; "
                f"use {PROTOBUF} or {JSON}",
            )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._limit:
            raise PayloadError(
                413, "RESOURCE_EXHAUSTED", f"body of {int(declared)} bytes exceeds the limit of {self._limit}"
            )
        refused = self._handler.ingest.check()
        if refused is not None:
            return _unavailable(refused, media)
        try:
            raw = await asyncio.wait_for(_read_body(receive, self._limit), self._read_timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            raise PayloadError(
                408, "DEADLINE_EXCEEDED", f"body not received within the read timeout of {self._read_timeout:g}s"
            ) from None
        encoding = headers.get(b"content-encoding")
        data = decompress(raw, encoding.decode("latin-1") if encoding else None, self._limit)
        result = self._handler.export(signal, data, media)
        if isinstance(result, Refused):
            return _unavailable(result, media)
        return 200, result.response(media), []


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise PayloadError(400, "INVALID_ARGUMENT", "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, "RESOURCE_EXHAUSTED", f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _unavailable(refused: Refused, media: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    seconds = str(max(1, math.ceil(refused.retry_after))).encode()
    body = status_body("UNAVAILABLE", f"analyzer overloaded ({refused.reason}); retry later", media)
    return 503, body, [(b"retry-after", seconds)]


_ERROR_HEADERS = {
    405: [(b"allow", b"POST")],
    401: [(b"www-authenticate", b'Bearer realm="ragotel"')],
    408: [(b"connection", b"close")],
}
