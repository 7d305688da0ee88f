"""Recent panes: the last seconds of each (service, stage, component), newest first, for fast detection.

Next to the statistics window (``window``, 12 panes), every per-component series keeps a ring of short panes
(``PANE`` seconds) over the detection horizon. A read takes panes newest-first until it holds ``min_samples``
spans or reaches the horizon, so at 10 requests/s it sees the last second, at 1 request/s the last ten seconds,
and a series slower than ``min_samples / horizon`` never gathers enough to be judged. Durations are kept per pane
in a list capped at ``_PANE_DURATIONS`` (the first spans of a pane beyond that are a sample, not all of them).
The ring also holds what the baselines roll up every 10 seconds (``windows/baselines.py``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Final

from ragotel.analyzer.windows.records import RecentStats, SpanGroup

__all__ = ["PANE", "RecentPane", "RecentRing", "quantile"]

PANE: Final = 0.25
"""Seconds per recent pane: fine enough that a read at 10 requests/s stops within ~0.25 s of its min_samples."""
_PANE_DURATIONS: Final = 64


class RecentPane:
    """Counts of one ``PANE`` of arrivals; written by the ingest worker under the window lock."""

    __slots__ = ("count", "durations", "empty", "errors", "index", "token_calls", "tokens")

    def __init__(self, index: int) -> None:
        self.index = index
        self.count = 0
        self.errors = 0
        self.empty = 0
        self.tokens = 0
        self.token_calls = 0
        self.durations: list[float] = []


class RecentRing:
    """The panes of one series over the last ``keep`` seconds (oldest first)."""

    __slots__ = ("keep", "panes")

    def __init__(self, keep: float) -> None:
        self.keep = math.ceil(keep / PANE)
        self.panes: deque[RecentPane] = deque()

    def add(self, index: int, group: SpanGroup) -> None:
        """Count a group of spans into pane ``index`` (the current one); drop panes older than ``keep``."""
        panes = self.panes
        if not panes or panes[-1].index != index:
            panes.append(RecentPane(index))
            while panes[0].index <= index - self.keep:
                panes.popleft()
        pane = panes[-1]
        pane.count += len(group.durations)
        pane.errors += group.errors
        pane.empty += group.empty_retrievals
        pane.tokens += group.tokens
        pane.token_calls += group.token_calls
        durations = group.durations
        room = _PANE_DURATIONS - len(pane.durations)
        if len(durations) <= room:
            pane.durations.extend(durations)
        elif room > 0:
            pane.durations.extend(durations[:room])

    def newest(self, now_index: int, horizon: int) -> Iterator[RecentPane]:
        """Panes newest-first, back to ``horizon`` panes before ``now_index``."""
        for pane in reversed(self.panes):
            if pane.index <= now_index - horizon:
                return
            if pane.index <= now_index:
                yield pane

    def between(self, first: int, last: int) -> list[RecentPane]:
        """Panes with ``first <= index <= last`` (newest first; stops at the first older pane)."""
        out = []
        for pane in reversed(self.panes):
            if pane.index < first:
                break
            if pane.index <= last:
                out.append(pane)
        return out

    def read(self, now: float, *, stage: str, min_samples: int, horizon: float) -> RecentStats | None:
        """The newest panes holding at least ``min_samples`` spans (or all within ``horizon``); None when empty."""
        now_index = int(now // PANE)
        taken: list[RecentPane] = []
        count = 0
        for pane in self.newest(now_index, max(1, math.ceil(horizon / PANE))):
            taken.append(pane)
            count += pane.count
            if count >= min_samples:
                break
        if not count:
            return None
        durations = sorted(d for p in taken for d in p.durations)
        tokens = sum(p.tokens for p in taken)
        calls = sum(p.token_calls for p in taken)
        return RecentStats(
            count=count,
            errors=sum(p.errors for p in taken),
            empty=sum(p.empty for p in taken),
            retrievals=count if stage == "retrieval" else 0,
            p50=quantile(durations, 0.5),
            p95=quantile(durations, 0.95),
            tokens_per_call=tokens / calls if calls else None,
            seconds=(now_index - taken[-1].index + 1) * PANE,
        )


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an ascending sequence (0.0 when empty)."""
    if not ordered:
        return 0.0
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
