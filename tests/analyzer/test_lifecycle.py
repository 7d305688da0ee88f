"""Issue 12 B: the alert lifecycle at the built-in defaults — still-happening checks, burn-rate resolution and
history, messages that quote the deciding window, dependency down at once, the memory-exhaustion projection,
saturation for 30 s, deploy-aware diagnosis. SDK-made OTLP through the analyzer's decoder (simulated clock), and
real SDK exporters into a real analyzer where the wiring matters (health checks, restarts, webhooks)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.analyzer.alerting_helpers import Harness, feed
from tests.analyzer.test_e2e_alerting import App, _wait
from tests.servers import HttpReceiver

from ragotel import semconv as sc
from ragotel.analyzer.config.builtin_rules import builtin_rules
from ragotel.analyzer.server import Server
from ragotel.analyzer.state import StateStore
from ragotel.health import HealthRegistry, http_check
from ragotel.health.gauges import bind

pytestmark = pytest.mark.timeout(60)

SERVICE = "rag"


def builtin(name: str, **overrides: Any) -> dict[str, Any]:
    """A built-in rule exactly as shipped (plus ``overrides``), as a config mapping."""
    spec = next(r for r in builtin_rules() if r.name == name)
    return {**spec.model_dump(by_alias=True, exclude_none=True), **overrides}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(rules: list[dict[str, Any]], **kwargs: Any) -> Harness:
        h = Harness(tmp_path, rules, window=kwargs.pop("window", 60.0), **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _requests(h: Harness, seconds: int, *, fail_every: int = 0, per_second: int = 10) -> None:
    """``seconds`` of pipeline traffic at ``per_second``, one tick a second; every ``fail_every``-th second fails."""
    for i in range(seconds):
        errors = per_second if fail_every and i % fail_every == 0 else 0
        h.spans(SERVICE, "pipeline", "langchain", [0.2] * per_second, errors=errors)
        h.tick(1.0)


def _error_burst(h: Harness, seconds: int, fraction: float = 0.5) -> None:
    for _ in range(seconds):
        h.spans(SERVICE, "pipeline", "langchain", [0.2] * 10, errors=round(10 * fraction))
        h.tick(1.0)


# -- B.1 + B.2 + B.4: the static layer, still happening, messages --------------------------------------------------
def test_high_error_rate_at_defaults_fires_quoting_the_recent_value_and_resolves_saying_the_value_now(
    harness: Callable[..., Harness],
) -> None:
    """A 50 % error burst fires the built-in 1 % rule after its `for`, quoting the recent 50 % (not the diluted
    window); once it stops the rule resolves within recent + keep_firing_for although the 60 s window still
    exceeds 1 %, and the resolved message says the value now."""
    h = harness([builtin("high_error_rate", cooldown="0s")])
    _requests(h, 30)
    _error_burst(h, 16)
    assert h.states() == {"high_error_rate": "firing"}
    alert = h.engine.firing()[0]
    assert "fails 50.0% of requests" in alert.message, alert.message
    assert alert.extra["details"]["window"] < 0.5
    _requests(h, 40)
    resolved = h.store.query_alerts(rule="high_error_rate", limit=5)[0]
    assert resolved["state"] == "resolved"
    assert resolved["resolved_at"] - (h.now - 40) <= 30
    assert resolved["message"].endswith("resolved: now 0.0%"), resolved["message"]


def test_a_condition_that_cleared_during_for_never_notifies(harness: Callable[..., Harness]) -> None:
    """A 5 s burst shorter than the 15 s `for`: the window stays above 1 % for a minute, but the recent window
    clears, so the pending alert is dropped and nothing is queued (no page after the fault has gone)."""
    h = harness([builtin("high_error_rate", cooldown="0s")])
    _requests(h, 30)
    _error_burst(h, 5)
    _requests(h, 60)
    assert h.states() == {}
    assert h.queued() == []


def test_single_errors_and_few_requests_never_page(harness: Callable[..., Harness]) -> None:
    """One failed request every 20 s at 10 req/s, and a 1-request-a-minute service failing twice: no alert."""
    h = harness([builtin("high_error_rate", cooldown="0s")])
    _requests(h, 120, fail_every=20, per_second=1)
    for _ in range(3):
        h.spans("quiet", "pipeline", "langchain", [0.2], errors=1)
        h.tick(60.0)
    assert h.queued() == []


# -- B.3: burn rate --------------------------------------------------------------------------------------------------
def test_burn_rate_waits_for_its_short_window_then_resolves_on_the_resolve_window(
    harness: Callable[..., Harness],
) -> None:
    """A fresh history never judges a level before it spans the short window; after the errors stop the alert
    resolves on the last 30 s even though the 5 m short window still burns."""
    rule = builtin(
        "availability_burn_rate",
        burn_windows=[{"long": "10m", "short": "60s", "factor": 14.4, "severity": "critical"}],
        keep_firing_for="0s",
        cooldown="0s",
    )
    h = harness([rule])
    _error_burst(h, 30, fraction=1.0)
    assert h.states() == {}, "history spans 30 s < short window 60 s"
    _error_burst(h, 40, fraction=1.0)
    assert h.states() == {"availability_burn_rate": "firing"}
    _requests(h, 15)
    assert h.states() == {"availability_burn_rate": "firing"}
    _requests(h, 35)
    assert h.states() == {}
    details = h.store.query_alerts(rule="availability_burn_rate", limit=1)[0]
    assert details["state"] == "resolved"
    now_burn = re.search(r"resolved: now ([0-9.]+)x$", details["message"])
    assert now_burn is not None, details["message"]
    assert float(now_burn.group(1)) < 14.4, details["message"]


def test_burn_rate_history_survives_a_restart(tmp_path: Path) -> None:
    """The engine writes the buckets to the state file; a new engine on the same file judges at once."""
    rule = builtin(
        "availability_burn_rate",
        burn_windows=[{"long": "10m", "short": "60s", "factor": 14.4, "severity": "critical"}],
        cooldown="0s",
    )
    first = Harness(tmp_path, [rule], window=10.0)
    _requests(first, 90)
    first.engine.persist(first.now)
    now = first.now
    first.close()
    saved = StateStore(tmp_path / "state.db").burn_history("availability_burn_rate")
    assert sum(b[1] for buckets in saved.values() for b in buckets) == pytest.approx(
        900, rel=0.1
    )  # rate x dt integration
    second = Harness(tmp_path, [rule], window=10.0, start=now + 5)
    try:
        _error_burst(second, 25, fraction=1.0)  # under the 60 s short window of a fresh history
        assert second.states() == {"availability_burn_rate": "firing"}
    finally:
        second.close()


# -- B.5 + B.7: dependency down at once, saturation sustained 30 s ------------------------------------------------
def test_saturation_fires_after_30s_with_a_warning_level_within_1_2x(harness: Callable[..., Harness]) -> None:
    h = harness([builtin("cpu_saturation", cooldown="0s")])
    for _ in range(29):
        h.gauge(SERVICE, sc.M_SYSTEM_CPU_UTILIZATION, 0.97)
        h.tick(1.0)
    assert h.states() == {"cpu_saturation": "pending"}
    for _ in range(3):
        h.gauge(SERVICE, sc.M_SYSTEM_CPU_UTILIZATION, 0.97)
        h.tick(1.0)
    alert = h.engine.firing()[0]
    assert (alert.severity, alert.diagnosis and alert.diagnosis["primary_cause"]) == ("critical", "cpu_saturation")
    for _ in range(20):
        h.gauge(SERVICE, sc.M_SYSTEM_CPU_UTILIZATION, 0.2)
        h.tick(1.0)
    assert h.states() == {}
    h2 = harness([builtin("memory_saturation", cooldown="0s")], db="other.db")
    for _ in range(32):
        h2.gauge(SERVICE, sc.M_SYSTEM_MEMORY_UTILIZATION, 0.75, **{sc.SYSTEM_MEMORY_STATE: "used"})
        h2.tick(1.0)
    assert h2.engine.firing()[0].severity == "warning"


def test_dependency_down_fires_at_defaults_within_interval_timeout_and_2s(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """The built-in service_unavailable (for: 0s) over a real ragotel.health check exported by the SDK."""
    server = make_analyzer({"channels": [{"name": "ops", "type": "webhook", "url": f"{http_receiver.url}/hook"}]})
    dependency = HttpReceiver()
    dependency.start()
    registry = HealthRegistry()
    interval, timeout = 1.0, 1.0
    with App(server.http_address or "") as app:
        binding = bind(registry, app.meter_provider)
        registry.register("cache", http_check(dependency.url), kind="cache", interval=interval, timeout=timeout)
        time.sleep(1.5)
        dependency.stop()
        down = time.monotonic()
        firing = _wait(http_receiver, "service_unavailable", "firing", timeout=interval + timeout + 5)
        assert time.monotonic() - down <= interval + timeout + 2
        assert firing["diagnosis"]["primary_cause"] == "dependency_down"
        binding.stop()
        registry.stop()
    dependency.close()


# -- B.6: memory exhaustion projection -----------------------------------------------------------------------------
def _memory(h: Harness, rss: float, *, cgroup: float | None, host: float = 24 * 2**30) -> None:
    h.gauge(SERVICE, sc.M_PROCESS_MEMORY_USAGE, rss)
    h.gauge(SERVICE, sc.M_SYSTEM_MEMORY_LIMIT, host)
    if cgroup is not None:
        h.gauge(SERVICE, sc.M_RAGOTEL_PROCESS_MEMORY_LIMIT, cgroup)


def test_steady_leak_is_projected_against_the_host_limit_within_two_minutes(harness: Callable[..., Harness]) -> None:
    """8 MB/s on a 24 GiB host exhausts it in ~50 min: the built-in memory_leak fires within 2 min of the leak
    starting (90 s fit, R^2 >= 0.9), with no host-utilisation guard; freeing the memory resolves it."""
    h = harness([builtin("memory_leak", cooldown="0s")])
    rss = 300e6
    for _ in range(120):  # flat, with allocator noise
        _memory(h, rss + (2e6 if int(h.now) % 2 else 0.0), cgroup=None)
        h.tick(1.0)
    assert h.states() == {}
    fired_after = None
    for second in range(1, 121):
        rss += 8e6
        _memory(h, rss, cgroup=None)
        h.tick(1.0)
        if h.states().get("memory_leak") == "firing":
            fired_after = second
            break
    assert fired_after is not None
    assert fired_after <= 90
    alert = h.engine.firing()[0]
    assert alert.diagnosis is not None
    assert alert.diagnosis["primary_cause"] == "memory_leak"
    assert alert.value < 3600
    for _ in range(60):
        _memory(h, 300e6, cgroup=None)
        h.tick(1.0)
    assert h.states() == {}


def test_the_cgroup_limit_wins_over_host_memory(harness: Callable[..., Harness]) -> None:
    """500 KB/s never threatens 24 GiB of host memory within the hour, but does a 1 GiB cgroup limit."""
    rule = builtin("memory_leak", cooldown="0s")
    for cgroup, fires in ((None, False), (2**30, True)):
        h = harness([rule], db=f"{cgroup}.db")
        rss = 200e6
        for _ in range(100):
            rss += 500e3
            _memory(h, rss, cgroup=cgroup)
            h.tick(1.0)
        assert (h.states() == {"memory_leak": "firing"}) is fires, cgroup
        values = h.windows.signal("memory_exhaustion_eta", now=h.now)
        limit = cgroup or 24 * 2**30
        assert [v.value for v in values] == [pytest.approx((limit - rss) / 500e3, rel=0.02)]


# -- B.8: deploy-aware diagnosis -------------------------------------------------------------------------------------
def _versioned_spans(version: str, durations: list[float]) -> bytes:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE, "service.version": version}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("ragotel.tests")
    start = time.time_ns()
    for seconds in durations:
        for stage, component in (("pipeline", "langchain"), ("generation", "openai")):
            span = tracer.start_span(
                stage, attributes={"ragotel.stage": stage, "ragotel.component": component}, start_time=start
            )
            span.end(end_time=start + round(seconds * 1e9))
    provider.shutdown()
    return bytes(encode_spans(memory.get_finished_spans()).SerializeToString())


def _versioned_traffic(h: Harness, version: str, ticks: int, duration: float, step: float = 1.0) -> None:
    for _ in range(ticks):
        feed(h.windows, "traces", _versioned_spans(version, [duration] * 10), h.now)
        h.tick(step)


def test_a_regression_after_a_new_version_is_code_regression_with_rollback_first(
    harness: Callable[..., Harness],
) -> None:
    h = harness([builtin("high_response_time", cooldown="0s", **{"for": "5s"})])
    _versioned_traffic(h, "1.4.2", 30, 0.3)
    _versioned_traffic(h, "1.5.0", 15, 2.6)
    alert = h.engine.firing()[0].snapshot()
    assert alert.diagnosis is not None
    assert alert.diagnosis.primary_cause == "code_regression"
    assert "1.5.0" in alert.diagnosis.possible_causes[0].summary
    assert "1.4.2" in alert.diagnosis.possible_causes[0].summary
    assert alert.diagnosis.recommended_actions[0] == "rollback"
    deploy = alert.to_dict()["deploy"]
    assert (deploy["previous_version"], deploy["version"]) == ("1.4.2", "1.5.0")


def test_a_regression_long_after_the_deploy_is_not_blamed_on_it(harness: Callable[..., Harness]) -> None:
    h = harness([builtin("high_response_time", cooldown="0s", **{"for": "5s"})])
    _versioned_traffic(h, "1.4.2", 1, 0.3)
    _versioned_traffic(h, "1.5.0", 16 * 60 // 10, 0.3, step=10.0)
    _versioned_traffic(h, "1.5.0", 15, 2.6)
    alert = h.engine.firing()[0].snapshot()
    assert alert.diagnosis is not None
    assert alert.diagnosis.primary_cause != "code_regression"
    assert alert.to_dict()["deploy"] is None


def test_a_value_hovering_at_the_threshold_does_not_flap_severity(harness: Callable[..., Harness]) -> None:
    """Critical, then alternating 0.78 / 0.82: the alert stays critical (steps down only after keep_firing_for
    below), so no escalation is notified again and again."""
    h = harness([builtin("cpu_saturation", cooldown="0s")])
    for _ in range(32):
        h.gauge(SERVICE, sc.M_SYSTEM_CPU_UTILIZATION, 0.97)
        h.tick(1.0)
    for i in range(40):
        h.gauge(SERVICE, sc.M_SYSTEM_CPU_UTILIZATION, 0.78 if i % 4 < 2 else 0.82)
        h.tick(1.0)
    assert [kind for _, kind, _ in h.queued()] == ["firing"]
    assert h.engine.firing()[0].severity == "critical"
    for _ in range(20):
        h.gauge(SERVICE, sc.M_SYSTEM_CPU_UTILIZATION, 0.75)
        h.tick(1.0)
    assert h.engine.firing()[0].severity == "warning"
