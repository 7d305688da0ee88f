"""Rule evaluation: a rule turns the windows into samples (labels, value, threshold, severity, condition met)."""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ragotel.analyzer.config.specs import GuardSpec, RuleSpec
from ragotel.analyzer.judge.adaptive import AdaptiveRule, key_of, select_labels
from ragotel.analyzer.judge.records import LabelKey, Sample
from ragotel.analyzer.vocabulary import SEVERITY_ORDER, SPAN_SIGNALS

__all__ = [
    "AdaptiveRule",
    "BurnRateRule",
    "LabelKey",
    "RegressionRule",
    "Rule",
    "Sample",
    "SignalSource",
    "ThresholdRule",
    "build_rule",
    "compare",
]


class _SignalValue(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def value(self) -> float: ...

    @property
    def count(self) -> int: ...

    @property
    def errors(self) -> int: ...


class SignalSource(Protocol):
    """What rules read: ``Windows.signal`` of the analyzer (part 1), or anything with the same method."""

    def signal(
        self,
        signal: str,
        match: Mapping[str, str] | None = None,
        *,
        now: float | None = None,
        window: float | None = None,
    ) -> Sequence[_SignalValue]: ...


class Rule(Protocol):
    """The extension point: one method, like prometheus_client's ``Collector.collect()``."""

    spec: RuleSpec

    def evaluate(self, source: SignalSource, now: float) -> list[Sample]:
        """Return every series the rule sees; may raise (the engine records the failure and keeps the alerts)."""
        ...


def compare(condition: str, value: float, threshold: float) -> bool:
    """Apply a rule condition; equality allows for float rounding in transport."""
    if condition == "greater_than":
        return value > threshold
    if condition == "less_than":
        return value < threshold
    equal = math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12)
    return equal if condition == "equals" else not equal


_key = key_of


def _select(
    source: SignalSource,
    signal: str,
    selector: Mapping[str, str | list[str]],
    now: float,
    window: float | None = None,
) -> list[_SignalValue]:
    """Exact selector values go to the source; lists (any of) are filtered here. ``window``: span signals over
    the last that many seconds instead of the whole window."""
    exact = {k: v for k, v in selector.items() if isinstance(v, str)}
    values = source.signal(signal, exact or None, now=now, window=window)
    return [v for v in values if math.isfinite(v.value) and select_labels(selector, v.labels)]


def _guards_hold(source: SignalSource, guards: Sequence[GuardSpec], labels: Mapping[str, str], now: float) -> bool:
    """Every guard needs a value of its signal for the same service (and shared labels) meeting its condition."""
    for guard in guards:
        service = labels.get("service")
        candidates = source.signal(guard.signal, {"service": service} if service else None, now=now)
        ok = any(
            math.isfinite(c.value)
            and all(labels.get(k, v) == v for k, v in c.labels.items() if k in ("stage", "component"))
            and compare(guard.condition, c.value, guard.threshold)
            for c in candidates
        )
        if not ok:
            return False
    return True


class ThresholdRule:
    """A signal compared with a static threshold, optionally with a warning level within ``warning_ratio``."""

    def __init__(self, spec: RuleSpec) -> None:
        assert spec.signal is not None
        assert spec.threshold is not None
        self.spec = spec
        self._signal: str = spec.signal
        self._threshold: float = spec.threshold

    def _level(self, value: float) -> str | None:
        spec = self.spec
        if compare(spec.condition, value, self._threshold):
            return spec.severity
        if spec.warning_ratio is not None and SEVERITY_ORDER[spec.severity] > SEVERITY_ORDER["warning"]:
            near = (
                self._threshold / spec.warning_ratio
                if spec.condition == "greater_than"
                else self._threshold * spec.warning_ratio
            )
            if compare(spec.condition, value, near):
                return "warning"
        return None

    def evaluate(self, source: SignalSource, now: float) -> list[Sample]:
        """Active when the window's value crosses the threshold with enough spans, every guard holds, and (span
        signals, ``recent`` > 0) the last ``recent`` seconds cross it too: the value is then the recent one, so
        the message quotes what is happening now and a cleared condition resolves within ``recent``."""
        spec = self.spec
        recent: dict[LabelKey, float] | None = None
        if spec.recent > 0 and self._signal in SPAN_SIGNALS:
            recent = {
                _key(sv.labels, {}): sv.value for sv in _select(source, self._signal, spec.match, now, spec.recent)
            }
        out = []
        for sv in _select(source, self._signal, spec.match, now):
            level = self._level(sv.value)
            enough = sv.count >= spec.min_requests and sv.errors >= spec.min_errors
            active = level is not None and enough and _guards_hold(source, spec.guard, sv.labels, now)
            value, details = sv.value, None
            if recent is not None:
                now_value = recent.get(_key(sv.labels, {}))
                details = {"window": sv.value}
                if now_value is None:
                    active = False
                else:
                    value = details["recent"] = now_value
                    active = active and self._level(now_value) is not None
            out.append(
                Sample(_key(sv.labels, spec.labels), value, self._threshold, level or spec.severity, active, details)
            )
        return out


