"""Per-call cost of ragotel's stage decorators against a bare function and a bare OTel SDK span, in one run.

    python benchmarks/overhead.py            # full run (about a minute), prints a markdown table
    python benchmarks/overhead.py --quick    # a few tiny rounds: checks the script works, figures meaningless
    python benchmarks/overhead.py --profile generation   # cProfile of one case, top functions by own time

Every case wraps an empty function. Each ragotel case is paired with hand-written OTel SDK code making the same
span (same name, kind and attributes, read from a span ragotel really exported): once with
``tracer.start_as_current_span`` (what ragotel does: the span is current while the function runs) and once with
``tracer.start_span`` + ``end``. All cases share one SDK setup (TracerProvider + BatchSpanProcessor into a counting
no-op exporter, MeterProvider + InMemoryMetricReader); ragotel's Telemetry is bound to those providers. The cases
take turns round after round in rotating order, so machine noise hits all alike; ratios are paired per round
(case time / baseline time of the same round) and the table gives their median. ragotel also records its metrics
(one duration histogram per step, see docs/semantic-conventions.md) on every call; the SDK baselines record none --
that cost is part of the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from _harness import SdkSetup, render_table, sdk_setup, summarize
from opentelemetry import trace
from opentelemetry.metrics import Meter

import ragotel
from ragotel import telemetry as _telemetry
from ragotel.testing import capture

AIM_RATIO = 1.3


# -- the functions under test ------------------------------------------------------------------------------------------
def _bare() -> None:
    return None


async def _bare_async() -> None:
    return None


def _bare_gen() -> Iterator[None]:
    yield None


@dataclass
class Case:
    """One ragotel case and its baselines: each variant is a callable timing ``n`` calls (seconds)."""

    name: str
    flavour: str  # sync | async | generator
    variants: dict[str, Callable[[int], float]] = field(default_factory=dict)


# -- timing loops (one per flavour, so each case's loop overhead is the same as its baselines') ---------------------
def _sync_loop(fn: Callable[[], Any]) -> Callable[[int], float]:
    def run(n: int) -> float:
        t0 = perf_counter()
        for _ in range(n):
            fn()
        return perf_counter() - t0

    return run


def _gen_loop(fn: Callable[[], Iterator[Any]]) -> Callable[[int], float]:
    def run(n: int) -> float:
        t0 = perf_counter()
        for _ in range(n):
            for _item in fn():
                pass
        return perf_counter() - t0

    return run


def _async_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> Callable[[int], float]:
    async def batch(n: int) -> float:
        t0 = perf_counter()
        for _ in range(n):
            await fn()
        return perf_counter() - t0

    def run(n: int) -> float:
        return loop.run_until_complete(batch(n))

    return run


# -- hand-written SDK equivalents -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """What ragotel emitted for one call: the span (name, kind, attributes) and each histogram point's labels."""

    name: str
    kind: trace.SpanKind
    attributes: dict[str, Any]
    records: tuple[tuple[str, str, tuple[float, ...], dict[str, Any]], ...]  # (metric, unit, buckets, attributes)


def _sdk_variants(
    tracer: trace.Tracer, meter: Meter, flavour: str, loop: asyncio.AbstractEventLoop, shape: Shape
) -> dict[str, Callable[[int], float]]:
    """Hand-written OTel code making ragotel's span around the bare call: current, current + the same metric
    records (the same histograms, bucket advice and attributes), and start_span + end."""
    name, kind, attrs = shape.name, shape.kind, shape.attributes
    start_as_current_span, start_span = tracer.start_as_current_span, tracer.start_span
    records = [
        (meter.create_histogram(metric, unit=unit, explicit_bucket_boundaries_advisory=list(bounds)), labels)
        for metric, unit, bounds, labels in shape.records
    ]

    def record(duration: float) -> None:
        for histogram, labels in records:
            histogram.record(duration, labels)

    if flavour == "sync":

        def current() -> None:
            with start_as_current_span(name, kind=kind, attributes=attrs):
                return _bare()

        def current_metrics() -> None:
            t0 = perf_counter()
            with start_as_current_span(name, kind=kind, attributes=attrs):
                result = _bare()
            record(perf_counter() - t0)
            return result

        def start_end() -> None:
            s = start_span(name, kind=kind, attributes=attrs)
            try:
                return _bare()
            finally:
                s.end()

        return {
            "sdk_current": _sync_loop(current),
            "sdk_metrics": _sync_loop(current_metrics),
            "sdk_start_end": _sync_loop(start_end),
        }

    if flavour == "async":

        async def acurrent() -> None:
            with start_as_current_span(name, kind=kind, attributes=attrs):
                return await _bare_async()

        async def acurrent_metrics() -> None:
            t0 = perf_counter()
            with start_as_current_span(name, kind=kind, attributes=attrs):
                result = await _bare_async()
            record(perf_counter() - t0)
            return result

        async def astart_end() -> None:
            s = start_span(name, kind=kind, attributes=attrs)
            try:
                return await _bare_async()
            finally:
                s.end()

        return {
            "sdk_current": _async_loop(loop, acurrent),
            "sdk_metrics": _async_loop(loop, acurrent_metrics),
            "sdk_start_end": _async_loop(loop, astart_end),
        }

    def gcurrent() -> Iterator[None]:
        with start_as_current_span(name, kind=kind, attributes=attrs):
            yield from _bare_gen()

    def gcurrent_metrics() -> Iterator[None]:
        t0 = perf_counter()
        with start_as_current_span(name, kind=kind, attributes=attrs):
            yield from _bare_gen()
        record(perf_counter() - t0)

    def gstart_end() -> Iterator[None]:
        s = start_span(name, kind=kind, attributes=attrs)
        try:
            yield from _bare_gen()
        finally:
            s.end()

    return {
        "sdk_current": _gen_loop(gcurrent),
        "sdk_metrics": _gen_loop(gcurrent_metrics),
        "sdk_start_end": _gen_loop(gstart_end),
    }


