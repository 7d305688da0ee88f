"""Serve an ASGI app with uvicorn (httptools, uvloop when installed) on a pre-bound socket in its own thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from ragotel.analyzer.config.model import split_endpoint
from ragotel.analyzer.receive.auth import TLSFiles

__all__ = ["HttpService", "bind"]

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


class HttpService:
    """One uvicorn server on one socket, run in a daemon thread with its own event loop."""

    def __init__(self, name: str, app: Any, sock: socket.socket, *, tls: TLSFiles | None = None) -> None:
        self.name = name
        self.address = address_of(sock)
        self._sock = sock
        config = uvicorn.Config(
            app,
            http="httptools",
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
