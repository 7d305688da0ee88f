"""Recovery hooks against real things: a child process restarted by a command, Redis keys flushed, HTTP, Python."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.analyzer.alerting_helpers import DB_RULE, Harness
from tests.servers import HttpReceiver, RedisServer

from ragotel.analyzer.config.specs import WebhookChannelSpec
from ragotel.analyzer.notify.channels import build_channel

pytestmark = pytest.mark.timeout(60)


def wait(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def harness(tmp_path: Path, hooks: list[dict[str, Any]], receiver: HttpReceiver | None = None) -> Harness:
    channels = []
    if receiver is not None:
        channels.append(build_channel(WebhookChannelSpec(name="ops", type="webhook", url=f"{receiver.url}/hook")))
    h = Harness(tmp_path, [DB_RULE], channels=channels, hooks=hooks, realtime=True)
    h.outbox.start()
    return h


def fire(h: Harness, service: str = "rag-api") -> None:
    h.spans(service, "vector_db", "chroma", [0.02] * 4, errors=4)
    h.tick()


def finished(h: Harness, hook: str | None = None) -> list[dict[str, Any]]:
    return [r for r in h.store.recoveries(hook=hook) if r["status"] != "running"]


@pytest.fixture
def child_service(tmp_path: Path) -> Iterator[Path]:
    """A real long-running 'service' process whose pid is kept in a pid file (killed at teardown)."""
    pidfile = tmp_path / "rag-api.pid"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    pidfile.write_text(str(proc.pid))
    yield pidfile
    for pid in {proc.pid, int(pidfile.read_text())}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=5)


RESTART_SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    service, piddir = sys.argv[1], sys.argv[2]
    pidfile = os.path.join(piddir, service + ".pid")
    old = int(open(pidfile).read())
    os.kill(old, signal.SIGTERM)
    new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    open(pidfile, "w").write(str(new.pid))
    print("restarted", service, old, "->", new.pid)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of this test process counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_command_hook_restarts_a_real_child_process(tmp_path: Path, child_service: Path) -> None:
    """A `command` hook bound to restart_service runs its argv (no shell) with the validated service label."""
    script = tmp_path / "restart.py"
    script.write_text(RESTART_SCRIPT)
    old_pid = int(child_service.read_text())
    hook = {
        "name": "restart-api",
        "on": ["restart_service"],
        "action": {"type": "command", "argv": [sys.executable, str(script), "{service}", str(tmp_path)]},
        "verify_within": "30s",
    }
    h = harness(tmp_path, [hook])
    fire(h)
    (record,) = wait(lambda: finished(h))
    assert record["status"] == "succeeded", record
    assert record["command"]["argv"][2] == "rag-api"
    assert record["detail"]["exit_code"] == 0
    assert record["reason"] == "database_connection firing; primary cause vector_db_errors"
    new_pid = int(child_service.read_text())
    assert new_pid != old_pid
    assert _alive(new_pid)
    wait(lambda: not _alive(old_pid))
    h.tick()  # still firing: in cooldown, nothing runs again
    time.sleep(0.2)
    assert len(h.store.recoveries()) == 1
    h.tick(h.window + 1)
    h.spans("rag-api", "vector_db", "chroma", [0.02] * 20)
    h.tick()
    assert h.states() == {}
    assert h.store.recoveries()[0]["verification"] == "resolved"
    h.close()


def test_unsafe_label_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    """A service name that is not a safe token never reaches the command: the run is refused and audited."""
    marker = tmp_path / "ran"
    hook = {"name": "restart", "on": ["database_connection"],
            "action": {"type": "command", "argv": ["touch", str(marker), "{service}"]}}  # fmt: skip
    h = harness(tmp_path, [hook])
    fire(h, service="api;$(reboot)")
    (record,) = wait(lambda: finished(h))
    assert record["status"] == "refused"
    assert "does not match" in record["detail"]["error"]
    assert not marker.exists()
    h.close()


def test_timeout_kills_the_process_group_and_escalates(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """A hanging command is killed at its timeout, audited as such, and escalated through the channels."""
    hook = {"name": "slow", "on": ["database_connection"], "timeout": "500ms",
            "action": {"type": "command", "argv": ["sleep", "30"]}}  # fmt: skip
    h = harness(tmp_path, [hook], http_receiver)
    started = time.monotonic()
    fire(h)
    (record,) = wait(lambda: finished(h))
    assert time.monotonic() - started < 5
    assert record["status"] == "timeout"
    escalation = http_receiver.wait_for(2, path="/hook")[1].json
    assert escalation["event"] == "escalation"
    assert escalation["escalation"]["hook"] == "slow"
    assert escalation["escalation"]["result"] == "timeout"
    h.close()


def test_cooldown_after_failure_and_attempt_cap(tmp_path: Path) -> None:
    """A failing hook retries after its failure cooldown while the alert fires, up to max_attempts per window."""
    hook = {"name": "flaky", "on": ["database_connection"], "failure_cooldown": "300ms", "max_attempts": 2,
            "attempts_window": "1h", "action": {"type": "command", "argv": ["false"]}}  # fmt: skip
    h = harness(tmp_path, [hook])
    fire(h)
    wait(lambda: len(finished(h)) == 1)
    h.tick()
    assert len(h.store.recoveries()) == 1, "inside the failure cooldown"
    time.sleep(0.35)
    h.spans("rag-api", "vector_db", "chroma", [0.02], errors=1)
    h.tick()
    wait(lambda: len(finished(h)) == 2)
    time.sleep(0.35)
    for _ in range(3):
        h.tick()
    statuses = [r["status"] for r in reversed(h.store.recoveries())]
    assert statuses == ["failed", "failed", "skipped"]
    assert h.store.recoveries()[0]["detail"] == {"reason": "attempt cap reached"}
    h.close()


def test_dry_run_records_without_running(tmp_path: Path) -> None:
    """A dry-run hook records what it would run and runs nothing."""
    marker = tmp_path / "ran"
    hook = {"name": "restart", "on": ["database_connection"], "dry_run": True,
            "action": {"type": "command", "argv": ["touch", str(marker)]}}  # fmt: skip
    h = harness(tmp_path, [hook])
    fire(h)
    (record,) = wait(lambda: finished(h))
    assert record["status"] == "dry_run"
    assert record["dry_run"] == 1
    assert record["command"]["argv"] == ["touch", str(marker)]
    time.sleep(0.2)
    assert not marker.exists()
    h.close()


def test_unresolved_alert_after_action_is_escalated(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """If the alert still fires verify_within after a successful action, the hook escalates with a notification."""
    hook = {"name": "noop", "on": ["vector_db_errors"], "verify_within": "300ms",
            "action": {"type": "command", "argv": ["true"]}}  # fmt: skip
    h = harness(tmp_path, [hook], http_receiver)
    fire(h)
    wait(lambda: finished(h))
    time.sleep(0.35)
    h.spans("rag-api", "vector_db", "chroma", [0.02], errors=1)
    h.tick()
    body = http_receiver.wait_for(2, path="/hook")[1].json
    assert body["event"] == "escalation"
    assert body["status"] == "firing"
    assert body["escalation"]["result"] == "did not resolve the alert"
    assert h.store.recoveries()[0]["verification"] == "escalated"
    h.close()


def test_redis_flush_deletes_only_the_pattern(tmp_path: Path, redis_server: RedisServer) -> None:
    """redis_flush removes the keys matching its pattern (SCAN + UNLINK) and leaves every other key alone."""
    client = redis.Redis.from_url(redis_server.url)
    for i in range(1200):
        client.set(f"cache:rag-api:{i}", "x")
    client.set("cache:other:1", "x")
    client.set("session:1", "x")
    hook = {"name": "flush-cache", "on": ["database_connection"],
            "action": {"type": "redis_flush", "url": redis_server.url, "pattern": "cache:{service}:*"}}  # fmt: skip
    h = harness(tmp_path, [hook])
    fire(h)
    (record,) = wait(lambda: finished(h))
    assert record["status"] == "succeeded", record
    assert record["detail"] == {"deleted": 1200, "pattern": "cache:rag-api:*"}
    assert sorted(client.keys("*")) == [b"cache:other:1", b"session:1"]
    client.close()
    h.close()


def test_redis_unreachable_is_a_recorded_failure(tmp_path: Path, redis_server: RedisServer) -> None:
    """A Redis that is down makes the hook fail with the client's error, recorded in the audit trail."""
    redis_server.stop()
    hook = {"name": "flush-cache", "on": ["database_connection"], "timeout": "2s",
            "action": {"type": "redis_flush", "url": redis_server.url, "pattern": "cache:*"}}  # fmt: skip
    h = harness(tmp_path, [hook])
    fire(h)
    (record,) = wait(lambda: finished(h))
    assert record["status"] == "failed"
    assert "ConnectionError" in record["detail"]["error"]
    h.close()


