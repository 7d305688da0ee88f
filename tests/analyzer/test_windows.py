"""Sliding-window statistics and rule signals computed from real OTLP payloads."""

from __future__ import annotations

import math

import pytest
from tests.analyzer.analyzer_helpers import encoded_spans, gauge_request, log_request

from ragotel.analyzer.receive.extract import extract_logs, extract_metrics, extract_traces
from ragotel.analyzer.receive.payload import PROTOBUF, decode
from ragotel.analyzer.windows import OVERFLOW, PANES, Windows
from ragotel.analyzer.windows.records import SignalValue

T = 1_800_000_000.0


def _traces(windows: Windows, body: bytes, now: float) -> None:
    windows.add_traces(extract_traces(decode("traces", body, PROTOBUF).message), now)


def _metrics(windows: Windows, body: bytes, now: float) -> None:
    windows.add_metrics(extract_metrics(decode("metrics", body, PROTOBUF).message), now)


def _gen(model: str) -> dict[str, str]:
    return {"ragotel.stage": "generation", "ragotel.component": "openai", "gen_ai.request.model": model}


def test_stage_statistics_are_exact_over_the_window() -> None:
    """Counts, error and empty-retrieval rates, users, averages and time shares are exact; quantiles within 1%."""
    durations = [i / 100 for i in range(1, 101)]
    windows = Windows(60.0, clock=lambda: T - 120)
    spans = [("chat", _gen("gpt-4o"), d) for d in durations]
    _traces(windows, encoded_spans("rag", spans, error_indexes=range(10)), T)
    retrieval = {"ragotel.stage": "retrieval", "ragotel.component": "chromadb"}
    docs = [0, 0, 0, 4, 4, 4, 4, 4, 4, 4]
    _traces(
        windows,
        encoded_spans("rag", [("retrieve", {**retrieval, "ragotel.retrieval.document_count": n}, 0.05) for n in docs]),
        T,
    )
    users = ["ann", "bob", "ann", "cid"]
    pipeline = [
        ("rag", {"ragotel.stage": "pipeline", "ragotel.component": "custom", "enduser.id": u}, 50.0) for u in users
    ]
    _traces(windows, encoded_spans("rag", pipeline, error_indexes=[3]), T)

    rows = {row["stage"]: row for row in windows.stage_stats("rag", now=T + 1)}
    gen = rows["generation"]
    assert gen["count"] == 100
    assert gen["error_rate"] == pytest.approx(0.1)
    assert gen["avg"] == pytest.approx(sum(durations) / 100)
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert gen[key] == pytest.approx(durations[math.floor(q * 99)], rel=0.01)
    covered = 60.0 + (T + 1) % (60.0 / PANES)
    assert gen["rate"] == pytest.approx(100 / covered)
    assert gen["time_share"] == pytest.approx(sum(durations) / 200.0)
    assert rows["retrieval"]["empty_retrieval_rate"] == pytest.approx(0.3)
    stats = windows.stats(now=T + 1)
    pipe = next(r for r in stats["services"][0]["stages"] if r["stage"] == "pipeline")
    assert pipe["users"] == 3
    assert pipe["success_rate"] == pytest.approx(0.75)
    assert stats["totals"]["spans"] == 114


def test_signals_aggregate_models_per_component_and_match_labels() -> None:
    """Two models of one component give one signal value but two finer rows in the stats."""
    windows = Windows(60.0, clock=lambda: T - 120)
    _traces(windows, encoded_spans("rag", [("a", _gen("m1"), 1.0), ("b", _gen("m2"), 3.0)]), T)
    _traces(windows, encoded_spans("other", [("c", _gen("m1"), 9.0)]), T)
    values = windows.signal("latency_avg", {"stage": "generation"}, now=T)
    assert sorted(values, key=lambda v: v.labels["service"]) == [
        SignalValue({"service": "other", "stage": "generation", "component": "openai"}, 9.0),
        SignalValue({"service": "rag", "stage": "generation", "component": "openai"}, 2.0),
    ]
    assert windows.signal("request_rate", {"service": "rag", "component": "chromadb"}, now=T) == []
    row = windows.stats(service="rag", now=T)["services"][0]["stages"][0]
    assert [(s["model"], s["count"]) for s in row["series"]] == [("m1", 1), ("m2", 1)]
    assert windows.signal("empty_retrieval_rate", now=T) == []
    with pytest.raises(ValueError, match="unknown signal 'latency_p42'"):
        windows.signal("latency_p42")


