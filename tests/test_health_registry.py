"""Health registry: validation, verdicts, time boxes, threads, status, gauges, suppression, fork and shutdown."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from tests.health_support import metric_points, wait_until

import ragotel
from ragotel import health
from ragotel import semconv as sc
from ragotel.health import HealthRegistry, time_left
from ragotel.testing import capture

pytestmark = pytest.mark.timeout(60)


def gauge(rd: InMemoryMetricReader, name: str) -> dict[str, tuple[dict[str, Any], float]]:
    """{dependency name: (attributes, value)} of one metric, collected now."""
    return {str(attrs[sc.RAGOTEL_DEPENDENCY_NAME]): (attrs, value) for attrs, value in metric_points(rd, name)}


def state(reg: HealthRegistry, name: str) -> str:
    dep = reg.status().dependency(name)
    assert dep is not None
    return dep.state


# --- validation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -1.0}, "interval"),
        ({"interval": float("nan")}, "interval"),
        ({"interval": float("inf")}, "interval"),
        ({"interval": "5"}, "interval"),
        ({"interval": True}, "interval"),
        ({"timeout": 0.0}, "timeout"),
        ({"timeout": -3}, "timeout"),
        ({"timeout": None}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"name": ""}, "name"),
        ({"name": "  "}, "name"),
        ({"name": 42}, "name"),
        ({"kind": ""}, "kind"),
        ({"kind": None}, "kind"),
        ({"check": "not callable"}, "check"),
        ({"check": lambda url: None}, "check"),
    ],
)
def test_register_rejects_bad_arguments_naming_them(kwargs: dict[str, Any], argument: str) -> None:
    """Each invalid argument raises ValueError whose message starts with that argument's name; nothing registers."""
    registry = HealthRegistry()
    args: dict[str, Any] = {"name": "db", "check": lambda: True, "kind": "database", **kwargs}
    name, check = args.pop("name"), args.pop("check")
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        registry.register(name, check, **args)
    assert registry.names() == ()
    assert not registry.running


def test_async_check_is_rejected_at_register() -> None:
    """An ``async def`` check (which would never be awaited) is a ValueError naming ``check``."""

    async def probe() -> bool:
        return True

    with pytest.raises(ValueError, match=r"^check: expected a synchronous callable"):
        HealthRegistry().register("x", probe, kind="http")


