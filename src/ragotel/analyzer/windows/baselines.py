"""Baselines: what each (service, stage, component) usually does, learnt from 10-second buckets of its own spans.

Every evaluation tick, ``roll`` closes the 10-second buckets that ended at least a second ago from the recent
panes (count, errors, empty retrievals, p50, p95, tokens). A series keeps its buckets over the trailing ``horizon``
(default 1 h: at most 360). Buckets observed while the rules hold the service (an adaptive alert pending or
firing on it, see ``hold``) are left out, so a baseline never learns the fault it is judging.

The baseline is ready once it has ``min_samples`` spans in at least 3 buckets of at least 3 spans: latency p50/p95
are the medians of the buckets' p50/p95 (robust to a bad bucket), the rates and tokens per call are pooled over
all buckets. ``dump``/``load`` carry the buckets through the state file, so a restart does not blind the analyzer.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from typing import Final

from ragotel.analyzer.windows.recent import PANE, RecentRing, quantile
from ragotel.analyzer.windows.records import Baseline

__all__ = ["BUCKET", "BaselineBucket", "Baselines", "SeriesKey"]

BUCKET: Final = 10.0
_PANES_PER_BUCKET: Final = round(BUCKET / PANE)
_LATE: Final = 1.0  # a bucket closes this long after its end, so batches still in flight count in it
_MIN_BUCKET_SPANS: Final = 3
_MIN_BUCKETS: Final = 3

SeriesKey = tuple[str, str, str]  # service, stage, component


@dataclass(frozen=True, slots=True)
class BaselineBucket:
    """Ten seconds of one series (what the state file keeps)."""

    start: float
    count: int
    errors: int
    empty: int
    p50: float
    p95: float
    tokens: int
    token_calls: int


class Baselines:
    """Trailing per-series baselines; bounded to ``max_series`` series (the least recently updated goes first).

    Not thread-safe by itself: the window store calls it under its lock.
    """

    def __init__(self, horizon: float = 3600.0, *, min_samples: int = 30, max_series: int = 5000) -> None:
        self.horizon = float(horizon)
        self.min_samples = min_samples
        self.max_series = max_series
        self._max_buckets = max(_MIN_BUCKETS, int(self.horizon // BUCKET))
        self._series: dict[SeriesKey, deque[BaselineBucket]] = {}
        self._cache: dict[SeriesKey, Baseline | None] = {}
        self._held: dict[str, float] = {}
        self._dirty: set[SeriesKey] = set()
        self._through: int | None = None  # last bucket index closed

    # -- learning ------------------------------------------------------------------------------------------------
    def hold(self, services: Iterable[str], now: float) -> None:
        """Keep the buckets of these services observed up to ``now`` out of their baselines."""
        for service in services:
            self._held[service] = now

    def roll(self, rings: Iterable[tuple[SeriesKey, RecentRing]], now: float) -> None:
        """Close every bucket that ended ``_LATE`` seconds ago or more, from the recent panes of each series."""
        last = int((now - _LATE) // BUCKET) - 1
        first = last if self._through is None else self._through + 1
        if last < first:
            return
        self._through = last
        first = max(first, last - 3)  # after a long pause the panes are gone anyway
        for key, ring in rings:
            for index in range(first, last + 1):
                panes = ring.between(index * _PANES_PER_BUCKET, (index + 1) * _PANES_PER_BUCKET - 1)
                count = sum(p.count for p in panes)
                if count:
                    durations = sorted(d for p in panes for d in p.durations)
                    self.add(
                        key,
                        BaselineBucket(
                            start=index * BUCKET,
                            count=count,
                            errors=sum(p.errors for p in panes),
                            empty=sum(p.empty for p in panes),
                            p50=quantile(durations, 0.5),
                            p95=quantile(durations, 0.95),
                            tokens=sum(p.tokens for p in panes),
                            token_calls=sum(p.token_calls for p in panes),
                        ),
                    )

    def add(self, key: SeriesKey, bucket: BaselineBucket) -> None:
        """Append one closed bucket unless its service was held during it."""
        if self._held.get(key[0], -math.inf) >= bucket.start:
            return
        buckets = self._series.get(key)
        if buckets is None:
            if len(self._series) >= self.max_series:
                oldest = min(self._series, key=lambda k: self._series[k][-1].start if self._series[k] else 0.0)
                self._drop(oldest)
            buckets = self._series[key] = deque(maxlen=self._max_buckets)
        buckets.append(bucket)
        while buckets and buckets[0].start < bucket.start - self.horizon:
            buckets.popleft()
        self._cache.pop(key, None)
        self._dirty.add(key)

    def _drop(self, key: SeriesKey) -> None:
        del self._series[key]
        self._cache.pop(key, None)
        self._dirty.discard(key)

    # -- reading -------------------------------------------------------------------------------------------------
    def get(self, key: SeriesKey) -> Baseline | None:
        """The baseline of a series, None until it is ready."""
        if key in self._cache:
            return self._cache[key]
        baseline = _baseline(self._series.get(key, ()), self.min_samples)
        self._cache[key] = baseline
        return baseline

    # -- persistence ---------------------------------------------------------------------------------------------
    def dump(self, *, dirty_only: bool = True) -> list[tuple[SeriesKey, list[list[float]]]]:
        """Series (changed since the last dump, or all) with their buckets as lists of numbers."""
        keys = list(self._dirty) if dirty_only else list(self._series)
        self._dirty.clear()
        return [(k, [list(astuple(b)) for b in self._series[k]]) for k in keys if k in self._series]

    def load(self, rows: Iterable[tuple[SeriesKey, Sequence[Sequence[float]]]], now: float) -> int:
        """Restore dumped series (buckets older than the horizon are dropped); returns how many series loaded."""
        loaded = 0
        for key, raw in rows:
            buckets = [
                BaselineBucket(
                    float(b[0]), int(b[1]), int(b[2]), int(b[3]), float(b[4]), float(b[5]), int(b[6]), int(b[7])
                )
                for b in raw
                if len(b) == 8 and b[0] >= now - self.horizon
            ]
            if not buckets or (key not in self._series and len(self._series) >= self.max_series):
                continue
            self._series[key] = deque(buckets[-self._max_buckets :], maxlen=self._max_buckets)
            self._cache.pop(key, None)
            loaded += 1
        return loaded


def _baseline(buckets: Iterable[BaselineBucket], min_samples: int) -> Baseline | None:
    buckets = list(buckets)
    solid = [b for b in buckets if b.count >= _MIN_BUCKET_SPANS]
    samples = sum(b.count for b in buckets)
    if len(solid) < _MIN_BUCKETS or samples < min_samples:
        return None
    calls = sum(b.token_calls for b in buckets)
    return Baseline(
        p50=float(statistics.median(b.p50 for b in solid)),
        p95=float(statistics.median(b.p95 for b in solid)),
        error_rate=sum(b.errors for b in buckets) / samples,
        empty_rate=sum(b.empty for b in buckets) / samples,
        tokens_per_call=sum(b.tokens for b in buckets) / calls if calls else None,
        samples=samples,
        buckets=len(buckets),
    )
