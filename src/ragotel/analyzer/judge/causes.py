"""Cause builders of the diagnosis: pure functions from stage shares, dependency health and a deploy to ranked causes.

Confidence scale, in one place so that the ranking stays legible: a down dependency that its failing stage
corroborates 0.98 > a deploy just before the regression 0.97 > the stage an adaptive rule found off its baseline
0.96 > attribution's best 0.95.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ragotel.analyzer.judge.records import Cause, StageShare
from ragotel.analyzer.vocabulary import CAUSE_ACTIONS, format_value
from ragotel.analyzer.windows.graph import downstream
from ragotel.analyzer.windows.records import Deploy

__all__ = [
    "dependency_causes",
    "deploy_cause",
    "error_causes",
    "graph_causes",
    "latency_causes",
    "own_shares",
    "rank",
    "summary_of",
]

_CHILD_STAGES: Final = frozenset({"embedding", "vector_db", "rerank"})
# The dependency types a stage relies on besides what its own spans call (a retrieval span encloses the vector
# database and embedding calls); the pipeline, or a service as a whole, relies on everything its service does.
_STAGE_RELIES_ON: Final = {
    "generation": frozenset({"llm"}),
    "embedding": frozenset({"llm"}),
    "vector_db": frozenset({"vector_db", "database"}),
    "retrieval": frozenset({"vector_db", "database", "llm", "cache"}),
    "rerank": frozenset({"llm", "http"}),
}
_GRAPH_DOWN: Final = 0.99
"""A down dependency the graph shows below the alerted service or stage: above a corroborated health check (0.98)."""


def rank(causes: Sequence[Cause]) -> list[Cause]:
    """The six most confident causes, one per (cause, stage, component), most confident first."""
    best: dict[tuple[str, str | None, str | None], Cause] = {}
    for c in causes:
        key = (c.cause, c.stage, c.component)
        if key not in best or c.confidence > best[key].confidence:
            best[key] = c
    return sorted(best.values(), key=lambda c: -c.confidence)[:6]


def dependency_causes(
    deps: Sequence[tuple[Mapping[str, str], float]], shares: Sequence[StageShare], kind: str
) -> list[Cause]:
    out = []
    failing = {s.stage for s in shares if s.status == "failing"}
    for labels, healthy in deps:
        if healthy >= 1.0:
            continue
        dep, dep_kind = labels.get("dependency", "?"), labels.get("kind", "?")
        corroborated = dep_kind in failing or (dep_kind in ("database", "vector_db") and "vector_db" in failing)
        # 0.98: a down dependency its failing stage corroborates outranks even a recent deploy (0.97).
        confidence = 0.98 if kind in ("dependency_health", "errors") or corroborated else 0.6
        out.append(
            Cause(
                "dependency_down",
                f"dependency {dep} ({dep_kind}) fails its health check",
                confidence,
                CAUSE_ACTIONS["dependency_down"],
                dep_kind if dep_kind in ("vector_db", "generation", "embedding") else None,
                dep,
            )
        )
    return out


def graph_causes(
    graph: Mapping[str, Any], labels: Mapping[str, str]
) -> tuple[list[Cause], dict[str, Any] | None, set[str]]:
    """The down dependencies (and services) downstream of the alerted service or stage in the dependency graph
    (``/api/v1/dependencies``): one ``dependency_down`` cause each, for the lowest down nodes only (a down service
    whose own dependency is down is explained by it), the primary one as a record for the diagnosis, and the
    health checks these causes stand for (their own ``dependency_down`` causes would repeat them)."""
    service = labels.get("service")
    if not service:
        return [], None, set()
    nodes = {n["id"]: n for n in graph.get("nodes", ())}
    below: dict[str, list[str]] = {}
    for edge in graph.get("edges", ()):
        below.setdefault(edge["source"], []).append(edge["target"])
    own = f"service:{service}"
    stage = labels.get("stage")
    if stage is None or stage not in _STAGE_RELIES_ON:
        starts = [own]
    else:
        component = labels.get("component")
        starts = [
            n["id"]
            for n in nodes.values()
            if n["kind"] == "stage"
            and n["service"] == service
            and n["type"] == stage
            and component in (None, n["attributes"].get("component", ""))
        ]
        starts += [
            t
            for t in below.get(own, ())
            if nodes[t]["kind"] == "dependency" and nodes[t]["type"] in _STAGE_RELIES_ON[stage]
        ]
    reached = downstream(starts, below)
    down = [i for i in reached if i != own and nodes[i]["health"] == "down" and nodes[i]["kind"] != "stage"]
    lowest = [i for i in down if not (set(downstream([i], below)) - {i}) & set(down)]
    # The dependency the alert is about (a health check's alert), then the nearest to the alerted node.
    named = labels.get("dependency")
    order = {node_id: n for n, node_id in enumerate(reached)}
    lowest.sort(key=lambda i: (named not in (nodes[i].get("health_checks") or ()), order[i]))
    causes = []
    for node_id in lowest:
        node = nodes[node_id]
        kind = node["type"] or node["kind"]
        checks = node.get("health_checks") or []
        failing = node.get("failing_checks") or []
        why = f"fails its health check {', '.join(failing)}" if failing else "fails most of the calls made to it"
        where = f"{stage}/{labels['component']}" if stage and labels.get("component") else (stage or service)
        causes.append(
            Cause(
                "dependency_down",
                f"dependency {node['name']} ({kind}) is down: it {why}; {where} in {service} depends on it",
                _GRAPH_DOWN,
                CAUSE_ACTIONS["dependency_down"],
                kind if kind in ("vector_db", "generation", "embedding") else None,
                checks[0] if len(checks) == 1 else node["name"],
            )
        )
    if not causes:
        return [], None, set()
    primary = nodes[lowest[0]]
    record = {
        "id": primary["id"],
        "name": primary["name"],
        "type": primary["type"],
        "health": primary["health"],
        "health_checks": list(primary.get("health_checks") or []),
        "upstream": starts[0] if len(starts) == 1 else own,
    }
    checks_of_down = {c for i in down for c in nodes[i].get("health_checks") or ()}
    return causes, record, checks_of_down


def own_shares(shares: Sequence[StageShare]) -> dict[tuple[str, str], tuple[float, float]]:
    """(time share, failed calls) of each stage outside its child stages: a retrieval span encloses the
    embedding and vector_db calls it makes, so their time and errors are theirs, not the retrieval's."""
    children = [s for s in shares if s.stage in _CHILD_STAGES]
    out = {}
    for s in shares:
        share, errors = s.time_share, s.error_rate * s.count
        if s.stage == "retrieval":
            share = max(0.0, share - sum(c.time_share for c in children))
            errors = max(0.0, errors - sum(c.error_rate * c.count for c in children))
        out[(s.stage, s.component)] = (share, errors)
    return out


