"""Serve an ASGI app with uvicorn (httptools, uvloop when installed) on a pre-bound socket in its own thread.

uvicorn bounds neither the time a client may take to send its headers nor the number of open connections;
``ConnectionLimits`` adds both (slow-loris), on top of uvicorn's keep-alive timeout for idle connections.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ragotel.analyzer.config.model import split_endpoint
from ragotel.analyzer.receive.auth import TLSFiles

__all__ = ["ConnectionLimits", "HttpService", "bind"]

_log = logging.getLogger("ragotel.analyzer.server")


def bind(endpoint: str) -> socket.socket:
    """Bind a listening TCP socket to ``HOST:PORT`` (port 0 picks a free one); OSError if that fails."""
    host, port = split_endpoint(endpoint)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def address_of(sock: socket.socket) -> str:
    """``HOST:PORT`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long a client may take to send a request's headers, and how many connections may be open at once."""

    read_timeout: float
    max_connections: int


_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _GuardedProtocol(HttpToolsProtocol):
    """httptools with a header read timeout and a connection cap (class attributes set per service).

    The timer runs from the connection's opening (or, on a kept-alive connection, the request's first byte) to
    its last header; on expiry the client gets a 408 and the connection is closed. Connections past the cap are
    closed as soon as they are accepted. Runs on the event loop thread, like its base.
    """

    limits = ConnectionLimits(read_timeout=10.0, max_connections=1000)
    _read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self.limits.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no response of a pipelined request in flight
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def _protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {"limits": limits})


class HttpService:
    """One uvicorn server on one socket, run in a daemon thread with its own event loop."""

    def __init__(
        self,
        name: str,
        app: Any,
        sock: socket.socket,
        *,
        tls: TLSFiles | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.name = name
        self.address = address_of(sock)
        self._sock = sock
        config = uvicorn.Config(
            app,
            http=_protocol(limits) if limits else "httptools",
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=10,
            ssl_certfile=tls.cert_file if tls else None,
            ssl_keyfile=tls.key_file if tls else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"ragotel-analyzer-{name}", daemon=True)
        self._error: BaseException | None = None

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # SystemExit from uvicorn's startup failure included
            self._error = exc
            raise

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; return once the socket accepts connections (RuntimeError if startup failed)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server on {self.address} failed to start: {self._error!r}")
            time.sleep(0.005)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop accepting, let in-flight requests finish (up to uvicorn's graceful timeout), join the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
