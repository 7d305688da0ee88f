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
    """HyperLogLog with 2**12 one-byte registers (about 1.6% standard error, exact-ish below a few hundred).

    Items are hashed with Python's ``hash`` (SipHash, randomised per process): estimates are meaningful only
    within one process, which is all the in-memory windows need. Not thread-safe.
    """

    __slots__ = ("registers",)

    P = 12
    M = 1 << P

    def __init__(self) -> None:
        self.registers = bytearray(self.M)

    def add_all(self, items: Iterable[str]) -> None:
        """Count each item once, however often it repeats."""
        regs = self.registers
        width = 64 - self.P
        low_mask = (1 << width) - 1
        for item in items:
            h = hash(item) & 0xFFFFFFFFFFFFFFFF
            idx = h >> width
            rho = width - (h & low_mask).bit_length() + 1
            regs[idx] = max(regs[idx], rho)

    def merge(self, other: DistinctCounter) -> None:
        """Take the register-wise maximum with ``other``."""
        self.registers = bytearray(map(max, self.registers, other.registers))

    def estimate(self) -> int:
        """Return the estimated number of distinct items added."""
        m = self.M
        regs = self.registers
        zeros = regs.count(0)
        if zeros == m:
            return 0
        raw = (0.7213 / (1 + 1.079 / m)) * m * m / math.fsum(2.0**-r for r in regs)
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)
