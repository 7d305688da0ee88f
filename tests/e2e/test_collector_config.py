"""collector-config/: the Collector, analyzer and Alertmanager files parse, use real components and real ports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragotel.analyzer.config.loading import check_config, load_config
from ragotel.analyzer.config.model import Config, split_endpoint
from ragotel.analyzer.config.specs import AlertmanagerChannelSpec, RuleSpec

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "collector-config"
COLLECTOR_FILES = ("agent.yaml", "gateway.yaml")

# Component type names of the OpenTelemetry Collector contrib distribution, from
# open-telemetry/opentelemetry-collector-releases distributions/otelcol-contrib/manifest.yaml (v0.135.0 / modules
# v0.136.0): the type is the module's directory name without its kind suffix, in the component's own spelling.
# Only the subset these files could reasonably use is listed; a name outside it fails the test until checked there.
CONTRIB_COMPONENTS: dict[str, frozenset[str]] = {
    "receivers": frozenset(
        {"otlp", "hostmetrics", "prometheus", "filelog", "jaeger", "zipkin", "kafka", "k8s_cluster", "kubeletstats"}
    ),
    "processors": frozenset(
        {
            "batch",
            "memory_limiter",
            "resourcedetection",
            "resource",
            "attributes",
            "filter",
            "transform",
            "k8sattributes",
            "tail_sampling",
            "probabilistic_sampler",
            "groupbytrace",
            "redaction",
        }
    ),
    "exporters": frozenset(
        {
            "otlp",
            "otlphttp",
            "loadbalancing",
            "debug",
            "nop",
            "file",
            "prometheus",
            "prometheusremotewrite",
            "kafka",
            "zipkin",
        }
    ),
    "extensions": frozenset(
        {"health_check", "pprof", "zpages", "file_storage", "bearertokenauth", "basicauth", "headers_setter"}
    ),
    "connectors": frozenset({"forward", "spanmetrics", "routing", "count", "servicegraph", "failover"}),
}
_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CONFIG_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name}: expected a mapping at the top level"
    return data


def _with_env_defaults(value: str) -> str:
    """Resolve ``${env:NAME:-default}`` to its default, as the Collector does when NAME is unset."""
    return _ENV.sub(lambda m: m.group(2) or "", value)


def _component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_collector_files_use_only_contrib_components(name: str) -> None:
    """Every receiver, processor, exporter, extension and connector id names a component of otelcol-contrib."""
    config = _load(name)
    for kind, allowed in CONTRIB_COMPONENTS.items():
        for component_id in config.get(kind) or {}:
            assert _component_type(component_id) in allowed, f"{name}: {kind}.{component_id} is not a contrib component"
    assert config["receivers"], f"{name}: no receivers"
    assert config["exporters"], f"{name}: no exporters"


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_collector_pipelines_refer_to_defined_components(name: str) -> None:
    """Each pipeline names only defined components, every defined component is used, memory_limiter comes first."""
    config = _load(name)
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline_id, pipeline in service["pipelines"].items():
        assert _component_type(pipeline_id) in {"traces", "metrics", "logs"}, f"{name}: pipeline {pipeline_id}"
        assert pipeline.get("receivers"), f"{name}: {pipeline_id} has no receivers"
        assert pipeline.get("exporters"), f"{name}: {pipeline_id} has no exporters"
        assert pipeline["processors"][0] == "memory_limiter", f"{name}: {pipeline_id} must start with memory_limiter"
        assert pipeline["processors"][-1] == "batch", f"{name}: {pipeline_id} must end with batch"
        for kind, seen in used.items():
            for component_id in pipeline.get(kind, []):
                assert component_id in config[kind], f"{name}: {pipeline_id} uses undefined {kind}.{component_id}"
                seen.add(component_id)
    for kind, ids in used.items():
        assert set(config[kind]) == ids, f"{name}: {kind} defined but unused: {set(config[kind]) - ids}"
    for extension in service.get("extensions", []):
        assert extension in config["extensions"], f"{name}: extension {extension} is not defined"


def test_agent_forwards_to_gateway_with_host_metrics() -> None:
    """The agent receives OTLP on loopback, adds host metrics and sends OTLP/gRPC with a queue to the gateway's port."""
    agent, gateway = _load("agent.yaml"), _load("gateway.yaml")
    grpc = agent["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    http = agent["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert split_endpoint(grpc)[0] == split_endpoint(http)[0] == "127.0.0.1"
    assert split_endpoint(http)[1] == 4318  # the SDK's default OTLP/HTTP target
    assert "hostmetrics" in agent["service"]["pipelines"]["metrics"]["receivers"]
    exporter = agent["exporters"]["otlp/gateway"]
    gateway_port = split_endpoint(gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    assert split_endpoint(_with_env_defaults(exporter["endpoint"]))[1] == gateway_port
    assert exporter["sending_queue"]["enabled"] is True
    assert exporter["retry_on_failure"]["enabled"] is True


def test_gateway_balances_by_service_to_analyzer_grpc_ports() -> None:
    """The gateway's loadbalancing exporter routes by service to replicas on the analyzer's default gRPC port."""
    gateway = _load("gateway.yaml")
    lb = gateway["exporters"]["loadbalancing/analyzers"]
    assert lb["routing_key"] == "service"
    assert "otlp" in lb["protocol"], "the replicas must be reached over OTLP/gRPC"
    default_grpc_port = split_endpoint(Config().receivers.grpc.endpoint)[1]
    hostnames = lb["resolver"]["static"]["hostnames"]
    assert len(hostnames) >= 2
    assert {split_endpoint(h)[1] for h in hostnames} == {default_grpc_port}
    for signal in ("traces", "metrics"):
        exporters = gateway["service"]["pipelines"][signal]["exporters"]
        assert "loadbalancing/analyzers" in exporters
        assert len(exporters) == 2, f"{signal}: expected one backend beside the analyzers, got {exporters}"


def test_gateway_gives_every_exporter_its_own_queue() -> None:
    """Each gateway exporter (and each per-replica sub-exporter) has its own enabled sending queue and retries."""
    exporters = _load("gateway.yaml")["exporters"]
    for exporter_id, exporter in exporters.items():
        assert exporter["sending_queue"]["enabled"] is True, exporter_id
        assert exporter["retry_on_failure"]["enabled"] is True, exporter_id
    sub = exporters["loadbalancing/analyzers"]["protocol"]["otlp"]
    assert sub["sending_queue"]["enabled"] is True
    assert "endpoint" not in sub, "the resolver supplies the replicas' endpoints"


def test_analyzer_replica_config_is_valid_and_uses_default_ports() -> None:
    """analyzer-replica.yaml passes the analyzer's own validation; its ports are the analyzer defaults."""
    path = CONFIG_DIR / "analyzer-replica.yaml"
    assert check_config([path]) == []
    config = load_config([path])
    defaults = Config()
    assert split_endpoint(config.receivers.grpc.endpoint)[1] == split_endpoint(defaults.receivers.grpc.endpoint)[1]
    assert split_endpoint(config.api.endpoint)[1] == split_endpoint(defaults.api.endpoint)[1]
    channels = [AlertmanagerChannelSpec.model_validate(c) for c in config.channels]
    assert len(channels) >= 2, "every replica notifies every instance of the Alertmanager cluster"
    assert len({c.url for c in channels}) == len(channels)
    for rule in config.rules:
        RuleSpec.model_validate(rule)


def test_alertmanager_config_passes_amtool() -> None:
    """alertmanager.yml is accepted by the real `amtool check-config` and groups by the analyzer's alert labels."""
    amtool = shutil.which("amtool")
    assert amtool is not None, "amtool missing: apt-get install prometheus-alertmanager (.ci/services.sh)"
    result = subprocess.run(
        [amtool, "check-config", str(CONFIG_DIR / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    route = _load("alertmanager.yml")["route"]
    assert {"alertname", "service"} <= set(route["group_by"])


def test_gateway_routes_logs_by_service_on_collectors_before_v0_154() -> None:
    """Logs reach the analyzers keyed by service even where loadbalancing routes logs by trace id (contrib < v0.154)."""
    gateway = _load("gateway.yaml")
    logs = gateway["service"]["pipelines"]["logs"]
    assert logs["exporters"] == ["loadbalancing/analyzers"], "the trace-id rewrite must feed only the analyzers"
    assert "transform/logs_by_service" in logs["processors"]
    statements = [
        statement
        for group in gateway["processors"]["transform/logs_by_service"]["log_statements"]
        for statement in group["statements"]
    ]
    assert any(
        s.startswith("set(trace_id.string,") and 'SHA256(resource.attributes["service.name"])' in s for s in statements
    )
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    assert "v0.154" in readme
    assert "routing_key" in readme
