"""AlertmanagerServer: a real Prometheus Alertmanager on 127.0.0.1 delivering to a caller-given webhook."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from ._process import ManagedProcess, ProcessServer, find_binary, free_port

__all__ = ["AlertmanagerServer"]


class AlertmanagerServer(ProcessServer):
    """`prometheus-alertmanager` (apt package of that name) on a free port, no clustering by default.

    The route groups by `group_by` (default `['alertname', 'service']`) with `group_wait`/`group_interval` of 1s and
    `repeat_interval` 1h, and sends to `webhook_url` (with `send_resolved: true`) when one is given. `config` replaces
    the whole generated configuration. `peers` (other servers' `.cluster_address`) turns on gossip clustering so
    several instances deduplicate notifications. `.url` is `http://127.0.0.1:PORT`; start-up waits for `/-/ready`.
    """

    startup_timeout = 30.0

    def __init__(
        self,
        webhook_url: str | None = None,
        port: int | None = None,
        *,
        group_by: Sequence[str] = ("alertname", "service"),
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
        resolve_timeout: str = "5m",
        config: dict[str, Any] | None = None,
        cluster: bool = False,
        peers: Sequence[str] = (),
    ) -> None:
        self.binary = find_binary(
            ["prometheus-alertmanager", "/usr/bin/prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager"
        )
        super().__init__(port)
        self.webhook_url = webhook_url
        self.cluster_port = free_port(self.host) if (cluster or peers) else None
        self.peers = list(peers)
        if config is None:
            receiver: dict[str, Any] = {"name": "test"}
            if webhook_url:
                receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True, "max_alerts": 0}]
            config = {
                "global": {"resolve_timeout": resolve_timeout},
                "route": {
                    "receiver": "test",
                    "group_by": list(group_by),
                    "group_wait": group_wait,
                    "group_interval": group_interval,
                    "repeat_interval": repeat_interval,
                },
                "receivers": [receiver],
            }
        self.config = config
        self.config_path = self.tmp_path / "alertmanager.yml"
        # JSON is valid YAML: no YAML dependency needed to write the file.
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def cluster_address(self) -> str | None:
        """host:port of the gossip listener, or None when clustering is off."""
        return None if self.cluster_port is None else f"{self.host}:{self.cluster_port}"

    def start(self) -> None:
        if self.running:
            return
        storage = self.tmp_path / "data"
        storage.mkdir(exist_ok=True)
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={storage}",
            f"--web.listen-address={self.host}:{self.port}",
            f"--web.external-url={self.url}",
            "--log.level=warn",
        ]
        if self.cluster_port is None:
            argv.append("--cluster.listen-address=")
        else:
            argv += [
                f"--cluster.listen-address={self.cluster_address}",
                f"--cluster.advertise-address={self.cluster_address}",
                "--cluster.gossip-interval=50ms",
                "--cluster.pushpull-interval=1s",
                "--cluster.settle-timeout=0s",
                "--cluster.peer-timeout=1s",
            ]
            argv += [f"--cluster.peer={peer}" for peer in self.peers]
        self._launch(ManagedProcess(argv, self.tmp_path / "alertmanager.log"), self._ready)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_for_cluster(self, size: int, timeout: float = 10.0) -> None:
        """Block until `/api/v2/status` reports a ready cluster of `size` peers; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/status", timeout=2) as resp:
                    status = json.loads(resp.read()).get("cluster") or {}
            except (urllib.error.URLError, OSError):
                status = {}
            if status.get("status") == "ready" and len(status.get("peers") or []) >= size:
                return
            time.sleep(0.05)
        raise AssertionError(f"Alertmanager cluster did not reach {size} ready peers in {timeout}s: {status}")

    def post_alerts(self, alerts: list[dict[str, Any]]) -> int:
        """POST alerts to `/api/v2/alerts` (the v2 API shape: labels, annotations, startsAt...); return the status."""
        req = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)

    def alerts(self) -> list[dict[str, Any]]:
        """GET `/api/v2/alerts`: the alerts Alertmanager currently holds."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as resp:
            result: list[dict[str, Any]] = json.loads(resp.read())
            return result
