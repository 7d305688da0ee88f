"""Cost of one metric collection with ragotel's host gauges (and health gauges), against an empty reader, in one run.

    python benchmarks/host_metrics.py            # 300 rounds (about 10 s), prints a markdown table
    python benchmarks/host_metrics.py --quick    # a few rounds: checks the script works, figures meaningless

Four MeterProviders, each with its own InMemoryMetricReader, live in this one process:
  * baseline     -- no instrument at all: the SDK's own cost of a collect
  * sdk floor    -- the same instruments and points as the host gauges, but callbacks returning constants: what
                    the OTel SDK itself spends on that many series (the part no psutil tuning can remove)
  * host         -- ragotel.host.install(): every system.* / process.* gauge (what host_metrics=True adds)
  * host+health  -- the same plus the three health gauges for 8 registered dependencies (probed once beforehand)
Each round times one ``reader.get_metrics_data()`` per provider, in rotating order, so machine noise hits all alike.
Before every timed host collection the per-collection psutil snapshot is dropped, so each round pays for fresh
readings as a real collection (60 s apart) does. The figures: median and IQR of the wall time per collection,
the paired extra cost over the baseline of the same round, and CPU time. Goal: extra cost <= 2 ms.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from _harness import render_table, summarize
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ragotel import host
from ragotel.config import Settings
from ragotel.health import HealthRegistry
from ragotel.health.gauges import bind

GOAL_US = 2000.0


def _provider() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def _constant_copy(source: InMemoryMetricReader, target: MeterProvider) -> None:
    """Instruments on ``target`` with the names and attribute sets ``source`` reported, yielding constants."""
    meter = target.get_meter("sdk-floor")
    data = source.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                attrs = [dict(p.attributes or {}) for p in m.data.data_points]

                def callback(options: CallbackOptions, attrs: list[dict[str, object]] = attrs) -> list[Observation]:
                    return [Observation(1.0, a) for a in attrs]  # type: ignore[arg-type]

                meter.create_observable_gauge(m.name, callbacks=[callback], unit=m.unit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds only (smoke test)")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds

    base_mp, base_reader = _provider()
    floor_mp, floor_reader = _provider()
    host_mp, host_reader = _provider()
    both_mp, both_reader = _provider()
    host_only = host.install(host_mp, Settings())
    host_both = host.install(both_mp, Settings())
    registry = HealthRegistry()
    for i in range(8):
        registry.register(f"dep-{i}", lambda: True, kind="http", interval=3600)
    deadline = time.monotonic() + 10
    while any(d.healthy is None for d in registry.status().dependencies) and time.monotonic() < deadline:
        time.sleep(0.01)
    binding = bind(registry, both_mp)
    _constant_copy(host_reader, floor_mp)

    def fresh(h: host.HostMetrics) -> None:
        h.sampler._snapshots.clear()  # private on purpose: make every round read psutil anew

    cases: list[tuple[str, InMemoryMetricReader, Callable[[], None]]] = [
        ("baseline (empty reader)", base_reader, lambda: None),
        ("SDK floor (same series, constants)", floor_reader, lambda: None),
        ("host gauges", host_reader, lambda: fresh(host_only)),
        ("host + health gauges (8 deps)", both_reader, lambda: fresh(host_both)),
    ]
    for _ in range(20):  # warm-up
        for _, reader, prepare in cases:
            prepare()
            reader.get_metrics_data()

    wall: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for r in range(rounds):
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        for name, reader, prepare in order:
            prepare()
            c0, t0 = time.process_time(), time.perf_counter()
            reader.get_metrics_data()
            t1, c1 = time.perf_counter(), time.process_time()
            wall[name].append((t1 - t0) * 1e6)
            cpu[name].append((c1 - c0) * 1e6)
    points = {name: sum(len(m.data.data_points) for rm in reader.get_metrics_data().resource_metrics
                        for sm in rm.scope_metrics for m in sm.metrics) if reader.get_metrics_data() else 0
              for name, reader, _ in cases}  # fmt: skip

    baseline = cases[0][0]
    rows = []
    worst_extra = 0.0
    for name, _, _ in cases:
        w = summarize(wall[name])
        c = summarize(cpu[name])
        extra = summarize([a - b for a, b in zip(wall[name], wall[baseline], strict=True)])
        ratio = summarize([a / b for a, b in zip(wall[name], wall[baseline], strict=True) if b > 0])
        if name.startswith("host"):
            worst_extra = max(worst_extra, extra.median)
        rows.append([
            name,
            str(points[name]),
            f"{w.median:,.0f} (IQR {w.iqr:,.0f})",
            "—" if name == baseline else f"+{extra.median:,.0f} (IQR {extra.iqr:,.0f})",
            f"{ratio.median:.1f}x",
            f"{c.median:,.0f}",
        ])  # fmt: skip
    headers = ["collection", "points", "wall µs median", "extra µs vs baseline (paired)", "ratio", "CPU µs median"]
    print(f"rounds: {rounds}, python {sys.version.split()[0]}, gauges: {len(host_only.names)} host instruments")
    print(render_table(headers, rows))
    verdict = "OK" if worst_extra <= GOAL_US else "OVER BUDGET"
    print(f"\nworst extra cost per collection: {worst_extra:,.0f} µs (goal <= {GOAL_US:,.0f} µs): {verdict}")

    binding.stop()
    registry.stop()
    host_only.stop()
    host_both.stop()
    for mp in (base_mp, floor_mp, host_mp, both_mp):
        mp.shutdown()
    return 0 if args.quick or worst_extra <= GOAL_US else 1


if __name__ == "__main__":
    sys.exit(main())
