"""The ragotel-analyzer process: SIGTERM drains what was accepted, startup failures exit cleanly, handlers restored."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.analyzer.analyzer_helpers import encoded_spans, free_ports_config
from tests.servers import HttpReceiver

from ragotel.analyzer.config.loading import load_config
from ragotel.analyzer.server import Server

GEN = {"ragotel.stage": "generation", "ragotel.component": "openai"}


class Daemon:
    """``python -m ragotel.analyzer`` with JSON logs, its records collected as they are written."""

    def __init__(self, tmp_path: Path, config: dict[str, Any], *args: str) -> None:
        path = tmp_path / "analyzer.yaml"
        path.write_text(yaml.safe_dump({**config, "log": {"format": "json"}}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ragotel.analyzer", "--config", str(path), *args],
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        self.records: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            with contextlib.suppress(json.JSONDecodeError):  # a non-JSON line (a crash trace) stays in .raw
                self.records.append(json.loads(line))

    def addresses(self, timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {r["service"]: r["address"] for r in self.records if r.get("msg") == "listening"}
            if len(found) == 3:
                return found
            assert self.proc.poll() is None, "".join(self.raw)
            time.sleep(0.02)
        raise AssertionError("".join(self.raw))

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


@pytest.mark.timeout(90)
def test_sigterm_drains_everything_accepted_then_exits_0(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """Every request answered 200 before SIGTERM is merged into the windows and forwarded downstream before exit."""
    config = {**free_ports_config(tmp_path), "passthrough": {"endpoint": http_receiver.url}}
    daemon = Daemon(tmp_path, config)
    host, port = daemon.addresses()["otlp-http"].rsplit(":", 1)
    body = encoded_spans("drain", [("chat", GEN, 0.01 * (i + 1)) for i in range(50)])
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(40):
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.finish() == 0
    messages = [r["msg"] for r in daemon.records]
    assert "received SIGTERM" in messages
    (stopped,) = [r for r in daemon.records if r["msg"] == "stopped"]
    assert stopped["spans"] == 40 * 50
    forwarded = http_receiver.wait_for(40, timeout=10)
    assert {r.path for r in forwarded} == {"/v1/traces"}
    assert all(r.body == body for r in forwarded)


def test_sigint_stops_the_daemon_too_and_text_logs_are_logfmt(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) is a graceful shutdown with exit code 0; --log-format text (beating the file) gives logfmt."""
    daemon = Daemon(tmp_path, free_ports_config(tmp_path), "--log-format", "text")
    deadline = time.monotonic() + 30
    while not any("msg=listening service=otlp-grpc" in line for line in daemon.raw):
        assert time.monotonic() < deadline, "".join(daemon.raw)
        assert daemon.proc.poll() is None, "".join(daemon.raw)
        time.sleep(0.02)
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.finish() == 0
    assert daemon.records == []
    last = daemon.raw[-1]
    assert last.startswith("ts=")
    assert " level=info logger=ragotel.analyzer.server msg=stopped spans=0 " in last


def test_port_in_use_exits_1_without_starting_anything(tmp_path: Path) -> None:
    """An endpoint that cannot be bound is logged and exits 1, and no receiver is left listening."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = Daemon(tmp_path, free_ports_config(tmp_path), "--api-endpoint", f"127.0.0.1:{port}")
        assert daemon.finish() == 1
    assert not [r for r in daemon.records if r.get("msg") == "listening"]
    (error,) = [r for r in daemon.records if r["level"] == "error"]
    assert error["msg"].startswith("cannot start: [Errno 98]")


def test_bad_config_exits_2_with_problem_lines(tmp_path: Path) -> None:
    """The installed command rejects an invalid file with exit code 2 and one line per problem on stderr."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("window: -5s\nlimits: {max_series: 0}\n")
    result = subprocess.run(
        [sys.executable, "-m", "ragotel.analyzer", "--config", str(bad)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}: window: expected a duration such as 60s, 5m, 1h or 250ms (got '-5s')",
        f"{bad}: limits.max_series: expected a value >= 1 (got 0)",
    ]


def test_run_serves_until_sigterm_and_restores_the_signal_handlers(tmp_path: Path) -> None:
    """In-process run() installs its handlers, shuts down on SIGTERM and puts the previous handlers back."""
    server = Server(load_config([], free_ports_config(tmp_path)))
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))

    def terminate_once_started() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = server.readiness()
            if state is None:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if state == "server is stopped":  # startup failed: run() has raised already
                return
            time.sleep(0.01)

    threading.Thread(target=terminate_once_started, daemon=True).start()
    assert server.run() == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert server.readiness() == "server is stopped"