@dataclass(slots=True)
class _Bucket:
    start: float
    requests: float
    errors: float


class BurnRateRule:
    """Multi-window, multi-burn-rate availability alert (SRE workbook ch. 5) over the error ratio of ``match``.

    The windows only hold the last minute, so the rule integrates request and error rates into its own bounded
    history of buckets (at most ``longest window / bucket`` buckets per series); the engine persists it
    (``history()`` / ``restore()``) so a restart does not start it empty. A level is judged only once the history
    spans its short window, and stays active only while the last ``resolve_window`` (read from the windows) also
    burns faster than its factor: an alert resolves that long after the errors stop, not after the short window.
    """

    def __init__(self, spec: RuleSpec, *, max_series: int = 1000) -> None:
        assert spec.objective is not None
        self.spec = spec
        self._budget = 1.0 - spec.objective
        self._levels = sorted(spec.burn_windows, key=lambda w: -SEVERITY_ORDER[w.severity])
        shortest = min(w.short for w in spec.burn_windows)
        self._bucket = min(60.0, max(0.05, shortest / 6.0))
        self._horizon = max(w.long for w in spec.burn_windows)
        self._history: dict[LabelKey, deque[_Bucket]] = {}
        self._last_seen: dict[LabelKey, float] = {}
        self._last_now: float | None = None
        self._max_series = max_series

    # -- persistence (the engine stores these in the state file) --------------------------------------------------
    def history(self) -> dict[LabelKey, list[tuple[float, float, float]]]:
        """Every series' buckets as (start, requests, errors), oldest first."""
        return {key: [(b.start, b.requests, b.errors) for b in buckets] for key, buckets in self._history.items()}

    def restore(self, history: Mapping[LabelKey, Sequence[tuple[float, float, float]]], now: float) -> None:
        """Load buckets saved by ``history()`` (those within the longest window of ``now``)."""
        for key, buckets in history.items():
            if key not in self._history and len(self._history) >= self._max_series:
                break
            kept = deque(_Bucket(*b) for b in sorted(buckets) if self._horizon + self._bucket > now - b[0] >= 0)
            if kept:
                self._history[key] = kept
                self._last_seen[key] = now

    def _ratio(self, buckets: Iterable[_Bucket], since: float) -> tuple[float, float]:
        req = err = 0.0
        for b in buckets:
            if b.start >= since:
                req += b.requests
                err += b.errors
        return req, err

    def _record(self, key: LabelKey, now: float, dt: float, rate: float, error_rate: float) -> deque[_Bucket]:
        history = self._history.get(key)
        if history is None:
            if len(self._history) >= self._max_series:
                oldest = min(self._last_seen, key=self._last_seen.__getitem__)
                del self._history[oldest], self._last_seen[oldest]
            history = self._history[key] = deque()
        self._last_seen[key] = now
        start = now - (now % self._bucket)
        if not history or history[-1].start != start:
            history.append(_Bucket(start, 0.0, 0.0))
        history[-1].requests += rate * dt
        history[-1].errors += rate * min(1.0, max(0.0, error_rate)) * dt
        while history and history[0].start < now - self._horizon - self._bucket:
            history.popleft()
        return history

    def evaluate(self, source: SignalSource, now: float) -> list[Sample]:
        spec = self.spec
        dt = 0.0 if self._last_now is None else min(max(0.0, now - self._last_now), 10.0 * self._bucket + 10.0)
        self._last_now = now
        rates = {_key(sv.labels, {}): sv.value for sv in _select(source, "request_rate", spec.match, now)}
        errors = {_key(sv.labels, {}): sv.value for sv in _select(source, "error_rate", spec.match, now)}
        recent = {
            _key(sv.labels, {}): sv.value
            for sv in _select(source, "error_rate", spec.match, now, spec.resolve_window or None)
        }
        out = []
        for raw_key, rate in rates.items():
            history = self._record(raw_key, now, dt, rate, errors.get(raw_key, 0.0))
            req_total, _ = self._ratio(history, now - self._horizon)
            if req_total <= 0:
                continue
            spanned = now - history[0].start
            burn_now = recent.get(raw_key, 0.0) / self._budget
            fired: tuple[float, float, str] | None = None
            first: float | None = None
            details: dict[str, float] = {f"burn_{int(spec.resolve_window)}s": burn_now}
            for level in self._levels:
                burns = []
                for window in (level.long, level.short):
                    req, err = self._ratio(history, now - window)
                    burns.append((err / req) / self._budget if req > 0 else 0.0)
                details[f"burn_{int(level.long)}s"] = burns[0]
                details[f"burn_{int(level.short)}s"] = burns[1]
                if first is None:
                    first = level.factor
                if (
                    fired is None
                    and spanned >= level.short
                    and burns[0] > level.factor
                    and burns[1] > level.factor
                    and (spec.resolve_window <= 0 or burn_now > level.factor)
                ):
                    fired = (burns[0], level.factor, level.severity)
            labels = _key(dict(raw_key), spec.labels)
            active = fired is not None and rate >= spec.min_request_rate
            if fired is not None:
                out.append(Sample(labels, fired[0], fired[1], fired[2], active, details))
            else:
                assert first is not None
                out.append(Sample(labels, burn_now, first, spec.severity, False, details))
        return out


