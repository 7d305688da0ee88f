"""In-memory spans and metrics for users' own tests: ``with ragotel.testing.capture() as cap: ...``.

No OpenTelemetry global is touched: ``capture()`` builds its own providers and makes them ragotel's current
telemetry for the duration of the block only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragotel import telemetry as _telemetry
from ragotel.config import DEFAULT_CAPTURE_MAX_LENGTH

__all__ = ["Capture", "MetricPoint", "capture"]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One exported data point, flattened: histogram points carry count/sum/buckets, others a value."""

    name: str
    unit: str
    attributes: dict[str, Any]
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()


class Capture:
    """What a :func:`capture` block recorded; also the providers, to hand to code that takes them."""

    def __init__(self, resource: Resource | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource or Resource.create({"service.name": "test"}))
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(resource=self.tracer_provider.resource, metric_readers=[self.reader])

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans in end order, optionally only those called ``name``."""
        spans = list(self.exporter.get_finished_spans())
        return spans if name is None else [s for s in spans if s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``; AssertionError if there are none or several."""
        found = self.spans(name)
        assert len(found) == 1, f"expected one span {name!r}, found {len(found)}: {[s.name for s in self.spans()]}"
        return found[0]

    def metrics(self, name: str | None = None) -> list[MetricPoint]:
        """Collect now and return every data point (optionally of metric ``name``)."""
        data = self.reader.get_metrics_data()
        points: list[MetricPoint] = []
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if name is not None and metric.name != name:
                        continue
                    for p in metric.data.data_points:
                        attrs = dict(p.attributes or {})
                        if isinstance(p, HistogramDataPoint):
                            points.append(
                                MetricPoint(
                                    metric.name,
                                    metric.unit or "",
                                    attrs,
                                    count=p.count,
                                    sum=p.sum,
                                    bucket_counts=tuple(p.bucket_counts),
                                    explicit_bounds=tuple(p.explicit_bounds),
                                )
                            )
                        elif isinstance(p, NumberDataPoint):
                            points.append(MetricPoint(metric.name, metric.unit or "", attrs, value=p.value))
        return points

    def metric_names(self) -> set[str]:
        """Names of every metric with at least one point."""
        return {p.name for p in self.metrics()}

    def clear(self) -> None:
        """Forget the spans recorded so far (metrics are cumulative and not cleared)."""
        self.exporter.clear()


@contextmanager
def capture(
    *, capture_content: bool = False, capture_max_length: int = DEFAULT_CAPTURE_MAX_LENGTH, openinference: bool = False
) -> Iterator[Capture]:
    """Record every ragotel span and metric made inside the block in memory; restores everything after.

    ``openinference=True`` adds the OpenInference names, as ``RAGOTEL_OPENINFERENCE=true`` does for ``instrument()``.
    """
    cap = Capture()
    tel = _telemetry.Telemetry(
        cap.tracer_provider,
        cap.meter_provider,
        capture_content=capture_content,
        capture_max_length=capture_max_length,
        openinference=openinference,
    )
    _telemetry.push(tel)
    try:
        yield cap
    finally:
        _telemetry.pop(tel)
        cap.tracer_provider.shutdown()
        cap.meter_provider.shutdown()
