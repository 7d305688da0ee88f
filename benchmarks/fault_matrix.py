"""Fault matrix (issue 12): which common RAG faults the analyzer catches at its defaults, how fast, named how.

Run: ``python benchmarks/fault_matrix.py`` (all faults), ``--faults slow_llm,llm_errors``, ``--warmup 60``,
``--json``, ``--clean-minutes 30`` (no fault: counts alerts), ``--quick`` (a smoke run: one fault, short limits).

Per fault, everything is fresh: an analyzer subprocess (``python -m ragotel.analyzer``) at its **defaults** (the
config file holds one webhook channel to a receiver in this process; the command line gives free loopback ports
and a temp state file; nothing else), a real ``redis-server`` on a free loopback port, and the app
(``benchmarks/_rag_app.py``, one subprocess per fault so that each gets a pristine
``ragotel.instrument(service_name=<fresh name>, endpoint=<analyzer OTLP/HTTP>)``): real embedded Chroma and the
real ``openai`` client against a loopback chat-completions server, ~10 requests/s with Poisson arrivals, a Redis
health check at the default interval, host gauges on, exporters at ``OTEL_BSP_SCHEDULE_DELAY=200`` and
``OTEL_METRIC_EXPORT_INTERVAL=1000`` (shorter exporter intervals only; no analyzer threshold is touched).

Timeline: ``--warmup`` s of normal traffic (baselines learn), then the fault until ``--hold`` s after the first
firing notification or ``--fault-seconds`` (leak 150 s), then cleared, then up to ``--resolve-seconds`` watching for
the resolved notification of the first alert.

Clocks (this machine's wall clock on both sides):
- **detection** = arrival of the first ``firing`` webhook after the fault began minus the time the first faulty
  request *completed*: that is when its telemetry starts travelling (its spans end then and are exported within the
  batch delay). Faults that no request carries (Redis killed, memory leak, CPU spinners) count from the injection.
- **resolution** = arrival of that alert's ``resolved`` webhook minus the time the fault was cleared.

Only the analyzer's public surface is used: CLI flags, the config file, webhook payloads and ``/api/v1/alerts``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    expected: str  # what the table calls right
    accepts: Callable[[str, str | None], bool]  # (primary cause, its stage) -> right?
    where: str = "app"  # app: switched inside the app process; redis / cpu: by this process
    fault_seconds: float | None = None  # default limit when --fault-seconds is not given


def _cause(*ids: str, stage: str | None = None) -> Callable[[str, str | None], bool]:
    return lambda cause, cause_stage: cause in ids and (stage is None or cause_stage == stage)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("slow_llm", "LLM answers +1.5 s", "generation_latency", _cause("generation_latency", stage="generation")),
        Fault(
            "slow_vectordb",
            "vector DB query +1.5 s",
            "vector_db_latency",
            _cause("vector_db_latency", stage="vector_db"),
        ),
        Fault("llm_errors", "50 % of LLM calls HTTP 500", "generation_errors", _cause("generation_errors")),
        Fault("vectordb_errors", "vector DB query raises", "vector_db_errors", _cause("vector_db_errors")),
        Fault("redis_down", "redis-server killed", "dependency_down", _cause("dependency_down"), where="redis"),
        Fault("leak", "process memory +8 MB/s", "memory_leak", _cause("memory_leak"), fault_seconds=150.0),
        Fault(
            "empty_retrieval",
            "every retrieval returns 0 documents",
            "empty_index",
            _cause("empty_index", "retrieval_regression"),
        ),
        Fault("token_spike", "token usage 20x", "a token cause", lambda cause, _stage: "token" in cause),
        Fault("cpu_saturation", "CPU pinned at 100 %", "cpu_saturation", _cause("cpu_saturation"), where="cpu"),
    )
}
# Faults the app process cannot see itself: their detection clock starts at the injection.
INJECTION_CLOCK = frozenset({"redis_down", "leak", "cpu_saturation"})
HEADERS = (
    "fault",
    "first alert (rule, severity)",
    "primary cause",
    "stage/component",
    "right?",
    "detection s",
    "resolution s",
)
DASH = "—"
ALERT_KEYS = (
    *("rule", "status", "severity", "stage", "component"),
    *("active_since", "started_at", "resolved_at", "notified", "value", "threshold"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- subprocesses: every one is tracked and killed as a group on every exit path -----------------------------------
_children: list[subprocess.Popen[Any]] = []


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def kill(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the process group, wait up to ``timeout``, then SIGKILL whatever is left of the group."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5.0)
    with contextlib.suppress(ValueError):
        _children.remove(proc)


def kill_all() -> None:
    for proc in list(_children):
        kill(proc, signal.SIGKILL, timeout=5.0)


# -- webhook receiver ----------------------------------------------------------------------------------------------
@dataclass
class Notification:
    arrived: float
    payload: dict[str, Any]


class Receiver:
    """Records every webhook POST with its arrival wall time."""

    def __init__(self) -> None:
        self.events: list[Notification] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with contextlib.suppress(ValueError), owner.lock:
                    owner.events.append(Notification(arrived, json.loads(body)))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True).start()

    def for_service(self, service: str) -> list[Notification]:
        with self.lock:
            return [n for n in self.events if n.payload.get("service") == service]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the pieces of one run -----------------------------------------------------------------------------------------
class Redis:
    """A throw-away redis-server on a free loopback port; ``kill()`` is a crash, ``start()`` brings it back."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.tmp), "--protected-mode", "no", "--loglevel", "warning"]
        self.proc = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        kill(self.proc, signal.SIGKILL)
        self.proc = None


