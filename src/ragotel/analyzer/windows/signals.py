"""Signals: the values rules read (latency quantiles, rates, dependency health, utilisation, memory growth)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ragotel.analyzer.vocabulary import LOG_SIGNALS, SERVICE_INSTANCE_ID, SIGNALS, SPAN_SIGNALS, STATE_ATTRIBUTES
from ragotel.analyzer.windows.recent import PANE, quantile
from ragotel.analyzer.windows.records import SignalValue
from ragotel.analyzer.windows.store import SpanKey, Summary, WindowStore
from ragotel.semconv import (
    CPU_LOGICAL_NUMBER,
    M_DEPENDENCY_HEALTH,
    M_PROCESS_MEMORY_USAGE,
    M_RAGOTEL_PROCESS_MEMORY_LIMIT,
    M_SYSTEM_CPU_UTILIZATION,
    M_SYSTEM_FILESYSTEM_UTILIZATION,
    M_SYSTEM_MEMORY_LIMIT,
    M_SYSTEM_MEMORY_UTILIZATION,
    RAGOTEL_DEPENDENCY_KIND,
    RAGOTEL_DEPENDENCY_NAME,
)

__all__ = ["ETA_CAP", "MIN_R2", "LinearFit", "SignalWindows", "linear_fit", "window_slope"]

_UTILIZATION_METRICS = {
    "cpu_utilization": M_SYSTEM_CPU_UTILIZATION,
    "memory_utilization": M_SYSTEM_MEMORY_UTILIZATION,
    "disk_utilization": M_SYSTEM_FILESYSTEM_UTILIZATION,
}


class SignalWindows(WindowStore):
    """The window store and the signals computed from it."""

    def signal(
        self,
        signal: str,
        match: Mapping[str, str] | None = None,
        *,
        now: float | None = None,
        window: float | None = None,
    ) -> list[SignalValue]:
        """Current values of ``signal`` for every label set matching ``match`` (exact equality per label).

        Span signals give one value per (service, stage, component) with data in the window; metric signals one
        per service (``dependency_health`` per service, dependency and kind); series without data are absent.
        ``window`` (seconds, span signals only) reads the last seconds from the recent panes instead, up to the
        detection horizon (quantiles from the panes' capped duration lists). Raises ValueError for an unknown signal.
        """
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; expected one of: {', '.join(sorted(SIGNALS))}")
        now = self._clock() if now is None else now
        match = match or {}
        with self.lock:
            if signal in SPAN_SIGNALS and window is not None:
                values = self._recent_span_signal(signal, now, min(window, self.detection_horizon))
            elif signal in SPAN_SIGNALS:
                values = self._span_signal(signal, now, self._span_rows(now, coarse=True), self._covered(now))
            elif signal in LOG_SIGNALS:
                covered = self._covered(now)
                first = self._first_pane(now)
                values = [
                    SignalValue({"service": s}, sum(p[2] for p in panes if p[0] >= first) / covered)
                    for s, panes in self._logs.items()
                ]
            else:
                values = self._metric_signal(signal, now)
        return [v for v in values if all(v.labels.get(k, "") == want for k, want in match.items())]

    def _span_signal(
        self, signal: str, now: float, rows: Iterable[tuple[SpanKey, Summary]], covered: float
    ) -> list[SignalValue]:
        out = []
        for (service, stage, component, _, _), s in rows:
            value: float | None
            if signal == "request_rate":
                value = s.count / covered
            elif signal == "error_rate":
                value = s.errors / s.count
            elif signal == "latency_avg":
                value = s.duration_sum / s.count
            elif signal == "empty_retrieval_rate":
                value = s.empty / s.count if stage == "retrieval" else None
            else:
                value = s.sketch.quantile(_QUANTILES[signal])
            if value is not None:
                labels = _labels(service=service, stage=stage, component=component)
                out.append(SignalValue(labels, value, s.count, s.errors))
        return out

    def _recent_span_signal(self, signal: str, now: float, window: float) -> list[SignalValue]:
        now_index = int(now // PANE)
        panes = max(1, math.ceil(window / PANE))
        seconds = max(PANE, min(window, now - self._started))
        out = []
        for (service, stage, component, _, _), series in self._coarse.items():
            taken = list(series.recent.newest(now_index, panes)) if series.recent is not None else []
            count = sum(p.count for p in taken)
            if not count:
                continue
            errors = sum(p.errors for p in taken)
            value: float | None
            if signal == "request_rate":
                value = count / seconds
            elif signal == "error_rate":
                value = errors / count
            elif signal == "empty_retrieval_rate":
                value = sum(p.empty for p in taken) / count if stage == "retrieval" else None
            else:
                durations = sorted(d for p in taken for d in p.durations)
                if signal == "latency_avg":
                    value = math.fsum(durations) / len(durations)
                else:
                    value = quantile(durations, _QUANTILES[signal])
            if value is not None:
                out.append(
                    SignalValue(_labels(service=service, stage=stage, component=component), value, count, errors)
                )
        return out

    def _metric_signal(self, signal: str, now: float) -> list[SignalValue]:
        if signal == "dependency_health":
            worst: dict[tuple[str, str, str], float] = {}
            for (service, _, attributes), series in self._live(M_DEPENDENCY_HEALTH, now):
                attrs = dict(attributes)
                key = (
                    service,
                    attrs.get(RAGOTEL_DEPENDENCY_NAME, ""),
                    attrs.get(RAGOTEL_DEPENDENCY_KIND, ""),
                )
                worst[key] = min(worst.get(key, math.inf), series.value)
            return [SignalValue(_labels(service=s, dependency=d, kind=k), v) for (s, d, k), v in worst.items()]
        if signal == "memory_growth":
            growth: dict[str, float] = {}
            for (service, _, _), series in self._live(M_PROCESS_MEMORY_USAGE, now):
                slope = window_slope(series.samples, now - self.window)
                if slope is not None:
                    growth[service] = max(growth.get(service, -math.inf), slope)
            return [SignalValue({"service": s}, v) for s, v in growth.items()]
        if signal == "memory_exhaustion_eta":
            return self._exhaustion_eta(now)
        name = _UTILIZATION_METRICS[signal]
        per_service: dict[str, list[tuple[dict[str, str], float]]] = {}
        for (service, _, attributes), series in self._live(name, now):
            per_service.setdefault(service, []).append((dict(attributes), series.value))
        out = []
        for service, points in per_service.items():
            value = _utilization(signal, points)
            if value is not None:
                out.append(SignalValue({"service": service}, value))
        return out

    def _memory_limits(self, now: float) -> dict[str, float]:
        """Per service: the cgroup memory limit when the SDK reports one (the smallest), else host memory."""
        limits: dict[str, float] = {}
        for (service, _, _), series in self._live(M_SYSTEM_MEMORY_LIMIT, now):
            limits[service] = max(limits.get(service, 0.0), series.value)
        cgroup: dict[str, float] = {}
        for (service, _, _), series in self._live(M_RAGOTEL_PROCESS_MEMORY_LIMIT, now):
            if series.value > 0:
                cgroup[service] = min(cgroup.get(service, math.inf), series.value)
        return {s: v for s, v in (limits | cgroup).items() if v > 0}

    def _exhaustion_eta(self, now: float) -> list[SignalValue]:
        """Seconds until process memory reaches its limit at the growth fitted over ``fit_window`` (predict_linear).

        Needs samples over two thirds of the fit window; ``ETA_CAP`` when memory is not growing steadily (slope not
        positive or R^2 under ``MIN_R2``); the soonest instance of each service.
        """
        limits = self._memory_limits(now)
        eta: dict[str, float] = {}
        for (service, _, _), series in self._live(M_PROCESS_MEMORY_USAGE, now):
            limit = limits.get(service)
            fit = linear_fit(series.samples, now - self.fit_window)
            if limit is None or fit is None or fit.span < self.fit_window * 2 / 3:
                continue
            value = ETA_CAP
            if fit.slope > 0 and fit.r2 >= MIN_R2:
                value = min(ETA_CAP, max(0.0, (limit - fit.last) / fit.slope))
            eta[service] = min(eta.get(service, math.inf), value)
        return [SignalValue({"service": s}, v) for s, v in eta.items()]


ETA_CAP: Final = 30 * 86400.0
"""``memory_exhaustion_eta`` when memory is not growing steadily: 30 days, "not in any horizon that matters"."""
MIN_R2: Final = 0.9
"""How well a straight line must explain process memory before its growth is projected (a steady leak ~1)."""

_QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}


def _labels(**labels: str) -> dict[str, str]:
    return {k: v for k, v in labels.items() if v}


def _state(attrs: Mapping[str, str]) -> str | None:
    return next((attrs[k] for k in STATE_ATTRIBUTES if k in attrs), None)


def _utilization(signal: str, points: list[tuple[dict[str, str], float]]) -> float | None:
    """Reduce one service's latest utilization points to one fraction.

    Without a state/mode attribute: the average (cpu, memory) or the maximum (disk, over filesystems).
    With one (semconv's per-mode CPU, per-state memory and filesystem): CPU sums the non-idle modes of each
    logical CPU and averages over CPUs; memory and disk keep the ``used`` state.
    """
    stated = [(a, v) for a, v in points if _state(a) is not None]
    if stated and signal == "cpu_utilization":
        busy: dict[tuple[str, str], float] = {}
        for attrs, value in stated:
            cpu = (attrs.get(SERVICE_INSTANCE_ID, ""), attrs.get(CPU_LOGICAL_NUMBER, attrs.get("cpu", "")))
            busy[cpu] = busy.get(cpu, 0.0) + (0.0 if _state(attrs) == "idle" else value)
        values = list(busy.values())
    elif stated:
        values = [v for a, v in stated if _state(a) == "used"]
    else:
        values = [v for _, v in points]
    if not values:
        return None
    value = max(values) if signal == "disk_utilization" else sum(values) / len(values)
    return value if math.isfinite(value) else None  # huge finite points can still overflow the sum


@dataclass(frozen=True, slots=True)
class LinearFit:
    """A least-squares line of value over point time: slope per second, R^2, fitted value at the last point, and
    the seconds the points span."""

    slope: float
    r2: float
    last: float
    span: float


def linear_fit(samples: Iterable[tuple[float, float, float]], horizon: float) -> LinearFit | None:
    """The least-squares line through the samples that arrived after ``horizon``; None under two distinct times."""
    pts = [(t, v) for arrival, t, v in samples if arrival >= horizon]
    if len(pts) < 2:
        return None
    n = len(pts)
    try:
        mean_t = math.fsum(t for t, _ in pts) / n
        mean_v = math.fsum(v for _, v in pts) / n
        var = math.fsum((t - mean_t) ** 2 for t, _ in pts)
        if not var > 0:
            return None
        slope = math.fsum((t - mean_t) * (v - mean_v) for t, v in pts) / var
        total = math.fsum((v - mean_v) ** 2 for _, v in pts)
        residual = math.fsum((v - mean_v - slope * (t - mean_t)) ** 2 for t, v in pts)
    except (OverflowError, ValueError):  # huge or non-finite points: no fit, rather than a failing reader
        return None
    if not (math.isfinite(slope) and math.isfinite(total) and math.isfinite(residual)):
        return None
    r2 = 1.0 - residual / total if total > 0 else 0.0
    times = [t for t, _ in pts]
    return LinearFit(slope, r2, mean_v + slope * (max(times) - mean_t), max(times) - min(times))


def window_slope(samples: Iterable[tuple[float, float, float]], horizon: float) -> float | None:
    """Least-squares slope (per second) of value over point time, for samples that arrived after ``horizon``."""
    fit = linear_fit(samples, horizon)
    return None if fit is None else fit.slope
