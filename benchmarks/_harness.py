"""Shared benchmark plumbing: the one OTel SDK setup every configuration uses, robust statistics, resource probes.

Imported by ``benchmarks/overhead.py`` and by every worker process of ``benchmarks/peers.py`` (which may run in the
peers' virtualenv, so this module depends on the OpenTelemetry SDK and the standard library only).
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class CountingExporter(SpanExporter):
    """A span exporter that only counts (and optionally keeps the last few spans for shape checks)."""

    def __init__(self, keep: int = 0) -> None:
        self.count = 0
        self.keep = keep
        self.kept: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.count += len(spans)
            if self.keep:
                self.kept.extend(spans)
                del self.kept[: max(0, len(self.kept) - self.keep)]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered here."""
        return True


@dataclass
class SdkSetup:
    """TracerProvider + BatchSpanProcessor → counting no-op exporter; MeterProvider + InMemoryMetricReader."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: CountingExporter
    reader: InMemoryMetricReader

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def sdk_setup(keep: int = 0) -> SdkSetup:
    """Build the identical SDK setup every configuration of every benchmark uses."""
    resource_ = Resource.create({"service.name": "ragotel-bench"})
    exporter = CountingExporter(keep)
    tracer_provider = TracerProvider(resource=resource_)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource_, metric_readers=[reader])
    return SdkSetup(tracer_provider, meter_provider, exporter, reader)


# -- statistics ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """Median and interquartile range of a sample."""

    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def summarize(values: Sequence[float]) -> Summary:
    """Median and quartiles (inclusive method, stable for small samples)."""
    if not values:
        return Summary(float("nan"), float("nan"), float("nan"), 0)
    if len(values) == 1:
        v = float(values[0])
        return Summary(v, v, v, 1)
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(med, q1, q3, len(values))


# -- resources ---------------------------------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    t = os.times()
    return t.user + t.system


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident set size, in MB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)


def now() -> float:
    """Monotonic high-resolution clock used for every timing."""
    return time.perf_counter()


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (readable in a terminal and pasteable into docs)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])