class Analyzer:
    """``python -m ragotel.analyzer`` at its defaults plus one webhook channel; free ports, a temp state file."""

    def __init__(self, tmp: Path, webhook: str) -> None:
        self.http = f"127.0.0.1:{free_port()}"
        self.api = f"127.0.0.1:{free_port()}"
        config = tmp / "analyzer.yaml"
        config.write_text(json.dumps({"channels": [{"name": "bench", "type": "webhook", "url": webhook}]}))
        self.log_path = tmp / "analyzer.log"
        argv = [sys.executable, "-m", "ragotel.analyzer", "--config", str(config), "--state", str(tmp / "state.db")]
        argv += ["--http-endpoint", self.http, "--api-endpoint", self.api, "--grpc-endpoint", "127.0.0.1:0"]
        with self.log_path.open("wb") as log:
            self.proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"analyzer exited during start-up:\n{self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{self.api}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("analyzer not ready after 60 s")

    def alerts(self, service: str) -> list[dict[str, Any]]:
        url = f"http://{self.api}/api/v1/alerts?since=24h&service={service}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return list(json.loads(resp.read())["alerts"])
        except (OSError, ValueError, KeyError):
            return []

    def stage_stats(self, service: str) -> dict[str, dict[str, Any]]:
        """``/api/v1/stats`` rows of ``service``: per stage/component count, p95, error and empty-retrieval rates."""
        try:
            with urllib.request.urlopen(f"http://{self.api}/api/v1/stats?service={service}", timeout=10) as resp:
                services = json.loads(resp.read())["services"]
        except (OSError, ValueError, KeyError):
            return {}
        keys = ("count", "rate", "p50", "p95", "error_rate", "empty_retrieval_rate")
        return {
            f"{row['stage']}/{row['component']}": {k: row[k] for k in keys if row.get(k) is not None}
            for svc in services
            for row in svc.get("stages", [])
        } | {"resources": next((svc.get("resources") for svc in services), None) or {}}

    def stop(self) -> None:
        kill(self.proc, signal.SIGTERM, timeout=20.0)


class AppProcess:
    """The RAG app subprocess: JSON-line commands in, JSON-line events out."""

    def __init__(self, tmp: Path, service: str, endpoint: str, redis_url: str, rate: float, seed: int) -> None:
        env = dict(os.environ, OTEL_BSP_SCHEDULE_DELAY="200", OTEL_METRIC_EXPORT_INTERVAL="1000")
        argv = [sys.executable, str(HERE / "_rag_app.py"), "--service", service, "--endpoint", endpoint]
        argv += ["--redis-url", redis_url, "--rate", str(rate), "--seed", str(seed)]
        self.log_path = tmp / "app.log"
        with self.log_path.open("wb") as log:
            self.proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, name="app-events", daemon=True).start()
        self.wait_for("ready", 90.0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))

    def drain(self) -> None:
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                return

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            for e in self.seen:
                if e.get("event") == event:
                    return e
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited; log tail:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"app: no {event!r} event within {timeout} s")
            time.sleep(0.05)

    def find(self, event: str) -> dict[str, Any] | None:
        self.drain()
        return next((e for e in self.seen if e.get("event") == event), None)

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            self.send(cmd="stop")
        stopped: dict[str, Any] = {}
        with contextlib.suppress(RuntimeError):
            stopped = self.wait_for("stopped", 30.0)
        kill(self.proc, signal.SIGTERM, timeout=10.0)
        return dict(stopped.get("stats") or {})