def test_webhook_and_python_actions(
    tmp_path: Path, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook action POSTs the alert; a python action calls module:function with the alert."""
    module = tmp_path / "ops_actions.py"
    module.write_text(
        "CALLS = []\n"
        "def failover(alert, region):\n"
        "    CALLS.append((alert['rule'], alert['labels']['service'], region))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hooks = [
        {"name": "notify-ops", "on": ["database_connection"],
         "action": {"type": "webhook", "url": f"{http_receiver.url}/recover"}},
        {"name": "failover", "on": ["database_connection"],
         "action": {"type": "python", "target": "ops_actions:failover", "kwargs": {"region": "eu-west"}}},
    ]  # fmt: skip
    h = harness(tmp_path, hooks)
    fire(h)
    wait(lambda: len(finished(h)) == 2)
    assert {r["hook"]: r["status"] for r in h.store.recoveries()} == {
        "notify-ops": "succeeded",
        "failover": "succeeded",
    }
    (req,) = http_receiver.wait_for(1, path="/recover")
    assert req.json["hook"] == "notify-ops"
    assert req.json["alert"]["rule"] == "database_connection"
    import ops_actions  # type: ignore[import-not-found]

    assert ops_actions.CALLS == [("database_connection", "rag-api", "eu-west")]
    h.close()
    sys.modules.pop("ops_actions", None)


def test_hanging_python_action_times_out_without_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A python action that never returns is abandoned at its timeout; evaluation and other hooks go on."""
    module = tmp_path / "hang_actions.py"
    module.write_text("import threading\nEVENT = threading.Event()\ndef hang(alert):\n    EVENT.wait(30)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    hooks = [
        {"name": "hang", "on": ["database_connection"], "timeout": "300ms",
         "action": {"type": "python", "target": "hang_actions:hang"}},
        {"name": "ok", "on": ["database_connection"], "action": {"type": "command", "argv": ["true"]}},
    ]  # fmt: skip
    h = harness(tmp_path, hooks)
    started = time.monotonic()
    fire(h)
    assert time.monotonic() - started < 0.5, "the evaluation thread never waits for an action"
    wait(lambda: len(finished(h)) == 2)
    assert {r["hook"]: r["status"] for r in h.store.recoveries()} == {"hang": "timeout", "ok": "succeeded"}
    import hang_actions  # type: ignore[import-not-found]

    hang_actions.EVENT.set()
    h.close()
    sys.modules.pop("hang_actions", None)


def test_command_gets_a_minimal_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command sees PATH, the variables it inherits by name and its own env, never the analyzer's secrets."""
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")
    action = {"type": "command", "argv": ["env"], "inherit_env": ["KUBECONFIG"], "env": {"TARGET": "{x}"}}
    hook = {"name": "show-env", "on": ["database_connection"], "action": action}
    h = harness(tmp_path, [hook])
    fire(h)
    (record,) = wait(lambda: finished(h))
    lines = set(record["detail"]["stdout"].splitlines())
    assert "KUBECONFIG=/etc/kube/config" in lines
    assert "TARGET={x}" in lines, "env values are literal: no label substitution there"
    assert any(line.startswith("PATH=") for line in lines)
    assert "s3cret" not in record["detail"]["stdout"]
    h.close()


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        ("rag-api\n", "does not match"),
        ("--help", "starts with '-'"),
        ("-rf", "starts with '-'"),
        ("..", "does not match"),
        (".", "does not match"),
    ],
)
def test_trailing_newline_and_option_like_service_never_reach_argv(tmp_path: Path, service: str, reason: str) -> None:
    """``rag-api\\n`` (let through by ``re.match`` with ``$``), ``-rf`` and the path ``..`` are refused in an argv;
    nothing runs."""
    marker = tmp_path / "ran"
    action = {"type": "command", "argv": ["touch", str(marker), "{service}"], "cwd": str(tmp_path)}
    hook = {"name": "restart", "on": ["database_connection"], "action": action}
    h = harness(tmp_path, [hook])
    fire(h, service=service)
    (record,) = wait(lambda: finished(h))
    assert record["status"] == "refused"
    assert reason in record["detail"]["error"]
    assert not marker.exists()
    h.close()


def test_trailing_newline_never_reaches_a_redis_pattern(tmp_path: Path) -> None:
    """The Redis pattern ``cache:{service}:*`` is refused for ``rag-api\\n`` (a leading '-' is harmless there)."""
    action = {"type": "redis_flush", "url": "redis://127.0.0.1:9/0", "pattern": "cache:{service}:*"}
    hook = {"name": "flush", "on": ["database_connection"], "action": action}
    h = harness(tmp_path, [hook])
    fire(h, service="rag-api\n")
    (record,) = wait(lambda: finished(h))
    assert record["status"] == "refused"
    assert "does not match" in record["detail"]["error"]
    h.close()
