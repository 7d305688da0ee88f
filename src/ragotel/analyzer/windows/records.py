"""Typed records the windows take in (the batches decoded from one OTLP request) and give out (signal values)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LogBatch", "MetricBatch", "MetricPoint", "SignalValue", "SpanGroup", "TraceBatch"]


@dataclass(frozen=True, slots=True)
class SpanGroup:
    """Spans of one request sharing (service, stage, component, model, collection)."""

    service: str
    stage: str
    component: str
    model: str
    collection: str
    durations: list[float]  # seconds
    errors: int
    empty_retrievals: int
    users: list[str]


@dataclass(frozen=True, slots=True)
class TraceBatch:
    """The spans of one request the windows will count."""

    groups: list[SpanGroup]
    accepted: int
    rejected: int
    error_message: str


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One data point reduced to a number: the value (gauge, sum) or the mean (histogram, summary)."""

    service: str
    name: str
    attributes: tuple[tuple[str, str], ...]
    kind: str
    unit: str
    time: float  # seconds since the epoch, from the point (0 when the exporter left it unset)
    value: float
    count: int  # observations behind a histogram/summary point; 1 for gauges and sums


@dataclass(frozen=True, slots=True)
class MetricBatch:
    """The data points of one request."""

    points: list[MetricPoint]
    accepted: int
    rejected: int
    error_message: str


@dataclass(frozen=True, slots=True)
class LogBatch:
    """Log record counts of one request per service: (records, error records)."""

    services: dict[str, tuple[int, int]]
    accepted: int


@dataclass(frozen=True, slots=True)
class SignalValue:
    """One value of a signal for one label set (keys among service, stage, component, model, collection,
    dependency, kind; empty labels are left out)."""

    labels: dict[str, str]
    value: float
