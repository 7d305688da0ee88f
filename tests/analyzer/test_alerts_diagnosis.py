"""Diagnosis: stage attribution from traces against each stage's own baseline, ranked causes, actions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tests.analyzer.alerting_helpers import Harness

LATENCY = {"name": "high_response_time", "signal": "latency_p95", "match": {"stage": "pipeline"}, "threshold": 1.0}
DB = {"name": "database_connection", "signal": "error_rate", "match": {"stage": "vector_db"}, "threshold": 0.1}
CPU = {"name": "cpu_saturation", "signal": "cpu_utilization", "threshold": 0.8}


def request(h: Harness, n: int, *, generation: float = 0.4, vector_db: float = 0.05, db_errors: int = 0) -> None:
    """n RAG requests: pipeline = retrieval (embedding + vector_db) + generation."""
    h.spans("api", "embedding", "openai", [0.03] * n)
    h.spans("api", "vector_db", "chroma", [vector_db] * n, errors=db_errors)
    h.spans("api", "retrieval", "langchain", [0.03 + vector_db] * n)
    h.spans("api", "generation", "openai", [generation] * n)
    h.spans("api", "pipeline", "langchain", [0.06 + vector_db + generation] * n)


def warm_up(h: Harness, seconds: int = 40) -> None:
    for _ in range(seconds):
        request(h, 5)
        h.tick(1.0)


def diagnosis(h: Harness, rule: str) -> dict[str, Any]:
    (alert,) = [a for a in h.engine.firing() if a.rule == rule]
    assert alert.diagnosis is not None
    return alert.diagnosis


def test_slow_generation_is_attributed_against_its_baseline(tmp_path: Path) -> None:
    """When generation slows, it is the primary cause, compared with its usual p95; other stages are normal."""
    h = Harness(tmp_path, [LATENCY], window=4.0)
    warm_up(h)
    for _ in range(3):
        request(h, 5, generation=2.0)
        h.tick(1.0)
    d = diagnosis(h, "high_response_time")
    assert d["primary_cause"] == "generation_latency"
    top = d["possible_causes"][0]
    assert (top["stage"], top["component"]) == ("generation", "openai")
    assert top["confidence"] > 0.7
    assert re.search(r"p95 (1\.9\d|2\.0\d) s, usually (39\d|40\d) ms", top["summary"]), top["summary"]
    assert "generation/openai accounts for" in d["summary"]
    status = {(s["stage"], s["component"]): s["status"] for s in d["attribution"]}
    assert status[("generation", "openai")] == "slow"
    assert status[("vector_db", "chroma")] == "normal"
    assert "vector_db/chroma" in d["summary"].split(";")[1]
    assert d["recommended_actions"][0] == "clear_cache"
    confidences = [c["confidence"] for c in d["possible_causes"]]
    assert confidences == sorted(confidences, reverse=True)
    h.close()


def test_slow_vector_db_beats_a_bigger_but_usual_generation(tmp_path: Path) -> None:
    """A stage that became slower than usual outranks a stage that is big but as slow as always."""
    h = Harness(tmp_path, [LATENCY], window=4.0)
    for _ in range(40):
        request(h, 5, generation=0.8)
        h.tick(1.0)
    for _ in range(3):
        request(h, 5, generation=0.8, vector_db=0.5)
        h.tick(1.0)
    d = diagnosis(h, "high_response_time")
    assert d["primary_cause"] == "vector_db_latency"
    shares = {s["stage"]: s["time_share"] for s in d["attribution"]}
    assert shares["generation"] > shares["vector_db"], "generation is bigger, but as slow as usual"
    h.close()


def test_vector_db_errors_with_failing_health_check_point_at_the_dependency(
    tmp_path: Path,
) -> None:
    """Client errors plus a failing health check of that dependency rank dependency_down first (failover)."""
    h = Harness(tmp_path, [DB], window=4.0)
    request(h, 5, db_errors=5)
    dep = {"ragotel.dependency.name": "chroma-prod", "ragotel.dependency.kind": "vector_db"}
    h.gauge("api", "ragotel.dependency.health", 0, **dep)
    h.tick()
    d = diagnosis(h, "database_connection")
    assert d["primary_cause"] == "dependency_down"
    assert d["possible_causes"][0]["component"] == "chroma-prod"
    assert d["possible_causes"][1]["cause"] == "vector_db_errors"
    assert d["recommended_actions"][:2] == ["failover", "restart_service"]
    h.close()


def test_load_spike_is_a_possible_cause_of_latency(tmp_path: Path) -> None:
    """Latency arriving with a request rate several times the usual names load_spike (scale_up)."""
    h = Harness(tmp_path, [LATENCY], window=4.0)
    warm_up(h)
    for _ in range(3):
        request(h, 40, generation=1.5)
        h.tick(1.0)
    d = diagnosis(h, "high_response_time")
    causes = {c["cause"]: c for c in d["possible_causes"]}
    assert "load_spike" in causes
    assert "scale_up" in causes["load_spike"]["actions"]
    h.close()


def test_cpu_saturation_diagnosis_and_symptoms(tmp_path: Path) -> None:
    """A resource rule names its saturation as the primary cause and keeps the host readings as symptoms."""
    h = Harness(tmp_path, [CPU], window=4.0)
    h.gauge("api", "system.cpu.utilization", 0.95)
    h.gauge("api", "system.memory.utilization", 0.4)
    h.tick()
    (alert,) = h.engine.firing()
    assert alert.diagnosis is not None
    assert alert.diagnosis["primary_cause"] == "cpu_saturation"
    assert alert.diagnosis["recommended_actions"][0] == "scale_up"
    assert alert.symptoms is not None
    assert alert.symptoms["host"]["cpu_utilization"] == pytest.approx(0.95)
    assert alert.symptoms["host"]["memory_utilization"] == pytest.approx(0.4)
    stored = h.store.alert(alert.id or 0)
    assert stored is not None
    assert stored["symptoms"]["host"] == alert.symptoms["host"], "symptoms are stored with the diagnosis"
    h.close()