SPIN = (
    "import os, sys, time\n"
    "parent, end = os.getppid(), time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end and os.getppid() == parent:\n"
    "    for _ in range(200000): pass\n"
)


@contextlib.contextmanager
def workspace() -> Iterator[tuple[Path, Receiver]]:
    receiver = Receiver()
    try:
        with tempfile.TemporaryDirectory(prefix="ragotel-faults-") as tmp:
            yield Path(tmp), receiver
    finally:
        kill_all()
        receiver.close()


# -- one fault -----------------------------------------------------------------------------------------------------
@dataclass
class Result:
    fault: str
    service: str
    expected: str
    first_alert: dict[str, Any] | None = None
    detection_s: float | None = None
    resolution_s: float | None = None
    right: bool | None = None
    reference: str = ""
    pre_fault_alerts: list[str] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    app_stats: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)
    stats_before: dict[str, Any] = field(default_factory=dict)  # /api/v1/stats just before the fault
    stats_during: dict[str, Any] = field(default_factory=dict)  # ... and just before it was cleared

    def row(self) -> list[str]:
        if self.first_alert is None:
            return [self.fault, DASH, DASH, DASH, "no", DASH, DASH]
        a = self.first_alert
        where = "/".join(x for x in (a["cause_stage"], a["cause_component"]) if x) or DASH
        return [
            self.fault,
            f"{a['rule']} ({a['severity']})",
            a["primary_cause"] or DASH,
            where,
            "yes" if self.right else "no",
            f"{self.detection_s:.1f}" if self.detection_s is not None else DASH,
            f"{self.resolution_s:.1f}" if self.resolution_s is not None else DASH,
        ]


def _summary(n: Notification, since: float) -> dict[str, Any]:
    p = n.payload
    diagnosis = p.get("diagnosis") or {}
    causes = diagnosis.get("possible_causes") or [{}]
    return {
        "at_s": round(n.arrived - since, 2),
        "status": p.get("status"),
        "event": p.get("event"),
        "rule": p.get("rule"),
        "severity": p.get("severity"),
        "fingerprint": p.get("fingerprint"),
        "labels": p.get("labels"),
        "primary_cause": diagnosis.get("primary_cause"),
        "cause_stage": causes[0].get("stage"),
        "cause_component": causes[0].get("component"),
        "message": p.get("message"),
        "value": p.get("value"),
        "threshold": p.get("threshold"),
    }


