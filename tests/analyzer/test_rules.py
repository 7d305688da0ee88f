"""Rule semantics over real windows fed with real OTLP: Prometheus' state machine, selectors, levels, guards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.analyzer.alerting_helpers import Harness

from ragotel.analyzer.config.specs import RuleSpec
from ragotel.analyzer.judge.rules import Sample, SignalSource

ERRORS = {
    "name": "db_errors",
    "signal": "error_rate",
    "match": {"stage": "vector_db"},
    "condition": "greater_than",
    "threshold": 0.5,
    "for": "3s",
    "severity": "critical",
    "cooldown": "0s",
}


def make(tmp_path: Path, *rules: dict[str, Any], **kw: Any) -> Harness:
    return Harness(tmp_path, list(rules), **kw)


def test_pending_then_firing_after_for_then_resolved(tmp_path: Path) -> None:
    """An alert is pending until its condition held for `for`, fires once, and resolves when the window clears."""
    h = make(tmp_path, ERRORS)
    h.spans("api", "vector_db", "chroma", [0.01] * 4, errors=4)
    h.tick()
    assert h.states() == {"db_errors": "pending"}
    h.tick(2.0)
    assert h.states() == {"db_errors": "pending"}
    assert h.queued() == []
    h.spans("api", "vector_db", "chroma", [0.01] * 4, errors=4)
    h.tick(1.0)
    assert h.states() == {"db_errors": "firing"}
    assert h.queued() == [("hook", "firing", "db_errors")]
    alert = h.engine.firing()[0]
    assert alert.labels == {"service": "api", "stage": "vector_db", "component": "chroma"}
    assert alert.value == pytest.approx(1.0)
    h.tick(1.0)
    assert h.queued() == [("hook", "firing", "db_errors")], "no duplicate while firing"
    h.spans("api", "vector_db", "chroma", [0.01] * 40)
    h.tick(0.5)
    assert h.states() == {}
    assert h.queued() == [("hook", "firing", "db_errors"), ("hook", "resolved", "db_errors")]
    history = h.store.query_alerts()
    assert [r["state"] for r in history] == ["resolved"]
    h.close()


def test_pending_that_clears_never_notifies(tmp_path: Path) -> None:
    """A condition that stops holding before `for` elapses leaves no notification and no history."""
    h = make(tmp_path, ERRORS)
    h.spans("api", "vector_db", "chroma", [0.01] * 2, errors=2)
    h.tick()
    assert h.states() == {"db_errors": "pending"}
    h.spans("api", "vector_db", "chroma", [0.01] * 20)
    h.tick(1.0)
    assert h.states() == {}
    h.tick(5.0)
    assert h.queued() == []
    assert h.store.query_alerts() == []
    h.close()


def test_keep_firing_for_holds_the_alert(tmp_path: Path) -> None:
    """With keep_firing_for, a firing alert stays firing that long after its condition stopped holding."""
    rule = {**ERRORS, "for": "0s", "keep_firing_for": "5s"}
    h = make(tmp_path, rule)
    h.spans("api", "vector_db", "chroma", [0.01] * 3, errors=3)
    h.tick()
    assert h.states() == {"db_errors": "firing"}
    h.spans("api", "vector_db", "chroma", [0.01] * 30)
    h.tick(1.0)
    h.tick(3.0)
    assert h.states() == {"db_errors": "firing"}
    h.tick(1.5)
    assert h.states() == {}
    assert [k for _, k, _ in h.queued()] == ["firing", "resolved"]
    h.close()


def test_cooldown_suppresses_a_refire_and_defers_it(tmp_path: Path) -> None:
    """Inside the cooldown a re-fire is not notified (nor its resolution); once it ends, a still-firing alert is."""
    rule = {**ERRORS, "for": "0s", "cooldown": "30s", "repeat_interval": "1h"}
    h = make(tmp_path, rule, window=4.0)
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h.tick()
    h.spans("api", "vector_db", "chroma", [0.01] * 10)
    h.tick(1.0)
    assert [k for _, k, _ in h.queued()] == ["firing", "resolved"]
    h.tick(10.0)  # the window has emptied
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h.tick(1.0)
    assert h.states() == {"db_errors": "firing"}
    h.spans("api", "vector_db", "chroma", [0.01] * 10)
    h.tick(1.0)
    assert h.states() == {}
    assert [k for _, k, _ in h.queued()] == ["firing", "resolved"], "flap inside the cooldown stays quiet"
    # Third episode, still inside the cooldown, lasting past it: notified when the cooldown ends.
    h.tick(5.0)
    for _ in range(6):
        h.spans("api", "vector_db", "chroma", [0.01], errors=1)
        h.tick(3.0)
    assert h.states() == {"db_errors": "firing"}
    assert [k for _, k, _ in h.queued()] == ["firing", "resolved", "firing"]
    h.close()


def test_repeat_interval_renotifies(tmp_path: Path) -> None:
    """A long-firing alert is notified again every repeat_interval, marked as a repeat."""
    rule = {**ERRORS, "for": "0s", "cooldown": "2s", "repeat_interval": "5s"}
    h = make(tmp_path, rule)
    for _ in range(12):
        h.spans("api", "vector_db", "chroma", [0.01], errors=1)
        h.tick(1.0)
    kinds = [k for _, k, _ in h.queued()]
    assert kinds == ["firing", "firing", "firing"]
    payloads = [n["kind"] for n in h.store.notifications()]
    assert payloads == ["firing"] * 3
    h.close()


def test_selector_any_of_and_conditions(tmp_path: Path) -> None:
    """Selector lists mean any-of; equals / not_equals / less_than compare as written."""
    rules = [
        {"name": "slow_any", "signal": "latency_p95", "match": {"stage": ["generation", "embedding"]},
         "threshold": 1.0, "severity": "warning"},
        {"name": "dep_down", "signal": "dependency_health", "condition": "equals", "threshold": 0},
        {"name": "dep_not_up", "signal": "dependency_health", "condition": "not_equals", "threshold": 1},
        {"name": "dep_low", "signal": "dependency_health", "condition": "less_than", "threshold": 0.5},
    ]  # fmt: skip
    h = make(tmp_path, *rules)
    h.spans("api", "generation", "openai", [2.0] * 5)
    h.spans("api", "embedding", "openai", [0.01] * 5)
    h.spans("api", "retrieval", "custom", [3.0] * 5)
    h.gauge(
        "api",
        "ragotel.dependency.health",
        0,
        **{"ragotel.dependency.name": "chroma", "ragotel.dependency.kind": "vector_db"},
    )
    h.gauge(
        "api", "ragotel.dependency.health", 1, **{"ragotel.dependency.name": "openai", "ragotel.dependency.kind": "llm"}
    )
    h.tick()
    firing = sorted((a.rule, tuple(sorted(a.labels.items()))) for a in h.engine.firing())
    assert firing == [
        ("dep_down", (("dependency", "chroma"), ("kind", "vector_db"), ("service", "api"))),
        ("dep_low", (("dependency", "chroma"), ("kind", "vector_db"), ("service", "api"))),
        ("dep_not_up", (("dependency", "chroma"), ("kind", "vector_db"), ("service", "api"))),
        ("slow_any", (("component", "openai"), ("service", "api"), ("stage", "generation"))),
    ]
    h.close()


def test_warning_ratio_levels_and_escalation(tmp_path: Path) -> None:
    """Within 1.2x of the threshold the alert is a warning; crossing it escalates to critical at once."""
    rule = {"name": "cpu", "signal": "cpu_utilization", "threshold": 0.8, "warning_ratio": 1.2,
            "severity": "critical", "cooldown": "5m"}  # fmt: skip
    h = make(tmp_path, rule)
    h.gauge("api", "system.cpu.utilization", 0.5)
    h.tick()
    assert h.states() == {}
    h.gauge("api", "system.cpu.utilization", 0.7)
    h.tick(1.0)
    assert [(a.state, a.severity) for a in h.engine.active()] == [("firing", "warning")]
    h.gauge("api", "system.cpu.utilization", 0.9)
    h.tick(1.0)
    assert [(a.state, a.severity) for a in h.engine.active()] == [("firing", "critical")]
    rows = list(reversed(h.store.notifications()))
    assert [r["kind"] for r in rows] == ["firing", "firing"], "escalation is notified despite the cooldown"
    h.close()


def test_guard_must_hold_for_the_same_service(tmp_path: Path) -> None:
    """A guarded rule (memory growth with a usage guard) fires only while the guard holds for that service."""
    rule = {"name": "leak", "signal": "memory_growth", "threshold": 1000.0,
            "guard": [{"signal": "memory_utilization", "condition": "greater_than", "threshold": 0.5}]}  # fmt: skip
    h = make(tmp_path, rule)
    for i in range(5):
        h.gauge("api", "process.memory.usage", 100e6 + i * 5e6)
        h.gauge("api", "system.memory.utilization", 0.3)
        h.tick(1.0)
    assert h.states() == {}
    h.gauge("api", "process.memory.usage", 125e6)
    h.gauge("api", "system.memory.utilization", 0.7)
    h.tick(1.0)
    assert h.states() == {"leak": "firing"}
    assert h.engine.firing()[0].value == pytest.approx(5e6)
    h.close()


def test_absent_series_resolves_only_after_grace(tmp_path: Path) -> None:
    """A firing series that disappears (no data) resolves after the absent grace, not at once."""
    rule = {**ERRORS, "for": "0s"}
    h = make(tmp_path, rule, window=4.0)
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    seen_until = h.now
    while h.windows.signal("error_rate"):
        seen_until = h.now
        h.tick(1.0)
    h.tick(2.0)  # last seen 3s ago, less than the grace (the window, 4s)
    assert h.states() == {"db_errors": "firing"}
    h.tick(seen_until + 4.0 - h.now)
    assert h.states() == {}
    h.close()


class _Broken:
    spec = RuleSpec.model_validate({"name": "broken", "signal": "error_rate", "threshold": 1})

    def evaluate(self, source: SignalSource, now: float) -> list[Sample]:
        raise RuntimeError("rule bug")


def test_a_failing_rule_never_stops_the_others(tmp_path: Path) -> None:
    """A rule that raises is recorded as unhealthy while every other rule still evaluates and fires."""
    h = make(tmp_path, {**ERRORS, "for": "0s"})
    h.engine.rules.insert(0, _Broken())
    h.engine.health["broken"] = type(h.engine.health["db_errors"])()
    h.engine._by_rule["broken"] = {}
    h.spans("api", "vector_db", "chroma", [0.01], errors=1)
    h.tick()
    h.tick(1.0)
    assert h.states() == {"db_errors": "firing"}
    assert h.engine.health["broken"].failures == 2
    assert h.engine.health["broken"].last_error == "RuntimeError: rule bug"
    assert h.engine.health["db_errors"].last_error is None
    h.close()


def test_burn_rate_multiwindow(tmp_path: Path) -> None:
    """The burn-rate rule pages only when both the long and the short window burn faster than the factor."""
    rule = {"name": "burn", "type": "burn_rate", "match": {"stage": "pipeline"}, "objective": 0.9,
            "burn_windows": [{"long": "20s", "short": "4s", "factor": 5, "severity": "critical"},
                             {"long": "40s", "short": "8s", "factor": 2, "severity": "warning"}]}  # fmt: skip
    h = make(tmp_path, rule, window=2.0)
    for _ in range(30):  # healthy: 2% errors (burn 0.2)
        h.spans("api", "pipeline", "custom", [0.1] * 50, errors=1)
        h.tick(1.0)
    assert h.states() == {}
    seen = []
    for _ in range(16):  # everything fails: the short windows burn at once, the long ones catch up
        h.spans("api", "pipeline", "custom", [0.1] * 50, errors=50)
        h.tick(1.0)
        seen.append(h.engine.firing()[0].severity if h.engine.firing() else None)
    assert seen[:3] == [None, None, None], "a short blip does not page: the long window must burn too"
    assert "warning" in seen[3:10]
    assert seen[-1] == "critical"
    assert seen.index("warning") < seen.index("critical")
    alert = h.engine.firing()[0]
    assert alert.threshold == 5
    assert alert.value > 5
    for _ in range(10):  # recovery: the short windows clear first and reset the alert
        h.spans("api", "pipeline", "custom", [0.1] * 50)
        h.tick(1.0)
    assert h.states() == {}
    h.close()


def test_latency_regression_against_own_baseline(tmp_path: Path) -> None:
    """The regression rule fires when p95 doubles over the series' own trailing median, with no static threshold."""
    rule = {"name": "regress", "type": "regression", "signal": "latency_p95", "match": {"stage": "pipeline"},
            "factor": 2.0, "min_delta": 0.1, "baseline": "60s", "min_history": "10s"}  # fmt: skip
    h = make(tmp_path, rule, window=2.0)
    for _ in range(20):
        h.spans("api", "pipeline", "custom", [0.3] * 10)
        h.tick(1.0)
    assert h.states() == {}
    for _ in range(3):
        h.spans("api", "pipeline", "custom", [1.2] * 10)
        h.tick(1.0)
    assert h.states() == {"regress": "firing"}
    alert = h.engine.firing()[0]
    assert alert.threshold == pytest.approx(0.3, rel=0.1), "threshold reported is the learned baseline"
    h.close()
