"""End to end: an app instrumented with ragotel exports OTLP to a running analyzer; faults become alerts with the
right primary cause at a real webhook, then resolve when the fault stops."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from tests.analyzer.analyzer_helpers import api
from tests.servers import AlertmanagerServer, HttpReceiver, RecordedRequest

import ragotel
from ragotel import telemetry
from ragotel.analyzer.server import Server
from ragotel.health import HealthRegistry, http_check
from ragotel.health.gauges import bind
from ragotel.host import HostMetrics
from ragotel.stages import Stage

pytestmark = pytest.mark.timeout(90)

WINDOW = "3s"
FAST_RULES = [
    {"name": "high_response_time", "signal": "latency_p95", "match": {"stage": "pipeline"}, "threshold": 0.3,
     "for": "0s", "severity": "critical"},
    # min_errors 3 as the built-in rule: the dependency graph calls a dependency down from 3 failed calls (issue 14)
    {"name": "database_connection", "signal": "error_rate", "match": {"stage": "vector_db"}, "threshold": 0.1,
     "for": "0s", "min_errors": 3, "severity": "critical"},
    {"name": "service_unavailable", "signal": "dependency_health", "condition": "less_than", "threshold": 1,
     "for": "0s", "severity": "critical"},
    {"name": "memory_leak", "signal": "memory_growth", "threshold": 2000000, "for": "1s", "severity": "warning",
     "guard": [{"signal": "memory_utilization", "condition": "greater_than", "threshold": 0}]},
    {"name": "high_error_rate", "enabled": False},
    {"name": "availability_burn_rate", "enabled": False},
]  # fmt: skip


class App:
    """A RAG service instrumented with ragotel: its own SDK providers, OTLP/HTTP to the analyzer, a request loop."""

    def __init__(self, endpoint: str, service: str = "rag-app") -> None:
        resource = Resource.create({"service.name": service})
        self.tracer_provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=f"http://{endpoint}/v1/traces", timeout=5)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"http://{endpoint}/v1/metrics", timeout=5), export_interval_millis=200
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        self.telemetry = telemetry.Telemetry(self.tracer_provider, self.meter_provider)
        self.generation_delay = 0.01
        self.vector_db_down = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        with ragotel.pipeline("answer"):
            with ragotel.retrieval("docs", top_k=3, component="chromadb"):
                with Stage("vector_db", {"db.system.name": "chroma", "db.operation.name": "query"}, component="chroma"):
                    if self.vector_db_down:
                        raise ConnectionError("chroma: connection refused")
                    time.sleep(0.002)
            with ragotel.generation("gpt-4o-mini", provider="openai", component="openai"):
                time.sleep(self.generation_delay)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(ConnectionError):
                self.request()
            time.sleep(0.02)

    def __enter__(self) -> App:
        telemetry.push(self.telemetry)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        telemetry.pop(self.telemetry)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def analyzer_with_hook(make_analyzer: Callable[..., Server], http_receiver: HttpReceiver) -> Callable[..., Server]:
    def make(**overrides: Any) -> Server:
        config = {
            "window": WINDOW,
            "evaluation_interval": "200ms",
            "rules": FAST_RULES,
            "channels": [{"name": "ops", "type": "webhook", "url": f"{http_receiver.url}/hook"}],
            **overrides,
        }
        return make_analyzer(config)

    return make


def _event(rule: str, status: str) -> Callable[[RecordedRequest], bool]:
    return lambda r: r.json is not None and r.json.get("rule") == rule and r.json.get("status") == status


def _wait(receiver: HttpReceiver, rule: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
    found = receiver.wait_for(1, path="/hook", timeout=timeout, predicate=_event(rule, status))
    body: dict[str, Any] = found[0].json
    return body


def test_slow_generation_fires_high_response_time_naming_generation(
    analyzer_with_hook: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """Slow LLM calls fire high_response_time on the pipeline with generation/openai as primary cause; then resolve."""
    server = analyzer_with_hook()
    with App(server.http_address or "") as app:
        time.sleep(1.0)
        app.generation_delay = 0.4
        firing = _wait(http_receiver, "high_response_time", "firing")
        assert firing["stage"] == "pipeline"
        assert firing["diagnosis"]["primary_cause"] == "generation_latency"
        top = firing["diagnosis"]["possible_causes"][0]
        assert (top["stage"], top["component"]) == ("generation", "openai")
        assert "generation/openai accounts for" in firing["message"]
        assert "vector_db/chroma" in firing["diagnosis"]["summary"]
        assert firing["diagnosis"]["recommended_actions"][0] == "clear_cache"
        app.generation_delay = 0.01
        resolved = _wait(http_receiver, "high_response_time", "resolved")
        assert resolved["fingerprint"] == firing["fingerprint"]
    body = api(server, "/api/v1/alerts?since=1h&rule=high_response_time").json()
    assert [a["status"] for a in body["alerts"]] == ["resolved"]
    alert = body["alerts"][0]
    assert alert["diagnosis"]["primary_cause"] == "generation_latency"
    assert alert["symptoms"]["stages"], "the symptoms the diagnosis was based on are kept"
    assert [n["status"] for n in alert["notifications"]] == ["delivered", "delivered"]


def test_failing_vector_db_fires_database_connection(
    analyzer_with_hook: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """Vector DB calls all failing fire database_connection naming the Chroma dependency as down (issue 14: the
    dependency graph shows its edge failing); the failover hook runs and is audited."""
    hook = {"name": "failover", "on": ["failover"], "action": {"type": "command", "argv": ["true", "{service}"]}}
    server = analyzer_with_hook(recovery=[hook])
    app = App(server.http_address or "")
    app.vector_db_down = True  # from the first call: every vector DB call fails
    with app:
        firing = _wait(http_receiver, "database_connection", "firing")
        assert (firing["service"], firing["stage"], firing["component"]) == ("rag-app", "vector_db", "chroma")
        assert firing["diagnosis"]["primary_cause"] == "dependency_down"
        assert firing["diagnosis"]["dependency"]["id"] == "dependency:vector_db/chroma/"
        assert firing["diagnosis"]["recommended_actions"][0] == "failover"
        metrics = api(server, "/metrics").text
        assert 'ragotel_analyzer_alerts{rule="database_connection",severity="critical",state="firing"} 1.0' in metrics
        deadline = time.monotonic() + 10
        while (
            not (runs := api(server, "/api/v1/recoveries?since=1h").json()["recoveries"])
            or runs[0]["status"] == "running"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (run,) = runs
        assert (run["hook"], run["status"], run["command"]["argv"]) == ("failover", "succeeded", ["true", "rag-app"])
        assert run["reason"] == "database_connection firing; primary cause dependency_down"
        app.vector_db_down = False
        _wait(http_receiver, "database_connection", "resolved")
    assert api(server, "/api/v1/recoveries").json()["recoveries"][0]["verification"] == "resolved"
    assert 'ragotel_analyzer_notifications_sent_total{channel="ops"}' in api(server, "/metrics").text


def test_dependency_down_fires_service_unavailable(
    analyzer_with_hook: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """A failing ragotel.health check fires service_unavailable with dependency_down, resolved when it recovers."""
    server = analyzer_with_hook()
    dependency = HttpReceiver()
    dependency.start()
    registry = HealthRegistry()
    with App(server.http_address or "") as app:
        binding = bind(registry, app.meter_provider)
        registry.register("search-index", http_check(dependency.url), kind="vector_db", interval=0.2, timeout=1)
        time.sleep(0.8)
        dependency.stop()
        firing = _wait(http_receiver, "service_unavailable", "firing")
        assert firing["labels"]["dependency"] == "search-index"
        assert firing["diagnosis"]["primary_cause"] == "dependency_down"
        assert firing["diagnosis"]["recommended_actions"][0] == "failover"
        dependency.start()
        _wait(http_receiver, "service_unavailable", "resolved")
        binding.stop()
        registry.stop()
    dependency.close()


def test_growing_memory_fires_memory_leak(
    analyzer_with_hook: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """Real RSS growth reported by ragotel's host gauges fires memory_leak with restart_service recommended."""
    server = analyzer_with_hook()
    hoard: list[bytearray] = []
    with App(server.http_address or "") as app:
        host = HostMetrics(app.meter_provider)
        deadline = time.monotonic() + 20
        firing: dict[str, Any] | None = None
        while time.monotonic() < deadline and firing is None:
            hoard.append(bytearray(b"x" * 2_000_000))  # ~20 MB/s of real, touched memory
            time.sleep(0.1)
            found = [r.json for r in http_receiver.requests if _event("memory_leak", "firing")(r)]
            firing = found[0] if found else None
        assert firing is not None, "memory_leak did not fire"
        assert firing["diagnosis"]["primary_cause"] == "memory_leak"
        assert firing["diagnosis"]["recommended_actions"][0] == "restart_service"
        assert firing["value"] > 2_000_000
        hoard.clear()
        host.stop()