def test_module_level_register_validates_too() -> None:
    """ragotel.health.register is the same contract: a bad timeout is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"^timeout:"):
        ragotel.health.register("x", lambda: True, kind="http", timeout=-1)
    assert "x" not in health._default.names()


# --- verdicts --------------------------------------------------------------------------------------------------------


def test_verdicts_from_results_and_reason_logged_once(
    reg: HealthRegistry, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """Raising, returning False, an exception object or an awaitable is unhealthy; None/True/objects are healthy.

    Each unhealthy dependency is logged once with its reason, however many probes fail.
    """

    async def coro() -> None:
        return None

    checks: dict[str, Callable[[], Any]] = {
        "raises": lambda: 1 / 0,
        "false": lambda: False,
        "exception-object": lambda: ConnectionError("refused"),
        "awaitable": coro,
        "none": lambda: None,
        "true": lambda: True,
        "object": lambda: {"anything": "but False"},
    }
    with caplog.at_level(logging.INFO, logger="ragotel"):
        for name, check in checks.items():
            # an async function hidden behind a lambda passes validation and must fail at run time
            reg.register(name, (lambda c=check: c()) if name == "awaitable" else check, kind="test", interval=0.05)
        wait_until(
            lambda: all(d.consecutive_failures >= 3 or d.healthy for d in reg.status().dependencies), 10, "probes"
        )
    report = reg.status()
    down = {d.name: d.reason for d in report.dependencies if d.healthy is False}
    assert set(down) == {"raises", "false", "exception-object", "awaitable"}
    assert down["raises"] == "ZeroDivisionError: division by zero"
    assert down["false"] == "check returned False"
    assert "ConnectionError: refused" in str(down["exception-object"])
    assert "awaitable" in str(down["awaitable"])
    assert {d.name for d in report.dependencies if d.healthy} == {"none", "true", "object"}
    for name, reason in down.items():
        lines = [r for r in caplog.records if r.levelno == logging.WARNING and repr(name) in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert str(reason) in lines[0].getMessage()
    values = gauge(reader, sc.M_DEPENDENCY_HEALTH)
    assert {n: v for n, (_, v) in values.items()} == {n: 0 if n in down else 1 for n in checks}
    assert values["true"][0] == {sc.RAGOTEL_DEPENDENCY_NAME: "true", sc.RAGOTEL_DEPENDENCY_KIND: "test"}


def test_recovery_flips_gauge_and_logs_once(
    reg: HealthRegistry, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """A dependency going down and up again moves the gauge 1 → 0 → 1 and logs one WARNING and one INFO."""
    up = threading.Event()
    up.set()

    def check() -> None:
        if not up.is_set():
            raise ConnectionRefusedError("dependency down")

    with caplog.at_level(logging.INFO, logger="ragotel"):
        reg.register("svc", check, kind="http", interval=0.05, timeout=1)
        wait_until(lambda: gauge(reader, sc.M_DEPENDENCY_HEALTH).get("svc", ({}, None))[1] == 1, 5, "healthy")
        up.clear()
        wait_until(lambda: gauge(reader, sc.M_DEPENDENCY_HEALTH)["svc"][1] == 0, 5, "unhealthy")
        time.sleep(0.2)  # several more failing probes
        up.set()
        wait_until(lambda: gauge(reader, sc.M_DEPENDENCY_HEALTH)["svc"][1] == 1, 5, "healthy again")
    messages = [r.getMessage() for r in caplog.records if "'svc'" in r.getMessage()]
    assert len([m for m in messages if "unhealthy" in m]) == 1, messages
    assert len([m for m in messages if "healthy again" in m]) == 1, messages


def test_no_point_before_first_verdict(reg: HealthRegistry, reader: InMemoryMetricReader) -> None:
    """Until its first probe finishes, a dependency is 'unknown': no gauge point, not counted as down."""
    release = threading.Event()
    reg.register("slow", lambda: release.wait(5), kind="http", interval=10, timeout=5)
    wait_until(lambda: reg.status().dependency("slow") is not None, 1, "registration")
    assert gauge(reader, sc.M_DEPENDENCY_HEALTH) == {}
    assert reg.status().status == "healthy"
    assert state(reg, "slow") == "unknown"
    release.set()
    wait_until(lambda: state(reg, "slow") == "up", 5, "first verdict")


# --- time boxes and threads ------------------------------------------------------------------------------------------


def test_hung_check_is_cut_at_timeout_and_does_not_block_others(
    reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """A check that never returns is reported unhealthy at its timeout, while a healthy one keeps being probed."""
    hang = threading.Event()
    probes = {"n": 0}

    def healthy() -> None:
        probes["n"] += 1

    reg.register("hung", lambda: hang.wait(30), kind="http", interval=0.1, timeout=0.3)
    reg.register("ok", healthy, kind="http", interval=0.05, timeout=1)
    started = time.monotonic()
    wait_until(lambda: state(reg, "hung") == "down", 3, "hung check cut")
    assert time.monotonic() - started < 0.3 + 1.0
    dep = reg.status().dependency("hung")
    assert dep is not None
    assert dep.reason == "timed out after 0.3s"
    assert gauge(reader, sc.M_DEPENDENCY_CHECK_DURATION)["hung"][1] == pytest.approx(0.3)
    before = probes["n"]
    time.sleep(0.5)
    assert probes["n"] >= before + 3, "the healthy check starved behind the hung one"
    assert state(reg, "ok") == "up"
    hang.set()


def test_threads_stay_bounded_with_a_check_that_always_hangs(reg: HealthRegistry) -> None:
    """A check hanging forever every time holds at most a few threads, however many intervals pass."""
    hang = threading.Event()
    reg.register("forever", lambda: hang.wait(30), kind="http", interval=0.02, timeout=0.05)
    reg.register("ok", lambda: True, kind="http", interval=0.02, timeout=1)
    time.sleep(1.0)
    workers = [t for t in threading.enumerate() if t.name == "ragotel-health-worker"]
    assert len(workers) <= 4 + 2, len(workers)
    dep = reg.status().dependency("forever")
    assert dep is not None
    assert dep.healthy is False
    assert "hung" in str(dep.reason) or "timed out" in str(dep.reason)
    assert state(reg, "ok") == "up"
    hang.set()


def test_checks_run_on_ragotel_threads_with_time_left(reg: HealthRegistry) -> None:
    """Checks run on ragotel's worker threads (never the caller's) and see their time box through time_left()."""
    seen: dict[str, Any] = {}

    def check() -> None:
        seen["thread"] = threading.current_thread().name
        seen["left"] = time_left()

    reg.register("where", check, kind="http", interval=10, timeout=2.5)
    wait_until(lambda: "thread" in seen, 5, "probe")
    assert seen["thread"] == "ragotel-health-worker"
    assert 2.0 < seen["left"] <= 2.5
    assert time_left(7.0) == 7.0  # outside a probe: the default


def test_probes_make_no_spans() -> None:
    """Instrumentation is suppressed inside checks: a stage opened by a check exports no span (outside, it does)."""
    registry = HealthRegistry()
    done = threading.Event()

    def check() -> None:
        with ragotel.retrieval("probe-kb"):
            pass
        done.set()

    with capture() as cap:
        with ragotel.retrieval("app-kb"):
            pass
        registry.register("spanless", check, kind="vector_db", interval=10)
        assert done.wait(5)
        time.sleep(0.05)
        registry.stop()
        names = [s.name for s in cap.spans()]
    assert names == ["retrieval app-kb"]


# --- status ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("down", "total", "expected"),
    [(0, 3, "healthy"), (1, 3, "degraded"), (2, 4, "degraded"), (2, 3, "unhealthy"), (1, 1, "unhealthy")],
)
def test_overall_status(reg: HealthRegistry, down: int, total: int, expected: str) -> None:
    """healthy with none down, degraded when at most half are down, unhealthy beyond; details per dependency."""
    for i in range(total):
        reg.register(f"dep{i}", (lambda: False) if i < down else (lambda: True), kind="cache", interval=10)
    wait_until(lambda: all(d.healthy is not None for d in reg.status().dependencies), 5, "verdicts")
    report = reg.status()
    assert report.status == expected
    assert str(report) == expected
    body = report.to_dict()
    assert json.loads(json.dumps(body)) == body
    assert body["status"] == expected
    assert sorted(body["dependencies"]) == [f"dep{i}" for i in range(total)]
    assert body["dependencies"]["dep0"]["state"] == ("down" if down else "up")
    assert body["dependencies"]["dep0"]["kind"] == "cache"


def test_empty_registry_is_healthy() -> None:
    """With nothing registered the overall status is healthy and no thread was started."""
    registry = HealthRegistry()
    assert registry.status().status == "healthy"
    assert registry.status().dependencies == ()
    assert not registry.running


def test_replace_and_unregister(reg: HealthRegistry, reader: InMemoryMetricReader) -> None:
    """Registering a name again replaces its check; unregister removes it and its gauge points."""
    reg.register("svc", lambda: False, kind="http", interval=0.05)
    wait_until(lambda: state(reg, "svc") == "down", 5, "down")
    reg.register("svc", lambda: True, kind="llm", interval=0.05)
    wait_until(lambda: state(reg, "svc") == "up", 5, "replaced check up")
    assert gauge(reader, sc.M_DEPENDENCY_HEALTH)["svc"][0][sc.RAGOTEL_DEPENDENCY_KIND] == "llm"
    assert reg.unregister("svc") is True
    assert reg.unregister("svc") is False
    assert gauge(reader, sc.M_DEPENDENCY_HEALTH) == {}
    assert reg.status().dependencies == ()


# --- shutdown and fork -----------------------------------------------------------------------------------------------


def test_stop_is_prompt_even_with_a_hung_check() -> None:
    """stop() returns quickly and ends the scheduler although a check is stuck; register() starts it again."""
    registry = HealthRegistry()
    hang = threading.Event()
    registry.register("hung", lambda: hang.wait(30), kind="http", interval=0.05, timeout=20)
    wait_until(lambda: any(t.name == "ragotel-health-worker" for t in threading.enumerate()), 2, "worker")
    scheduler = registry._scheduler
    assert scheduler is not None
    started = time.monotonic()
    registry.stop()
    assert time.monotonic() - started < 1.0
    assert not scheduler.is_alive()
    assert not registry.running
    registry.register("ok", lambda: True, kind="http", interval=10)
    assert registry.running
    wait_until(lambda: state(registry, "ok") == "up", 5, "probe after restart")
    registry.stop()
    hang.set()


def test_forked_child_keeps_probing(reg: HealthRegistry) -> None:
    """After os.fork() the child's scheduler restarts: its own checks run and its status changes there."""
    marker = {"pid": 0}

    def check() -> bool:
        marker["pid"] = os.getpid()
        return os.getpid() == parent_pid

    parent_pid = os.getpid()
    reg.register("pid-sensitive", check, kind="test", interval=0.05)
    wait_until(lambda: state(reg, "pid-sensitive") == "up", 5, "parent probe")
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12 warns on fork() with threads
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            deadline = time.monotonic() + 10
            while state(reg, "pid-sensitive") != "down" and time.monotonic() < deadline:
                time.sleep(0.02)
            os.write(write_fd, json.dumps({"state": state(reg, "pid-sensitive"), "ran_in": marker["pid"]}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd) as fh:
        child = json.loads(fh.read() or "{}")
    assert os.waitstatus_to_exitcode(status) == 0
    assert child == {"state": "down", "ran_in": pid}
    assert state(reg, "pid-sensitive") == "up"
