"""The demo's run: the analyzer in-process, the example app, a burst, the fault, its alert, recovery and resolution."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

from ragotel.demo.parts import DEMO_FAULTS, DEMO_SERVICE, Traffic, WebhookSink, analyzer_overrides
from ragotel.demo.report import Out, print_alert, print_recovery, stage_table, wait

__all__ = ["Demo"]


class Demo:
    def __init__(self, args: argparse.Namespace, out: Out, example: ModuleType, tmp: Path) -> None:
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
            with Traffic(app.ask) as traffic:
                wait(lambda: traffic.ok + traffic.failed >= args.questions, 60.0, out, interval=0.1)
            handle.force_flush(5000)
            stats = wait(lambda: self._stats_with(client, args.questions // 2), 10.0, out)
            if not stats:
                out.line("error: the analyzer has no statistics for the app (is OTLP export blocked?)")
                return 1
            out.line(
                f"      {traffic.ok} answered, {traffic.failed} failed; per-stage latency from {api}/api/v1/stats:"
            )
            for row in stage_table(stats, DEMO_SERVICE):
                out.line(f"        {row}")

            out.step(4, total, f"injecting fault {args.fault}: {self.fault.description}")
            injected = time.monotonic()
            app.faults.set(args.fault, self.fault.value)
            with Traffic(app.ask):
                alert = wait(lambda: self._firing(client), args.timeout, out)
                during = self._get(client, "/api/v1/stats")
            if alert is None:
                app.faults.clear()
                out.line(f"error: no {self.fault.rule} alert within {args.timeout:g}s; see {self.tmp / 'demo.log'}")
                return 1
            out.line(f"      alert fired {time.monotonic() - injected:.1f}s after the fault:")
            print_alert(out, alert)
            if during:
                out.line("      per-stage latency while the fault was on:")
                for row in stage_table(during, DEMO_SERVICE):
                    out.line(f"        {row}")
            delivered = wait(lambda: sink.received(self.fault.rule, "firing"), 10.0, out)
            out.line(f"      webhook {sink.url}: {'firing notification received' if delivered else 'nothing yet'}")

            out.step(5, total, "recovery action")
            record = wait(lambda: self._recovery(client, alert), 10.0, out)
            print_recovery(out, record)

            out.step(6, total, f"clearing the fault; normal traffic until {self.fault.rule} resolves")
            cleared = time.monotonic()
            app.faults.clear()
            with Traffic(app.ask):
                resolved = wait(lambda: self._resolved(client, alert), args.timeout, out)
            if resolved is None:
                out.line(f"error: {self.fault.rule} did not resolve within {args.timeout:g}s")
                return 1
            note = wait(lambda: sink.received(self.fault.rule, "resolved"), 10.0, out)
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
