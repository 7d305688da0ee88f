"""The chart history: 10-second and 5-minute points per (service, stage), bounded, persisted, served by the API."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from tests.analyzer.analyzer_helpers import api, emit_spans

from ragotel.analyzer.server import Server
from ragotel.analyzer.state import SCHEMA_VERSION, StateStore
from ragotel.analyzer.windows.history import COARSE_STEP, STEP, History
from ragotel.analyzer.windows.recent import PANE, RecentRing
from ragotel.analyzer.windows.records import SpanGroup
from ragotel.semconv import RAGOTEL_COMPONENT, RAGOTEL_STAGE

T0 = 1_800_000_000.0  # a multiple of 300 s


def _ring(spans: list[tuple[float, float, bool]]) -> RecentRing:
    """A recent ring holding (arrival time, duration, failed) spans."""
    ring = RecentRing(keep=COARSE_STEP * 2)
    for at, duration, failed in sorted(spans):
        ring.add(int(at // PANE), SpanGroup("svc", "generation", "openai", "", "", [duration], int(failed), 0, []))
    return ring


def test_steps_close_per_stage_and_fold_into_five_minute_points() -> None:
    """Components of a stage add up in its 10-second points; a 5-minute point keeps the sum and the worst p95."""
    history = History()
    spans = [(T0 + s + 0.5, 0.1, False) for s in range(0, 300, 2)]
    spans += [(T0 + 150.5, 2.0, True)]  # one slow failing call in the middle
    ring = _ring(spans)
    other = _ring([(T0 + 5.0, 0.3, False)])
    for now in range(int(T0), int(T0) + 302):
        history.roll([(("svc", "generation", "openai"), ring), (("svc", "generation", "other"), other)], float(now))
    points, resolution = history.points(("svc", "generation"), T0 - 1, T0 + 302)
    assert resolution == STEP
    assert len(points) == 30
    assert points[0][:2] == (T0, 6)  # five spans of one component and one of the other
    slow = next(p for p in points if p[0] == T0 + 150)
    assert slow[2] == 1  # the step with the slow call: its error
    assert slow[5] > 1.0  # and its p95
    coarse, resolution = history.points(("svc", "generation"), T0 - 3600 * 2, T0 + 3600 * 2)
    assert resolution == COARSE_STEP
    assert len(coarse) == 1
    start, count, errors, _, p50, p95 = coarse[0]
    assert (start, count, errors) == (T0, 152, 1)
    assert p50 < 0.2
    assert p95 == slow[5]


def test_series_beyond_the_limit_evict_the_least_recently_updated() -> None:
    """History holds at most ``max_series`` series: a new one replaces the one updated longest ago."""
    history = History(max_series=2)
    for i, name in enumerate(("a", "b", "c")):
        ring = _ring([(T0 + 10 * i + 1, 0.1, False)])
        history.roll([((name, "generation", "x"), ring)], T0 + 10 * i + 12)
    assert history.keys() == [("b", "generation"), ("c", "generation")]


def test_history_survives_a_restart_through_the_state_file(tmp_path: Path) -> None:
    """Dumped points saved to the state file load into a new History; only new points are dumped again."""
    history = History()
    ring = _ring([(T0 + s + 0.5, 0.2, False) for s in range(0, 60, 3)])
    for now in range(int(T0), int(T0) + 62):
        history.roll([(("svc", "generation", "openai"), ring)], float(now))
    store = StateStore(tmp_path / "state.db")
    rows = history.dump()
    assert len(rows) == 6
    store.save_history(rows, older_than={STEP: T0 - 3600, COARSE_STEP: T0 - 86400})
    assert history.dump() == []  # nothing new since
    store.close()

    reopened = StateStore(tmp_path / "state.db")
    restored = History()
    assert restored.load(reopened.history(), T0 + 70) == 1
    assert restored.points(("svc", "generation"), T0, T0 + 70) == history.points(("svc", "generation"), T0, T0 + 70)
    assert restored.dump() == []  # what was loaded is not written back
    reopened.close()


def test_a_v3_state_file_migrates_to_v4_keeping_its_alerts(tmp_path: Path) -> None:
    """A state file of schema 3 (no history table) opens as the current version with its alerts and a history."""
    path = tmp_path / "state.db"
    store = StateStore(path)
    fields = {"fingerprint": "f", "rule": "r", "state": "firing", "severity": "critical", "labels": {"service": "s"},
              "service": "s", "active_since": T0, "last_true": T0, "value": 1.0, "threshold": 0.5, "message": "m",
              "updated_at": T0}  # fmt: skip
    alert_id = store.save_alert(None, fields)
    store.close()
    with sqlite3.connect(path) as conn:  # what a ragotel of schema 3 left behind
        conn.execute("DROP TABLE history")
        conn.execute("PRAGMA user_version=3")
    assert SCHEMA_VERSION == 4
    migrated = StateStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    alert = migrated.alert(alert_id)
    assert alert is not None
    assert alert["labels"] == {"service": "s"}
    migrated.save_history([(("s", "generation"), STEP, (T0, 1, 0, 0, 0.1, 0.2))], older_than={})
    assert migrated.history() == [(("s", "generation"), STEP, (T0, 1, 0, 0, 0.1, 0.2))]
    migrated.close()


def _five_spans_charted(analyzer: Server) -> None:
    exporter = OTLPSpanExporter(endpoint=f"http://{analyzer.http_address}/v1/traces")
    attributes = {RAGOTEL_STAGE: "generation", RAGOTEL_COMPONENT: "openai"}
    emit_spans(exporter, "hist-svc", [("chat", attributes, 0.25)] * 5)
    assert analyzer.ingest.wait_idle()
    analyzer.tick(time.time() + STEP + 1.5)  # the step the spans arrived in is over


def test_history_endpoint_serves_points_and_rejects_bad_ranges(analyzer: Server) -> None:
    """/api/v1/history serves a stage's closed 10-second points and answers 400 for a malformed or too long since."""
    _five_spans_charted(analyzer)
    body = api(analyzer, "/api/v1/history?service=hist-svc&stage=generation&since=15m").json()
    (series,) = body["series"]
    assert (series["service"], series["stage"], series["resolution"]) == ("hist-svc", "generation", STEP)
    assert [p["count"] for p in series["points"]] == [5]
    assert series["points"][0]["p95"] == 0.25
    assert body["alerts"] == []
    for bad in ("since=soon", "since=48h"):
        response = api(analyzer, f"/api/v1/history?{bad}")
        assert response.status_code == 400
        assert "since" in response.json()["error"]


def test_the_charts_survive_an_analyzer_restart(make_analyzer: Callable[..., Server]) -> None:
    """An analyzer stopped and started again on the same state file serves the history it had charted."""
    first = make_analyzer()
    _five_spans_charted(first)
    before = api(first, "/api/v1/history?service=hist-svc").json()["series"]
    first.stop()
    second = make_analyzer()
    assert api(second, "/api/v1/history?service=hist-svc").json()["series"] == before
    assert [p["count"] for p in before[0]["points"]] == [5]