class RegressionRule:
    """The signal against the series' own trailing baseline (median of samples older than the stats window).

    Fires when ``value > factor * baseline`` and ``value - baseline > min_delta``, once ``min_history`` is known.
    A lasting shift is absorbed into the baseline after about half of ``baseline``: the alert then resolves.
    """

    def __init__(self, spec: RuleSpec, *, window: float, max_series: int = 1000) -> None:
        assert spec.signal is not None
        self.spec = spec
        self._signal: str = spec.signal
        self._window = window
        self._step = max(0.05, spec.baseline / 240.0)
        self._history: dict[LabelKey, deque[tuple[float, float]]] = {}
        self._max_series = max_series

    def _baseline(self, key: LabelKey, now: float, value: float) -> float | None:
        history = self._history.get(key)
        if history is None:
            if len(self._history) >= self._max_series:
                oldest = min(self._history, key=lambda k: self._history[k][-1][0] if self._history[k] else 0.0)
                del self._history[oldest]
            history = self._history[key] = deque()
        if not history or now - history[-1][0] >= self._step:
            history.append((now, value))
        while history and history[0][0] < now - self._window - self.spec.baseline:
            history.popleft()
        reference = [v for t, v in history if t <= now - self._window]
        if not reference or now - history[0][0] < self._window + self.spec.min_history:
            return None
        return float(statistics.median(reference))

    def evaluate(self, source: SignalSource, now: float) -> list[Sample]:
        spec = self.spec
        out = []
        for sv in _select(source, self._signal, spec.match, now):
            baseline = self._baseline(_key(sv.labels, {}), now, sv.value)
            if baseline is None:
                continue
            active = (
                sv.value > spec.factor * baseline
                and sv.value - baseline > spec.min_delta
                and _guards_hold(source, spec.guard, sv.labels, now)
            )
            out.append(Sample(_key(sv.labels, spec.labels), sv.value, baseline, spec.severity, active))
        return out


def build_rule(spec: RuleSpec, *, window: float, min_samples: int = 10) -> Rule:
    """The evaluator for a validated rule spec (``min_samples``: detection.min_samples, for adaptive rules)."""
    if spec.type == "adaptive":
        return AdaptiveRule(spec, min_samples=min_samples)
    if spec.type == "burn_rate":
        return BurnRateRule(spec)
    if spec.type == "regression":
        return RegressionRule(spec, window=window)
    return ThresholdRule(spec)


def render_summary(
    template: str, labels: Mapping[str, str], values: Mapping[str, Any], formatter: Callable[[str, Any], str]
) -> str:
    """Fill ``{name}`` placeholders from values then labels; unknown names stay as written (never raises)."""
    out = []
    pos = 0
    while True:
        start = template.find("{", pos)
        end = template.find("}", start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(template[pos:])
            return "".join(out)
        out.append(template[pos:start])
        name = template[start + 1 : end]
        if name in values:
            out.append(formatter(name, values[name]))
        elif name in labels:
            out.append(labels[name])
        else:
            out.append(template[start : end + 1])
        pos = end + 1
