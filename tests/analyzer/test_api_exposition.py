"""/metrics passes ``promtool check metrics`` with every family populated (issue 10, item 11)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

import httpx
from tests.analyzer.analyzer_helpers import api, encoded_spans, gauge_request, log_request

from ragotel.analyzer.server import Server

PIPELINE = {"ragotel.stage": "pipeline"}
GEN = {"ragotel.stage": "generation", "ragotel.component": "openai"}


def test_metrics_exposition_is_promtool_clean_with_alerts_firing(make_analyzer: Callable[..., Server]) -> None:
    """Spans, metric points and logs in, an alert firing and notified: promtool exits 0 and prints nothing."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is required (Debian package prometheus, installed by .ci/services.sh)"
    server = make_analyzer(
        {
            "limits": {"max_series": 4},  # some items overflow, so the overflow counter is non-zero
            "channels": [{"name": "ops", "type": "log"}],
            "rules": [
                {"name": "slow_pipeline", "signal": "latency_p95", "match": {"stage": "pipeline"}, "threshold": 0.1}
            ],
        }
    )
    base = f"http://{server.http_address}"
    protobuf = {"content-type": "application/x-protobuf"}
    spans = [("rag", PIPELINE, 1.0), ("chat", GEN, 0.5), ("chat", GEN, 0.7)]
    for service in ("rag-api", "rag-worker", "rag-batch"):
        assert (
            httpx.post(f"{base}/v1/traces", content=encoded_spans(service, spans), headers=protobuf).status_code == 200
        )
    metrics = gauge_request("rag-api", [("system.cpu.utilization", 0.4, {}, time.time())])
    assert httpx.post(f"{base}/v1/metrics", content=metrics, headers=protobuf).status_code == 200
    assert httpx.post(f"{base}/v1/logs", content=log_request("rag-api", [9, 17]), headers=protobuf).status_code == 200
    assert server.ingest.wait_idle()
    deadline = time.monotonic() + 15
    while not api(server, "/api/v1/alerts?status=firing").json()["count"]:
        assert time.monotonic() < deadline, "the alert never fired"
        time.sleep(0.2)
    text = api(server, "/metrics").text
    for family in (
        "ragotel_stage_latency_seconds",
        "ragotel_analyzer_alerts{",
        "ragotel_analyzer_overflow_items_total",
    ):
        assert family in text
    assert "_created" not in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
