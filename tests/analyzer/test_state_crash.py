"""kill -9 of the analyzer daemon mid-alert: the firing alert and its undelivered notification survive the crash."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.analyzer.analyzer_helpers import encoded_spans
from tests.servers import HttpReceiver
from tests.servers._process import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.timeout(120)
_PROTOBUF = {"Content-Type": "application/x-protobuf"}
RULE = {
    "name": "database_connection",
    "signal": "error_rate",
    "match": {"stage": "vector_db"},
    "threshold": 0.1,
    "for": "0s",
    "severity": "critical",
    "cooldown": "5m",
}


def _spans(errors: int, total: int = 10) -> bytes:
    attributes = {"ragotel.stage": "vector_db", "ragotel.component": "chroma", "db.system.name": "chroma"}
    return encoded_spans("rag-api", [("query docs", attributes, 0.01)] * total, error_indexes=range(errors))


class Feeder:
    """Posts OTLP/HTTP span batches to the analyzer every 100 ms; `faulty` picks failing or healthy spans."""

    def __init__(self, url: str, faulty_body: bytes | None = None, interval: float = 0.1) -> None:
        self.url = url
        self.faulty = True
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._bodies = {True: faulty_body or _spans(10), False: _spans(0, 200)}

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                # The daemon is down between the kill and the restart: those posts fail, as an exporter's would.
                with contextlib.suppress(httpx.HTTPError):
                    client.post(self.url, content=self._bodies[self.faulty], headers=_PROTOBUF)
                self._stop.wait(self._interval)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _start(config: Path, api: str, log: Path) -> ManagedProcess:
    proc = ManagedProcess([sys.executable, "-m", "ragotel.analyzer", "--config", str(config)], log)
    proc.start()

    def ready() -> bool:
        try:
            return httpx.get(f"http://{api}/readyz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(ready, 30), proc.log_tail()
    return proc


def test_kill_9_mid_alert_keeps_state_and_notifications(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """After SIGKILL and restart: the undelivered firing notification is delivered once, the alert stays firing
    without a second notification, and it resolves exactly once."""
    http_port, api_port = free_port(), free_port()
    api = f"127.0.0.1:{api_port}"
    config = tmp_path / "analyzer.yaml"
    config.write_text(
        json.dumps(
            {
                "window": "2s",
                "evaluation_interval": "200ms",
                "receivers": {"grpc": {"enabled": False}, "http": {"endpoint": f"127.0.0.1:{http_port}"}},
                "api": {"endpoint": api},
                "state": {"path": str(tmp_path / "state.db")},
                "rules": [RULE],
                "channels": [
                    {
                        "name": "ops",
                        "type": "webhook",
                        "url": f"{http_receiver.url}/hook",
                        "retry": {"initial": "200ms", "max": "500ms"},
                    }
                ],
            }
        )
    )
    http_receiver.respond(status=503, body="receiver down")
    log = tmp_path / "analyzer.log"
    proc = _start(config, api, log)
    try:
        with Feeder(f"http://127.0.0.1:{http_port}/v1/traces") as feeder:
            http_receiver.wait_for(2, path="/hook", timeout=15)  # firing, not accepted, retried
            (before,) = httpx.get(f"http://{api}/api/v1/alerts?status=firing", timeout=5).json()["alerts"]
            assert before["notifications"][0]["status"] == "pending"
            proc.kill()
            http_receiver.clear()
            http_receiver.reset_responses()
            proc = _start(config, api, log)
            (delivered,) = http_receiver.wait_for(1, path="/hook", timeout=15)
            assert delivered.json["status"] == "firing"
            assert delivered.json["alert_id"] == before["id"]
            time.sleep(2.0)  # the fault goes on after the restart: still firing, nothing new to say
            (after,) = httpx.get(f"http://{api}/api/v1/alerts?status=firing", timeout=5).json()["alerts"]
            assert (after["id"], after["started_at"]) == (before["id"], before["started_at"])
            assert len(http_receiver.requests) == 1
            feeder.faulty = False
            reqs = http_receiver.wait_for(2, path="/hook", timeout=15)
            assert [r.json["status"] for r in reqs] == ["firing", "resolved"]
        proc.stop()
        proc = _start(config, api, log)
        time.sleep(1.0)
        assert len(http_receiver.requests) == 2, "a resolved alert does not come back after a restart"
        assert httpx.get(f"http://{api}/api/v1/alerts?status=firing", timeout=5).json()["alerts"] == []
    finally:
        proc.stop()


def test_kill_9_while_pending_keeps_the_for_clock(tmp_path: Path) -> None:
    """Slow pipeline spans at 2/s, kill -9 half-way through `for`, restart on the same state file: the restored
    pending episode (same id, same active_since) fires once its `for` has elapsed, not `for` after the restart."""
    http_port, api_port = free_port(), free_port()
    api = f"127.0.0.1:{api_port}"
    config = tmp_path / "analyzer.yaml"
    rule = {"name": "slow_pipeline", "signal": "latency_p95", "match": {"stage": "pipeline"}, "threshold": 1.0}
    config.write_text(
        json.dumps(
            {
                "evaluation_interval": "200ms",
                "receivers": {"grpc": {"enabled": False}, "http": {"endpoint": f"127.0.0.1:{http_port}"}},
                "api": {"endpoint": api},
                "state": {"path": str(tmp_path / "state.db")},
                "rules": [{**rule, "for": "6s", "severity": "critical"}],
            }
        )
    )

    def alerts(status: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"http://{api}/api/v1/alerts?status={status}", timeout=5).json()[
            "alerts"
        ]
        return found

    log = tmp_path / "analyzer.log"
    slow = encoded_spans("rag-api", [("rag", {"ragotel.stage": "pipeline"}, 2.0)])
    proc = _start(config, api, log)
    try:
        with Feeder(f"http://127.0.0.1:{http_port}/v1/traces", slow, interval=0.5):
            assert wait_until(lambda: bool(alerts("pending")), 15), proc.log_tail()
            (pending,) = alerts("pending")
            time.sleep(3.0)
            assert alerts("firing") == []
            proc.kill()
            proc = _start(config, api, log)
            restarted = time.monotonic()
            assert "restored 1 pending/firing alert(s)" in proc.log_tail(50)
            assert wait_until(lambda: bool(alerts("firing")), 20), proc.log_tail()
            fired_after = time.monotonic() - restarted
            (firing,) = alerts("firing")
        assert (firing["id"], firing["active_since"]) == (pending["id"], pending["active_since"])
        assert alerts("pending") == []
        assert fired_after < 4.5, f"fired {fired_after:.1f} s after the restart: its `for` clock restarted"
    finally:
        proc.stop()
