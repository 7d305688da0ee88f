"""The window store: per-series panes of spans, metric samples and log counts, written by the ingest worker.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from ragotel.analyzer.windows.baselines import BUCKET, Baselines
from ragotel.analyzer.windows.graph import CallPairs, Node, dependency_node, peer_node, service_node, stage_node
from ragotel.analyzer.windows.history import History
from ragotel.analyzer.windows.recent import PANE, RecentRing
from ragotel.analyzer.windows.records import (
    CallSpan,
    Deploy,
    LogBatch,
    MetricBatch,
    MetricPoint,
    SpanGroup,
    TraceBatch,
)
from ragotel.analyzer.windows.sketch import DistinctCounter, QuantileSketch

__all__ = ["OVERFLOW", "PANES", "EdgeKey", "MetricKey", "MetricSeries", "SpanKey", "Summary", "WindowStore"]

PANES = 12
OVERFLOW = "_overflow_"
"""Label value of the series that takes what arrives once ``max_series`` series exist."""

_MAX_SAMPLES = 512
_MAX_DEPLOYS = 10_000

SpanKey = tuple[str, str, str, str, str]  # service, stage, component, model, collection
MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]  # service, name, attributes
_OVERFLOW_SPAN: SpanKey = (OVERFLOW, OVERFLOW, OVERFLOW, "", "")
EdgeKey = tuple[str, str]  # source node id, target node id
_EDGE_STAGE: Final = "edge"  # what the recent panes of an edge are read as (no retrieval figures)


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
    __slots__ = ("panes", "recent", "version")

    def __init__(self, recent: RecentRing | None = None) -> None:
        self.panes: deque[_SpanPane] = deque()
        self.version = 0
        self.recent = recent  # per-component series only

    def pane(self, index: int) -> _SpanPane:
        panes = self.panes
        if not panes or panes[-1].index != index:
            panes.append(_SpanPane(index))
        self.version += 1
        return panes[-1]


def _count_into(
    series: _SpanSeries, index: int, recent_index: int, group: SpanGroup, bins: list[int], total: float
) -> None:
    """Count a group of spans (``bins``: their sketch indices, ``total``: their summed duration) into a series."""
    pane = series.pane(index)
    pane.count += len(group.durations)
    pane.errors += group.errors
    pane.empty += group.empty_retrievals
    pane.duration_sum += total
    pane.sketch.add_indices(bins)
    if series.recent is not None:
        series.recent.add(recent_index, group)


def _count_call(series: _SpanSeries, index: int, recent_index: int, client: CallSpan, failed: bool) -> None:
    """Count one call between services (the client's duration) into an edge series."""
    durations = [client.duration]
    call = SpanGroup(client.service, _EDGE_STAGE, "", "", "", durations, int(failed), 0, [])
    _count_into(series, index, recent_index, call, QuantileSketch.indices(durations), client.duration)


@dataclass(slots=True)
class Summary:
    count: int
    errors: int
    empty: int
    duration_sum: float
    sketch: QuantileSketch
    users: DistinctCounter | None


class MetricSeries:
    __slots__ = ("count", "kind", "last_arrival", "samples", "unit", "value")

    def __init__(self, kind: str, unit: str) -> None:
        self.kind = kind
        self.unit = unit
        self.value = 0.0
        self.count = 0
        self.last_arrival = 0.0
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=_MAX_SAMPLES)  # arrival, time, value


