"""Diagnosis of an alert: ranked possible causes with confidence, stage attribution, recommended actions.

Evidence comes from the windows (per-stage statistics from traces, dependency health and host gauges) and from
the trailing baselines this module keeps per service and stage, so "slow" means slower than usual for that stage.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ragotel.analyzer.config.specs import RuleSpec
from ragotel.analyzer.judge.causes import (
    dependency_causes,
    deploy_cause,
    error_causes,
    graph_causes,
    latency_causes,
    rank,
    summary_of,
)
from ragotel.analyzer.judge.records import Cause, Diagnosis, StageShare
from ragotel.analyzer.judge.rules import SignalSource
from ragotel.analyzer.vocabulary import CAUSE_ACTIONS, STAGES, format_value
from ragotel.analyzer.windows.records import Baseline, Deploy, StageStats

__all__ = ["Diagnoser", "StatsSource"]

_SLOWER: Final = 1.5
_ADAPTIVE: Final = 0.96  # above attribution's best (0.95), below a recent deploy (0.97) and a down dependency (0.98)
_GRAPH_KINDS: Final = frozenset({"errors", "latency", "dependency_health"})
_GRAPH_LIMIT: Final = 1_000_000  # the diagnosis walks the whole graph: nothing folded into aggregates
_DEPLOY_WINDOW: Final = 900.0
"""A latency or error regression within this long after a ``service.version`` change is blamed on the change."""


class StatsSource(SignalSource, Protocol):
    """Windows as diagnosis reads them: signals plus per-stage statistics of a service."""

    def stage_records(self, service: str, *, now: float | None = None) -> list[StageStats]: ...

    def services(self) -> list[str]: ...

    def baseline(self, service: str, stage: str, component: str) -> Baseline | None: ...

    def models(self, service: str, stage: str, component: str, *, now: float | None = None) -> list[str]: ...

    def deploy(self, service: str) -> Deploy | None: ...

    def dependencies(
        self, *, service: str | None = None, limit: int = ..., now: float | None = None
    ) -> dict[str, Any]: ...


@dataclass(slots=True)
class _Baseline:
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=240))

    def usual(self, exclude_after: float) -> float | None:
        values = [v for t, v in self.samples if t <= exclude_after]
        return float(statistics.median(values)) if len(values) >= 3 else None


def _kind_of(signal: str | None, rule_type: str) -> str:
    if rule_type == "burn_rate" or signal == "error_rate":
        return "errors"
    if signal and signal.startswith("latency_"):
        return "latency"
    if signal == "memory_exhaustion_eta":
        return "memory_growth"
    return signal or "unknown"


class Diagnoser:
    """Builds a Diagnosis for a rule's series. Called on the evaluation thread; reads only in-memory windows.

    ``observe()`` samples per-stage p95 and per-service request rate into bounded trailing baselines (240 samples
    over ``horizon``, by default 60 windows: an hour for the default 60s window), excluding the current window
    when judging.
    """

    def __init__(
        self, source: StatsSource, *, window: float, horizon: float | None = None, max_series: int = 2000
    ) -> None:
        self._source = source
        self._window = window
        horizon = 60.0 * window if horizon is None else horizon
        self._step = max(window / 6.0, horizon / 240.0, 0.05)
        self._last_observed = float("-inf")
        self._p95: dict[tuple[str, str, str], _Baseline] = {}
        self._rate: dict[str, _Baseline] = {}
        self._max_series = max_series

    # -- baselines -----------------------------------------------------------------------------------------------
    def observe(self, now: float) -> None:
        """Sample the baselines if ``step`` has passed (cheap otherwise)."""
        if now - self._last_observed < self._step:
            return
        self._last_observed = now
        for service in self._source.services():
            rows = self._source.stage_records(service, now=now)
            total_rate = 0.0
            for row in rows:
                key = (service, row.stage, row.component)
                if key not in self._p95 and len(self._p95) >= self._max_series:
                    continue
                if row.count:
                    self._p95.setdefault(key, _Baseline()).samples.append((now, float(row.p95 or 0.0)))
                if row.stage == "pipeline":
                    total_rate += float(row.rate or 0.0)
            if total_rate and (service in self._rate or len(self._rate) < self._max_series):
                self._rate.setdefault(service, _Baseline()).samples.append((now, total_rate))

    def _usual_p95(self, service: str, stage: str, component: str, now: float) -> float | None:
        learnt = self._source.baseline(service, stage, component)
        if learnt is not None:
            return learnt.p95
        baseline = self._p95.get((service, stage, component))
        return baseline.usual(now - self._window) if baseline else None

    # -- evidence ------------------------------------------------------------------------------------------------
    def _attribution(self, service: str, now: float) -> tuple[list[StageShare], dict[str, Any]]:
        rows = [r for r in self._source.stage_records(service, now=now) if r.count]
        inner = [r for r in rows if r.stage != "pipeline"] or rows
        total_time = sum(float(r.avg or 0.0) * float(r.count or 0.0) for r in inner)
        shares = []
        for r in inner:
            stage, component = r.stage, r.component
            p95 = float(r.p95 or 0.0)
            share = r.time_share
            if share is None:
                share = float(r.avg or 0.0) * float(r.count or 0.0) / total_time if total_time else 0.0
            usual = self._usual_p95(service, stage, component, now)
            error_rate = float(r.error_rate or 0.0)
            if error_rate >= 0.05:
                status = "failing"
            elif (usual is not None and p95 > _SLOWER * usual and p95 - usual > 0.05) or (
                usual is None and float(share) >= 0.5 and len(inner) > 1
            ):
                status = "slow"
            else:
                status = "normal"
            shares.append(
                StageShare(stage, component, float(share), p95, error_rate, float(r.count or 0), usual, status)
            )
        shares.sort(key=lambda s: -s.time_share)
        return shares, {"stages": [r.to_dict() for r in rows]}

    def _values(self, signal: str, service: str | None, now: float) -> list[tuple[Mapping[str, str], float]]:
        try:
            return [
                (v.labels, v.value)
                for v in self._source.signal(signal, {"service": service} if service else None, now=now)
            ]
        except ValueError:
            return []

    # -- the diagnosis -------------------------------------------------------------------------------------------
    def diagnose(
        self, spec: RuleSpec, labels: Mapping[str, str], value: float, threshold: float, now: float
    ) -> tuple[Diagnosis, dict[str, Any]]:
        """Rank causes for one firing series; returns the diagnosis and the symptoms it was based on."""
        service = labels.get("service")
        kind = _kind_of(spec.signal, spec.type)
        shares, symptoms = self._attribution(service, now) if service else ([], {"stages": []})
        deps = self._values("dependency_health", service, now)
        host = {s: self._values(s, service, now) for s in ("cpu_utilization", "memory_utilization", "disk_utilization")}
        growth = self._values("memory_growth", service, now)
        symptoms.update(
            {
                "rule": spec.name,
                "signal": spec.signal,
                "value": value,
                "threshold": threshold,
                "labels": dict(labels),
                "dependencies": [{**lab, "healthy": v} for lab, v in deps],
                "host": {s: max((v for _, v in vals), default=None) for s, vals in host.items()},
                "memory_growth": max((v for _, v in growth), default=None),
            }
        )
        causes: list[Cause] = []
        if spec.type == "adaptive":
            causes += self._adaptive_causes(spec, labels, value, now)
        found, dependency, named = self._graph_causes(spec, kind, labels, now)
        causes += found
        causes += [
            c
            for c in dependency_causes(deps, shares, "adaptive" if spec.type == "adaptive" else kind)
            if c.component not in named
        ]
        if kind == "latency":
            causes += latency_causes(shares, labels)
            causes += self._load_causes(service, now)
        elif kind == "errors":
            causes += error_causes(shares, labels)
        elif kind == "memory_growth":
            fitted = max((v for _, v in growth), default=None)
            why = f" by {format_value(fitted, 'B/s')}" if fitted else ""
            if spec.signal == "memory_exhaustion_eta":
                why += f", reaching its limit in {format_value(value, 'eta')}"
            causes.append(
                Cause("memory_leak", f"process memory grows steadily{why}", 0.8, CAUSE_ACTIONS["memory_leak"])
            )
            causes += self._load_causes(service, now, weight=0.5)
        elif kind in ("cpu_utilization", "memory_utilization", "disk_utilization"):
            name = kind.replace("_utilization", "_saturation")
            causes.append(
                Cause(name, f"{kind.replace('_', ' ')} at {format_value(value, 'ratio')}", 0.7, CAUSE_ACTIONS[name])
            )
            if kind == "memory_utilization" and any(v > 0 for _, v in growth):
                causes.append(Cause("memory_leak", "process memory still growing", 0.5, CAUSE_ACTIONS["memory_leak"]))
            causes += self._load_causes(service, now, weight=0.6)
        elif kind == "empty_retrieval_rate":
            causes += error_causes(shares, {"stage": "vector_db"}, weight=0.8)
            causes.append(
                Cause(
                    "empty_index",
                    "the collection is empty, or queries target the wrong collection or filter",
                    0.5,
                    CAUSE_ACTIONS["empty_index"],
                    "retrieval",
                    labels.get("component"),
                )
            )
            causes.append(
                Cause(
                    "retrieval_regression",
                    "embedding model or chunking changed since the index was built",
                    0.3,
                    CAUSE_ACTIONS["retrieval_regression"],
                    "embedding",
                )
            )
        if kind == "latency" and spec.type == "regression":
            causes.append(
                Cause(
                    "code_regression",
                    "latency rose with no slower stage or load to explain it",
                    0.3,
                    CAUSE_ACTIONS["code_regression"],
                )
            )
        for name, vals in host.items():
            peak = max((v for _, v in vals), default=0.0)
            limit = {"cpu_utilization": 0.8, "memory_utilization": 0.85, "disk_utilization": 0.9}[name]
            cause_id = name.replace("_utilization", "_saturation")
            if peak >= limit and kind not in (name,):
                causes.append(
                    Cause(
                        cause_id,
                        f"{name.replace('_', ' ')} at {format_value(peak, 'ratio')}",
                        0.4,
                        CAUSE_ACTIONS[cause_id],
                    )
                )
        if not causes:
            causes.append(
                Cause("unknown", "no stage, dependency or resource stands out", 0.1, CAUSE_ACTIONS["unknown"])
            )
        deploy = self._recent_deploy(service, kind, now)
        if deploy is not None:
            causes.append(deploy_cause(deploy, causes, now))
        ranked = rank(causes)
        actions = tuple(dict.fromkeys(a for c in ranked for a in c.actions))
        summary = summary_of(ranked[0], shares)
        diagnosis = Diagnosis(
            ranked[0].cause,
            ranked[0].confidence,
            tuple(ranked),
            actions,
            summary,
            tuple(shares),
            deploy.to_dict() if deploy is not None else None,
            dependency if ranked[0].cause == "dependency_down" else None,
        )
        if deploy is not None:
            symptoms["deploy"] = deploy.to_dict()
        return diagnosis, symptoms

    def _graph_causes(
        self, spec: RuleSpec, kind: str, labels: Mapping[str, str], now: float
    ) -> tuple[list[Cause], dict[str, Any] | None, set[str]]:
        """Down dependencies below the alerted service or stage in the dependency graph, for the alerts a dependency
        explains: errors, latency and dependency health (an adaptive rule's latency and errors too)."""
        if kind not in _GRAPH_KINDS and not (spec.type == "adaptive" and spec.signal in ("latency", "error_rate")):
            return [], None, set()
        graph = self._source.dependencies(limit=_GRAPH_LIMIT, now=now)
        return graph_causes(graph, labels)

    def _adaptive_causes(self, spec: RuleSpec, labels: Mapping[str, str], value: float, now: float) -> list[Cause]:
        """The stage an adaptive rule found off its baseline is the cause, with the excess quoted (0.96: it outranks
        the same cause found by attribution; a recent deploy, 0.97, and a down dependency of that stage, 0.98,
        outrank it)."""
        service, component = labels.get("service", ""), labels.get("component", "")
        stage = labels.get("stage", "other")
        known = stage if stage in STAGES else "other"
        usual = self._source.baseline(service, stage, component)
        where = f"{stage}/{component}" if component else stage
        if spec.signal == "latency":
            was = f", usually p95 {format_value(usual.p95, 's')}" if usual is not None else ""
            summary = f"{where} p50 {format_value(value, 's')}{was}"
            return [Cause(f"{known}_latency", summary, _ADAPTIVE, CAUSE_ACTIONS["latency"], stage, component or None)]
        if spec.signal == "error_rate":
            was = f", usually {format_value(usual.error_rate, 'ratio')}" if usual is not None else ""
            summary = f"{where} fails {format_value(value, 'ratio')} of its newest calls{was}"
            return [Cause(f"{known}_errors", summary, _ADAPTIVE, CAUSE_ACTIONS["errors"], stage, component or None)]
        if spec.signal == "empty_retrieval_rate":
            was = f" (usually {format_value(usual.empty_rate, 'ratio')})" if usual is not None else ""
            summary = (
                f"{format_value(value, 'ratio')} of the newest retrievals by {where} return no document{was}: the "
                "collection is empty, or queries target the wrong collection or filter"
            )
            return [
                Cause("empty_index", summary, _ADAPTIVE, CAUSE_ACTIONS["empty_index"], "retrieval", component or None)
            ]
        models = self._source.models(service, stage, component, now=now)
        model = f" model {models[0]}" if models else ""
        was = (
            f", usually {usual.tokens_per_call:.0f}" if usual is not None and usual.tokens_per_call is not None else ""
        )
        summary = f"{where}{model} uses {value:.0f} tokens per call{was}"
        return [Cause("token_spike", summary, _ADAPTIVE, CAUSE_ACTIONS["token_spike"], stage, component or None)]

    def _recent_deploy(self, service: str | None, kind: str, now: float) -> Deploy | None:
        """The version change of ``service`` when a latency or error regression starts within 15 min of it."""
        if service is None or kind not in ("latency", "errors"):
            return None
        deploy = self._source.deploy(service)
        if deploy is None or deploy.changed_at is None or not 0 <= now - deploy.changed_at <= _DEPLOY_WINDOW:
            return None
        return deploy

    def _load_causes(self, service: str | None, now: float, weight: float = 1.0) -> list[Cause]:
        if not service or service not in self._rate:
            return []
        usual = self._rate[service].usual(now - self._window)
        samples = self._rate[service].samples
        current_rate = samples[-1][1] if samples else None
        if usual is None or current_rate is None or usual <= 0:
            return []
        ratio = current_rate / usual
        if ratio < 2.0:
            return []
        return [
            Cause(
                "load_spike",
                f"request rate {current_rate:.2f}/s is {ratio:.1f}x the usual {usual:.2f}/s",
                weight * min(0.9, 0.3 + (ratio - 2.0) / 4.0),
                CAUSE_ACTIONS["load_spike"],
            )
        ]
