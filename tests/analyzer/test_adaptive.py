"""Adaptive stage detection: recent panes against persisted per-stage baselines, leaf first, named right.

The end-to-end tests export real OTLP from the ragotel SDK into a running analyzer whose baselines were restored
from its state file (learning them live takes 30 s of 10-second buckets; the learning itself is tested on a
simulated clock below).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from tests.analyzer.alerting_helpers import Harness
from tests.analyzer.analyzer_helpers import api
from tests.servers import HttpReceiver, RecordedRequest

import ragotel
from ragotel import telemetry
from ragotel.analyzer.judge.adaptive import binomial_tail
from ragotel.analyzer.server import Server
from ragotel.analyzer.state import StateStore
from ragotel.analyzer.windows import Windows
from ragotel.stages import Stage

pytestmark = pytest.mark.timeout(60)

SERVICE = "rag-adaptive"
# Usual behaviour of each stage: (p50, p95, tokens per call) of 12 ten-second buckets of 40 spans.
USUAL = {
    ("pipeline", "custom"): (0.030, 0.040, 0),
    ("retrieval", "chromadb"): (0.008, 0.012, 0),
    ("vector_db", "chroma"): (0.004, 0.006, 0),
    ("generation", "openai"): (0.020, 0.028, 70),
}
# The built-in adaptive rules, with a short keep_firing_for so that resolution fits a test.
QUICK_RESOLVE = [
    {"name": "stage_latency", "type": "adaptive", "signal": "latency", "factor": 2.0, "min_delta": 0.05,
     "keep_firing_for": "1s", "severity": "warning"},
    {"name": "stage_errors", "type": "adaptive", "signal": "error_rate", "keep_firing_for": "1s",
     "severity": "critical"},
]  # fmt: skip


def seed_baselines(path: Path, now: float) -> None:
    """Write the USUAL baselines into a state file, as an analyzer that ran for two minutes would have."""
    rows: list[tuple[tuple[str, str, str], Any]] = []
    for (stage, component), (p50, p95, tokens) in USUAL.items():
        buckets = [[now - 130 + 10 * i, 40, 0, 0, p50, p95, tokens * 40, 40 if tokens else 0] for i in range(12)]
        rows.append(((SERVICE, stage, component), buckets))
    store = StateStore(path)
    store.save_baselines(rows, now)
    store.close()


class RagApp:
    """A RAG service on the ragotel SDK exporting spans over OTLP/HTTP; its faults are plain attributes."""

    def __init__(self, endpoint: str) -> None:
        self.tracer_provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
        exporter = OTLPSpanExporter(endpoint=f"http://{endpoint}/v1/traces", timeout=5)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
        self.meter_provider = MeterProvider()
        self.telemetry = telemetry.Telemetry(self.tracer_provider, self.meter_provider)
        self.vector_db_delay = 0.004
        self.vector_db_fails = False
        self.generation_fails = 0.0
        self.documents = 3
        self.tokens = (50, 20)
        self.slow_every = 0  # every n-th request's generation takes 1 s (0: never)
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def request(self) -> None:
        self.requests += 1
        with ragotel.pipeline("answer"):
            with ragotel.retrieval("docs", top_k=3, component="chromadb") as op:
                with Stage("vector_db", {"db.system.name": "chroma"}, component="chroma"):
                    if self.vector_db_fails:
                        raise ConnectionError("chroma: connection refused")
                    time.sleep(self.vector_db_delay)
                op.add_documents([{"id": f"d{i}"} for i in range(self.documents)])
            with ragotel.generation("gpt-4o-mini", provider="openai", component="openai") as gen:
                slow = self.slow_every and self.requests % self.slow_every == 0
                time.sleep(1.0 if slow else 0.02)
                gen.record_usage(*self.tokens)
                if self.generation_fails and (self.requests % round(1 / self.generation_fails)) == 0:
                    raise RuntimeError("HTTP 500 from the LLM")

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.request()
            time.sleep(0.03)

    def __enter__(self) -> RagApp:
        telemetry.push(self.telemetry)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        telemetry.pop(self.telemetry)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def adaptive_analyzer(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver, tmp_path: Path
) -> Callable[..., Server]:
    """An analyzer at the default rules (plus overrides) with USUAL baselines in its state file and a webhook."""

    def make(rules: list[dict[str, Any]] | None = None) -> Server:
        seed_baselines(tmp_path / "state.db", time.time())
        config: dict[str, Any] = {
            "evaluation_interval": "200ms",
            "channels": [{"name": "ops", "type": "webhook", "url": f"{http_receiver.url}/hook"}],
        }
        if rules is not None:
            config["rules"] = rules
        return make_analyzer(config)

    return make


def _wait(receiver: HttpReceiver, rule: str, status: str = "firing", timeout: float = 10.0) -> dict[str, Any]:
    def wanted(r: RecordedRequest) -> bool:
        return r.json is not None and r.json.get("rule") == rule and r.json.get("status") == status

    body: dict[str, Any] = receiver.wait_for(1, path="/hook", timeout=timeout, predicate=wanted)[0].json
    return body


@contextlib.contextmanager
def faulty_app(server: Server, receiver: HttpReceiver, rule: str, **fault: Any) -> Iterator[tuple[RagApp, Any]]:
    """The app as usual for a second, then with the ``fault`` attributes set, until ``rule`` fires (its payload)."""
    with RagApp(server.http_address or "") as app:
        time.sleep(1.0)
        for name, value in fault.items():
            setattr(app, name, value)
        yield app, _wait(receiver, rule)


def _fired(receiver: HttpReceiver) -> list[tuple[str, str]]:
    return [
        (r.json["rule"], r.json.get("stage", ""))
        for r in receiver.requests
        if r.path == "/hook" and r.json is not None and r.json.get("status") == "firing"
    ]


def _primary(alert: dict[str, Any]) -> tuple[str, str | None, str | None]:
    top = alert["diagnosis"]["possible_causes"][0]
    return alert["diagnosis"]["primary_cause"], top["stage"], top["component"]


def test_slow_vector_db_is_named_not_its_parents(
    adaptive_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """A vector DB 0.3 s slower fires stage_latency on vector_db/chroma (vector_db_latency), never on retrieval or
    pipeline, which carry the same extra time; it resolves once the vector DB is fast again."""
    server = adaptive_analyzer(QUICK_RESOLVE)
    with faulty_app(server, http_receiver, "stage_latency", vector_db_delay=0.3) as (app, firing):
        assert _primary(firing) == ("vector_db_latency", "vector_db", "chroma")
        summary = firing["diagnosis"]["possible_causes"][0]["summary"]
        assert re.fullmatch(r"vector_db/chroma p50 \d+ ms, usually p95 6 ms", summary)
        time.sleep(1.0)
        assert [stage for rule, stage in _fired(http_receiver) if rule == "stage_latency"] == ["vector_db"]
        app.vector_db_delay = 0.004
        assert _wait(http_receiver, "stage_latency", "resolved")["fingerprint"] == firing["fingerprint"]


def test_generation_error_burst_fires_stage_errors_on_generation(
    adaptive_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """Half of the LLM calls failing fires stage_errors on generation (not pipeline) within a few requests."""
    server = adaptive_analyzer(QUICK_RESOLVE)
    with faulty_app(server, http_receiver, "stage_errors", generation_fails=0.5) as (app, firing):
        assert (_primary(firing), firing["diagnosis"]["recommended_actions"][0]) == (
            ("generation_errors", "generation", "openai"),
            "restart_service",
        )
        app.generation_fails = 0.0
        _wait(http_receiver, "stage_errors", "resolved")
    assert [stage for rule, stage in _fired(http_receiver) if rule == "stage_errors"] == ["generation"]


def test_empty_retrievals_fire_empty_index(
    adaptive_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """Retrievals returning no document fire empty_retrievals with empty_index on retrieval/chromadb."""
    with faulty_app(adaptive_analyzer(), http_receiver, "empty_retrievals", documents=0) as (_, firing):
        assert _primary(firing) == ("empty_index", "retrieval", "chromadb")
        assert firing["diagnosis"]["recommended_actions"][0] == "reindex"


def test_token_spike_names_the_model(adaptive_analyzer: Callable[..., Server], http_receiver: HttpReceiver) -> None:
    """Token usage 20x its usual fires token_spike, whose cause names the generation component and model."""
    with faulty_app(adaptive_analyzer(), http_receiver, "token_spike", tokens=(1000, 400)) as (_, firing):
        assert _primary(firing) == ("token_spike", "generation", "openai")
        summary = firing["diagnosis"]["possible_causes"][0]["summary"]
        assert re.fullmatch(r"generation/openai model gpt-4o-mini uses \d+ tokens per call, usually 70", summary)
        assert firing["diagnosis"]["recommended_actions"][:2] == ["limit_tokens", "investigate"]


def test_single_outliers_do_not_page(adaptive_analyzer: Callable[..., Server], http_receiver: HttpReceiver) -> None:
    """One request in eight with a 1 s LLM call moves no median: nothing fires over several seconds."""
    server = adaptive_analyzer()
    with RagApp(server.http_address or "") as app:
        app.slow_every = 8
        time.sleep(5.0)
        assert app.requests >= 25
    assert not [rule for rule, _ in _fired(http_receiver) if rule in ("stage_latency", "stage_errors")]
    assert api(server, "/api/v1/alerts").json()["alerts"] == []


def test_warm_up_without_a_baseline_does_not_page(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """A fresh analyzer (no baseline yet) judges no stage adaptively, however slow the first requests are."""
    server = make_analyzer({"evaluation_interval": "200ms"})
    with RagApp(server.http_address or "") as app:
        app.vector_db_delay = 0.3
        time.sleep(3.0)
        assert app.requests >= 5
    assert [a["rule"] for a in api(server, "/api/v1/alerts").json()["alerts"]] == []


# -- on a simulated clock --------------------------------------------------------------------------------------------
@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, QUICK_RESOLVE, window=60.0)
    yield h
    h.close()


def _traffic(h: Harness, seconds: float, rate: float, duration: float, *, errors: int = 0) -> None:
    """``rate`` generation spans a second for ``seconds``, baselines rolled and rules evaluated every second."""
    for _ in range(int(seconds)):
        h.spans(SERVICE, "generation", "openai", [duration] * int(rate), errors=errors)
        h.windows.roll_baselines(h.now)
        h.tick(1.0)


def test_baseline_learns_from_buckets_and_ignores_held_ones(harness: Harness) -> None:
    """After 40 s at 10/s the baseline is ready with the usual latency; buckets of a held service are left out."""
    _traffic(harness, 25, 10, 0.2)
    assert harness.windows.baseline(SERVICE, "generation", "openai") is None, "not ready before 3 buckets"
    _traffic(harness, 15, 10, 0.2)
    learnt = harness.windows.baseline(SERVICE, "generation", "openai")
    assert learnt is not None
    assert math.isclose(learnt.p95, 0.2)
    assert learnt.error_rate == 0.0
    samples = learnt.samples
    for _ in range(30):  # a slow period while the service is held (under an adaptive alert)
        harness.spans(SERVICE, "generation", "openai", [2.0] * 10)
        harness.windows.roll_baselines(harness.now, hold=frozenset({SERVICE}))
        harness.now += 1.0
    after = harness.windows.baseline(SERVICE, "generation", "openai")
    assert after is not None
    assert (after.samples, after.p95) == (samples, learnt.p95)


def test_slow_stage_fires_once_the_baseline_is_ready_and_resolves(harness: Harness) -> None:
    """4x slower generation at 10/s fires within 2 s of the first slow spans; back to normal, it resolves."""
    _traffic(harness, 40, 10, 0.2)
    assert harness.states() == {}
    _traffic(harness, 2, 10, 0.8)
    assert harness.states() == {"stage_latency": "firing"}
    (alert,) = harness.engine.firing()
    assert alert.diagnosis is not None
    assert alert.diagnosis["primary_cause"] == "generation_latency"
    _traffic(harness, 3, 10, 0.2)
    assert harness.states() == {}


def test_low_traffic_series_never_pages(harness: Harness) -> None:
    """One request a minute never gathers min_samples within the detection horizon: never judged, never fired."""
    for minute in range(40):
        harness.spans(SERVICE, "generation", "openai", [0.2 if minute < 30 else 5.0], errors=int(minute >= 30))
        for _ in range(6):
            harness.windows.roll_baselines(harness.now)
            harness.tick(10.0)
    assert harness.states() == {}
    assert harness.queued() == []


def test_baselines_survive_a_restart(harness: Harness, tmp_path: Path) -> None:
    """Dumped into the state file and restored into fresh windows, a baseline is the same."""
    _traffic(harness, 40, 10, 0.2)
    learnt = harness.windows.baseline(SERVICE, "generation", "openai")
    harness.store.save_baselines(harness.windows.dump_baselines(), harness.now)
    fresh = Windows(60.0, clock=lambda: harness.now)
    assert fresh.restore_baselines(harness.store.baselines()) == 1
    assert fresh.baseline(SERVICE, "generation", "openai") == learnt


@pytest.mark.parametrize(("k", "n", "p"), [(3, 10, 0.005), (5, 10, 0.02), (0, 4, 0.3), (7, 12, 0.5), (13, 12, 0.1)])
def test_binomial_tail_matches_the_direct_sum(k: int, n: int, p: float) -> None:
    direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert math.isclose(binomial_tail(k, n, p), direct, rel_tol=1e-9, abs_tol=1e-300)


def test_span_signal_over_a_short_window_reads_the_recent_panes(harness: Harness) -> None:
    """``signal(..., window=2)`` sees the last two seconds only, where the full window still holds the old spans."""
    harness.spans(SERVICE, "generation", "openai", [0.2] * 10, errors=10)
    harness.now += 5.0
    harness.spans(SERVICE, "generation", "openai", [0.4] * 10)
    (full,) = harness.windows.signal("error_rate", {"service": SERVICE}, now=harness.now)
    (recent,) = harness.windows.signal("error_rate", {"service": SERVICE}, now=harness.now, window=2.0)
    (p50,) = harness.windows.signal("latency_p50", {"service": SERVICE}, now=harness.now, window=2.0)
    assert (full.value, recent.value, p50.value) == (0.5, 0.0, 0.4)


def test_the_slow_tail_of_a_recovered_child_does_not_page_its_parent(harness: Harness) -> None:
    """When a slow generation recovers, the requests in flight still end slow in the pipeline for a moment: that
    tail is the child's fault, so the pipeline never fires, then and during the fault."""

    def second(generation: float, pipeline: float) -> None:
        harness.spans(SERVICE, "generation", "openai", [generation] * 10)
        harness.spans(SERVICE, "pipeline", "custom", [pipeline] * 10)
        harness.windows.roll_baselines(harness.now)
        harness.tick(1.0)

    for _ in range(40):
        second(0.2, 0.3)
    fired = set()
    for generation, pipeline in [(0.8, 0.9)] * 3 + [(0.2, 0.9)] * 3 + [(0.2, 0.3)] * 5:
        second(generation, pipeline)
        fired |= {dict(a.labels)["stage"] for a in harness.engine.active()}
    assert fired == {"generation"}


def test_the_failing_tail_of_a_recovering_child_does_not_page_its_parent(harness: Harness) -> None:
    """A failing vector DB recovers: its newest calls fail less before the pipeline's (whose spans end later) do.
    The child's excess of the episode still explains the parent, so only vector_db ever fires (fault matrix:
    ``stage_errors`` fired on the pipeline 0.8 s after the fault had cleared)."""

    def second(vector_db_errors: int, pipeline_errors: int) -> None:
        harness.spans(SERVICE, "vector_db", "chromadb", [0.01] * 10, errors=vector_db_errors)
        harness.spans(SERVICE, "pipeline", "custom", [0.3] * 10, errors=pipeline_errors)
        harness.windows.roll_baselines(harness.now)
        harness.tick(1.0)

    for _ in range(40):
        second(0, 0)
    fired = set()
    for vector_db_errors, pipeline_errors in [(10, 10)] * 3 + [(3, 10)] + [(0, 10)] * 2 + [(0, 0)] * 5:
        second(vector_db_errors, pipeline_errors)
        fired |= {dict(a.labels)["stage"] for a in harness.engine.active()}
    assert fired == {"vector_db"}
