"""A threaded HTTP/1.1 server base that records requests; shared by HttpReceiver and FakeOpenAI."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._process import StartStop, free_port

__all__ = ["HttpServerBase", "RecordedRequest", "RequestHandler"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it. `headers` has lower-cased names; `json` is None unless JSON parsed."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    received_at: float = field(default_factory=time.time)
    peer: tuple[str, int] = ("", 0)  # the client's address: equal ports on two requests mean a reused connection

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: HttpServerBase):
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are normal in these tests (stream close, timeouts); stay quiet.
        pass

    def drop_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
            self.connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()


class RequestHandler(BaseHTTPRequestHandler):
    """Reads the request, records it on the owner, and lets the owner answer. HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per response.
    disable_nagle_algorithm = True
    server_version = "ragotel-test"
    sys_version = ""
    timeout = 60  # idle keep-alive connections end after this long
    server: _Server

    wfile_started = False  # set once a status line was sent on the current request

    def send_response(self, code: int, message: str | None = None) -> None:
        self.wfile_started = True
        super().send_response(code, message)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        self.wfile_started = False
        body = self._read_body()
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        parsed: Any = None
        if body and ("json" in headers.get("content-type", "") or body[:1] in (b"{", b"[")):
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers=headers,
            body=body,
            json=parsed,
            peer=(str(self.client_address[0]), int(self.client_address[1])),
        )
        self.server.owner._record(request)
        self.server.owner._handle(request, self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def send_bytes(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Send a complete response with Content-Length (keeps the connection reusable)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def start_chunked(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Begin a `Transfer-Encoding: chunked` response; follow with write_chunk() and end_chunked()."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def abort(self) -> None:
        """Drop the connection without finishing the response (a server crash mid-response)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class HttpServerBase(StartStop):
    """Threaded HTTP server on 127.0.0.1 (free port unless given) that records every request it gets.

    Thread-safe. `stop()` closes the listener and every open connection; `start()` listens again on the same port.
    Subclasses implement `_handle(request, handler)`.
    """

    host = "127.0.0.1"

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port if port else free_port(host)
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server((self.host, self.port), RequestHandler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{type(self).__name__}:{self.port}"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)

    # -- recording ---------------------------------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._cond:
            return list(self._requests)

    def clear(self) -> None:
        with self._cond:
            self._requests.clear()

    def wait_for(
        self,
        n: int = 1,
        timeout: float = 5.0,
        path: str | None = None,
        *,
        method: str | None = None,
        predicate: Callable[[RecordedRequest], bool] | None = None,
    ) -> list[RecordedRequest]:
        """Block until at least `n` matching requests arrived; return all matching ones. AssertionError on timeout."""

        def matching() -> list[RecordedRequest]:
            return [
                r
                for r in self._requests
                if (path is None or r.path == path)
                and (method is None or r.method == method.upper())
                and (predicate is None or predicate(r))
            ]

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = matching()
                if len(found) >= n:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [f"{r.method} {r.path}" for r in self._requests]
                    raise AssertionError(
                        f"{type(self).__name__}: expected {n} request(s) matching path={path!r} method={method!r} "
                        f"within {timeout}s, got {len(found)}; all received: {seen}"
                    )
                self._cond.wait(remaining)
