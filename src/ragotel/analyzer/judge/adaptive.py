"""Adaptive rules: each stage's newest spans against its own baseline, on every stage, leaf first.

For every (service, stage, component) matching the rule, with a ready baseline (cold start: not judged) and at
least ``min_samples`` recent spans (a slow series is not judged either), one of:

- ``latency``: recent p50 >= max(factor x baseline p95, baseline p95 + min_delta). The median of the newest
  spans makes single outliers harmless; comparing it with the usual p95 makes jitter harmless.
- ``error_rate``: at least 3 errors and a binomial tail P(X >= errors | n, p0) < 1e-4, p0 = max(baseline error
  rate, 0.005): "this many failures in n calls would be a one-in-ten-thousand accident".
- ``empty_retrieval_rate`` (retrieval only): recent empty rate >= max(0.5, baseline + min_delta).
- ``tokens_per_call``: recent mean >= max(factor x baseline, baseline + min_delta).

A ``threshold`` set in the rule replaces the adaptive threshold (absolute, no baseline needed).

Leaf first: one slow vector DB makes retrieval and pipeline slow too. A parent stage (pipeline holds every other
stage, retrieval holds embedding, vector_db and rerank) is not active while a child stage of the same service is
clearly off (p50 over its usual p95, or an error tail under 1 %), or was within the last 10 s (the requests in
flight when the child recovers still end slow in their parents), and carries at least half of the parent's excess
(seconds per call for latency, excess errors per second for errors): one fault, one alert, on the stage that
carries it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ragotel.analyzer.config.specs import RuleSpec
from ragotel.analyzer.judge.records import LabelKey, Sample
from ragotel.analyzer.windows import Windows
from ragotel.analyzer.windows.records import Baseline, RecentStats

__all__ = ["AdaptiveRule", "binomial_tail", "key_of", "select_labels"]

ERROR_TAIL: Final = 1e-4
_ELEVATED_TAIL: Final = 1e-2
_MIN_ERRORS: Final = 3
_MIN_ERROR_RATE: Final = 0.005
_MIN_EMPTY_RATE: Final = 0.5
_TAIL: Final = 10.0  # seconds a child stage found off still explains its parents' excess
_CHILDREN: Final[dict[str, frozenset[str]]] = {
    "pipeline": frozenset({"retrieval", "rerank", "embedding", "vector_db", "generation", "other"}),
    "retrieval": frozenset({"embedding", "vector_db", "rerank"}),
}


def key_of(labels: Mapping[str, str], extra: Mapping[str, str]) -> LabelKey:
    """The sorted label key of a series (``extra``: the rule's static labels)."""
    return tuple(sorted({**labels, **extra}.items()))


def select_labels(selector: Mapping[str, str | list[str]], labels: Mapping[str, str]) -> bool:
    """Whether labels match a rule selector (a list value means any of)."""
    return all(
        labels.get(k) == want if isinstance(want, str) else labels.get(k) in want for k, want in selector.items()
    )


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact for the small n a detection window holds)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


@dataclass(frozen=True, slots=True)
class _Judged:
    labels: dict[str, str]
    value: float
    threshold: float
    active: bool
    elevated: bool  # clearly off its baseline, even if under the threshold (for the leaf-first check)
    excess: float  # comparable between a parent and its children: s per call, or excess errors per second
    details: dict[str, float]


