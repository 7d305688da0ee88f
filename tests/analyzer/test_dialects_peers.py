"""End to end with the real peers: an app instrumented only by OpenLIT, OpenLLMetry, OpenInference or contrib
openai-v2 exports OTLP/HTTP to a running analyzer, which shows its per-stage stats and alerts on failing chat calls.

The peers conflict with the main environment's pins, so each app runs in the venv ``benchmarks/peers_env.sh``
builds (``scripts/setup-tests`` builds it in CI); without that venv these tests fail, naming the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.analyzer.analyzer_helpers import api
from tests.servers import FakeOpenAI

from ragotel.analyzer.server import Server

pytestmark = pytest.mark.timeout(120)

PEERS_VENV = Path(os.environ.get("RAGOTEL_PEERS_VENV", "/tmp/ragotel-peers-venv"))
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
APP = Path(__file__).with_name("peer_app.py")
REQUESTS = 8  # calls per stage before the fault
# Every stage an app makes, per dialect, as (stage, component): what each dialect can tell.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    # OpenLIT: GenAI semconv for openai, db semconv for chroma; its httpx spans are `other`, never a generation.
    "openlit": {("generation", "openai"), ("embedding", "openai"), ("vector_db", "chroma"), ("other", "")},
    # OpenLLMetry: the LangChain workflow is the pipeline, tasks are other; chroma through the legacy db.system.
    "openllmetry": {
        ("pipeline", "langchain"),
        ("other", "langchain"),
        ("generation", "openai"),
        ("embedding", "openai"),
        ("vector_db", "chroma"),
    },
    # OpenInference: the root CHAIN is the pipeline, the RETRIEVER the retrieval; no Chroma instrumentation.
    "openinference": {
        ("pipeline", ""),
        ("other", ""),
        ("retrieval", ""),
        ("generation", "openai"),
        ("embedding", "openai"),
    },
    # contrib openai-v2: only the openai calls.
    "openai-v2": {("generation", "openai"), ("embedding", "openai")},
}
RULES = [
    # The adaptive error rule with an absolute threshold (no baseline to learn, so the test stays short); its
    # logic, including leaf-first, is the built-in one.
    {"name": "stage_errors", "type": "adaptive", "signal": "error_rate", "threshold": 0.5, "severity": "critical"},
    {"name": "high_error_rate", "enabled": False},
    {"name": "availability_burn_rate", "enabled": False},
]


def _require_venv() -> None:
    if not PEERS_PYTHON.exists():
        pytest.fail(
            f"the peers venv is missing ({PEERS_PYTHON}): build it with `bash benchmarks/peers_env.sh` "
            "(scripts/setup-tests does it in CI)",
            pytrace=False,
        )


@contextmanager
def _peer_app(dialect: str, llm: FakeOpenAI, server: Server, service: str, tmp_path: Path) -> Iterator[None]:
    pricing = tmp_path / "pricing.json"
    pricing.write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"ANONYMIZED_TELEMETRY": "False", "OTEL_SDK_DISABLED": "false", "PYTHONPATH": ""})
    proc = subprocess.Popen(
        [str(PEERS_PYTHON), str(APP), dialect, llm.base_url, f"http://{server.http_address}", service, str(pricing)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"{dialect} app did not start: {line!r}\n{err[-3000:]}")
        yield
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _stages(server: Server, service: str) -> dict[tuple[str, str], dict[str, Any]]:
    body = api(server, f"/api/v1/stats?service={service}").json()
    return {(row["stage"], row["component"]): row for entry in body["services"] for row in entry["stages"]}


def _poll(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _firing(server: Server, service: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = api(server, f"/api/v1/alerts?service={service}").json()["alerts"]
    return [a for a in alerts if a["status"] == "firing"]


@pytest.mark.parametrize("dialect", sorted(EXPECTED))
def test_peer_instrumented_app_gets_stage_stats_and_an_alert(
    dialect: str, make_analyzer: Callable[..., Server], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Spans from the real peer land in their stages with counts, and failing chat calls fire stage_errors on
    generation/openai (not on the wrapper or HTTP spans)."""
    _require_venv()
    server = make_analyzer({"window": "20s", "evaluation_interval": "200ms", "rules": RULES})
    service = f"peer-{dialect}"
    with _peer_app(dialect, fake_openai, server, service, tmp_path):

        def stats_ready() -> dict[tuple[str, str], dict[str, Any]] | None:
            stages = _stages(server, service)
            counted = {key for key, row in stages.items() if row["count"] >= REQUESTS}
            return stages if EXPECTED[dialect] <= counted else None

        stages = _poll(f"{dialect} stats {sorted(EXPECTED[dialect])}", stats_ready, 30)
        assert set(stages) == EXPECTED[dialect], stages
        assert all(row["error_rate"] == 0 for row in stages.values()), stages
        generation = stages[("generation", "openai")]
        assert (generation["p50"] or 0) > 0
        assert _firing(server, service) == []

        for _ in range(3):
            fake_openai.fail_next(500, times=99, path="/v1/chat/completions")

        def alert() -> list[dict[str, Any]]:
            return [a for a in _firing(server, service) if a["rule"] == "stage_errors"]

        alerts = _poll(f"{dialect} stage_errors alert", alert, 30)
    assert [(a["stage"], a["component"]) for a in alerts] == [("generation", "openai")], alerts
    assert _stages(server, service)[("generation", "openai")]["error_rate"] > 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-p", "no:randomly"]))