def test_api_queries_and_bad_parameters(analyzer_with_hook: Callable[..., Server], http_receiver: HttpReceiver) -> None:
    """The alerts API filters by since/status/rule, lists rules with health, and answers bad parameters with 400."""
    server = analyzer_with_hook()
    with App(server.http_address or "") as app:
        app.vector_db_down = True
        _wait(http_receiver, "database_connection", "firing")
        firing = api(server, "/api/v1/alerts?status=firing").json()["alerts"]
        assert [a["rule"] for a in firing] == ["database_connection"]
        assert firing[0]["started_at"].endswith("Z")
        assert api(server, "/api/v1/alerts?status=resolved").json()["alerts"] == []
        rules = {r["name"]: r for r in api(server, "/api/v1/rules").json()["rules"]}
        assert rules["database_connection"]["health"] == "ok"
        assert len(rules["database_connection"]["alerts"]) == 1
        assert "memory_leak" in rules
        assert "high_error_rate" not in rules
    bad = api(server, "/api/v1/alerts?since=yesterday")
    assert bad.status_code == 400
    assert "since" in bad.json()["error"]
    assert api(server, "/api/v1/alerts?status=burning").status_code == 400
    assert api(server, "/api/v1/recoveries?limit=0").status_code == 400
    assert api(server, "/api/v1/notifications?status=failed").json() == {"notifications": [], "count": 0}