def run_fault(fault: Fault, args: argparse.Namespace, seed: int) -> Result:
    service = f"rag-{fault.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    result = Result(fault.name, service, fault.expected)
    fault_limit = args.fault_seconds if args.fault_seconds is not None else (fault.fault_seconds or 75.0)
    with workspace() as (tmp, receiver):
        redis = Redis(tmp)
        redis.start()
        analyzer = Analyzer(tmp, receiver.url)
        app = AppProcess(tmp, service, f"http://{analyzer.http}", redis.url, args.rate, seed)
        spinners: list[subprocess.Popen[Any]] = []
        try:
            t_start = time.time()
            log(f"[{fault.name}] service {service}: warm-up {args.warmup:.0f} s")
            time.sleep(args.warmup)
            # Fault on.
            result.stats_before = analyzer.stage_stats(service)
            t_on = time.time()
            if fault.where == "redis":
                redis.kill()
            elif fault.where == "cpu":
                for _ in range(os.cpu_count() or 1):
                    spinners.append(spawn([sys.executable, "-c", SPIN, str(fault_limit + 30)]))
            else:
                app.send(cmd="fault", name=fault.name)
                t_on = float(app.wait_for("fault_on", 10.0)["t"])
            result.pre_fault_alerts = [
                str(n.payload.get("rule"))
                for n in receiver.for_service(service)
                if n.payload.get("status") == "firing" and n.arrived < t_on
            ]
            log(f"[{fault.name}] fault on (limit {fault_limit:.0f} s)")
            first: Notification | None = None
            deadline = t_on + fault_limit
            while time.time() < deadline:
                if first is None:
                    first = next(
                        (
                            n
                            for n in receiver.for_service(service)
                            if n.payload.get("status") == "firing" and n.arrived >= t_on
                        ),
                        None,
                    )
                    if first is not None:
                        deadline = min(deadline, first.arrived + args.hold)
                time.sleep(0.2)
            # Fault cleared.
            result.stats_during = analyzer.stage_stats(service)
            if fault.where == "redis":
                redis.start()
            elif fault.where == "cpu":
                for proc in spinners:
                    kill(proc, signal.SIGKILL)
            t_clear = time.time()
            if fault.where == "app":
                app.send(cmd="clear")
                t_clear = float(app.wait_for("cleared", 10.0)["t"])
            log(f"[{fault.name}] fault cleared after {t_clear - t_on:.1f} s; watching up to {args.resolve_seconds} s")
            faulty = app.find("first_faulty")
            t_ref = t_on if fault.name in INJECTION_CLOCK or faulty is None else float(faulty["t"])
            result.reference = "injection" if t_ref == t_on else "first faulty request completed"
            deadline = t_clear + args.resolve_seconds
            resolved: Notification | None = None
            while time.time() < deadline:
                notes = receiver.for_service(service)
                if first is None:
                    first = next((n for n in notes if n.payload.get("status") == "firing" and n.arrived >= t_on), None)
                if first is not None:
                    fp = first.payload.get("fingerprint")
                    resolved = next(
                        (
                            n
                            for n in notes
                            if n.payload.get("status") == "resolved" and n.payload.get("fingerprint") == fp
                        ),
                        None,
                    )
                    if resolved is not None:
                        break
                time.sleep(0.2)
            t_end = time.time()
            result.alerts = [
                {k: a.get(k) for k in ALERT_KEYS} | {"primary_cause": (a.get("diagnosis") or {}).get("primary_cause")}
                for a in analyzer.alerts(service)
            ]
            result.notifications = [_summary(n, t_on) for n in receiver.for_service(service)]
            result.timeline = {
                "warmup_s": round(t_on - t_start, 1),
                "fault_s": round(t_clear - t_on, 1),
                "after_clear_s": round(t_end - t_clear, 1),
                "reference_after_on_s": round(t_ref - t_on, 2),
            }
            if first is not None:
                result.first_alert = _summary(first, t_on)
                result.detection_s = round(first.arrived - t_ref, 2)
                cause = result.first_alert["primary_cause"] or ""
                result.right = fault.accepts(cause, result.first_alert["cause_stage"])
                if resolved is not None:
                    result.resolution_s = round(resolved.arrived - t_clear, 2)
        finally:
            for proc in spinners:
                kill(proc, signal.SIGKILL)
            result.app_stats = app.stop()
            analyzer.stop()
            redis.kill()
    return result


