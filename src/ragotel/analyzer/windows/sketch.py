"""Mergeable sketches: a relative-error quantile sketch (DDSketch-style) and a HyperLogLog distinct counter."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

__all__ = ["DistinctCounter", "QuantileSketch"]

# Values at or below this many seconds share one bucket reported as 0; far below any span duration.
_MIN_VALUE = 1e-9
_ZERO_BIN = -(2**31)


class QuantileSketch:
    """Log-bucketed quantile sketch: every quantile it returns is within 1% (relative) of the true sample.

    Buckets are ``(gamma**(i-1), gamma**i]`` with ``gamma = (1+a)/(1-a)``, ``a = 0.01``; a bucket is reported
    by the value ``2*gamma**i/(gamma+1)``, which is within ``a`` of every value in it. Sketches merge by adding
    bucket counts, so per-interval sketches combine into a window exactly. Not thread-safe.
    """

    __slots__ = ("bins", "count")

    def __init__(self) -> None:
        self.bins: Counter[int] = Counter()
        self.count = 0

    @staticmethod
    def indices(values: Iterable[float]) -> list[int]:
        """Return the bucket index of each value (negative and tiny values map to the zero bucket)."""
        log, ceil, mult = math.log, math.ceil, _INV_LOG_GAMMA
        return [ceil(log(v) * mult) if v > _MIN_VALUE else _ZERO_BIN for v in values]

    def add_indices(self, indices: list[int]) -> None:
        """Count values already mapped by :meth:`indices` (lets one mapping feed several sketches)."""
        self.bins.update(indices)
        self.count += len(indices)

    def add(self, value: float) -> None:
        """Count one value."""
        self.add_indices(self.indices((value,)))

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s counts into this sketch."""
        self.bins.update(other.bins)
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """Return the value at rank ``floor(q*(count-1))`` (0-based, sorted order) within 1%; None when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q!r}")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        seen = 0
        bins = self.bins
        for index in sorted(bins):
            seen += bins[index]
            if seen > rank:
                return _value(index)
        return _value(max(bins))  # unreachable unless counts were edited by hand

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Return several quantiles with one sort of the buckets."""
        wanted = list(qs)
        if self.count == 0:
            return [None] * len(wanted)
        ranks = sorted((math.floor(q * (self.count - 1)), i) for i, q in enumerate(wanted))
        out: list[float | None] = [None] * len(wanted)
        seen = 0
        pos = 0
        bins = self.bins
        for index in sorted(bins):
            seen += bins[index]
            while pos < len(ranks) and seen > ranks[pos][0]:
                out[ranks[pos][1]] = _value(index)
                pos += 1
            if pos == len(ranks):
                break
        return out


_ACCURACY = 0.01
_GAMMA = (1 + _ACCURACY) / (1 - _ACCURACY)
_INV_LOG_GAMMA = 1.0 / math.log(_GAMMA)


def _value(index: int) -> float:
    if index == _ZERO_BIN:
        return 0.0
    return 2.0 * _GAMMA**index / (_GAMMA + 1.0)


class DistinctCounter:
    """Distinct count: exact up to ``EXACT_LIMIT`` items, then HyperLogLog with 2**12 one-byte registers
    (about 1.6% standard error).

    Items are hashed with Python's ``hash`` (SipHash, randomised per process): estimates are meaningful only
    within one process, which is all the in-memory windows need. Small sets stay small (a set of hashes, not
    4 KiB of registers). Not thread-safe.
    """

    __slots__ = ("exact", "registers")

    P = 12
    M = 1 << P
    EXACT_LIMIT = 256

    def __init__(self) -> None:
        self.exact: set[int] | None = set()
        self.registers: bytearray | None = None

    def add_all(self, items: Iterable[str]) -> None:
        """Count each item once, however often it repeats."""
        hashes = [hash(item) & 0xFFFFFFFFFFFFFFFF for item in items]
        if self.exact is not None:
            self.exact.update(hashes)
            if len(self.exact) <= self.EXACT_LIMIT:
                return
            hashes, self.exact = list(self.exact), None
            self.registers = bytearray(self.M)
        self._add_hashes(hashes)

    def _add_hashes(self, hashes: Iterable[int]) -> None:
        regs = self.registers
        assert regs is not None
        width = 64 - self.P
        low_mask = (1 << width) - 1
        for h in hashes:
            idx = h >> width
            regs[idx] = max(regs[idx], width - (h & low_mask).bit_length() + 1)

    def merge(self, other: DistinctCounter) -> None:
        """Add ``other``'s items to this counter."""
        if other.exact is not None:
            if self.exact is not None:
                self.exact |= other.exact
                if len(self.exact) > self.EXACT_LIMIT:
                    hashes, self.exact = list(self.exact), None
                    self.registers = bytearray(self.M)
                    self._add_hashes(hashes)
            else:
                self._add_hashes(other.exact)
            return
        assert other.registers is not None
        if self.exact is not None:
            mine, self.exact = self.exact, None
            self.registers = bytearray(other.registers)
            self._add_hashes(mine)
        else:
            assert self.registers is not None
            self.registers = bytearray(map(max, self.registers, other.registers))

    def estimate(self) -> int:
        """Return the (estimated, past ``EXACT_LIMIT``) number of distinct items added."""
        if self.exact is not None:
            return len(self.exact)
        regs = self.registers
        assert regs is not None
        m = self.M
        zeros = regs.count(0)
        raw = (0.7213 / (1 + 1.079 / m)) * m * m / math.fsum(map(_INVERSE_POWERS.__getitem__, regs))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)


_INVERSE_POWERS = [2.0**-r for r in range(66)]
