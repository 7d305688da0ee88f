"""Shared by the health tests: a registry and a metric reader bound to it, metric points, waiting on a condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ragotel.health import HealthRegistry
from ragotel.health.gauges import bind


@pytest.fixture
def reg() -> Iterator[HealthRegistry]:
    """A fresh HealthRegistry, stopped after the test."""
    registry = HealthRegistry()
    yield registry
    registry.stop()


@pytest.fixture
def reader(reg: HealthRegistry) -> Iterator[InMemoryMetricReader]:
    """An in-memory metric reader whose MeterProvider carries `reg`'s gauges."""
    rd = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[rd])
    binding = bind(reg, provider)
    yield rd
    binding.stop()
    provider.shutdown()


def metric_points(rd: InMemoryMetricReader, metric: str) -> list[tuple[dict[str, Any], Any]]:
    """[(attributes, value)] of every point of one metric, collected now."""
    data = rd.get_metrics_data()
    out: list[tuple[dict[str, Any], Any]] = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == metric:
                    out += [(dict(p.attributes or {}), p.value) for p in m.data.data_points]  # type: ignore[union-attr]
    return out


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` every 20 ms until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)