def _stage_functions() -> list[tuple[str, str, Callable[..., Any]]]:
    """(case name, flavour, decorated empty function) for every stage decorator, plus an async and a generator."""

    @ragotel.pipeline("rag")
    def pipeline_fn() -> None:
        return None

    @ragotel.retrieval("docs", top_k=5)
    def retrieval_fn() -> None:
        return None

    @ragotel.rerank("rerank-model", top_n=3)
    def rerank_fn() -> None:
        return None

    @ragotel.embedding("text-embedding-3-small", provider="openai")
    def embedding_fn() -> None:
        return None

    @ragotel.generation("gpt-4o-mini", provider="openai")
    def generation_fn() -> None:
        return None

    @ragotel.generation("gpt-4o-mini", provider="openai")
    async def generation_async_fn() -> None:
        return None

    @ragotel.retrieval("docs", top_k=5)
    def retrieval_gen_fn() -> Iterator[None]:
        yield None

    return [
        ("pipeline", "sync", pipeline_fn),
        ("retrieval", "sync", retrieval_fn),
        ("rerank", "sync", rerank_fn),
        ("embedding", "sync", embedding_fn),
        ("generation", "sync", generation_fn),
        ("generation (async)", "async", generation_async_fn),
        ("retrieval (generator)", "generator", retrieval_gen_fn),
    ]


def _emitted_shape(flavour: str, fn: Callable[..., Any], loop: asyncio.AbstractEventLoop) -> Shape:
    """Run ``fn`` once under an in-memory capture and read back the span and metric points ragotel emitted."""
    with capture() as cap:
        if flavour == "async":
            loop.run_until_complete(fn())
        elif flavour == "generator":
            for _ in fn():
                pass
        else:
            fn()
        spans = cap.spans()
        points = cap.metrics()
    if len(spans) != 1:
        raise SystemExit(f"expected one span from the decorated function, got {[s.name for s in spans]}")
    span = spans[0]
    records = tuple((p.name, p.unit, p.explicit_bounds, dict(p.attributes)) for p in points)
    return Shape(span.name, span.kind, dict(span.attributes or {}), records)


def build_cases(setup: SdkSetup, loop: asyncio.AbstractEventLoop) -> list[Case]:
    tracer = setup.tracer_provider.get_tracer("bench-baseline")
    meter = setup.meter_provider.get_meter("bench-baseline")
    bare = {"sync": _sync_loop(_bare), "async": _async_loop(loop, _bare_async), "generator": _gen_loop(_bare_gen)}
    cases = []
    for name, flavour, fn in _stage_functions():
        shape = _emitted_shape(flavour, fn, loop)
        if flavour == "async":
            run = _async_loop(loop, fn)
        elif flavour == "generator":
            run = _gen_loop(fn)
        else:
            run = _sync_loop(fn)
        case = Case(name, flavour, {"ragotel": run, "bare": bare[flavour]})
        case.variants.update(_sdk_variants(tracer, meter, flavour, loop, shape))
        cases.append(case)
    return cases


