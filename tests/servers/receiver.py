"""HttpReceiver (records requests, answers as told) and HangingServer (accepts TCP, never answers)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ._http import HttpServerBase, RecordedRequest, RequestHandler
from ._process import StartStop, free_port

__all__ = ["CannedResponse", "HangingServer", "HttpReceiver"]


@dataclass(frozen=True, slots=True)
class CannedResponse:
    """What HttpReceiver answers: status, body (bytes, str, or JSON-able), extra headers, delay before answering."""

    status: int = 200
    body: Any = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "text/plain; charset=utf-8"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


class HttpReceiver(HttpServerBase):
    """Records every request (`.requests`: method, path, headers, body, parsed JSON) and answers 200 `ok` by default.

    `respond(path, status=..., body=..., times=N)` queues N one-shot answers for a path (then the standing answer
    applies again); without `times` it changes the standing answer. `path=None` means every path. Paths compare
    without the query string. Usable for webhooks, Slack, Alertmanager receivers and health-check targets.
    """

    def __init__(self, port: int | None = None, *, status: int = 200, body: Any = b"ok") -> None:
        super().__init__(port)
        self._lock = threading.Lock()
        self._standing: dict[str | None, CannedResponse] = {None: CannedResponse(status, body)}
        self._queued: dict[str | None, deque[CannedResponse]] = {}

    def respond(
        self,
        path: str | None = None,
        *,
        status: int = 200,
        body: Any = b"ok",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        times: int | None = None,
    ) -> None:
        """Set the answer for `path` (None: all paths); `times=N` makes it a one-shot used for the next N requests."""
        canned = CannedResponse(status, body, dict(headers or {}), delay)
        with self._lock:
            if times is None:
                self._standing[path] = canned
            else:
                self._queued.setdefault(path, deque()).extend([canned] * times)

    def fail_next(self, times: int = 1, status: int = 500, path: str | None = None, body: Any = b"error") -> None:
        """Answer the next `times` requests (to `path`, or any path) with `status`, then go back to normal."""
        if times >= 100 or status < 100:
            raise ValueError(f"fail_next(times={times}, status={status}): the first positional argument is `times`")
        self.respond(path, status=status, body=body, times=times)

    def reset_responses(self) -> None:
        with self._lock:
            self._standing = {None: CannedResponse()}
            self._queued.clear()

    def _pick(self, path: str) -> CannedResponse:
        with self._lock:
            for key in (path, None):
                queue = self._queued.get(key)
                if queue:
                    return queue.popleft()
            return self._standing.get(path) or self._standing[None]

    def _handle(self, request: RecordedRequest, handler: RequestHandler) -> None:
        canned = self._pick(request.path)
        if canned.delay:
            time.sleep(canned.delay)
        body, content_type = canned.encoded()
        handler.send_bytes(canned.status, body, content_type, canned.headers)

    def json_bodies(self, path: str | None = None) -> list[Any]:
        """The parsed JSON bodies received (optionally only for `path`), oldest first."""
        return [r.json for r in self.requests if path is None or r.path == path]


class HangingServer(StartStop):
    """Listens on 127.0.0.1 and accepts TCP connections but never sends a byte (for timeout tests).

    Incoming bytes are read and discarded so clients never block on send. `.url` is `http://127.0.0.1:PORT`.
    `stop()` closes the listener and all held connections; `start()` listens again on the same port.
    """

    host = "127.0.0.1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port else free_port(self.host)
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> None:
        if self._listener is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.settimeout(0.05)
        self._listener = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"HangingServer:{self.port}", daemon=True)
        self._thread.start()

    def _run(self, listener: socket.socket) -> None:
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is listener:
                        with contextlib.suppress(OSError):
                            conn, _ = listener.accept()
                            conn.setblocking(False)
                            with self._lock:
                                self._conns.append(conn)
                                self.accepted += 1
                            sel.register(conn, selectors.EVENT_READ)
                    else:
                        try:
                            data = sock.recv(65536)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:
                            sel.unregister(sock)
                            sock.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
