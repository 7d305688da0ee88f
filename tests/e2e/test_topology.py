"""The at-scale topology of collector-config/, run for real: forwarders -> analyzer replicas -> an Alertmanager cluster.

No OpenTelemetry Collector binary can be installed here, so `rotel` (a Rust OTLP collector from PyPI) stands in for
the agents/gateway: each rotel instance receives OTLP/HTTP and forwards OTLP/gRPC, with the replicas' bearer token,
to one replica, which is what the gateway's `loadbalancing` exporter with `routing_key: service` does per service.
The replicas run `collector-config/analyzer-replica.yaml` with only addresses, paths and time scales overlaid.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rotel
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tests.servers import AlertmanagerServer, HttpReceiver

from ragotel.analyzer.config.loading import load_config
from ragotel.analyzer.server import Server
from ragotel.telemetry import Telemetry, pop, push

ROOT = Path(__file__).resolve().parents[2]
REPLICA_CONFIG = ROOT / "collector-config" / "analyzer-replica.yaml"
TOKEN = "replica-token-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Rotel:
    """A real `rotel-agent` receiving OTLP/HTTP on a free port and forwarding OTLP/gRPC to one endpoint."""

    def __init__(self, tmp: Path, name: str, grpc_target: str, token: str) -> None:
        self.http_port = _free_port()
        self.log = tmp / f"rotel-{name}.log"
        env = {
            **os.environ,
            "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{_free_port()}",
            "ROTEL_EXPORTER": "otlp",
            "ROTEL_OTLP_EXPORTER_ENDPOINT": f"http://{grpc_target}",
            "ROTEL_OTLP_EXPORTER_PROTOCOL": "grpc",
            "ROTEL_OTLP_EXPORTER_CUSTOM_HEADERS": f"authorization=Bearer {token}",
            "ROTEL_BATCH_TIMEOUT": "100ms",
            "ROTEL_PID_FILE": str(tmp / f"rotel-{name}.pid"),
            "ROTEL_LOG_FILE": str(self.log),
        }
        binary = Path(rotel.__file__).parent / "rotel-agent"
        with self.log.open("w") as log:
            self.process = subprocess.Popen([str(binary), "start"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"rotel exited: {self.log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"rotel did not listen on {self.http_port}: {self.log.read_text()}")

    @property
    def traces_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _replica(tmp: Path, index: int, alertmanagers: list[AlertmanagerServer]) -> Server:
    """A replica from analyzer-replica.yaml, overlaid with local addresses, its own state file and short windows."""
    base = yaml.safe_load(REPLICA_CONFIG.read_text())
    # Named list items merge whole, so each overlay item is the file's item with fields changed. The file names three
    # Alertmanager instances; two run here, so the third name points at the first one again.
    urls = [am.url for am in alertmanagers]
    channels = [{**c, "url": urls[i % len(urls)]} for i, c in enumerate(base["channels"])]
    rules = [{**r, "threshold": 0.05, "for": "0s"} for r in base["rules"] if r["name"] == "slow_generation"]
    overlay = {
        "window": "5s",
        "evaluation_interval": "0.25s",
        "receivers": {"grpc": {"endpoint": "127.0.0.1:0"}},
        "api": {"endpoint": "127.0.0.1:0"},
        "state": {"path": str(tmp / f"replica-{index}.db")},
        "channels": channels,
        "rules": rules,
    }
    overlay_file = tmp / f"overlay-{index}.yaml"
    overlay_file.write_text(yaml.safe_dump(overlay))
    server = Server(load_config([REPLICA_CONFIG, overlay_file]))
    server.start()
    return server


def _api(server: Server, path: str) -> Any:
    import urllib.request

    request = urllib.request.Request(f"http://{server.api_address}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def _slow_generations(exporters: list[str], service: str, count: int = 6) -> None:
    """Spans of one service's slow generation step, made by ragotel's stage API, exported to each URL given."""
    import ragotel

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    for url in exporters:
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url)))
    telemetry = Telemetry(provider, None)
    push(telemetry)
    try:
        for _ in range(count):
            with ragotel.generation("gpt-4o-mini", provider="openai"):
                time.sleep(0.1)
    finally:
        pop(telemetry)
        provider.shutdown()


@pytest.fixture
def cluster(
    alertmanager_factory: Callable[..., AlertmanagerServer], http_receiver: HttpReceiver
) -> list[AlertmanagerServer]:
    """Two clustered Alertmanagers notifying the receiver at /am."""
    first = alertmanager_factory(f"{http_receiver.url}/am", cluster=True)
    assert first.cluster_address is not None
    second = alertmanager_factory(f"{http_receiver.url}/am", peers=[first.cluster_address])
    first.wait_for_cluster(2)
    return [first, second]


@pytest.mark.timeout(120)
def test_replicas_behind_forwarders_alert_once_through_the_alertmanager_cluster(
    tmp_path: Path,
    cluster: list[AlertmanagerServer],
    http_receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sticky per-service routing reaches only the owning replica; identical alerts from two replicas notify once."""
    monkeypatch.setenv("RAGOTEL_RECEIVER_TOKEN", TOKEN)
    monkeypatch.setenv("RAGOTEL_API_TOKEN", TOKEN)
    replicas = [_replica(tmp_path, i, cluster) for i in (1, 2)]
    forwarders: list[Rotel] = []
    try:
        forwarders = [Rotel(tmp_path, f"to-replica-{i}", r.grpc_address or "", TOKEN) for i, r in enumerate(replicas)]
        # svc-b is routed to replica 2 only. svc-a reaches both, as during a ring change (or with an HA pair).
        _slow_generations([forwarders[1].traces_url], "svc-b")
        _slow_generations([f.traces_url for f in forwarders], "svc-a")

        def services(server: Server) -> set[str]:
            return {s["service"] for s in _api(server, "/api/v1/stats")["services"] if s["stages"]}

        assert _wait(lambda: services(replicas[0]) == {"svc-a"} and services(replicas[1]) == {"svc-a", "svc-b"}, 15), (
            services(replicas[0]),
            services(replicas[1]),
        )

        def firing(server: Server) -> set[str]:
            alerts = _api(server, "/api/v1/alerts")["alerts"]
            return {a["service"] for a in alerts if a["rule"] == "slow_generation" and a["status"] == "firing"}

        assert _wait(lambda: firing(replicas[0]) == {"svc-a"} and firing(replicas[1]) == {"svc-a", "svc-b"}, 15)

        def groups() -> list[dict[str, str]]:
            return [b["groupLabels"] for b in http_receiver.json_bodies("/am") if b.get("status") == "firing"]

        assert _wait(lambda: len(groups()) >= 2, 20), groups()
        time.sleep(2.5)  # a second notification for svc-a would come one peer timeout (1s) later if dedup failed
        assert sorted(g["service"] for g in groups()) == ["svc-a", "svc-b"]
        assert all(g["alertname"] == "slow_generation" for g in groups())
        # Both replicas posted svc-a's alert to both instances: the same label set, hence one alert in Alertmanager.
        held = [a["labels"] for a in cluster[0].alerts() if a["labels"].get("service") == "svc-a"]
        assert len(held) == 1, held
        assert held[0] == {
            "alertname": "slow_generation",
            "severity": "warning",
            "service": "svc-a",
            "stage": "generation",
            "component": "custom",
        }
    finally:
        for forwarder in forwarders:
            forwarder.stop()
        for replica in replicas:
            replica.stop()
