"""What the demo is made of: its faults, the analyzer settings for demo time scales, the extras check, the webhook
sink standing in for the on-call channel, and the question traffic."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from ragotel import _guard

__all__ = [
    "DEMO_FAULTS",
    "DEMO_SERVICE",
    "EXTRAS_COMMAND",
    "DemoFault",
    "Traffic",
    "WebhookSink",
    "analyzer_overrides",
    "find_example_app",
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
    "slow-retrieval": DemoFault(2.5, "high_response_time", "every retrieval takes 2.5 s longer"),
    "llm-errors": DemoFault(1.0, "high_error_rate", "every LLM call fails"),
    "store-unavailable": DemoFault(1.0, "service_unavailable", "the Chroma vector store stops answering"),
    "memory-growth": DemoFault(8.0, "memory_leak", "the app leaks 8 MiB of memory per second"),
}


def analyzer_overrides(state_path: Path, webhook_url: str) -> dict[str, Any]:
    """Analyzer configuration for the demo: free ports, its own state file, a webhook, dry-run recovery hooks.

    Window and rules are the defaults (issue 12: detection works out of the box, so the demo shows what a user
    gets); only the app's exporter intervals are shorter, and the analyzer's memory guard is off because it shares
    the app's process. Every firing rule has a dry-run recovery hook, so the audit trail shows what would have run.
    """
    return {
        "receivers": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}},
        "api": {"endpoint": "127.0.0.1:0"},
        "state": {"path": str(state_path)},
        "log": {"level": "warning"},
        # The analyzer runs inside the app's process here: its resident-memory guard would read the app's
        # memory-growth fault as its own and refuse the very telemetry that shows the leak.
        "limits": {"memory_limit": 0},
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
    """Import ``examples.langchain_app`` from the checkout ragotel runs from (or the current directory), else the
    copy the wheel ships as ``ragotel._example``."""
    candidates = [Path(__file__).resolve().parents[3], Path.cwd()]
    for root in candidates:
        if (root / "examples" / "langchain_app" / "__init__.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return importlib.import_module("examples.langchain_app")
    if importlib.util.find_spec("ragotel._example") is not None:
        return importlib.import_module("ragotel._example")
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


class Traffic:
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
            # An injected fault makes questions fail, in any way the chain can: the demo counts them.
            _, exc = _guard.caught(functools.partial(self.ask, _QUESTIONS[i % len(_QUESTIONS)]))
            with self._lock:
                if exc is None:
                    self.ok += 1
                else:
                    self.failed += 1
            i += len(self._threads)
            self._stop.wait(self._pause)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
