"""Detection latency: from faulty telemetry reaching the analyzer to the webhook receiving the firing alert.

Run: ``python benchmarks/detection_latency.py`` (``--reps 20`` per scenario and configuration; ``--quick``).

Two analyzer processes (``python -m ragotel.analyzer``) run side by side with the built-in configuration, a webhook
channel to a receiver in this process, and the rule under test set to ``for: 0s`` (everything else as built in):
one with the default ``evaluation_interval: 1s``, one with ``200ms``. Each repetition uses a fresh service name (a
new alert, no cooldown) and sends one OTLP/HTTP protobuf request:

- ``errors``: 20 failing vector_db spans -> ``database_connection``;
- ``dependency``: a ``ragotel.dependency.health`` gauge at 0 -> ``service_unavailable``.

The clock starts when the analyzer has answered the export request (the telemetry has reached it) and stops when
the webhook request arrives here; both are this machine's wall clock. Repetitions start at a random phase of the
evaluation tick, and the two configurations take turns. The 200ms configuration is the in-run baseline: what is
left when the wait for the next tick shrinks is the analyzer's own work (ingest, evaluation, diagnosis, SQLite
transaction, delivery); its fastest repetition bounds that work from above.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

RULES_UNDER_TEST = ("database_connection", "service_unavailable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Webhook receiver: records (arrival wall time, payload) of every POST."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if body.get("status") == "firing":
                    with owner.cond:
                        owner.events.setdefault((body["rule"], body["service"]), arrived)
                        owner.cond.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, rule: str, service: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while (rule, service) not in self.events:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no firing {rule} for {service} within {timeout}s")
                self.cond.wait(left)
            return self.events[(rule, service)]


def analyzer_config(tmp: Path, name: str, interval: str, webhook: str) -> tuple[Path, str]:
    from ragotel.analyzer.config.builtin_rules import BUILTIN_RULES_YAML

    builtin = {r["name"]: r for r in yaml.safe_load("rules:\n" + BUILTIN_RULES_YAML)["rules"]}
    http = f"127.0.0.1:{free_port()}"
    config = {
        "evaluation_interval": interval,
        "receivers": {"grpc": {"enabled": False}, "http": {"endpoint": http}},
        "api": {"endpoint": f"127.0.0.1:{free_port()}"},
        "state": {"path": str(tmp / f"{name}.db")},
        "log": {"level": "warning"},
        "rules": [{**builtin[rule], "for": "0s"} for rule in RULES_UNDER_TEST],
        "channels": [{"name": "bench", "type": "webhook", "url": webhook}],
    }
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path, http


def error_spans(service: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(20):
        span = ss.spans.add(
            trace_id=random.randbytes(16),
            span_id=random.randbytes(8),
            name="query docs",
            kind=3,
            start_time_unix_nano=now - 20_000_000,
            end_time_unix_nano=now,
        )
        span.attributes.append(KeyValue(key="ragotel.stage", value=AnyValue(string_value="vector_db")))
        span.attributes.append(KeyValue(key="ragotel.component", value=AnyValue(string_value="chroma")))
        span.status.code = Status.STATUS_CODE_ERROR
        del i
    return bytes(request.SerializeToString())


def health_gauge(service: str) -> bytes:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    metric = rm.scope_metrics.add().metrics.add(name="ragotel.dependency.health", unit="1")
    point = metric.gauge.data_points.add(as_int=0, time_unix_nano=time.time_ns())
    point.attributes.append(KeyValue(key="ragotel.dependency.name", value=AnyValue(string_value="chroma")))
    point.attributes.append(KeyValue(key="ragotel.dependency.kind", value=AnyValue(string_value="vector_db")))
    return bytes(request.SerializeToString())


SCENARIOS = {
    "errors": ("traces", "database_connection", error_spans),
    "dependency": ("metrics", "service_unavailable", health_gauge),
}


def post(endpoint: str, signal: str, body: bytes) -> None:
    req = urllib.request.Request(
        f"http://{endpoint}/v1/{signal}", data=body, headers={"Content-Type": "application/x-protobuf"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def wait_ready(endpoint: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("analyzer exited during start-up")
        try:
            post(endpoint, "traces", b"")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("analyzer not ready")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="repetitions per scenario and configuration")
    parser.add_argument("--quick", action="store_true", help="3 repetitions (smoke run)")
    args = parser.parse_args()
    reps = 3 if args.quick else args.reps
    receiver = Receiver()
    configs = {"default (1s)": "1s", "fast (200ms)": "200ms"}
    with tempfile.TemporaryDirectory(prefix="ragotel-detect-") as tmp:
        procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        try:
            for i, (name, interval) in enumerate(configs.items()):
                path, endpoint = analyzer_config(Path(tmp), f"a{i}", interval, receiver.url)
                proc = subprocess.Popen([sys.executable, "-m", "ragotel.analyzer", "--config", str(path)])
                procs[name] = (proc, endpoint)
            for proc, endpoint in procs.values():
                wait_ready(endpoint, proc)
            results: dict[tuple[str, str], list[float]] = {(c, s): [] for c in configs for s in SCENARIOS}
            for rep in range(reps):
                order = [(c, s) for c in configs for s in SCENARIOS]
                random.shuffle(order)
                for config, scenario in order:
                    signal, rule, make = SCENARIOS[scenario]
                    service = f"svc-{scenario}-{rep}-{config.split()[0]}"
                    body = make(service)
                    time.sleep(random.uniform(0.0, 1.0))  # random phase against the evaluation tick
                    endpoint = procs[config][1]
                    post(endpoint, signal, body)
                    reached = time.time()
                    results[(config, scenario)].append(receiver.wait(rule, service) - reached)
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            for proc, _ in procs.values():
                proc.wait(30)
    print(f"\nDetection latency, {reps} repetitions each (seconds from export accepted to webhook received)\n")
    print(f"{'configuration':<15} {'scenario':<11} {'median':>7} {'p95':>7} {'max':>7} {'min':>7}")
    for (config, scenario), values in results.items():
        print(
            f"{config:<15} {scenario:<11} {statistics.median(values):7.3f} {percentile(values, 0.95):7.3f} "
            f"{max(values):7.3f} {min(values):7.3f}"
        )
    default = [v for (c, _), vs in results.items() if c.startswith("default") for v in vs]
    fast = [v for (c, _), vs in results.items() if c.startswith("fast") for v in vs]
    print(
        f"\nall default: median {statistics.median(default):.3f}s, p95 {percentile(default, 0.95):.3f}s "
        f"(goal <= 2s: {'met' if percentile(default, 0.95) <= 2.0 else 'MISSED'}); "
        f"fast/default median ratio {statistics.median(fast) / statistics.median(default):.2f}; "
        f"fastest (bounds the analyzer's own work): {min(fast):.3f}s"
    )


if __name__ == "__main__":
    main()
