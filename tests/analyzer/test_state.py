"""Durable alert state: restart restores pending/firing alerts, keeps cooldowns, never re-fires a resolved alert."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.analyzer.alerting_helpers import Harness

from ragotel.analyzer.state import SCHEMA_VERSION, StateError, StateStore

RULE = {
    "name": "db_errors",
    "signal": "error_rate",
    "match": {"stage": "vector_db"},
    "threshold": 0.5,
    "for": "2s",
    "severity": "critical",
    "cooldown": "60s",
}


def _restart(h: Harness, tmp_path: Path, advance: float = 1.0) -> Harness:
    """A new process on the same state file: fresh (empty) windows, engine restored from SQLite."""
    h.store.close()
    return Harness(tmp_path, [RULE], start=h.now + advance)


def _kinds(h: Harness) -> list[str]:
    return [k for _, k, _ in h.queued()]


def test_firing_alert_survives_restart_without_renotifying(tmp_path: Path) -> None:
    """After a restart a firing alert is still firing, is not notified again, and resolves exactly once."""
    h = Harness(tmp_path, [RULE])
    for _ in range(3):
        h.spans("api", "vector_db", "chroma", [0.01] * 3, errors=3)
        h.tick(1.0)
    assert h.states() == {"db_errors": "firing"}
    fired = h.engine.firing()[0]
    h2 = _restart(h, tmp_path)
    assert h2.states() == {"db_errors": "firing"}
    restored = h2.engine.firing()[0]
    assert (restored.id, restored.started_at, restored.notified) == (fired.id, fired.started_at, True)
    assert restored.diagnosis == fired.diagnosis
    h2.tick()  # windows empty after restart: absent, within the grace
    for _ in range(3):
        h2.spans("api", "vector_db", "chroma", [0.01] * 3, errors=3)
        h2.tick(1.0)
    assert h2.states() == {"db_errors": "firing"}
    assert _kinds(h2) == ["firing"], "no second firing notification after the restart"
    h2.spans("api", "vector_db", "chroma", [0.01] * 60)
    h2.tick(1.0)
    assert h2.states() == {}
    assert _kinds(h2) == ["firing", "resolved"]
    h3 = _restart(h2, tmp_path)
    h3.tick()
    assert h3.states() == {}, "a resolved alert is not restored"
    assert _kinds(h3) == ["firing", "resolved"]
    h3.close()


def test_pending_for_state_survives_restart(tmp_path: Path) -> None:
    """A pending alert keeps its active-since time across a restart, so `for` is not restarted from zero."""
    h = Harness(tmp_path, [RULE])
    h.spans("api", "vector_db", "chroma", [0.01] * 3, errors=3)
    h.tick()
    since = h.engine.active()[0].active_since
    h2 = _restart(h, tmp_path, advance=1.5)
    assert h2.states() == {"db_errors": "pending"}
    h2.spans("api", "vector_db", "chroma", [0.01] * 3, errors=3)
    h2.tick(0.5)
    assert h2.states() == {"db_errors": "firing"}
    assert h2.engine.firing()[0].active_since == since
    h2.close()


def test_cooldown_survives_restart(tmp_path: Path) -> None:
    """A re-fire just after a restart, inside the cooldown of the last notification, is not notified."""
    rule = {**RULE, "for": "0s"}
    h = Harness(tmp_path, [rule])
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h.tick()
    h.spans("api", "vector_db", "chroma", [0.01] * 20)
    h.tick(1.0)
    assert _kinds(h) == ["firing", "resolved"]
    h.store.close()
    h2 = Harness(tmp_path, [rule], start=h.now + 15.0)
    h2.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h2.tick()
    assert h2.states() == {"db_errors": "firing"}
    assert _kinds(h2) == ["firing", "resolved"]
    h2.close()


def test_rule_removed_from_config_resolves_its_alert(tmp_path: Path) -> None:
    """A firing alert whose rule is gone after a restart is resolved (and notified), not kept forever."""
    h = Harness(tmp_path, [{**RULE, "for": "0s"}])
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h.tick()
    h.store.close()
    other = {**RULE, "name": "other"}
    h2 = Harness(tmp_path, [other], start=h.now + 1)
    assert h2.states() == {}
    assert [r["state"] for r in h2.store.query_alerts()] == ["resolved"]
    assert _kinds(h2) == ["firing", "resolved"]
    h2.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A state file written by a newer schema version is refused with a clear error, not silently misread."""
    path = tmp_path / "state.db"
    StateStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StateError, match="newer than this ragotel"):
        StateStore(path)


def test_query_alerts_since_and_status(tmp_path: Path) -> None:
    """History queries return active alerts plus those changed within `since`, filtered by state and rule."""
    h = Harness(tmp_path, [{**RULE, "for": "0s"}])
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h.tick()
    h.spans("api", "vector_db", "chroma", [0.01] * 20)
    h.tick(1.0)
    h.tick(20.0)
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h.tick()
    store = h.store
    assert [r["state"] for r in store.query_alerts()] == ["firing", "resolved"]
    assert [r["state"] for r in store.query_alerts(since=h.now - 10)] == ["firing"]
    assert [r["state"] for r in store.query_alerts(states=["resolved"])] == ["resolved"]
    assert store.query_alerts(rule="nope") == []
    h.close()
