"""History: a downsampled, bounded time series per (service, stage) for the page's charts.

Two resolutions, both closed from the recent panes the baselines use (``windows/recent.py``):

- ``STEP`` (10 s) points over the last ``FINE_KEEP`` (1 h): at most 360 per series;
- ``COARSE_STEP`` (5 min) points over the last ``COARSE_KEEP`` (24 h): at most 288 per series, folded from the
  10-second points once their 5 minutes are over: counts add up, p50 is the count-weighted mean of the 10-second
  p50s, p95 is the highest 10-second p95 (a 5-minute point keeps the spike it contains).

A point is ``(start, count, errors, empty, p50, p95)`` stored in flat ``array('d')`` rings (48 bytes a point), so
``MAX_SERIES`` series (500) hold at most about 15 MB. A stage is the sum of its components; a new series beyond
the limit evicts the least recently updated one. ``dump``/``load`` carry the points through the state file (new
points only, so a save writes what changed), so the charts survive a restart.

Not thread-safe by itself: ``Windows`` calls it under its lock.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import Final

from ragotel.analyzer.windows.recent import PANE, RecentRing, quantile

__all__ = ["COARSE_KEEP", "COARSE_STEP", "FINE_KEEP", "MAX_SERIES", "STEP", "History", "HistoryKey", "Point"]

STEP: Final = 10.0
FINE_KEEP: Final = 3600.0
COARSE_STEP: Final = 300.0
COARSE_KEEP: Final = 86400.0
MAX_SERIES: Final = 500
_LATE: Final = 1.0  # a point closes this long after its end, so batches still in flight count in it
_PANES_PER_STEP: Final = round(STEP / PANE)
_WIDTH: Final = 6  # start, count, errors, empty, p50, p95

HistoryKey = tuple[str, str]  # service, stage
Point = tuple[float, int, int, int, float, float]


class _Ring:
    """Points of one resolution, oldest first, at most ``size``."""

    __slots__ = ("data", "saved", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = array("d")
        self.saved = 0.0  # start of the newest point already dumped

    def append(self, point: Point) -> None:
        if len(self.data) and self.data[-_WIDTH] >= point[0]:
            return  # points arrive in time order; a repeat (restore, then roll) is dropped
        self.data.extend(float(v) for v in point)
        if len(self.data) > self.size * _WIDTH:
            del self.data[:_WIDTH]

    def points(self, since: float = float("-inf"), before: float = float("inf")) -> list[Point]:
        out: list[Point] = []
        data = self.data
        for i in range(0, len(data), _WIDTH):
            start = data[i]
            if since <= start < before:
                out.append((start, int(data[i + 1]), int(data[i + 2]), int(data[i + 3]), data[i + 4], data[i + 5]))
        return out

    @property
    def last_start(self) -> float | None:
        return self.data[-_WIDTH] if len(self.data) else None


class _Series:
    __slots__ = ("coarse", "fine", "updated")

    def __init__(self) -> None:
        self.fine = _Ring(int(FINE_KEEP // STEP))
        self.coarse = _Ring(int(COARSE_KEEP // COARSE_STEP))
        self.updated = 0.0


class History:
    """The downsampled per-(service, stage) history; bounded to ``max_series`` series."""

    def __init__(self, *, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        self._series: dict[HistoryKey, _Series] = {}
        self._through: int | None = None  # last 10-second step closed

    # -- writing -------------------------------------------------------------------------------------------------
    def roll(self, rings: Iterable[tuple[tuple[str, str, str], RecentRing]], now: float) -> None:
        """Close every 10-second step that ended ``_LATE`` seconds ago, then every 5-minute point that ended."""
        last = int((now - _LATE) // STEP) - 1
        first = last if self._through is None else self._through + 1
        if last < first:
            return
        self._through = last
        first = max(first, last - 3)  # after a long pause the recent panes are gone anyway
        by_stage: dict[HistoryKey, list[RecentRing]] = {}
        for (service, stage, _component), ring in rings:
            by_stage.setdefault((service, stage), []).append(ring)
        for key, stage_rings in by_stage.items():
            for index in range(first, last + 1):
                panes = [
                    p
                    for ring in stage_rings
                    for p in ring.between(index * _PANES_PER_STEP, (index + 1) * _PANES_PER_STEP - 1)
                ]
                count = sum(p.count for p in panes)
                if not count:
                    continue
                durations = sorted(d for p in panes for d in p.durations)
                point = (
                    index * STEP,
                    count,
                    sum(p.errors for p in panes),
                    sum(p.empty for p in panes),
                    quantile(durations, 0.5),
                    quantile(durations, 0.95),
                )
                self._add(key, point, now)
        closed = (now - _LATE) // COARSE_STEP * COARSE_STEP  # coarse points starting before this are over
        for series in self._series.values():
            self._fold(series, closed)

    def _add(self, key: HistoryKey, point: Point, now: float) -> None:
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= self.max_series:
                del self._series[min(self._series, key=lambda k: self._series[k].updated)]
            series = self._series[key] = _Series()
        series.fine.append(point)
        series.updated = now

    @staticmethod
    def _fold(series: _Series, closed: float) -> None:
        """Fold the 10-second points of every 5-minute period that ended (and is not folded yet)."""
        after = series.coarse.last_start
        since = after + COARSE_STEP if after is not None else float("-inf")
        if since >= closed:
            return
        groups: dict[float, list[Point]] = {}
        for point in series.fine.points(since, closed):
            groups.setdefault(point[0] // COARSE_STEP * COARSE_STEP, []).append(point)
        for start, points in sorted(groups.items()):
            count = sum(p[1] for p in points)
            series.coarse.append(
                (
                    start,
                    count,
                    sum(p[2] for p in points),
                    sum(p[3] for p in points),
                    sum(p[4] * p[1] for p in points) / count,
                    max(p[5] for p in points),
                )
            )

    # -- reading -------------------------------------------------------------------------------------------------
    def keys(self) -> list[HistoryKey]:
        return sorted(self._series)

    def points(self, key: HistoryKey, since: float, now: float) -> tuple[list[Point], float]:
        """The points of a series from ``since`` on, and their resolution in seconds: 10 s when ``since`` is
        within the last hour, else 5 min (older than 24 h is gone)."""
        series = self._series.get(key)
        if now - since <= FINE_KEEP:
            return (series.fine.points(since) if series is not None else []), STEP
        return (series.coarse.points(since) if series is not None else []), COARSE_STEP

    # -- persistence ---------------------------------------------------------------------------------------------
    def dump(self) -> list[tuple[HistoryKey, float, Point]]:
        """Points closed since the last dump: (key, resolution, point)."""
        out: list[tuple[HistoryKey, float, Point]] = []
        for key, series in self._series.items():
            for resolution, ring in ((STEP, series.fine), (COARSE_STEP, series.coarse)):
                fresh = [p for p in ring.points(ring.saved) if p[0] > ring.saved]
                out.extend((key, resolution, p) for p in fresh)
                if fresh:
                    ring.saved = fresh[-1][0]
        return out

    def load(self, rows: Iterable[tuple[HistoryKey, float, Sequence[float]]], now: float) -> int:
        """Restore dumped points (those past their resolution's horizon are dropped); returns the series loaded."""
        loaded: set[HistoryKey] = set()
        for key, resolution, raw in sorted(rows, key=lambda r: r[2][0]):
            keep = FINE_KEEP if resolution == STEP else COARSE_KEEP
            if len(raw) != _WIDTH or raw[0] < now - keep:
                continue
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self.max_series:
                    continue
                series = self._series[key] = _Series()
            ring = series.fine if resolution == STEP else series.coarse
            point = (float(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]), float(raw[4]), float(raw[5]))
            ring.append(point)
            ring.saved = max(ring.saved, point[0])
            series.updated = max(series.updated, point[0])
            loaded.add(key)
        if loaded:
            newest = max(s.fine.last_start or 0.0 for s in self._series.values())
            self._through = max(self._through or 0, int(newest // STEP))
        return len(loaded)
