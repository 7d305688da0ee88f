"""Quantile sketch accuracy and mergeability; distinct-counter estimates."""

from __future__ import annotations

import math
import random

import pytest

from ragotel.analyzer.windows.sketch import DistinctCounter, QuantileSketch


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@pytest.mark.parametrize("q", [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])
def test_quantiles_are_within_one_percent_of_the_exact_rank(q: float) -> None:
    """Every quantile of a heavy-tailed sample is within 1% (relative) of the sample at rank floor(q*(n-1))."""
    rng = random.Random(7)
    values = [rng.lognormvariate(-2, 1.5) for _ in range(20_000)]
    sketch = QuantileSketch()
    sketch.add_indices(QuantileSketch.indices(values))
    estimate = sketch.quantile(q)
    assert estimate is not None
    assert estimate == pytest.approx(_exact(values, q), rel=0.01)


def test_merged_sketches_equal_one_sketch_of_all_values() -> None:
    """Merging per-pane sketches gives exactly the buckets of a single sketch over the union."""
    rng = random.Random(3)
    parts = [[rng.expovariate(5) for _ in range(1000)] for _ in range(5)]
    merged = QuantileSketch()
    for part in parts:
        pane = QuantileSketch()
        pane.add_indices(QuantileSketch.indices(part))
        merged.merge(pane)
    whole = QuantileSketch()
    whole.add_indices(QuantileSketch.indices([v for part in parts for v in part]))
    assert merged.bins == whole.bins
    assert merged.count == whole.count == 5000
    assert merged.quantiles([0.5, 0.99]) == [whole.quantile(0.5), whole.quantile(0.99)]


def test_zero_and_empty_sketches() -> None:
    """Zero durations are reported as 0, an empty sketch has no quantiles, and q outside [0, 1] is refused."""
    sketch = QuantileSketch()
    assert sketch.quantile(0.5) is None
    assert sketch.quantiles([0.5, 0.9]) == [None, None]
    sketch.add(0.0)
    sketch.add(-1.0)
    sketch.add(2.0)
    assert sketch.quantiles([0.0, 0.5, 1.0]) == [0.0, 0.0, pytest.approx(2.0, rel=0.01)]
    with pytest.raises(ValueError, match="quantile"):
        sketch.quantile(1.5)


def test_distinct_counter_is_exact_when_small_and_close_when_large() -> None:
    """Repeats count once; a handful of users is counted exactly and 50k within 5%, also after a merge."""
    small = DistinctCounter()
    small.add_all(["alice", "bob", "alice", "carol", "bob"])
    assert small.estimate() == 3
    a, b = DistinctCounter(), DistinctCounter()
    a.add_all(f"user-{i}" for i in range(30_000))
    b.add_all(f"user-{i}" for i in range(20_000, 50_000))
    a.merge(b)
    assert a.estimate() == pytest.approx(50_000, rel=0.05)
    a.merge(small)  # a small exact set merges into a HyperLogLog, and the other way round
    assert a.estimate() == pytest.approx(50_003, rel=0.05)
    small.merge(a)
    assert small.estimate() == a.estimate()
    assert DistinctCounter().estimate() == 0
