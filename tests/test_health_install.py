"""instrument() wiring: host and health gauges on the app's meter provider, the module-level API, prompt shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import chromadb
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from tests.health_support import metric_points, wait_until

import ragotel
from ragotel import health
from ragotel import semconv as sc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, MeterProvider, InMemoryMetricReader]]:
    for var in ("RAGOTEL_HOST_METRICS", "RAGOTEL_HEALTH_AUTO_REGISTER", "RAGOTEL_HEALTH_PROBE_LLM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAGOTEL_HEALTH_INTERVAL", "0.2")
    rd = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[rd])
    tp = TracerProvider()
    yield tp, mp, rd
    ragotel.uninstrument()
    for name in health._default.names():
        health.unregister(name)
    health._default.stop()
    mp.shutdown()
    tp.shutdown()


def names(rd: InMemoryMetricReader) -> set[str]:
    data = rd.get_metrics_data()
    return {
        m.name
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.data.data_points
    }


def health_values(rd: InMemoryMetricReader) -> dict[str, float]:
    return {
        str(attrs[sc.RAGOTEL_DEPENDENCY_NAME]): float(value)
        for attrs, value in metric_points(rd, sc.M_DEPENDENCY_HEALTH)
    }


def test_instrument_reports_host_and_health_through_the_apps_provider(
    providers: tuple[TracerProvider, MeterProvider, InMemoryMetricReader],
) -> None:
    """instrument(meter_provider=...) starts host gauges and dependency health; uninstrument() stops both."""
    tp, mp, rd = providers
    handle = ragotel.instrument(tracer_provider=tp, meter_provider=mp, libraries=[])
    ragotel.health.register("app-dep", lambda: True, kind="http", interval=0.1)
    client = chromadb.EphemeralClient()
    wait_until(lambda: health_values(rd).keys() >= {"app-dep", "chroma:ephemeral"}, 10, "health points")
    assert {sc.M_PROCESS_MEMORY_USAGE, sc.M_SYSTEM_CPU_UTILIZATION, sc.M_DEPENDENCY_HEALTH} <= names(rd)
    assert ragotel.health.status().status == "healthy"
    assert set(ragotel.health.status().to_dict()["dependencies"]) >= {"app-dep", "chroma:ephemeral"}
    started = time.monotonic()
    handle.uninstrument()
    assert time.monotonic() - started < 3.0
    assert not any(t.name == "ragotel-health-scheduler" and t.is_alive() for t in threading.enumerate())
    assert names(rd) == set()
    assert "chroma:ephemeral" not in health._default.names()  # auto-registered clients go with uninstrument
    assert "app-dep" in health._default.names()  # the app's own registrations stay
    assert client is not None


def test_host_metrics_false_starts_no_host_gauges(
    providers: tuple[TracerProvider, MeterProvider, InMemoryMetricReader],
) -> None:
    """instrument(host_metrics=False) reports no system.* / process.* metric."""
    tp, mp, rd = providers
    ragotel.instrument(tracer_provider=tp, meter_provider=mp, libraries=[], host_metrics=False)
    assert not {n for n in names(rd) if n.startswith(("system.", "process."))}


def test_reinstrument_on_the_same_provider_reports_again(
    providers: tuple[TracerProvider, MeterProvider, InMemoryMetricReader],
) -> None:
    """instrument → uninstrument → instrument on one provider: host gauges and health resume (probes restart)."""
    tp, mp, rd = providers
    ragotel.instrument(tracer_provider=tp, meter_provider=mp, libraries=[]).uninstrument()
    ragotel.health.register("again", lambda: True, kind="cache", interval=0.1)
    health._default.stop()
    ragotel.instrument(tracer_provider=tp, meter_provider=mp, libraries=[])
    assert health._default.running
    wait_until(lambda: health_values(rd).get("again") == 1, 10, "health after re-instrument")
    assert sc.M_PROCESS_THREAD_COUNT in names(rd)
