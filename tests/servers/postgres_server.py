"""PostgresServer: a throw-away PostgreSQL cluster on 127.0.0.1, copied from a once-per-process initdb template."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from typing_extensions import Self

from ._process import ManagedProcess, ProcessServer, ServerStartError, find_binary

__all__ = ["PostgresServer", "PostgresTemplate"]

_APT = "postgresql"
_READY_LINE = b"database system is ready to accept connections"


def _bin(name: str) -> str:
    return find_binary([f"/usr/lib/postgresql/*/bin/{name}", name], _APT)


def _run_as() -> str | None:
    """initdb and postgres refuse to run as root: switch to the `postgres` user when we are root."""
    return "postgres" if os.geteuid() == 0 else None


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)


class PostgresTemplate:
    """An initdb'ed data directory made once and copied by every PostgresServer (initdb takes ~1-2 s).

    Thread-safe; `close()` deletes it. `PostgresTemplate.shared()` is the per-process instance.
    """

    _shared: PostgresTemplate | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self.initdb = _bin("initdb")
        self.user = _run_as()
        self._root = Path(tempfile.mkdtemp(prefix="ragotel-pgtemplate-"))
        self._lock = threading.Lock()
        self._data: Path | None = None

    @classmethod
    def shared(cls) -> PostgresTemplate:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
                atexit.register(cls._shared.close)
            return cls._shared

    @property
    def data_dir(self) -> Path:
        """The template data dir, created on first use."""
        with self._lock:
            if self._data is None:
                self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
                _chown(self._root, self.user)
                data = self._root / "data"
                result = subprocess.run(
                    [
                        self.initdb,
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                        "--no-instructions",
                    ],
                    user=self.user,
                    group=self.user,
                    extra_groups=[] if self.user else None,
                    cwd=self._root,
                    capture_output=True,
                    check=False,
                    timeout=120,
                )
                if result.returncode != 0:
                    raise ServerStartError(
                        f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')[-2000:]}"
                    )
                self._data = data
            return self._data

    def copy_to(self, target: Path) -> None:
        """Copy the template into `target` (which must not exist), keeping owner and the 0700 mode."""
        subprocess.run(["cp", "-a", str(self.data_dir), str(target)], check=True, timeout=60)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
        with self._lock:
            self._data = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresServer(ProcessServer):
    """A real PostgreSQL (apt package `postgresql`) on a free port, trust auth, fsync off.

    `.url` is `postgresql://postgres@127.0.0.1:PORT/postgres`, `.dsn` the libpq keyword form. `stop()` is a fast
    shutdown (clients are disconnected), `kill()` a crash; `start()` restarts on the same port with the same data.
    """

    startup_timeout = 60.0

    def __init__(self, port: int | None = None, *, template: PostgresTemplate | None = None) -> None:
        self.binary = _bin("postgres")
        super().__init__(port)
        self.template = template if template is not None else PostgresTemplate.shared()
        self.user = _run_as()
        _chown(self.tmp_path, self.user)
        self.data_dir = self.tmp_path / "data"
        self.dbname = "postgres"
        self.username = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self.username}@{self.host}:{self.port}/{self.dbname}"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg://{self.username}@{self.host}:{self.port}/{self.dbname}"

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.username} dbname={self.dbname}"

    def start(self) -> None:
        if self.running:
            return
        if not self.data_dir.exists():
            self.template.copy_to(self.data_dir)
        log = self.tmp_path / "postgres.log"
        offset = log.stat().st_size if log.exists() else 0
        argv = [
            self.binary, "-D", str(self.data_dir), "-p", str(self.port), "-k", str(self.tmp_path),
            "-c", f"listen_addresses={self.host}", "-c", "fsync=off",
            "-c", "full_page_writes=off", "-c", "max_connections=40", "-c", "shared_buffers=16MB",
            "-c", "logging_collector=off", "-c", "log_min_messages=warning",
        ]  # fmt: skip
        process = ManagedProcess(argv, log, user=self.user, cwd=self.tmp_path, stop_signal=signal.SIGINT)

        def ready() -> bool:
            try:
                with open(log, "rb") as fh:
                    fh.seek(offset)
                    return _READY_LINE in fh.read()
            except OSError:
                return False

        self._launch(process, ready)
