"""RedisServer: a throw-away redis-server on 127.0.0.1 with no persistence."""

from __future__ import annotations

import socket

from ._process import ManagedProcess, ProcessServer, find_binary

__all__ = ["RedisServer"]


class RedisServer(ProcessServer):
    """A real `redis-server` (apt package `redis-server`) on a free port; `.url` is `redis://127.0.0.1:PORT/0`.

    Use as a context manager; `stop()`/`kill()` then `start()` restart it on the same port (empty again).
    """

    def __init__(self, port: int | None = None, *, password: str | None = None) -> None:
        self.binary = find_binary(["redis-server", "/usr/bin/redis-server"], "redis-server")
        super().__init__(port)
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def start(self) -> None:
        if self.running:
            return
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.tmp_path),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self._launch(ManagedProcess(argv, self.tmp_path / "redis.log"), self._ping)

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                if self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    if not sock.recv(64).startswith(b"+OK"):
                        return False
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