@pytest.fixture
def two_replicas(make_analyzer: Callable[..., Server], tmp_path: Any) -> Callable[[str], list[Server]]:
    def make(am_url: str) -> list[Server]:
        servers = []
        for i in range(2):
            servers.append(
                make_analyzer(
                    {
                        "window": WINDOW,
                        "evaluation_interval": "200ms",
                        "rules": FAST_RULES,
                        "state": {"path": str(tmp_path / f"replica{i}.db")},
                        "channels": [{"name": "am", "type": "alertmanager", "url": am_url, "resend_interval": "1s"}],
                    }
                )
            )
        return servers

    return make


def test_two_analyzer_replicas_one_alertmanager_notification(
    two_replicas: Callable[[str], list[Server]],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    http_receiver: HttpReceiver,
) -> None:
    """Two analyzers fed the same telemetry send identical alerts; Alertmanager notifies once, then the resolution."""
    am = alertmanager_factory(f"{http_receiver.url}/am", group_wait="1s", group_interval="1s")
    servers = two_replicas(am.url)
    apps = [App(s.http_address or "") for s in servers]
    for app in apps:
        app.vector_db_down = True
        app.__enter__()
    try:
        (note,) = http_receiver.wait_for(1, path="/am", timeout=20)
        assert note.json["status"] == "firing"
        (alert,) = note.json["alerts"]
        assert alert["labels"] == {
            "alertname": "database_connection",
            "severity": "critical",
            "service": "rag-app",
            "stage": "vector_db",
            "component": "chroma",
        }
        assert alert["annotations"]["primary_cause"] == "dependency_down"  # issue 14: the graph names chroma
        (held,) = am.alerts()
        time.sleep(2.5)  # both replicas refresh every second; group_interval (1s) passed twice: no duplicate
        assert len(http_receiver.wait_for(1, path="/am")) == 1
        (refreshed,) = am.alerts()
        assert refreshed["endsAt"] > held["endsAt"], "endsAt moves on while the alert fires"
        for app in apps:
            app.vector_db_down = False
        reqs = http_receiver.wait_for(2, path="/am", timeout=20)
        assert reqs[1].json["status"] == "resolved"
    finally:
        for app in apps:
            app.__exit__()


def test_unreachable_channel_shows_in_metrics_and_api(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """A channel that cannot be reached is retried; its failures show in /metrics and the notifications API."""
    server = make_analyzer(
        {
            "window": WINDOW,
            "evaluation_interval": "200ms",
            "rules": FAST_RULES,
            "channels": [
                {"name": "down", "type": "webhook", "url": "http://127.0.0.1:9/hook", "retry": {"initial": "100ms"}},
                {"name": "ops", "type": "webhook", "url": f"{http_receiver.url}/hook"},
            ],
        }
    )
    with App(server.http_address or "") as app:
        app.vector_db_down = True
        _wait(http_receiver, "database_connection", "firing")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = api(server, "/api/v1/notifications?status=pending").json()["notifications"]
            if rows and rows[0]["attempts"] >= 2:
                break
            time.sleep(0.1)
        assert rows[0]["channel"] == "down"
        assert "ConnectError" in rows[0]["last_error"]
        metrics = httpx.get(f"http://{server.api_address}/metrics", timeout=5).text
        assert 'ragotel_analyzer_notifications_errors_total{channel="down"}' in metrics
        assert 'ragotel_analyzer_notifications_queue_length{channel="down"} 1.0' in metrics