def latency_causes(shares: Sequence[StageShare], labels: Mapping[str, str]) -> list[Cause]:
    """Rank stages by how much of the slowdown they explain (p95 over their own usual p95, outside their
    child stages); without baselines yet, by their share of pipeline time."""
    inner = [s for s in shares if s.stage != "pipeline"] or list(shares)
    excess = {(s.stage, s.component): max(0.0, s.p95 - s.usual_p95) for s in inner if s.usual_p95 is not None}
    children = sum(v for (stage, _), v in excess.items() if stage in _CHILD_STAGES)
    excess = {k: max(0.0, v - children) if k[0] == "retrieval" else v for k, v in excess.items()}
    total_excess = sum(excess.values())
    own = own_shares(shares)
    out = []
    for s in inner:
        key = (s.stage, s.component)
        usual = f", usually {format_value(s.usual_p95, 's')}" if s.usual_p95 is not None else ""
        if total_excess > 0.01 and key in excess:
            part = excess[key] / total_excess
            confidence = 0.3 + 0.65 * part if part >= 0.05 else 0.1 * own[key][0]
            why = f", {part * 100:.0f}% of the slowdown" if part >= 0.05 else ""
        else:
            anomaly = 1.0 if s.status == "slow" else 0.5
            confidence = own[key][0] * (0.4 + 0.6 * anomaly)
            why = ""
        if labels.get("stage") == s.stage and s.stage != "pipeline":
            confidence = max(confidence, 0.6)
        if confidence < 0.05:
            continue
        summary = (
            f"{s.stage}/{s.component} accounts for {s.time_share * 100:.0f}% of pipeline time "
            f"(p95 {format_value(s.p95, 's')}{usual}{why})"
        )
        out.append(Cause(f"{s.stage}_latency", summary, confidence, CAUSE_ACTIONS["latency"], s.stage, s.component))
    return out


def error_causes(shares: Sequence[StageShare], labels: Mapping[str, str], weight: float = 1.0) -> list[Cause]:
    own = own_shares(shares)
    inner = [s for s in shares if s.stage != "pipeline" and own[(s.stage, s.component)][1] > 0]
    errors_total = sum(own[(s.stage, s.component)][1] for s in inner)
    out = []
    for s in inner:
        share = own[(s.stage, s.component)][1] / errors_total if errors_total else 0.0
        confidence = weight * (0.3 + 0.6 * share)
        if labels.get("stage") == s.stage:
            confidence = max(confidence, weight * 0.7)
        out.append(
            Cause(
                f"{s.stage}_errors",
                f"{s.stage}/{s.component} fails {format_value(s.error_rate, 'ratio')} of calls "
                f"({share * 100:.0f}% of the errors)",
                confidence,
                CAUSE_ACTIONS["errors"],
                s.stage,
                s.component,
            )
        )
    return out


def deploy_cause(deploy: Deploy, causes: Sequence[Cause], now: float) -> Cause:
    """``code_regression`` naming both versions, on the stage the other evidence points at; it outranks every
    stage cause (rollback leads the actions) but not a dependency whose health check fails for that stage."""
    where = max(
        (c for c in causes if c.stage and c.cause != "dependency_down"), default=None, key=lambda c: c.confidence
    )
    at = f" ({where.stage}/{where.component})" if where is not None else ""
    assert deploy.changed_at is not None
    return Cause(
        "code_regression",
        f"the regression{at} started {now - deploy.changed_at:.0f} s after the deploy of version "
        f"{deploy.version} (was {deploy.previous_version})",
        0.97,
        CAUSE_ACTIONS["code_regression"],
        where.stage if where is not None else None,
        where.component if where is not None else None,
    )


def summary_of(primary: Cause, shares: Sequence[StageShare]) -> str:
    parts = [primary.summary]
    normal = [
        f"{s.stage}/{s.component}"
        for s in shares
        if s.status == "normal" and (s.stage, s.component) != (primary.stage, primary.component)
    ]
    if normal:
        parts.append(f"{', '.join(normal)} normal")
    return "; ".join(parts)