def run_clean(args: argparse.Namespace) -> dict[str, Any]:
    service = f"rag-clean-{uuid.uuid4().hex[:6]}"
    with workspace() as (tmp, receiver):
        redis = Redis(tmp)
        redis.start()
        analyzer = Analyzer(tmp, receiver.url)
        app = AppProcess(tmp, service, f"http://{analyzer.http}", redis.url, args.rate, args.seed)
        try:
            log(f"[clean] service {service}: {args.clean_minutes} min of normal traffic")
            time.sleep(args.clean_minutes * 60.0)
            notes = receiver.for_service(service)
        finally:
            stats = app.stop()
            analyzer.stop()
            redis.kill()
    firing = [n for n in notes if n.payload.get("status") == "firing"]
    return {
        "minutes": args.clean_minutes,
        "service": service,
        "alerts": len(firing),
        "rules": sorted({str(n.payload.get("rule")) for n in firing}),
        "notifications": [_summary(n, notes[0].arrived if notes else 0.0) for n in notes],
        "app_stats": stats,
    }


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def notes(results: list[Result]) -> list[str]:
    """One line per fault on what else arrived: alerts before the fault, later alerts, alerts left firing."""
    lines = []
    for r in results:
        extra = []
        if r.first_alert is not None and r.first_alert["at_s"] > r.timeline.get("fault_s", 0.0):
            late = r.first_alert["at_s"] - r.timeline["fault_s"]
            extra.append(f"the first alert arrived {late:.1f} s after the fault was cleared")
        if r.pre_fault_alerts:
            extra.append(f"before the fault: {', '.join(r.pre_fault_alerts)}")
        cleared = r.timeline.get("fault_s", 0.0)
        later = [
            f"{n['rule']} ({n['severity']}) → {n['primary_cause']} at +{n['at_s']:.1f}s"
            + (f" ({n['at_s'] - cleared:.1f} s after the fault was cleared)" if n["at_s"] > cleared else "")
            for n in r.notifications
            if n["status"] == "firing" and n["at_s"] >= 0 and (r.first_alert is None or n != r.first_alert)
        ]
        if later:
            extra.append("later firing: " + ", ".join(later))
        still = [f"{a['rule']} ({a['severity']})" for a in r.alerts if a.get("status") == "firing"]
        if still:
            extra.append("still firing at the end: " + ", ".join(still))
        if extra:
            lines.append(f"- {r.fault} (fault on for {cleared:.0f} s): " + "; ".join(extra))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--faults", help=f"comma-separated, default all: {','.join(FAULTS)}")
    parser.add_argument("--warmup", type=float, default=90.0, help="seconds of normal traffic first (90)")
    parser.add_argument("--fault-seconds", type=float, help="fault limit (75; leak 150)")
    parser.add_argument("--resolve-seconds", type=float, default=90.0, help="limit after the fault is cleared (90)")
    parser.add_argument("--hold", type=float, default=20.0, help="keep the fault this long after the first alert")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second (10)")
    parser.add_argument("--clean-minutes", type=float, default=0.0, help="a clean run of N minutes (no fault)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--save", type=Path, help="also write the JSON here (rewritten after every fault)")
    parser.add_argument("--render", type=Path, help="print the table of a run saved with --save, and exit")
    parser.add_argument("--quick", action="store_true", help="smoke run: llm_errors, short warm-up and limits")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        saved = saved if isinstance(saved, list) else saved["results"]
        loaded = [Result(**r) for r in saved]
        print(render_table([r.row() for r in loaded]) + "\n\n" + "\n".join(notes(loaded)))
        return
    if args.quick:
        args.faults = args.faults or "llm_errors"
        args.warmup, args.fault_seconds, args.resolve_seconds, args.hold = 8.0, 12.0, 6.0, 2.0
    names = [n.strip() for n in (args.faults or ("" if args.clean_minutes else ",".join(FAULTS))).split(",") if n]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    started = time.time()
    results: list[Result] = []
    clean: dict[str, Any] | None = None
    try:
        for i, name in enumerate(names):
            results.append(run_fault(FAULTS[name], args, args.seed + i))
            if args.save:
                args.save.write_text(json.dumps([asdict(r) for r in results], indent=2))
            log(f"[{name}] {render_table([results[-1].row()]).splitlines()[-1]}")
        if args.clean_minutes:
            clean = run_clean(args)
            if args.save:
                args.save.write_text(json.dumps({"results": [asdict(r) for r in results], "clean": clean}, indent=2))
    except KeyboardInterrupt:
        log("interrupted: every subprocess stopped")
        kill_all()
        sys.exit(130)
    finally:
        kill_all()
    elapsed = time.time() - started
    if args.json:
        out = {"elapsed_s": round(elapsed, 1), "results": [asdict(r) for r in results], "clean": clean}
        print(json.dumps(out, indent=2))
        return
    if results:
        print(f"\nFault matrix: analyzer at defaults, {args.rate:g} requests/s (Poisson), warm-up {args.warmup:g} s\n")
        print(render_table([r.row() for r in results]))
        extra = notes(results)
        if extra:
            print("\n" + "\n".join(extra))
    if clean is not None:
        print(f"\nclean run: {clean['minutes']:g} min, {clean['alerts']} alert(s) {clean['rules'] or ''}".rstrip())
    print(f"\ntotal {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