def test_data_leaves_the_window_and_series_are_freed() -> None:
    """A span counted at T is gone from every read one window (plus a pane) later, and expire() frees its series."""
    windows = Windows(10.0, clock=lambda: T - 100)
    _traces(windows, encoded_spans("rag", [("a", _gen("m"), 1.0)]), T)
    assert windows.signal("request_rate", now=T + 5)[0].value == pytest.approx(1 / (10 + (T + 5) % (10 / PANES)))
    later = T + 10 + 2 * 10 / PANES
    assert windows.signal("request_rate", now=later) == []
    assert windows.snapshot_counts()["series"] == 2  # per-component and per-model series, still held
    windows.expire(later)
    assert windows.snapshot_counts()["series"] == 0
    assert windows.services() == []


def test_host_and_dependency_signals() -> None:
    """CPU sums non-idle modes per CPU, memory keeps the used state, disk takes the fullest filesystem,
    memory growth is the least-squares slope, dependency health the worst instance."""
    windows = Windows(60.0, clock=lambda: T - 120)
    cpu = [
        ("system.cpu.utilization", 0.5, {"cpu.mode": "user", "cpu.logical_number": 0}, T),
        ("system.cpu.utilization", 0.1, {"cpu.mode": "system", "cpu.logical_number": 0}, T),
        ("system.cpu.utilization", 0.4, {"cpu.mode": "idle", "cpu.logical_number": 0}, T),
        ("system.cpu.utilization", 0.2, {"cpu.mode": "user", "cpu.logical_number": 1}, T),
        ("system.cpu.utilization", 0.8, {"cpu.mode": "idle", "cpu.logical_number": 1}, T),
        ("system.memory.utilization", 0.7, {"system.memory.state": "used"}, T),
        ("system.memory.utilization", 0.3, {"system.memory.state": "free"}, T),
        ("system.filesystem.utilization", 0.5, {"system.device": "/dev/a"}, T),
        ("system.filesystem.utilization", 0.9, {"system.device": "/dev/b"}, T),
    ]
    _metrics(windows, gauge_request("rag", cpu), T)
    for i in range(5):  # grows 1000 bytes/s, sampled every 10 s
        _metrics(windows, gauge_request("rag", [("process.memory.usage", 1e6 + 1e4 * i, {}, T + 10 * i)]), T + i)
    dep = {"ragotel.dependency.name": "chroma", "ragotel.dependency.kind": "vector_db"}
    _metrics(windows, gauge_request("rag", [("ragotel.dependency.health", 1.0, dep, T)], instance="a"), T)
    _metrics(windows, gauge_request("rag", [("ragotel.dependency.health", 0.0, dep, T)], instance="b"), T)
    _metrics(windows, gauge_request("rag", [("ragotel.dependency.check.duration", 0.25, dep, T)], instance="a"), T)

    def one(signal: str) -> float:
        (value,) = windows.signal(signal, {"service": "rag"}, now=T + 5)
        return value.value

    assert one("cpu_utilization") == pytest.approx((0.6 + 0.2) / 2)
    assert one("memory_utilization") == pytest.approx(0.7)
    assert one("disk_utilization") == pytest.approx(0.9)
    assert one("memory_growth") == pytest.approx(1000.0)
    assert windows.signal("dependency_health", now=T + 5) == [
        SignalValue({"service": "rag", "dependency": "chroma", "kind": "vector_db"}, 0.0)
    ]
    health = windows.health(now=T + 5)["services"][0]
    assert health["service"] == "rag"
    assert health["healthy"] is False
    assert sorted((d["healthy"], d["check_duration"]) for d in health["dependencies"]) == [(False, None), (True, 0.25)]
    assert windows.stats(now=T + 5)["services"][0]["resources"]["disk_utilization"] == pytest.approx(0.9)


def test_series_beyond_the_limit_go_to_a_counted_overflow_series() -> None:
    """With max_series reached, new label sets are counted in one overflow series and the overflow total."""
    windows = Windows(60.0, max_series=3, clock=lambda: T - 120)
    for i in range(5):
        attributes = {"ragotel.stage": "vector_db", "ragotel.component": "qdrant", "db.collection.name": f"c{i}"}
        _traces(windows, encoded_spans("rag", [("query", attributes, 0.1)]), T)
    counts = windows.snapshot_counts()
    assert counts["spans"] == 5
    assert counts["overflow"] == 3
    assert counts["series"] == 4  # the limit, plus the overflow series itself
    services = {v.labels["service"]: v.value for v in windows.signal("request_rate", now=T)}
    assert set(services) == {"rag", OVERFLOW}


def test_error_log_rate_counts_error_severities_per_service() -> None:
    """Records with severity_number >= 17 (ERROR) count as errors; the rate is per second over the window."""
    windows = Windows(60.0, clock=lambda: T - 120)
    windows.add_logs(extract_logs(decode("logs", log_request("rag", [9, 13, 17, 21, 17]), PROTOBUF).message), T)
    (value,) = windows.signal("error_log_rate", now=T)
    assert value.value == pytest.approx(3 / (60 + T % (60 / PANES)))
    assert windows.stats(now=T)["services"][0]["logs"]["count"] == 5