class WindowStore:
    """Per-service, per-stage sliding-window data fed by the ingest worker; ``Windows`` adds the reads."""

    def __init__(
        self,
        window: float = 60.0,
        *,
        max_series: int = 100_000,
        max_edges: int = 10_000,
        detection_horizon: float = 30.0,
        baseline_horizon: float = 3600.0,
        baseline_min_samples: int = 30,
        fit_window: float = 90.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= 0 or detection_horizon <= 0:
            raise ValueError("window and detection_horizon must be positive")
        self.window = float(window)
        self.detection_horizon = float(detection_horizon)
        # The recent panes also feed the 10-second baseline buckets, closed about a second after they end.
        self._recent_keep = max(self.detection_horizon, 2 * BUCKET)
        self.baselines = Baselines(baseline_horizon, min_samples=baseline_min_samples)
        self.history = History()  # the page's charts: downsampled per (service, stage), rolled with the baselines
        # Metric samples (for growth fits) are kept this long, even past the window.
        self.fit_window = float(fit_window)
        self.pane_width = self.window / PANES
        self.max_series = max_series
        self.lock = threading.RLock()
        self._clock = clock
        self._started = clock()
        # Per-component series (what signals read every tick) apart from the finer model/collection ones.
        self._coarse: dict[SpanKey, _SpanSeries] = {}
        self._fine: dict[SpanKey, _SpanSeries] = {}
        self._metrics: dict[str, dict[MetricKey, MetricSeries]] = {}
        self._metric_count = 0
        self._logs: dict[str, deque[list[int]]] = {}  # service -> panes of [index, records, errors]
        self._summaries: dict[tuple[str, ...], tuple[int, int, Summary]] = {}
        self._totals = {"spans": 0, "metric_points": 0, "logs": 0, "overflow": 0}
        self._expired_through = -1
        self._deploys: dict[str, Deploy] = {}
        # The dependency graph's own edges (stage -> dependency, service -> service), beside the span series.
        self.max_edges = max_edges
        self._edges: dict[EdgeKey, tuple[Node, Node, _SpanSeries]] = {}
        self._dependency_nodes: dict[tuple[str, str, str, str], Node | None] = {}
        self.pairs = CallPairs(ttl=max(self.detection_horizon, 10.0))
        self._totals["graph_overflow"] = 0

    # --- writing ---------------------------------------------------------------------------------------------

    def _series_count(self) -> int:
        return len(self._coarse) + len(self._fine) + self._metric_count + len(self._logs)

    def _span_series(self, key: SpanKey) -> _SpanSeries | None:
        """The series of ``key``, created if the limit allows; None when it would exceed ``max_series``."""
        store = self._coarse if key[3] == "" and key[4] == "" else self._fine
        series = store.get(key)
        if series is None and self._series_count() < self.max_series:
            series = store[key] = _SpanSeries(RecentRing(self._recent_keep) if store is self._coarse else None)
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
                overflow = self._coarse[_OVERFLOW_SPAN] = _SpanSeries(RecentRing(self._recent_keep))
            found.append(overflow)
        return found

    def add_traces(self, batch: TraceBatch, now: float | None = None) -> None:
        """Count a batch of spans into the current pane of each (fine and per-component) series."""
        now = self._clock() if now is None else now
        index = int(now // self.pane_width)
        recent_index = int(now // PANE)
        with self.lock:
            for group in batch.groups:
                n = len(group.durations)
                bins = QuantileSketch.indices(group.durations)
                total = math.fsum(group.durations)
                coarse: SpanKey = (group.service, group.stage, group.component, "", "")
                fine: SpanKey = (group.service, group.stage, group.component, group.model, group.collection)
                targets = self._targets(coarse, fine, n)
                for series in targets:
                    _count_into(series, index, recent_index, group, bins, total)
                if group.users:  # distinct users are a pipeline-level figure: the per-component series only
                    pane = targets[0].panes[-1]
                    if pane.users is None:
                        pane.users = DistinctCounter()
                    pane.users.add_all(group.users)
                if group.provider or group.db_system:
                    self._add_dependency_calls(group, index, recent_index, bins, total)
            if batch.calls:
                self._add_service_calls(batch.calls, now, index, recent_index)
            self._totals["spans"] += batch.accepted
            for service, version in batch.versions.items():
                self._note_version(service, version, now)

    def _edge(self, source: Node, target: Node, calls: int) -> _SpanSeries | None:
        """The series of the edge ``source -> target``, created if ``max_edges`` allows (else ``calls`` are counted
        as dropped and None returned)."""
        key = (source.id, target.id)
        held = self._edges.get(key)
        if held is not None:
            return held[2]
        if len(self._edges) >= self.max_edges:
            self._totals["graph_overflow"] += calls
            return None
        series = _SpanSeries(RecentRing(self._recent_keep))
        self._edges[key] = (source, target, series)
        return series

    def _add_dependency_calls(
        self, group: SpanGroup, index: int, recent_index: int, bins: list[int], total: float
    ) -> None:
        """Count a group's calls on the edge from its stage to the LLM or database they call."""
        memo = (group.stage, group.provider, group.db_system, group.server)
        if memo in self._dependency_nodes:
            target = self._dependency_nodes[memo]
        else:
            target = dependency_node(*memo)
            if len(self._dependency_nodes) >= self.max_edges:
                self._dependency_nodes.clear()
            self._dependency_nodes[memo] = target
        if target is None:
            return
        series = self._edge(stage_node(group.service, group.stage, group.component), target, len(group.durations))
        if series is not None:
            _count_into(series, index, recent_index, group, bins, total)

    def _add_service_calls(self, calls: list[CallSpan], now: float, index: int, recent_index: int) -> None:
        """Pair CLIENT and SERVER spans; count each pair on the edge between the two services, with the client's
        duration (what the caller waited) and an error when either side failed."""
        for client, server in self.pairs.add(calls, now):
            series = self._edge(service_node(client.service), service_node(server.service), 1)
            if series is not None:
                _count_call(series, index, recent_index, client, client.error or server.error)

    def _add_peer_calls(self, calls: list[CallSpan], now: float) -> None:
        """Count CLIENT spans no SERVER span answered on the edge to the HTTP dependency they name (now: they are
        counted late, when their wait ends)."""
        index, recent_index = int(now // self.pane_width), int(now // PANE)
        for client in calls:
            series = self._edge(service_node(client.service), peer_node(client.peer), 1)
            if series is not None:
                _count_call(series, index, recent_index, client, client.error)

    def _note_version(self, service: str, version: str, now: float) -> None:
        """Keep the current and previous ``service.version`` of a service and when it changed (first seen)."""
        known = self._deploys.get(service)
        if known is None:
            if version and len(self._deploys) < _MAX_DEPLOYS:
                self._deploys[service] = Deploy(version, None, None)
        # The previous version again is the other replicas of a rolling deploy, not a new change.
        elif version and version not in (known.version, known.previous_version):
            self._deploys[service] = Deploy(version, known.version, now)

    def deploy(self, service: str) -> Deploy | None:
        """The version ``service`` runs now, the previous one and when it changed (None before any version)."""
        with self.lock:
            return self._deploys.get(service)

    def add_metrics(self, batch: MetricBatch, now: float | None = None) -> None:
        """Record each point as the latest value of its series and as a sample for growth fitting."""
        now = self._clock() if now is None else now
        with self.lock:
            for point in batch.points:
                self._add_point(point, now)
            self._totals["metric_points"] += batch.accepted

    def _add_point(self, point: MetricPoint, now: float) -> None:
        if not math.isfinite(point.value):  # receive/extract rejects these; a batch built elsewhere may not
            return
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
                series = MetricSeries(point.kind, point.unit)
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
        sample_horizon = now - max(self.window, self.fit_window)
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
            for edge, (_, _, series) in list(self._edges.items()):
                panes = series.panes
                while panes and panes[0].index < first:
                    panes.popleft()
                if not panes:
                    del self._edges[edge]
            unanswered = self.pairs.expire(now)
            if unanswered:
                self._add_peer_calls(unanswered, now)
            for name, by_key in list(self._metrics.items()):
                for mkey, metric in list(by_key.items()):
                    if metric.last_arrival < horizon:
                        del by_key[mkey]
                        self._metric_count -= 1
                        continue
                    samples = metric.samples
                    while samples and samples[0][0] < sample_horizon:
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

    def _summary(self, key: tuple[str, ...], series: _SpanSeries, now: float, first: int | None = None) -> Summary:
        """Merge the panes in the window (or from pane ``first`` on, uncached); cached for per-component series,
        which every rule tick reads."""
        cache = first is None and len(key) == 5 and key[3] == "" and key[4] == ""
        first = self._first_pane(now) if first is None else first
        cached = self._summaries.get(key) if cache else None
        if cached is not None and cached[0] == series.version and cached[1] == first:
            return cached[2]
        summary = Summary(0, 0, 0, 0.0, QuantileSketch(), None)
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
    ) -> Iterable[tuple[SpanKey, Summary]]:
        for key, series in (self._coarse if coarse else self._fine).items():
            if (service is not None and key[0] != service) or (stages is not None and key[1] not in stages):
                continue
            summary = self._summary(key, series, now)
            if summary.count:
                yield key, summary

    def _live(self, name: str, now: float) -> Iterable[tuple[MetricKey, MetricSeries]]:
        horizon = now - self.window
        for key, series in self._metrics.get(name, {}).items():
            if series.last_arrival >= horizon:
                yield key, series

    def _metric_services(self) -> set[str]:
        return {key[0] for by_key in self._metrics.values() for key in by_key}

    def services(self) -> list[str]:
        """Names of the services with any span, metric or log series held."""
        with self.lock:
            return sorted({k[0] for k in self._coarse} | set(self._logs) | self._metric_services())

    def snapshot_counts(self) -> dict[str, int]:
        """Totals since start (spans, metric_points, logs, overflow) and the current number of series."""
        with self.lock:
            return {**self._totals, "series": self._series_count()}