class AdaptiveRule:
    """A rule of ``type: adaptive`` (see the module docstring)."""

    def __init__(self, spec: RuleSpec, *, min_samples: int = 10) -> None:
        assert spec.signal is not None
        self.spec = spec
        self._signal: str = spec.signal
        self._min_samples = spec.min_samples or min_samples
        # Children clearly off recently (series key -> (time, excess)): the requests in flight when a child's fault
        # ends still finish slow in their parents for a moment; that tail is the child's, not a new parent fault.
        self._children_off: dict[tuple[str, str, str], tuple[float, float]] = {}
        self._remember = max(spec.keep_firing_for, _TAIL)

    def evaluate(self, source: object, now: float) -> list[Sample]:
        if not isinstance(source, Windows):
            raise TypeError("adaptive rules read the analyzer's Windows (recent panes and baselines)")
        spec = self.spec
        judged: list[_Judged] = []
        for service, stage, component in source.stage_keys():
            labels = {k: v for k, v in (("service", service), ("stage", stage), ("component", component)) if v}
            if not select_labels(spec.match, labels):
                continue
            baseline = source.baseline(service, stage, component)
            if baseline is None and spec.threshold is None:
                continue  # cold start: the absolute rules only
            recent = source.recent(service, stage, component, min_samples=self._min_samples, now=now)
            if recent is None:
                continue
            one = self._judge(labels, recent, baseline)
            if one is not None:
                judged.append(one)
        off = self._children_off
        for j in judged:
            if (j.active or j.elevated) and j.excess > 0:
                key = (j.labels.get("service", ""), j.labels.get("stage", ""), j.labels.get("component", ""))
                # The largest excess of the episode: a recovering child's shrinks before its parents' does.
                seen = off.get(key)
                excess = j.excess if seen is None or now - seen[0] > self._remember else max(seen[1], j.excess)
                off[key] = (now, excess)
        for key in [k for k, (seen, _) in off.items() if now - seen > self._remember]:
            del off[key]
        return [
            Sample(
                key_of(j.labels, spec.labels),
                j.value,
                j.threshold,
                spec.severity,
                j.active and not self._explained_by_child(j),
                j.details,
            )
            for j in judged
        ]

    def _explained_by_child(self, parent: _Judged) -> bool:
        """Whether a child stage of the same service was off within the last seconds and carried at least half of
        the parent's excess."""
        children = _CHILDREN.get(parent.labels.get("stage", ""))
        if not children or parent.excess <= 0:
            return False
        service = parent.labels.get("service")
        return any(
            key[0] == service and key[1] in children and excess >= parent.excess / 2
            for key, (_, excess) in self._children_off.items()
        )

    def _judge(self, labels: dict[str, str], recent: RecentStats, baseline: Baseline | None) -> _Judged | None:
        spec, signal = self.spec, self._signal
        enough = recent.count >= self._min_samples
        details = {"n": float(recent.count), "seconds": recent.seconds}
        if baseline is not None:
            details["baseline_samples"] = float(baseline.samples)
        if signal == "latency":
            value = recent.p50
            usual_p95 = baseline.p95 if baseline is not None else 0.0
            threshold = (
                spec.threshold
                if spec.threshold is not None
                else max(spec.factor * usual_p95, usual_p95 + spec.min_delta)
            )
            if baseline is not None:
                details |= {"baseline_p50": baseline.p50, "baseline_p95": baseline.p95}
            excess = value - (baseline.p50 if baseline is not None else 0.0)
            elevated = baseline is not None and value > baseline.p95 and excess > spec.min_delta / 2
            return _Judged(labels, value, threshold, enough and value >= threshold, elevated, excess, details)
        if signal == "error_rate":
            n, errors = recent.count, recent.errors
            value = errors / n
            p0 = max(baseline.error_rate if baseline is not None else 0.0, _MIN_ERROR_RATE)
            tail = binomial_tail(errors, n, p0)
            details |= {"errors": float(errors), "baseline_error_rate": p0, "tail": tail}
            if spec.threshold is not None:
                threshold, active = spec.threshold, errors >= _MIN_ERRORS and value >= spec.threshold
            else:
                least = next((k for k in range(_MIN_ERRORS, n + 1) if binomial_tail(k, n, p0) < ERROR_TAIL), n + 1)
                threshold, active = least / n, errors >= _MIN_ERRORS and tail < ERROR_TAIL
            excess = (errors - n * p0) / max(recent.seconds, 1e-3)
            return _Judged(labels, value, threshold, enough and active, tail < _ELEVATED_TAIL, excess, details)
        if signal == "empty_retrieval_rate":
            if not recent.retrievals:
                return None
            value = recent.empty / recent.retrievals
            usual = baseline.empty_rate if baseline is not None else 0.0
            threshold = spec.threshold if spec.threshold is not None else max(_MIN_EMPTY_RATE, usual + spec.min_delta)
            details["baseline_empty_rate"] = usual
            active = recent.retrievals >= self._min_samples and value >= threshold
            return _Judged(labels, value, threshold, active, False, value - usual, details)
        # tokens_per_call
        if recent.tokens_per_call is None:
            return None
        value = recent.tokens_per_call
        usual_tokens = baseline.tokens_per_call if baseline is not None else None
        if spec.threshold is not None:
            threshold = spec.threshold
        elif usual_tokens is None:
            return None
        else:
            threshold = max(spec.factor * usual_tokens, usual_tokens + spec.min_delta)
            details["baseline_tokens_per_call"] = usual_tokens
        return _Judged(labels, value, threshold, enough and value >= threshold, False, 0.0, details)
