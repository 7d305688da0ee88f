"""Typed records the windows take in (the batches of one OTLP request) and give out (signal values, stage stats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Baseline",
    "CallSpan",
    "Deploy",
    "LogBatch",
    "MetricBatch",
    "MetricPoint",
    "RecentStats",
    "SignalValue",
    "SpanGroup",
    "StageStats",
    "TraceBatch",
]


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
    tokens: int = 0  # input + output tokens of the spans reporting usage (generation, embedding)
    token_calls: int = 0  # spans reporting usage
    # What the spans call, for the dependency graph (windows/graph.py): gen_ai.provider.name, db.system.name and
    # server.address ("" when absent). Spans differing only in these share the statistics series above.
    provider: str = ""
    db_system: str = ""
    server: str = ""


@dataclass(frozen=True, slots=True)
class CallSpan:
    """A CLIENT or SERVER span, kept for pairing the calls of one service into another (W3C trace context)."""

    client: bool  # kind CLIENT (else SERVER)
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    service: str
    duration: float  # seconds
    error: bool
    peer: str = ""  # a CLIENT span's server.address: the peer it calls, if no SERVER span of it ever comes


@dataclass(frozen=True, slots=True)
class TraceBatch:
    """The spans of one request the windows will count."""

    groups: list[SpanGroup]
    accepted: int
    rejected: int
    error_message: str
    versions: dict[str, str] = field(default_factory=dict)  # service -> its resource's service.version
    calls: list[CallSpan] = field(default_factory=list)  # CLIENT and SERVER spans, for cross-service edges


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
class Deploy:
    """The version a service's spans carry now, the one before it and when the change was first seen."""

    version: str
    previous_version: str | None
    changed_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"previous_version": self.previous_version, "version": self.version, "changed_at": self.changed_at}


@dataclass(frozen=True, slots=True)
class SignalValue:
    """One value of a signal for one label set (keys among service, stage, component, model, collection,
    dependency, kind; empty labels are left out). Span signals also give the spans and failed spans behind it."""

    labels: dict[str, str]
    value: float
    count: int = field(default=0, compare=False)
    errors: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class StageStats:
    """One (stage, component) of a service over the window: what the diagnosis reads and ``/api/v1/stats`` shows.

    ``time_share`` is the stage's summed duration over that of the service's pipeline spans (None without any);
    ``empty_retrieval_rate`` is set for retrieval only, ``success_rate`` and ``users`` for pipeline only.
    """

    stage: str
    component: str
    count: int
    rate: float
    error_rate: float
    p50: float | None
    p95: float | None
    p99: float | None
    avg: float
    time_share: float | None
    empty_retrieval_rate: float | None = None
    success_rate: float | None = None
    users: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON row (optional fields only where they apply)."""
        row: dict[str, Any] = {
            "stage": self.stage,
            "component": self.component,
            "count": self.count,
            "rate": self.rate,
            "error_rate": self.error_rate,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "avg": self.avg,
        }
        if self.empty_retrieval_rate is not None:
            row["empty_retrieval_rate"] = self.empty_retrieval_rate
        if self.success_rate is not None:
            row["success_rate"] = self.success_rate
            row["users"] = self.users
        row["time_share"] = self.time_share
        return row


@dataclass(frozen=True, slots=True)
class RecentStats:
    """The newest spans of one (service, stage, component): at least ``min_samples`` of them when the horizon held
    that many, over ``seconds`` of arrivals. ``empty`` and ``retrievals`` count retrieval spans only;
    ``tokens_per_call`` is None when no span reported token usage."""

    count: int
    errors: int
    empty: int
    retrievals: int
    p50: float
    p95: float
    tokens_per_call: float | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Baseline:
    """What one (service, stage, component) usually does, learnt over the trailing baseline horizon.

    ``p50``/``p95`` are medians of the 10-second buckets' quantiles; the rates and ``tokens_per_call`` are pooled
    over the buckets (``tokens_per_call`` None without usage); ``samples`` is the number of spans behind it.
    """

    p50: float
    p95: float
    error_rate: float
    empty_rate: float
    tokens_per_call: float | None
    samples: int
    buckets: int
