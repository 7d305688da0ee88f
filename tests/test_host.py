"""Host and process gauges: names, units, values, low cardinality, fork safety, restricted platforms, stop/restart."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

from ragotel import host
from ragotel import semconv as sc
from ragotel.config import Settings


@pytest.fixture
def provider_and_reader() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    rd = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[rd])
    yield provider, rd
    provider.shutdown()


def collect(rd: InMemoryMetricReader) -> dict[str, dict[str, Any]]:
    """Collect once: {metric name: {"unit", "type", "points": [(attributes, value)]}}."""
    out: dict[str, dict[str, Any]] = {}
    data = rd.get_metrics_data()
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points = [(dict(p.attributes or {}), p.value) for p in m.data.data_points]  # type: ignore[union-attr]
                if points:
                    out[m.name] = {"unit": m.unit, "type": type(m.data), "points": points}
    return out


def one(metrics: dict[str, dict[str, Any]], name: str) -> float:
    points = metrics[name]["points"]
    assert len(points) == 1, points
    return float(points[0][1])


_EXPECTED = {
    sc.M_SYSTEM_CPU_UTILIZATION: ("1", Gauge),
    sc.M_SYSTEM_MEMORY_UTILIZATION: ("1", Gauge),
    sc.M_SYSTEM_MEMORY_USAGE: ("By", Sum),
    sc.M_SYSTEM_MEMORY_LIMIT: ("By", Sum),
    sc.M_SYSTEM_FILESYSTEM_UTILIZATION: ("1", Gauge),
    sc.M_SYSTEM_FILESYSTEM_USAGE: ("By", Sum),
    sc.M_SYSTEM_NETWORK_IO: ("By", Sum),
    sc.M_SYSTEM_CPU_LOAD_AVERAGE_1M: ("{thread}", Gauge),
    sc.M_SYSTEM_CPU_LOAD_AVERAGE_5M: ("{thread}", Gauge),
    sc.M_SYSTEM_CPU_LOAD_AVERAGE_15M: ("{thread}", Gauge),
    sc.M_PROCESS_CPU_UTILIZATION: ("1", Gauge),
    sc.M_PROCESS_MEMORY_USAGE: ("By", Sum),
    sc.M_PROCESS_THREAD_COUNT: ("{thread}", Sum),
    sc.M_PROCESS_FILE_DESCRIPTOR_COUNT: ("{file_descriptor}", Sum),
}


def test_every_gauge_reports_with_semconv_name_unit_and_kind(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """One collection yields every host/process metric under its semconv name, unit and instrument kind."""
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    try:
        metrics = collect(rd)
        for name, (unit, kind) in _EXPECTED.items():
            assert name in metrics, f"{name} missing; got {sorted(metrics)}"
            assert metrics[name]["unit"] == unit, name
            assert metrics[name]["type"] is kind, name
        assert metrics[sc.M_SYSTEM_NETWORK_IO]["type"] is Sum
        assert h.disabled == frozenset()
    finally:
        h.stop()


def test_values_match_psutil_and_stay_in_range(provider_and_reader: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Utilizations are fractions in 0..1; RSS, threads, descriptors and memory match psutil's own readings."""
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    try:
        metrics = collect(rd)
        proc = psutil.Process()
        for name in (sc.M_SYSTEM_CPU_UTILIZATION, sc.M_SYSTEM_MEMORY_UTILIZATION, sc.M_PROCESS_CPU_UTILIZATION):
            assert 0.0 <= one(metrics, name) <= 1.0, name
        (fs_attrs, fs_util), *_ = metrics[sc.M_SYSTEM_FILESYSTEM_UTILIZATION]["points"]
        assert fs_attrs[sc.SYSTEM_FILESYSTEM_MOUNTPOINT] == "/"
        assert fs_attrs[sc.SYSTEM_FILESYSTEM_STATE] == sc.STATE_USED
        du = psutil.disk_usage("/")
        assert fs_util == pytest.approx(du.used / (du.used + du.free), abs=0.01)
        rss = one(metrics, sc.M_PROCESS_MEMORY_USAGE)
        assert rss == pytest.approx(proc.memory_info().rss, rel=0.2)
        assert one(metrics, sc.M_PROCESS_THREAD_COUNT) == proc.num_threads()
        assert abs(one(metrics, sc.M_PROCESS_FILE_DESCRIPTOR_COUNT) - proc.num_fds()) <= 2
        vm = psutil.virtual_memory()
        assert one(metrics, sc.M_SYSTEM_MEMORY_LIMIT) == vm.total
        used = {a[sc.SYSTEM_MEMORY_STATE]: v for a, v in metrics[sc.M_SYSTEM_MEMORY_USAGE]["points"]}
        assert used[sc.STATE_USED] + used[sc.STATE_FREE] == vm.total
        (mem_attrs, mem_util), *_ = metrics[sc.M_SYSTEM_MEMORY_UTILIZATION]["points"]
        assert mem_attrs == {sc.SYSTEM_MEMORY_STATE: sc.STATE_USED}
        assert mem_util == pytest.approx(used[sc.STATE_USED] / vm.total, abs=0.02)
        directions = {a[sc.NETWORK_IO_DIRECTION] for a, _ in metrics[sc.M_SYSTEM_NETWORK_IO]["points"]}
        assert directions == {sc.DIRECTION_TRANSMIT, sc.DIRECTION_RECEIVE}
        assert one(metrics, sc.M_SYSTEM_CPU_LOAD_AVERAGE_1M) == pytest.approx(os.getloadavg()[0], abs=1.0)
    finally:
        h.stop()


