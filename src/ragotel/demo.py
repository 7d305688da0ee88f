"""``ragotel demo``: the analyzer in-process, the LangChain example app, a burst, a fault, its alert and recovery.

Everything runs in this process on 127.0.0.1 with free ports and a temporary directory: ragotel-analyzer (SQLite
state), a webhook receiver standing in for the on-call channel, and the example RAG app instrumented by one
``ragotel.instrument()`` call exporting OTLP/HTTP to the analyzer with short intervals. The analyzer runs with a
short window and the built-in rules retuned to demo time scales (``analyzer_overrides``), so a fault becomes an
alert in seconds and clears in seconds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TextIO

__all__ = [
    "DEMO_FAULTS",
    "DEMO_SERVICE",
    "EXTRAS_COMMAND",
    "DemoFault",
    "WebhookSink",
    "analyzer_overrides",
    "find_example_app",
    "main",
    "missing_extras",
]

DEMO_SERVICE: Final = "ragotel-example-rag"
EXTRAS_COMMAND: Final = "pip install -e '.[example]'"
# What the demo imports (the analyzer's server pulls in the rest of the analyzer extra), and the distribution
# providing each top-level module when its name differs; everything is in the `example` extra.
_REQUIRED: Final = (
    "langchain_core",
    "langchain_text_splitters",
    "langchain_chroma",
    "chromadb",
    "httpx",
    "ragotel.analyzer.server",
)
_DISTRIBUTIONS: Final = {
    "langchain_core": "langchain-core",
    "langchain_text_splitters": "langchain-text-splitters",
    "langchain_chroma": "langchain-chroma",
    "yaml": "pyyaml",
    "grpc": "grpcio",
    "google": "protobuf",
    "opentelemetry": "opentelemetry-proto",
    "prometheus_client": "prometheus-client",
}
_STAGE_ORDER: Final = ("pipeline", "retrieval", "embedding", "vector_db", "rerank", "generation")
_QUESTIONS: Final = (
    "How do I instrument my RAG application with ragotel?",
    "What does the analyzer do with OTLP telemetry?",
    "Which stages does ragotel record for a RAG request?",
    "How is content capture turned on?",
    "What happens when a streamed response is abandoned?",
    "How does the gateway route telemetry to analyzer replicas?",
    "Which environment variables configure the exporter endpoint?",
    "How are alerts delivered to Alertmanager?",
    "What does a recovery action record in its audit trail?",
    "How do I register a health check for a dependency?",
    "What is the default port of the analyzer API?",
    "How does ragotel avoid counting a LangChain call to OpenAI twice?",
)


@dataclass(frozen=True, slots=True)
class DemoFault:
    """A fault the demo can inject: the switch value, the rule expected to fire, and what it does."""

    value: float
    rule: str
    description: str


DEMO_FAULTS: Final[dict[str, DemoFault]] = {
    "slow-retrieval": DemoFault(0.8, "high_response_time", "every retrieval takes 0.8 s longer"),
    "llm-errors": DemoFault(1.0, "high_error_rate", "every LLM call fails"),
    "store-unavailable": DemoFault(1.0, "service_unavailable", "the Chroma vector store stops answering"),
    "memory-growth": DemoFault(40.0, "memory_leak", "the app leaks 40 MiB of memory per second"),
}
_MIB: Final = 1024 * 1024


def analyzer_overrides(state_path: Path, webhook_url: str, *, window: float = 6.0) -> dict[str, Any]:
    """Analyzer configuration for the demo: free ports, a short window, built-in rules on demo time scales.

    The rules keep their built-in names and signals; only thresholds and durations are shortened. Every firing
    rule has a dry-run recovery hook, so the audit trail shows what would have run.
    """
    quick = {"for": "1s", "cooldown": "5s", "repeat_interval": "0s", "severity": "critical"}
    return {
        "window": f"{window}s",
        "evaluation_interval": "0.25s",
        "receivers": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}},
        "api": {"endpoint": "127.0.0.1:0"},
        "state": {"path": str(state_path)},
        "log": {"level": "warning"},
        "rules": [
            {"name": "high_response_time", "signal": "latency_p95", "match": {"stage": "pipeline"},
             "threshold": 0.5, **quick},
            {"name": "high_error_rate", "signal": "error_rate", "match": {"stage": "pipeline"}, "threshold": 0.2,
             "guard": [{"signal": "request_rate", "condition": "greater_than", "threshold": 0.2}], **quick},
            {"name": "service_unavailable", "signal": "dependency_health", "condition": "less_than",
             "threshold": 1, **quick},
            {"name": "memory_leak", "signal": "memory_growth", "threshold": 5 * _MIB, "guard": [],
             **{**quick, "severity": "warning"}},
        ],
        "channels": [{"name": "on-call-webhook", "type": "webhook", "url": webhook_url}],
        # The seed's mapping: slow responses -> clear the answer cache; errors, leaks, outages -> restart.
        "recovery": [
            {"name": "clear-answer-cache", "on": ["high_response_time"], "dry_run": True,
             "cooldown": "5s", "timeout": "10s",
             "action": {"type": "redis_flush", "url": "redis://127.0.0.1:6379/0", "pattern": "answers:{service}:*"}},
            {"name": "restart-rag-app", "on": [f.rule for f in DEMO_FAULTS.values() if f.rule != "high_response_time"],
             "dry_run": True, "cooldown": "5s", "timeout": "10s",
             "action": {"type": "command", "argv": ["kubectl", "rollout", "restart", "deployment/{service}"]}},
        ],
    }  # fmt: skip


def missing_extras() -> list[str]:
    """Distributions the demo needs that cannot be imported (empty when all are there)."""
    missing: list[str] = []
    for module in _REQUIRED:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            name = (getattr(exc, "name", None) or module).split(".")[0]
            distribution = _DISTRIBUTIONS.get(name, name.replace("_", "-"))
            if distribution not in missing:
                missing.append(distribution)
    return missing


def find_example_app() -> ModuleType | None:
    """Import ``examples.langchain_app`` from the checkout ragotel runs from (or the current directory)."""
    candidates = [Path(__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        if (root / "examples" / "langchain_app" / "__init__.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return importlib.import_module("examples.langchain_app")
    return None


class WebhookSink:
    """A JSON webhook receiver on 127.0.0.1 (the demo's stand-in for a chat or paging channel)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    with sink._lock:
                        sink.payloads.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where the analyzer posts."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def received(self, rule: str, status: str) -> dict[str, Any] | None:
        """The first notification for ``rule`` with ``status`` (``firing``/``resolved``), if any arrived."""
        with self._lock:
            return next((p for p in self.payloads if p.get("rule") == rule and p.get("status") == status), None)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class _Out:
    """Progress and results on stdout: dots while waiting on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, number: int, total: int, text: str) -> None:
        self.line(f"[{number}/{total}] {text}")

    def tick(self) -> None:
        if self.tty:
            self.stream.write(".")
            self.stream.flush()

    def end_ticks(self) -> None:
        if self.tty:
            self.stream.write("\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _Traffic:
    """Questions asked from a few threads until stopped; counts answers and failures."""

    def __init__(self, ask: Callable[[str], Any], workers: int = 4, pause: float = 0.05) -> None:
        self.ask = ask
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pause = pause
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"demo-traffic-{i}", daemon=True) for i in range(workers)
        ]

    def _run(self, worker: int) -> None:
        i = worker
        while not self._stop.is_set():
            try:
                self.ask(_QUESTIONS[i % len(_QUESTIONS)])
            except Exception:  # noqa: BLE001  an injected fault makes questions fail; the demo counts them
                with self._lock:
                    self.failed += 1
            else:
                with self._lock:
                    self.ok += 1
            i += len(self._threads)
            self._stop.wait(self._pause)

    def __enter__(self) -> _Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def _ms(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.0095 else f"{seconds * 1000:.1f} ms"


def _stage_table(stats: Mapping[str, Any], service: str) -> list[str]:
    rows: list[dict[str, Any]] = next(
        (s.get("stages", []) for s in stats.get("services", []) if s.get("service") == service), []
    )
    rank = {stage: i for i, stage in enumerate(_STAGE_ORDER)}
    rows = sorted(rows, key=lambda r: (rank.get(str(r.get("stage")), 99), str(r.get("component"))))
    lines = [f"{'stage':<11} {'component':<11} {'count':>6} {'p50':>9} {'p95':>9} {'errors':>7}"]
    for r in rows:
        errors = r.get("error_rate")
        error_text = f"{errors * 100:.0f}%" if isinstance(errors, int | float) else "-"
        lines.append(
            f"{r.get('stage')!s:<11} {r.get('component')!s:<11} {r.get('count', 0):>6} "
            f"{_ms(r.get('p50')):>9} {_ms(r.get('p95')):>9} {error_text:>7}"
        )
    return lines


def _wait(predicate: Callable[[], Any], timeout: float, out: _Out, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while True:
        value = predicate()
        if value:
            out.end_ticks()
            return value
        if time.monotonic() >= deadline:
            out.end_ticks()
            return None
        if time.monotonic() - last_tick >= 1.0:
            out.tick()
            last_tick = time.monotonic()
        time.sleep(interval)


@contextmanager
def _demo_logging(path: Path) -> Iterator[None]:
    """Send every log record to ``path`` so that stdout shows only the demo's story."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragotel demo",
        description="Run the example LangChain RAG app against an in-process ragotel-analyzer, inject a fault "
        "and show the alert, its diagnosis, the (dry-run) recovery and the resolution.",
    )
    parser.add_argument("--fault", choices=sorted(DEMO_FAULTS), default="slow-retrieval", help="fault to inject")
    parser.add_argument(
        "--embedding",
        choices=["hash", "sentence-transformers", "auto"],
        default="hash",
        help="embedding of the example app (default: hash, the fast deterministic one)",
    )
    parser.add_argument("--questions", type=int, default=40, help="questions in the first burst (default 40)")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the analyzer and the app (with its HTTP API) running until Ctrl-C",
    )
    parser.add_argument("--timeout", type=float, default=25.0, help="seconds to wait for the alert, and again for "
                        "its resolution (default 25)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the demo; 0 when the alert fired, was diagnosed, recovered (dry run) and resolved; 2 when unable to start."""
    args = _parser().parse_args(argv)
    out = _Out(stdout or sys.stdout)
    if args.questions < 1:
        out.line("error: --questions must be at least 1")
        return 2
    missing = missing_extras()
    if missing:
        out.line(f"ragotel demo needs the example extras ({', '.join(missing)} missing). Install them with:")
        out.line(f"    {EXTRAS_COMMAND}")
        out.line("(from a ragotel checkout; outside one: pip install 'ragotel[example]')")
        return 2
    example = find_example_app()
    if example is None:
        out.line("ragotel demo runs the example app in examples/langchain_app of a ragotel source checkout;")
        out.line(f"run it from the checkout after {EXTRAS_COMMAND}")
        return 2
    with tempfile.TemporaryDirectory(prefix="ragotel-demo-") as tmp, _demo_logging(Path(tmp) / "demo.log"):
        return _Demo(args, out, example, Path(tmp)).run()


class _Demo:
    def __init__(self, args: argparse.Namespace, out: _Out, example: ModuleType, tmp: Path) -> None:
        self.args = args
        self.out = out
        self.example = example
        self.tmp = tmp
        self.fault = DEMO_FAULTS[args.fault]

    def run(self) -> int:
        import httpx  # noqa: PLC0415  demo dependencies load only once the extras check passed

        from ragotel.analyzer.config import ConfigError, load_config  # noqa: PLC0415  same
        from ragotel.analyzer.server import Server  # noqa: PLC0415  same

        out, args, total = self.out, self.args, 6
        out.line("ragotel demo: a LangChain RAG app, instrumented by ragotel.instrument(), watched by ragotel-analyzer")
        out.line()
        with ExitStack() as stack:
            sink = WebhookSink()
            stack.callback(sink.close)
            out.step(1, total, "starting ragotel-analyzer in-process")
            try:
                config = load_config([], analyzer_overrides(self.tmp / "analyzer.db", sink.url))
                server = Server(config)
                server.start()
            except (ConfigError, OSError, RuntimeError) as exc:
                out.line(f"error: the analyzer did not start: {exc}")
                return 1
            stack.callback(server.stop)
            api = f"http://{server.api_address}"
            out.line(f"      OTLP/HTTP {server.http_address}  OTLP/gRPC {server.grpc_address}  API {api}")
            out.line(f"      state {self.tmp / 'analyzer.db'}, window {config.window:g}s, webhook {sink.url}")

            out.step(2, total, "starting the example RAG app (examples/langchain_app)")
            app, handle = self._start_app(server.http_address or "")
            if app is None:
                return 2
            stack.callback(handle.shutdown)
            stack.callback(app.close)
            client = httpx.Client(base_url=api, timeout=5.0)
            stack.callback(client.close)

            out.step(3, total, f"burst: {args.questions} questions")
            with _Traffic(app.ask) as traffic:
                _wait(lambda: traffic.ok + traffic.failed >= args.questions, 60.0, out, interval=0.1)
            handle.force_flush(5000)
            stats = _wait(lambda: self._stats_with(client, args.questions // 2), 10.0, out)
            if not stats:
                out.line("error: the analyzer has no statistics for the app (is OTLP export blocked?)")
                return 1
            out.line(
                f"      {traffic.ok} answered, {traffic.failed} failed; per-stage latency from {api}/api/v1/stats:"
            )
            for row in _stage_table(stats, DEMO_SERVICE):
                out.line(f"        {row}")

            out.step(4, total, f"injecting fault {args.fault}: {self.fault.description}")
            injected = time.monotonic()
            app.faults.set(args.fault, self.fault.value)
            with _Traffic(app.ask):
                alert = _wait(lambda: self._firing(client), args.timeout, out)
                during = self._get(client, "/api/v1/stats")
            if alert is None:
                app.faults.clear()
                out.line(f"error: no {self.fault.rule} alert within {args.timeout:g}s; see {self.tmp / 'demo.log'}")
                return 1
            out.line(f"      alert fired {time.monotonic() - injected:.1f}s after the fault:")
            self._print_alert(alert)
            if during:
                out.line("      per-stage latency while the fault was on:")
                for row in _stage_table(during, DEMO_SERVICE):
                    out.line(f"        {row}")
            delivered = _wait(lambda: sink.received(self.fault.rule, "firing"), 10.0, out)
            out.line(f"      webhook {sink.url}: {'firing notification received' if delivered else 'nothing yet'}")

            out.step(5, total, "recovery action")
            record = _wait(lambda: self._recovery(client, alert), 10.0, out)
            self._print_recovery(record)

            out.step(6, total, f"clearing the fault; normal traffic until {self.fault.rule} resolves")
            cleared = time.monotonic()
            app.faults.clear()
            with _Traffic(app.ask):
                resolved = _wait(lambda: self._resolved(client, alert), args.timeout, out)
            if resolved is None:
                out.line(f"error: {self.fault.rule} did not resolve within {args.timeout:g}s")
                return 1
            note = _wait(lambda: sink.received(self.fault.rule, "resolved"), 10.0, out)
            out.line(
                f"      resolved {time.monotonic() - cleared:.1f}s after the fault was cleared"
                f" (webhook: {'resolved notification received' if note else 'not yet delivered'})"
            )
            out.line()
            out.line(f"Analyzer API: {api}/api/v1/alerts  {api}/api/v1/stats  {api}/api/v1/recoveries  {api}/metrics")
            out.line(f"Done in {out.elapsed():.1f}s. Logs: {self.tmp / 'demo.log'} (removed on exit).")
            if args.keep_running:
                self._keep_running(app, api)
            else:
                out.line("Run `ragotel demo --keep-running` to explore the API and the app afterwards.")
            return 0

    # -- app --------------------------------------------------------------------------------------------------
    def _start_app(self, otlp_http: str) -> tuple[Any, Any]:
        import ragotel  # noqa: PLC0415  ragotel/__init__ must not import the demo; the reverse is lazy too

        # What a user would set: the SDK reads the standard OTEL_* variables. Short intervals for demo time scales.
        os.environ.update(
            {
                "OTEL_SERVICE_NAME": DEMO_SERVICE,
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_http}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "RAGOTEL_HEALTH_INTERVAL": "1",
            }
        )
        handle = ragotel.instrument(service_name=DEMO_SERVICE)  # each library is instrumented as the app imports it
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}  # never a paid API in the demo
        config = self.example.AppConfig.from_env(
            env, store_dir=self.tmp / "chroma", embedding=self.args.embedding, service_name=DEMO_SERVICE
        )
        try:
            app = self.example.RagApp(config, env=env)
        except self.example.StartupError as exc:
            self.out.line(f"error: the example app did not start: {exc}")
            handle.shutdown()
            return None, None
        app.register_health(interval=1.0)
        info = app.describe()
        self.out.line(
            f"      corpus {info['corpus']['directory']} ({info['corpus']['files']} files, {info['chunks']} chunks)"
            f" -> Chroma {info['store']['path']}"
        )
        self.out.line(f"      embedding: {info['embedding']}")
        self.out.line(f"      LLM: {info['llm']}")
        self.out.line(
            f"      ragotel.instrument() -> OTLP/HTTP {otlp_http}; instrumented: {', '.join(handle.libraries)}"
        )
        return app, handle

    def _keep_running(self, app: Any, api: str) -> None:
        server = self.example.ApiServer(app, "127.0.0.1", 0).start()
        out = self.out
        out.line()
        out.line("Still running (Ctrl-C stops):")
        out.line(f'  app:      {server.url}   e.g. curl -s {server.url}/ask -d \'{{"question": "What is ragotel?"}}\'')
        out.line(
            f"            {server.url}/healthz   faults: curl -s {server.url}/faults -d '{{\"slow-retrieval\": 1}}'"
        )
        out.line(f"  analyzer: {api}/api/v1/stats   {api}/api/v1/alerts   {api}/api/v1/recoveries")
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.stop()
            out.line("stopped.")

    # -- analyzer API ---------------------------------------------------------------------------------------------
    def _get(self, client: Any, path: str, **params: Any) -> Any:
        try:
            response = client.get(path, params=params)
        except Exception:
            logging.getLogger("ragotel.demo").exception("GET %s failed", path)
            return None
        return response.json() if response.status_code == 200 else None

    def _stats_with(self, client: Any, minimum: int) -> Any:
        stats = self._get(client, "/api/v1/stats", service=DEMO_SERVICE)
        for service in (stats or {}).get("services", []):
            for row in service.get("stages", []):
                if row.get("stage") == "pipeline" and row.get("count", 0) >= minimum:
                    return stats
        return None

    def _alerts(self, client: Any) -> list[dict[str, Any]]:
        body = self._get(client, "/api/v1/alerts")
        return list((body or {}).get("alerts", []))

    def _firing(self, client: Any) -> dict[str, Any] | None:
        return next(
            (a for a in self._alerts(client) if a.get("rule") == self.fault.rule and a.get("status") == "firing"),
            None,
        )

    def _resolved(self, client: Any, alert: Mapping[str, Any]) -> dict[str, Any] | None:
        return next(
            (a for a in self._alerts(client) if a.get("id") == alert.get("id") and a.get("status") == "resolved"),
            None,
        )

    def _recovery(self, client: Any, alert: Mapping[str, Any]) -> dict[str, Any] | None:
        body = self._get(client, "/api/v1/recoveries")
        return next((r for r in (body or {}).get("recoveries", []) if r.get("alert_id") == alert.get("id")), None)

    # -- printing -------------------------------------------------------------------------------------------------
    def _print_alert(self, alert: Mapping[str, Any]) -> None:
        out = self.out
        labels = alert.get("labels") or {}
        where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        out.line(f"      ALERT {alert.get('rule')} [{alert.get('severity')}] {where}")
        out.line(f"        {alert.get('message')}")
        diagnosis = alert.get("diagnosis") or {}
        if diagnosis:
            causes = diagnosis.get("possible_causes") or []
            top = causes[0] if causes else {}
            confidence = top.get("confidence", diagnosis.get("confidence"))
            confidence_text = f" (confidence {confidence:.2f})" if isinstance(confidence, int | float) else ""
            out.line(f"        diagnosis: primary cause {diagnosis.get('primary_cause')}{confidence_text}")
            if diagnosis.get("summary"):
                out.line(f"          {diagnosis['summary']}")
            others = [f"{c.get('cause')} {c.get('confidence', 0):.2f}" for c in causes[1:4] if isinstance(c, dict)]
            if others:
                out.line(f"          other possible causes: {', '.join(others)}")
            actions = diagnosis.get("recommended_actions") or []
            if actions:
                out.line(f"          recommended actions: {', '.join(actions)}")

    def _print_recovery(self, record: Mapping[str, Any] | None) -> None:
        out = self.out
        if record is None:
            out.line("      no recovery record yet (see /api/v1/recoveries)")
            return
        command = record.get("command") or {}
        argv = command.get("argv") if isinstance(command, dict) else None
        pattern = command.get("pattern") if isinstance(command, dict) else None
        if argv:
            what = " ".join(argv)
        elif pattern:
            what = f"delete keys {pattern} at {command.get('url')}"
        else:
            what = str(record.get("action"))
        mode = "DRY RUN, nothing executed" if record.get("dry_run") else "executed"
        status = record.get("status")
        out.line(f"      hook {record.get('hook')!r} ({record.get('action')}): {what}  [{mode}; status {status}]")
        out.line(f"        why: {record.get('reason')}")
