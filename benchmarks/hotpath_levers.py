"""Micro-measurements behind the levers of docs/performance.md "SDK hot path (issue 16)", one process, median µs.

    python benchmarks/hotpath_levers.py

Each row times one piece of the per-step path in isolation (20,000 calls, median of 9 batches) on the same SDK
setup as the other benchmarks: span start styles, a histogram record with and without an exemplar context, the
attribute-set caches against computing the sets, an extra ``set_attributes``, a per-operation lock, the
suppression check, a stream step's context activation, and counting buckets in-process (the off-path aggregation
that was measured and not adopted). Compare the rows of a pair, not absolute µs across machines.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from _harness import sdk_setup
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ragotel import semconv as sc
from ragotel.instruments import record_plan
from ragotel.telemetry import Telemetry

CALLS = 20_000


def _time(fn: Callable[[], Any]) -> float:
    runs = []
    for _ in range(9):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn()
        runs.append((time.perf_counter() - t0) / CALLS * 1e6)
    return sorted(runs)[4]


def main() -> int:
    setup = sdk_setup()
    tel = Telemetry(setup.tracer_provider, setup.meter_provider)
    tracer = setup.tracer_provider.get_tracer("levers")
    histogram = setup.meter_provider.get_meter("levers").create_histogram(
        "levers", unit="s", explicit_bucket_boundaries_advisory=list(sc.GEN_AI_DURATION_BUCKETS)
    )
    request = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: 443,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 64,
    }
    metric = {k: v for k, v in request.items() if k not in (sc.SERVER_PORT, sc.GEN_AI_REQUEST_MAX_TOKENS)}
    labels = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"}
    span = tracer.start_span("parent")
    span_ctx = trace.set_span_in_context(span)
    empty = Context()

    def current_span() -> None:
        with tracer.start_as_current_span("s", attributes=request):
            pass

    def start_and_attach() -> None:
        s = tracer.start_span("s", attributes=request)
        token = otel_context.attach(trace.set_span_in_context(s))
        otel_context.detach(token)
        s.end()

    @contextmanager
    def activated() -> Iterator[None]:
        token = otel_context.attach(span_ctx)
        try:
            yield
        finally:
            otel_context.detach(token)

    def step_cm() -> None:
        with activated():
            pass

    def step_direct() -> None:
        otel_context.detach(otel_context.attach(span_ctx))

    bounds = list(sc.GEN_AI_DURATION_BUCKETS)
    lock = threading.Lock()
    counts: dict[tuple[Any, ...], list[float]] = {}

    def own_count() -> None:
        key = tuple(labels.items())
        i = bisect.bisect_left(bounds, 0.05)
        with lock:
            row = counts.get(key)
            if row is None:
                row = counts[key] = [0.0] * (len(bounds) + 2)
            row[i] += 1
            row[-1] += 0.05

    rows = [
        ("span: start_as_current_span", current_span),
        ("span: start_span + attach/detach", start_and_attach),
        ("record: implicit context", lambda: histogram.record(0.05, labels)),
        ("record: empty context (no exemplar)", lambda: histogram.record(0.05, labels, empty)),
        ("record: the step's sampled span (exemplar)", lambda: histogram.record(0.05, labels, span_ctx)),
        ("bucket counting in-process (not adopted)", own_count),
        ("start attributes: cached plan", lambda: tel.start_plan("generation", "openai", request, None)),
        ("start attributes: computed", lambda: tel._start_plan("generation", "openai", tuple(request.items()), None)),
        ("metric attribute sets: cached plan", lambda: tel._record_plan("generation", "openai", metric)),
        ("metric attribute sets: computed", lambda: record_plan(tel, "generation", "openai", metric)),
        ("an extra span.set_attributes (2 attributes)", lambda: span.set_attributes({"a": 1, "b": "x"})),
        ("threading.Lock() per operation", threading.Lock),
        ("is_instrumentation_enabled()", is_instrumentation_enabled),
        ("stream step: @contextmanager activation", step_cm),
        ("stream step: attach/detach", step_direct),
    ]
    print("| piece | µs |\n|---|---|")
    for name, fn in rows:
        print(f"| {name} | {_time(fn):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