def test_low_cardinality_by_default_and_per_cpu_on_request(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """Default: one CPU series and no pid/core attributes anywhere; RAGOTEL_HOST_PER_CPU gives one series per CPU."""
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    metrics = collect(rd)
    h.stop()
    assert len(metrics[sc.M_SYSTEM_CPU_UTILIZATION]["points"]) == 1
    total_points = sum(len(m["points"]) for m in metrics.values())
    assert total_points <= 25, total_points
    for name, m in metrics.items():
        for attrs, _ in m["points"]:
            assert not {"process.pid", "pid", sc.CPU_LOGICAL_NUMBER} & set(attrs), (name, attrs)

    settings = Settings.from_env({"RAGOTEL_HOST_PER_CPU": "true"})
    assert settings.host_per_cpu is True
    rd2 = InMemoryMetricReader()
    provider2 = MeterProvider(metric_readers=[rd2])
    h2 = host.install(provider2, settings)
    try:
        points = collect(rd2)[sc.M_SYSTEM_CPU_UTILIZATION]["points"]
        ncpu = psutil.cpu_count()
        assert sorted(a[sc.CPU_LOGICAL_NUMBER] for a, _ in points) == list(range(ncpu))
        assert all(0.0 <= v <= 1.0 for _, v in points)
    finally:
        h2.stop()
        provider2.shutdown()


def test_process_cpu_utilization_follows_cpu_burned(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """After burning CPU, process.cpu.utilization equals the CPU time used over the wall time since the last read."""
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    try:
        collect(rd)
        wall0, cpu0 = time.monotonic(), time.process_time()
        while time.process_time() - cpu0 < 0.15:
            sum(i * i for i in range(2000))
        value = one(collect(rd), sc.M_PROCESS_CPU_UTILIZATION)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        ncpu = len(psutil.Process().cpu_affinity())
        expected = cpu / wall / ncpu
        assert value == pytest.approx(expected, rel=0.5), (value, expected)
        assert value > 0.01
    finally:
        h.stop()


def test_watched_path_adds_its_own_filesystem(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """A watched path on another mount (tmpfs /dev/shm) adds one series for that mount; paths on "/" add none."""
    assert psutil.disk_partitions(all=True), "no mount table"
    provider, rd = provider_and_reader
    h = host.install(provider, Settings(host_filesystem_paths=("/dev/shm", "/tmp", "/usr")))
    try:
        points = collect(rd)[sc.M_SYSTEM_FILESYSTEM_UTILIZATION]["points"]
        by_mount = {a[sc.SYSTEM_FILESYSTEM_MOUNTPOINT]: a for a, _ in points}
        assert "/" in by_mount
        assert by_mount["/dev/shm"][sc.SYSTEM_FILESYSTEM_TYPE] == "tmpfs"
        assert len(points) == len(by_mount)  # /tmp and /usr live on "/": no duplicate series
        usage = collect(rd)[sc.M_SYSTEM_FILESYSTEM_USAGE]["points"]
        assert len(usage) == 2 * len(by_mount)
    finally:
        h.stop()


def test_unsupported_reading_turns_off_one_gauge_and_logs_once(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """NotImplementedError / AccessDenied from psutil (restricted platforms) drop that gauge only, one WARNING each."""

    def not_implemented(self: psutil.Process) -> int:
        raise NotImplementedError("num_fds unsupported here")

    def denied(self: psutil.Process) -> Any:
        raise psutil.AccessDenied(os.getpid())

    monkeypatch.setattr(psutil.Process, "num_fds", not_implemented)
    monkeypatch.setattr(psutil.Process, "num_threads", denied)
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    try:
        with caplog.at_level(logging.WARNING, logger="ragotel"):
            first = collect(rd)
            second = collect(rd)
        for metrics in (first, second):
            assert sc.M_PROCESS_FILE_DESCRIPTOR_COUNT not in metrics
            assert sc.M_PROCESS_THREAD_COUNT not in metrics
            assert sc.M_PROCESS_MEMORY_USAGE in metrics
            assert sc.M_SYSTEM_CPU_UTILIZATION in metrics
        assert h.disabled == {sc.M_PROCESS_FILE_DESCRIPTOR_COUNT, sc.M_PROCESS_THREAD_COUNT}
        lines = [r.getMessage() for r in caplog.records if "not available on this platform" in r.getMessage()]
        assert len(lines) == 2, lines
    finally:
        h.stop()


def test_transient_failure_skips_one_collection_only(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any other error in a reading skips that gauge for one collection, never raises, and the next one reports."""
    original = psutil.virtual_memory
    calls = {"n": 0}

    def flaky() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("transient /proc read failure")
        return original()

    monkeypatch.setattr(psutil, "virtual_memory", flaky)
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    try:
        first = collect(rd)
        assert sc.M_SYSTEM_MEMORY_UTILIZATION not in first
        assert sc.M_PROCESS_MEMORY_USAGE in first
        time.sleep(0.3)  # past the per-collection snapshot
        second = collect(rd)
        assert sc.M_SYSTEM_MEMORY_UTILIZATION in second
        assert h.disabled == frozenset()
    finally:
        h.stop()


def test_no_gpu_series_without_nvml(provider_and_reader: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Without pynvml importable, no hw.gpu.* instrument or point exists and nothing fails."""
    assert importlib.util.find_spec("pynvml") is None, "this machine has pynvml; the absent path is not exercised"
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    try:
        names = set(collect(rd))
        assert not {n for n in names if n.startswith("hw.gpu")}
        assert not {n for n in h.names if n.startswith("hw.")}
    finally:
        h.stop()


def test_stop_silences_and_reinstall_on_same_provider_reports_again(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """stop() empties the gauges; a second install() on the same provider (re-instrument) reports again."""
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    assert sc.M_PROCESS_MEMORY_USAGE in collect(rd)
    h.stop()
    h.stop()  # idempotent
    assert collect(rd) == {}
    h2 = host.install(provider, Settings())
    try:
        assert sc.M_PROCESS_MEMORY_USAGE in collect(rd)
    finally:
        h2.stop()


@pytest.mark.timeout(60)
def test_forked_child_reports_its_own_process(provider_and_reader: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """After os.fork() the child's process gauges describe the child (its pid, its single thread), not the parent."""
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        parent = collect(rd)
        parent_threads = one(parent, sc.M_PROCESS_THREAD_COUNT)
        assert parent_threads >= 4
        assert h.observed_pid == os.getpid()
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork() in a threaded process; forking one is exactly this test's case.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: report through the pipe, never return into pytest
            code = 1
            try:
                child = collect(rd)
                result = {
                    "pid": os.getpid(),
                    "observed": h.observed_pid,
                    "threads": one(child, sc.M_PROCESS_THREAD_COUNT),
                    "psutil_threads": psutil.Process().num_threads(),
                    "rss": one(child, sc.M_PROCESS_MEMORY_USAGE),
                    "psutil_rss": psutil.Process().memory_info().rss,
                }
                os.write(write_fd, json.dumps(result).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_fd) as fh:
            child = json.loads(fh.read() or "{}")
        assert os.waitstatus_to_exitcode(status) == 0, child
        assert child["observed"] == child["pid"] == pid != os.getpid()
        assert child["threads"] == child["psutil_threads"] < parent_threads
        assert child["rss"] == pytest.approx(child["psutil_rss"], rel=0.2)
        assert h.observed_pid == os.getpid()  # the parent is unaffected
        assert one(collect(rd), sc.M_PROCESS_THREAD_COUNT) >= 4  # main + the three parked threads, not the child's 1
    finally:
        stop.set()
        h.stop()


def test_collection_never_raises_when_a_callback_breaks(
    provider_and_reader: tuple[MeterProvider, InMemoryMetricReader], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a psutil function that raises on every call leaves collection working and the other gauges intact."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no /proc/net/dev")

    monkeypatch.setattr(psutil, "net_io_counters", broken)
    provider, rd = provider_and_reader
    h = host.install(provider, Settings())
    try:
        metrics = collect(rd)
        assert sc.M_SYSTEM_NETWORK_IO not in metrics
        assert sc.M_SYSTEM_CPU_UTILIZATION in metrics
    finally:
        h.stop()


def test_cgroup_memory_limit_reads_v2_then_v1_and_is_absent_without_a_limit(tmp_path: Any) -> None:
    """`ragotel.process.memory.limit` comes from memory.max (v2) or memory.limit_in_bytes (v1); "max", v1's
    "unlimited" sentinel and a missing cgroup mean no limit (the gauge reports nothing)."""
    from ragotel.host.readings import cgroup_memory_limit

    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    missing = str(tmp_path / "none")
    v2.write_text("536870912\n")
    assert cgroup_memory_limit([str(v2), str(v1)]) == 512 * 2**20
    v2.write_text("max\n")
    assert cgroup_memory_limit([str(v2), str(v1)]) is None
    v1.write_text("9223372036854771712\n")
    assert cgroup_memory_limit([missing, str(v1)]) is None
    v1.write_text("1073741824\n")
    assert cgroup_memory_limit([missing, str(v1)]) == 2**30
    assert cgroup_memory_limit([missing]) is None
