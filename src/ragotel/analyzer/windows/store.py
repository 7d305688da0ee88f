"""Sliding-window statistics per service and stage: spans, metric series and logs, and the signals rules read.

The window is cut into ``PANES`` panes of ``window / PANES`` seconds; each series keeps one pane per pane
interval that saw data, and a read merges the panes of the last ``window`` (plus the current, partial pane),
so a value always covers between ``window`` and ``window + window / PANES`` seconds of arrivals. Time is the
analyzer's arrival time, not the span's own timestamps: late or skewed exporters cannot hide data.

Thread-safety: every public method takes ``lock``; the ingest worker writes, rules and the API read.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ragotel.analyzer.receive.extract import LogBatch, MetricBatch, MetricPoint, TraceBatch
from ragotel.analyzer.vocabulary import LOG_SIGNALS, SIGNALS, SPAN_SIGNALS
from ragotel.analyzer.windows.sketch import DistinctCounter, QuantileSketch

__all__ = ["OVERFLOW", "PANES", "SignalValue", "Windows"]

PANES = 12
OVERFLOW = "_overflow_"
"""Label value of the series that takes what arrives once ``max_series`` series exist."""

_CPU = "system.cpu.utilization"
_MEMORY = "system.memory.utilization"
_DISK = "system.filesystem.utilization"
_PROCESS_MEMORY = "process.memory.usage"
_DEP_HEALTH = "ragotel.dependency.health"
_DEP_DURATION = "ragotel.dependency.check.duration"
_DEP_NAME = "ragotel.dependency.name"
_DEP_KIND = "ragotel.dependency.kind"
_STATE_KEYS = ("cpu.mode", "system.cpu.state", "system.memory.state", "system.filesystem.state", "state")
_MAX_SAMPLES = 512

SpanKey = tuple[str, str, str, str, str]  # service, stage, component, model, collection
MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]  # service, name, attributes
_OVERFLOW_SPAN: SpanKey = (OVERFLOW, OVERFLOW, OVERFLOW, "", "")


@dataclass(frozen=True, slots=True)
class SignalValue:
    """One value of a signal for one label set (keys among service, stage, component, model, collection,
    dependency, kind; empty labels are left out)."""

    labels: dict[str, str]
    value: float


class _SpanPane:
    __slots__ = ("count", "duration_sum", "empty", "errors", "index", "sketch", "users")

    def __init__(self, index: int) -> None:
        self.index = index
        self.count = 0
        self.errors = 0
        self.empty = 0
        self.duration_sum = 0.0
        self.sketch = QuantileSketch()
        self.users: DistinctCounter | None = None


class _SpanSeries:
    __slots__ = ("panes", "version")

    def __init__(self) -> None:
        self.panes: deque[_SpanPane] = deque()
        self.version = 0

    def pane(self, index: int) -> _SpanPane:
        panes = self.panes
        if not panes or panes[-1].index != index:
            panes.append(_SpanPane(index))
        self.version += 1
        return panes[-1]


@dataclass(slots=True)
class _Summary:
    count: int
    errors: int
    empty: int
    duration_sum: float
    sketch: QuantileSketch
    users: DistinctCounter | None


class _MetricSeries:
    __slots__ = ("count", "kind", "last_arrival", "samples", "unit", "value")

    def __init__(self, kind: str, unit: str) -> None:
        self.kind = kind
        self.unit = unit
        self.value = 0.0
        self.count = 0
        self.last_arrival = 0.0
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=_MAX_SAMPLES)  # arrival, time, value


class Windows:
    """Per-service, per-stage sliding-window statistics fed by the ingest worker."""

    def __init__(
        self, window: float = 60.0, *, max_series: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = float(window)
        self.pane_width = self.window / PANES
        self.max_series = max_series
        self.lock = threading.RLock()
        self._clock = clock
        self._started = clock()
        # Per-component series (what signals read every tick) apart from the finer model/collection ones.
        self._coarse: dict[SpanKey, _SpanSeries] = {}
        self._fine: dict[SpanKey, _SpanSeries] = {}
        self._metrics: dict[str, dict[MetricKey, _MetricSeries]] = {}
        self._metric_count = 0
        self._logs: dict[str, deque[list[int]]] = {}  # service -> panes of [index, records, errors]
        self._summaries: dict[SpanKey, tuple[int, int, _Summary]] = {}
        self._totals = {"spans": 0, "metric_points": 0, "logs": 0, "overflow": 0}
        self._expired_through = -1

    # --- writing ---------------------------------------------------------------------------------------------

    def _series_count(self) -> int:
        return len(self._coarse) + len(self._fine) + self._metric_count + len(self._logs)

    def _span_series(self, key: SpanKey) -> _SpanSeries | None:
        """The series of ``key``, created if the limit allows; None when it would exceed ``max_series``."""
        store = self._coarse if key[3] == "" and key[4] == "" else self._fine
        series = store.get(key)
        if series is None and self._series_count() < self.max_series:
            series = store[key] = _SpanSeries()
        return series

    def _targets(self, coarse: SpanKey, fine: SpanKey, n: int) -> list[_SpanSeries]:
        """The series a group of ``n`` spans feeds; what finds no room goes to the overflow series, counted once."""
        targets = [self._span_series(coarse)]
        if fine != coarse:
            targets.append(self._span_series(fine))
        found = [series for series in targets if series is not None]
        if len(found) < len(targets):
            self._totals["overflow"] += n
            overflow = self._coarse.get(_OVERFLOW_SPAN)
            if overflow is None:
                overflow = self._coarse[_OVERFLOW_SPAN] = _SpanSeries()
            found.append(overflow)
        return found

    def add_traces(self, batch: TraceBatch, now: float | None = None) -> None:
        """Count a batch of spans into the current pane of each (fine and per-component) series."""
        now = self._clock() if now is None else now
        index = int(now // self.pane_width)
        with self.lock:
            for group in batch.groups:
                n = len(group.durations)
                bins = QuantileSketch.indices(group.durations)
                total = math.fsum(group.durations)
                coarse: SpanKey = (group.service, group.stage, group.component, "", "")
                fine: SpanKey = (group.service, group.stage, group.component, group.model, group.collection)
                targets = self._targets(coarse, fine, n)
                for series in targets:
                    pane = series.pane(index)
                    pane.count += n
                    pane.errors += group.errors
                    pane.empty += group.empty_retrievals
                    pane.duration_sum += total
                    pane.sketch.add_indices(bins)
                if group.users:  # distinct users are a pipeline-level figure: the per-component series only
                    pane = targets[0].panes[-1]
                    if pane.users is None:
                        pane.users = DistinctCounter()
                    pane.users.add_all(group.users)
            self._totals["spans"] += batch.accepted

    def add_metrics(self, batch: MetricBatch, now: float | None = None) -> None:
        """Record each point as the latest value of its series and as a sample for growth fitting."""
        now = self._clock() if now is None else now
        with self.lock:
            for point in batch.points:
                self._add_point(point, now)
            self._totals["metric_points"] += batch.accepted

    def _add_point(self, point: MetricPoint, now: float) -> None:
        by_key = self._metrics.get(point.name)
        key: MetricKey = (point.service, point.name, point.attributes)
        series = by_key.get(key) if by_key is not None else None
        if series is None:
            if self._series_count() >= self.max_series:
                self._totals["overflow"] += 1
                key = (OVERFLOW, point.name, ())
                by_key = self._metrics.get(point.name)
                series = by_key.get(key) if by_key is not None else None
            if series is None:
                series = _MetricSeries(point.kind, point.unit)
                self._metrics.setdefault(point.name, {})[key] = series
                self._metric_count += 1
        series.value = point.value
        series.count = point.count
        series.last_arrival = now
        series.samples.append((now, point.time or now, point.value))

    def add_logs(self, batch: LogBatch, now: float | None = None) -> None:
        """Count log records and error records per service."""
        now = self._clock() if now is None else now
        index = int(now // self.pane_width)
        with self.lock:
            for name, (records, errors) in batch.services.items():
                panes = self._logs.get(name)
                if panes is None:
                    service = name
                    if self._series_count() >= self.max_series:
                        self._totals["overflow"] += records
                        service = OVERFLOW
                    panes = self._logs.setdefault(service, deque())
                if not panes or panes[-1][0] != index:
                    panes.append([index, 0, 0])
                panes[-1][1] += records
                panes[-1][2] += errors
            self._totals["logs"] += batch.accepted

    def expire(self, now: float | None = None) -> None:
        """Drop panes, samples and whole series that fell out of the window (cheap when nothing did)."""
        now = self._clock() if now is None else now
        first = self._first_pane(now)
        if first <= self._expired_through:
            return
        horizon = now - self.window
        with self.lock:
            self._expired_through = first
            for store in (self._coarse, self._fine):
                for key, series in list(store.items()):
                    panes = series.panes
                    while panes and panes[0].index < first:
                        panes.popleft()
                        series.version += 1
                    if not panes:
                        del store[key]
                        self._summaries.pop(key, None)
            for name, by_key in list(self._metrics.items()):
                for mkey, metric in list(by_key.items()):
                    if metric.last_arrival < horizon:
                        del by_key[mkey]
                        self._metric_count -= 1
                        continue
                    samples = metric.samples
                    while samples and samples[0][0] < horizon:
                        samples.popleft()
                if not by_key:
                    del self._metrics[name]
            for service, log_panes in list(self._logs.items()):
                while log_panes and log_panes[0][0] < first:
                    log_panes.popleft()
                if not log_panes:
                    del self._logs[service]

    # --- reading ---------------------------------------------------------------------------------------------

    def _first_pane(self, now: float) -> int:
        return int(now // self.pane_width) - PANES

    def _covered(self, now: float) -> float:
        """Seconds of arrivals a read covers: the window (plus the partial pane), or less just after start."""
        span = now - self._first_pane(now) * self.pane_width
        # A one-second floor keeps a burst in the first instants after start from reading as an absurd rate.
        return max(min(span, now - self._started), min(1.0, span))

    def _summary(self, key: SpanKey, series: _SpanSeries, now: float) -> _Summary:
        """Merge the panes in the window; cached for per-component series, which every rule tick reads."""
        first = self._first_pane(now)
        cache = key[3] == "" and key[4] == ""
        cached = self._summaries.get(key) if cache else None
        if cached is not None and cached[0] == series.version and cached[1] == first:
            return cached[2]
        summary = _Summary(0, 0, 0, 0.0, QuantileSketch(), None)
        for pane in series.panes:
            if pane.index < first:
                continue
            summary.count += pane.count
            summary.errors += pane.errors
            summary.empty += pane.empty
            summary.duration_sum += pane.duration_sum
            summary.sketch.merge(pane.sketch)
            if pane.users is not None:
                if summary.users is None:
                    summary.users = DistinctCounter()
                summary.users.merge(pane.users)
        if cache:
            self._summaries[key] = (series.version, first, summary)
        return summary

    def _span_rows(
        self, now: float, coarse: bool, service: str | None = None, stages: frozenset[str] | None = None
    ) -> Iterable[tuple[SpanKey, _Summary]]:
        for key, series in (self._coarse if coarse else self._fine).items():
            if (service is not None and key[0] != service) or (stages is not None and key[1] not in stages):
                continue
            summary = self._summary(key, series, now)
            if summary.count:
                yield key, summary

    def signal(
        self, signal: str, match: Mapping[str, str] | None = None, *, now: float | None = None
    ) -> list[SignalValue]:
        """Current values of ``signal`` for every label set matching ``match`` (exact equality per label).

        Span signals give one value per (service, stage, component) with data in the window; metric signals one
        per service (``dependency_health`` per service, dependency and kind); series without data are absent.
        Raises ValueError for an unknown signal.
        """
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; expected one of: {', '.join(sorted(SIGNALS))}")
        now = self._clock() if now is None else now
        match = match or {}
        with self.lock:
            if signal in SPAN_SIGNALS:
                values = self._span_signal(signal, now)
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

    def _span_signal(self, signal: str, now: float) -> list[SignalValue]:
        covered = self._covered(now)
        out = []
        for (service, stage, component, _, _), s in self._span_rows(now, coarse=True):
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
                out.append(SignalValue(_labels(service=service, stage=stage, component=component), value))
        return out

    def _metric_signal(self, signal: str, now: float) -> list[SignalValue]:
        if signal == "dependency_health":
            worst: dict[tuple[str, str, str], float] = {}
            for (service, _, attributes), series in self._live(_DEP_HEALTH, now):
                attrs = dict(attributes)
                key = (service, attrs.get(_DEP_NAME, ""), attrs.get(_DEP_KIND, ""))
                worst[key] = min(worst.get(key, math.inf), series.value)
            return [SignalValue(_labels(service=s, dependency=d, kind=k), v) for (s, d, k), v in worst.items()]
        if signal == "memory_growth":
            growth: dict[str, float] = {}
            for (service, _, _), series in self._live(_PROCESS_MEMORY, now):
                slope = _slope(series.samples, now - self.window)
                if slope is not None:
                    growth[service] = max(growth.get(service, -math.inf), slope)
            return [SignalValue({"service": s}, v) for s, v in growth.items()]
        name = {"cpu_utilization": _CPU, "memory_utilization": _MEMORY, "disk_utilization": _DISK}[signal]
        per_service: dict[str, list[tuple[dict[str, str], float]]] = {}
        for (service, _, attributes), series in self._live(name, now):
            per_service.setdefault(service, []).append((dict(attributes), series.value))
        out = []
        for service, points in per_service.items():
            value = _utilization(signal, points)
            if value is not None:
                out.append(SignalValue({"service": service}, value))
        return out

    def _live(self, name: str, now: float) -> Iterable[tuple[MetricKey, _MetricSeries]]:
        horizon = now - self.window
        for key, series in self._metrics.get(name, {}).items():
            if series.last_arrival >= horizon:
                yield key, series

    def stage_stats(self, service: str, *, now: float | None = None) -> list[dict[str, Any]]:
        """Per (stage, component) of ``service``: count, rate, error_rate, p50, p95, p99, avg, time_share.

        ``time_share`` is the stage's summed duration over the summed duration of the service's pipeline
        spans (None when the window holds no pipeline span).
        """
        now = self._clock() if now is None else now
        with self.lock:
            return self._stage_rows(list(self._span_rows(now, coarse=True, service=service)), now)

    def _stage_rows(self, rows: list[tuple[SpanKey, _Summary]], now: float) -> list[dict[str, Any]]:
        pipeline = sum(s.duration_sum for k, s in rows if k[1] == "pipeline")
        out = []
        for key, summary in sorted(rows, key=lambda r: r[0]):
            row = {"stage": key[1], "component": key[2], **self._row(summary, key[1], now)}
            row["time_share"] = summary.duration_sum / pipeline if pipeline > 0 else None
            out.append(row)
        return out

    def _row(self, s: _Summary, stage: str, now: float) -> dict[str, Any]:
        p50, p95, p99 = s.sketch.quantiles((0.5, 0.95, 0.99))
        row: dict[str, Any] = {
            "count": s.count,
            "rate": s.count / self._covered(now),
            "error_rate": s.errors / s.count,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "avg": s.duration_sum / s.count,
        }
        if stage == "retrieval":
            row["empty_retrieval_rate"] = s.empty / s.count
        if stage == "pipeline":
            row["success_rate"] = 1.0 - s.errors / s.count
            row["users"] = s.users.estimate() if s.users is not None else 0
        return row

    def stats(
        self, *, service: str | None = None, stage: str | None = None, now: float | None = None
    ) -> dict[str, Any]:
        """The ``/api/v1/stats`` document: per service, per (stage, component), with finer model/collection rows."""
        now = self._clock() if now is None else now
        with self.lock:
            # time_share needs the pipeline rows even when another stage is asked for
            wanted = frozenset({stage, "pipeline"}) if stage is not None else None
            coarse: dict[str, list[tuple[SpanKey, _Summary]]] = {}
            for key, summary in self._span_rows(now, coarse=True, service=service, stages=wanted):
                coarse.setdefault(key[0], []).append((key, summary))
            fine: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
            only = frozenset({stage}) if stage is not None else None
            for key, summary in self._span_rows(now, coarse=False, service=service, stages=only):
                row = {"model": key[3], "collection": key[4], **self._row(summary, key[1], now)}
                fine.setdefault(key[:3], []).append(row)
            names = set(coarse) | set(self._logs) | self._metric_services()
            resources = {
                signal: {v.labels["service"]: v.value for v in self._metric_signal(signal, now)}
                for signal in ("cpu_utilization", "memory_utilization", "disk_utilization", "memory_growth")
            }
            services = []
            for name in sorted(names if service is None else names & {service}):
                stages = self._stage_rows(coarse.get(name, []), now)
                if stage is not None:
                    stages = [r for r in stages if r["stage"] == stage]
                for row in stages:
                    row["series"] = sorted(
                        fine.get((name, row["stage"], row["component"]), []),
                        key=lambda r: (r["model"], r["collection"]),
                    )
                services.append(
                    {
                        "service": name,
                        "stages": stages,
                        "logs": self._log_row(name, now),
                        "resources": {signal: values.get(name) for signal, values in resources.items()},
                    }
                )
            return {
                "window_seconds": self.window,
                "covered_seconds": self._covered(now),
                "time": now,
                "services": services,
                "totals": self.snapshot_counts(),
            }

    def _metric_services(self) -> set[str]:
        return {key[0] for by_key in self._metrics.values() for key in by_key}

    def _log_row(self, service: str, now: float) -> dict[str, Any]:
        first = self._first_pane(now)
        panes = [p for p in self._logs.get(service, ()) if p[0] >= first]
        records = sum(p[1] for p in panes)
        errors = sum(p[2] for p in panes)
        return {"count": records, "errors": errors, "error_rate": errors / self._covered(now)}

    def health(self, *, now: float | None = None) -> dict[str, Any]:
        """The ``/api/v1/health`` document: latest dependency health per service."""
        now = self._clock() if now is None else now
        with self.lock:
            durations = {_dependency_id(key): series.value for key, series in self._live(_DEP_DURATION, now)}
            services: dict[str, list[dict[str, Any]]] = {}
            for key, series in self._live(_DEP_HEALTH, now):
                attrs = dict(key[2])
                services.setdefault(key[0], []).append(
                    {
                        "name": attrs.get(_DEP_NAME, ""),
                        "kind": attrs.get(_DEP_KIND, ""),
                        "instance": attrs.get("service.instance.id", ""),
                        "healthy": series.value >= 1.0,
                        "value": series.value,
                        "check_duration": durations.get(_dependency_id(key)),
                        "last_seen": series.last_arrival,
                        "attributes": attrs,
                    }
                )
            return {
                "time": now,
                "services": [
                    {
                        "service": s,
                        "healthy": all(d["healthy"] for d in deps),
                        "dependencies": sorted(deps, key=lambda d: (d["name"], d["kind"], d["instance"])),
                    }
                    for s, deps in sorted(services.items())
                ],
            }

    def metric_series(
        self, *, service: str | None = None, name: str | None = None, limit: int = 1000, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Metric series with data in the window: latest value and the least-squares growth per second."""
        now = self._clock() if now is None else now
        out: list[dict[str, Any]] = []
        with self.lock:
            names = [name] if name is not None else sorted(self._metrics)
            for metric_name in names:
                for (svc, _, attributes), series in self._live(metric_name, now):
                    if service is not None and svc != service:
                        continue
                    out.append(
                        {
                            "service": svc,
                            "name": metric_name,
                            "attributes": dict(attributes),
                            "kind": series.kind,
                            "unit": series.unit,
                            "value": series.value,
                            "count": series.count,
                            "samples": len(series.samples),
                            "growth": _slope(series.samples, now - self.window),
                            "last_seen": series.last_arrival,
                        }
                    )
                    if len(out) >= limit:
                        return out
        return out

    def services(self) -> list[str]:
        """Names of the services with any span, metric or log series held."""
        with self.lock:
            return sorted({k[0] for k in self._coarse} | set(self._logs) | self._metric_services())

    def snapshot_counts(self) -> dict[str, int]:
        """Totals since start (spans, metric_points, logs, overflow) and the current number of series."""
        with self.lock:
            return {**self._totals, "series": self._series_count()}


_QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}


def _labels(**labels: str) -> dict[str, str]:
    return {k: v for k, v in labels.items() if v}


def _dependency_id(key: MetricKey) -> tuple[str, str, str]:
    attrs = dict(key[2])
    return key[0], attrs.get(_DEP_NAME, ""), attrs.get("service.instance.id", "")


def _state(attrs: Mapping[str, str]) -> str | None:
    return next((attrs[k] for k in _STATE_KEYS if k in attrs), None)


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
            cpu = (attrs.get("service.instance.id", ""), attrs.get("cpu.logical_number", attrs.get("cpu", "")))
            busy[cpu] = busy.get(cpu, 0.0) + (0.0 if _state(attrs) == "idle" else value)
        values = list(busy.values())
    elif stated:
        values = [v for a, v in stated if _state(a) == "used"]
    else:
        values = [v for _, v in points]
    if not values:
        return None
    return max(values) if signal == "disk_utilization" else sum(values) / len(values)


def _slope(samples: Iterable[tuple[float, float, float]], horizon: float) -> float | None:
    """Least-squares slope (per second) of value over point time, for samples that arrived after ``horizon``."""
    pts = [(t, v) for arrival, t, v in samples if arrival >= horizon]
    if len(pts) < 2:
        return None
    n = len(pts)
    mean_t = math.fsum(t for t, _ in pts) / n
    mean_v = math.fsum(v for _, v in pts) / n
    var = math.fsum((t - mean_t) ** 2 for t, _ in pts)
    if var <= 0:
        return None
    return math.fsum((t - mean_t) * (v - mean_v) for t, v in pts) / var
