"""Process, port and readiness plumbing shared by the local test servers."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from typing_extensions import Self

__all__ = [
    "ManagedProcess",
    "MissingBinaryError",
    "ProcessServer",
    "ServerStartError",
    "find_binary",
    "free_port",
    "port_is_open",
    "wait_until",
]


_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):  # not Linux/glibc: children are still killed by stop()/close()
    _prctl = None


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it if the process that started it dies (no orphaned servers)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class MissingBinaryError(RuntimeError):
    """A server binary is not installed; the message names the Debian package that provides it."""

    def __init__(self, binary: str, apt_package: str) -> None:
        super().__init__(
            f"{binary!r} not found: install the Debian package {apt_package!r} "
            f"(`apt-get install -y {apt_package}`, or run .ci/services.sh as root)"
        )
        self.binary = binary
        self.apt_package = apt_package


class ServerStartError(RuntimeError):
    """A server process exited or did not become ready in time; the message carries its log tail."""


def find_binary(candidates: Sequence[str], apt_package: str) -> str:
    """Return the first existing executable among names (looked up on PATH) or absolute paths/globs."""
    for candidate in candidates:
        if "*" in candidate:
            matches = sorted(Path("/").glob(candidate.lstrip("/")), reverse=True)
            for match in matches:
                if os.access(match, os.X_OK):
                    return str(match)
            continue
        if os.path.isabs(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            continue
        found = shutil.which(candidate)
        if found:
            return found
    raise MissingBinaryError(candidates[0].rsplit("/", 1)[-1], apt_package)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on `host` a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it returns True or `timeout` seconds pass; return its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ManagedProcess:
    """One child process in its own process group, with output captured to a log file.

    `stop()` signals the whole group, waits, then SIGKILLs whatever is left, so nothing outlives the test.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        user: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.user = user
        self.cwd = cwd
        self.env = env
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running:
            return
        kwargs: dict[str, Any] = {}
        # The parent-death signal fires when the *thread* that forked exits, so only tie it to the main thread.
        if threading.current_thread() is threading.main_thread():
            kwargs["preexec_fn"] = _die_with_parent
        if self.user is not None and os.geteuid() == 0:
            kwargs["user"] = self.user
            kwargs["group"] = self.user
            kwargs["extra_groups"] = []
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                **kwargs,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0, sig: int | None = None) -> None:
        """Signal the process group (default: the server's graceful signal), then SIGKILL after `timeout`."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, self.stop_signal if sig is None else sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        # The group may hold children (postgres backends) even after the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, not a shutdown."""
        self.stop(timeout=5.0, sig=signal.SIGKILL)


class ProcessServer:
    """Base for servers backed by a ManagedProcess in a private temp dir.

    Subclasses set `self._process` in `start()` and implement `_wait_ready()`. The port is fixed at
    construction so `stop()` then `start()` restarts on the same port.
    """

    host = "127.0.0.1"
    startup_timeout = 30.0

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port else free_port(self.host)
        self._tmp = Path(tempfile.mkdtemp(prefix=f"ragotel-{type(self).__name__.lower()}-"))
        self._process: ManagedProcess | None = None
        self._closed = False

    @property
    def tmp_path(self) -> Path:
        return self._tmp

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def _launch(self, process: ManagedProcess, ready: Callable[[], bool]) -> None:
        self._process = process
        process.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if ready():
                return
            if not process.running:
                tail = process.log_tail()
                process.stop()
                raise ServerStartError(f"{type(self).__name__} exited during start-up; log tail:\n{tail}")
            if time.monotonic() >= deadline:
                tail = process.log_tail()
                process.stop()
                raise ServerStartError(
                    f"{type(self).__name__} not ready after {self.startup_timeout}s; log tail:\n{tail}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut the server down gracefully (the port becomes free); `start()` brings it back on the same port."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self._process is not None:
            self._process.kill()

    def start(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and delete its temp dir; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return self._process.log_tail(lines) if self._process is not None else ""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StartStop:
    """Context-manager lifecycle for a server with ``start()`` and ``stop()``: enter starts, exit/close stops."""

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