# -- the run ---------------------------------------------------------------------------------------------------------
def measure(cases: list[Case], rounds: int, calls: int, warmup: int) -> dict[tuple[str, str], list[float]]:
    """Time every (case, variant) ``rounds`` times, one batch of ``calls`` each, in rotating order; µs per call."""
    runners = [((case.name, variant), run) for case in cases for variant, run in case.variants.items()]
    for _ in range(warmup):
        for _key, run in runners:
            run(calls)
    results: dict[tuple[str, str], list[float]] = {key: [] for key, _ in runners}
    for r in range(rounds):
        shift = (r * 7) % len(runners)
        for key, run in runners[shift:] + runners[:shift]:
            results[key].append(run(calls) / calls * 1e6)
    return results


HEADERS = (
    "case",
    "bare fn µs",
    "SDK span µs",
    "SDK span + same metrics µs",
    "SDK start+end µs",
    "ragotel µs",
    "ragotel - SDK span µs (IQR)",
    "ratio vs SDK span",
    "ratio vs SDK start+end",
    "ratio vs SDK span + metrics",
)


def report(cases: list[Case], results: dict[tuple[str, str], list[float]]) -> tuple[str, dict[str, float]]:
    """The table, and each case's median paired ratio against the bare SDK span (start_as_current_span)."""
    rows = []
    ratios = {}
    for case in cases:
        r = {variant: results[(case.name, variant)] for variant in case.variants}
        med = {variant: summarize(values).median for variant, values in r.items()}

        def paired_ratio(base: str, r: dict[str, list[float]] = r) -> float:
            return summarize([a / b for a, b in zip(r["ragotel"], r[base], strict=True)]).median

        diff = summarize([a - b for a, b in zip(r["ragotel"], r["sdk_current"], strict=True)])
        ratios[case.name] = paired_ratio("sdk_current")
        rows.append(
            [
                case.name,
                f"{med['bare']:.2f}",
                f"{med['sdk_current']:.2f}",
                f"{med['sdk_metrics']:.2f}",
                f"{med['sdk_start_end']:.2f}",
                f"{med['ragotel']:.2f}",
                f"{diff.median:+.2f} ({diff.iqr:.2f})",
                f"{ratios[case.name]:.2f}x",
                f"{paired_ratio('sdk_start_end'):.2f}x",
                f"{paired_ratio('sdk_metrics'):.2f}x",
            ]
        )
    return render_table(HEADERS, rows), ratios


def profile(case_name: str, calls: int) -> None:
    """cProfile ``calls`` calls of one ragotel case and print the top functions by own time."""
    setup = sdk_setup()
    tel = _telemetry.Telemetry(setup.tracer_provider, setup.meter_provider)
    _telemetry.push(tel)
    loop = asyncio.new_event_loop()
    try:
        cases = {c.name: c for c in build_cases(setup, loop)}
        if case_name not in cases:
            raise SystemExit(f"unknown case {case_name!r}; choose from {sorted(cases)}")
        run = cases[case_name].variants["ragotel"]
        run(calls)  # warm up
        prof = cProfile.Profile()
        prof.enable()
        run(calls)
        prof.disable()
        stats = pstats.Stats(prof, stream=sys.stdout).strip_dirs().sort_stats("tottime")
        stats.print_stats(25)
    finally:
        _telemetry.pop(tel)
        loop.close()
        setup.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41, help="timed rounds per case (default 41)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per timed batch (default 1000)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 50 calls: a smoke run, not a measurement")
    parser.add_argument("--profile", metavar="CASE", help="profile one ragotel case instead of benchmarking")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.warmup = 3, 50, 1
    if args.profile:
        profile(args.profile, max(args.calls, 1) * 20)
        return 0

    setup = sdk_setup()
    tel = _telemetry.Telemetry(setup.tracer_provider, setup.meter_provider)
    _telemetry.push(tel)
    loop = asyncio.new_event_loop()
    try:
        cases = build_cases(setup, loop)
        results = measure(cases, args.rounds, args.calls, args.warmup)
    finally:
        _telemetry.pop(tel)
        loop.close()
        setup.tracer_provider.force_flush()
        exported = setup.exporter.count
        setup.shutdown()
    table, ratios = report(cases, results)
    print(f"ragotel stage decorators vs the bare OTel SDK span: {args.rounds} rounds x {args.calls} calls per case")
    print()
    print(table)
    print()
    worst = max(ratios, key=lambda k: ratios[k])
    verdict = "within" if ratios[worst] <= AIM_RATIO else "MISSES"
    print(f"worst ratio vs the bare SDK span: {ratios[worst]:.2f}x ({worst}; {verdict} the {AIM_RATIO}x aim)")
    print(f"spans exported through the BatchSpanProcessor: {exported}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
