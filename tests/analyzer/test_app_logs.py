"""The app's `logging` records, sent by ragotel.instrument() as OTLP logs, reach the analyzer and feed error_log_rate.

Each app runs in a child process (instrument() installs global providers) with the real SDK and OTLP/HTTP exporter.
The analyzer forwards what it accepted to an HttpReceiver (pass-through), so the records it received can be read
byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from tests.analyzer.analyzer_helpers import api
from tests.servers import HttpReceiver

from ragotel.analyzer.server import Server
from ragotel.config import Settings, app_logs

_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RAGOTEL_"))}

# One request of the app: INFO, WARNING and an ERROR with an exception, all inside one ragotel span.
_APP = """
    import json, logging, sys
    import ragotel
    from opentelemetry import trace
    handle = ragotel.instrument()
    log = logging.getLogger("shop.rag")
    with ragotel.pipeline("answer"):
        ctx = trace.get_current_span().get_span_context()
        log.info("retrieval done")
        log.warning("slow generation: %.1f s", 4.2)
        try:
            {}["missing"]
        except KeyError:
            log.exception("answer failed")
    print(json.dumps({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}))
    sys.exit(0 if handle.shutdown(10_000) else 3)
"""


def _run(code: str, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    full_env = {**_CLEAN_ENV, "RAGOTEL_HOST_METRICS": "false", "RAGOTEL_HEALTH_AUTO_REGISTER": "false", **env}
    command = [*argv, sys.executable, "-c", textwrap.dedent(code)]
    proc = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _records(receiver: HttpReceiver) -> list[dict[str, Any]]:
    """Every log record the receiver got, flattened with its resource's service.name."""
    out = []
    for req in receiver.requests:
        if req.path != "/v1/logs":
            continue
        msg = ExportLogsServiceRequest()
        msg.ParseFromString(req.body)
        for rl in msg.resource_logs:
            resource = {a.key: a.value.string_value for a in rl.resource.attributes}
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    out.append(
                        {
                            "service": resource.get("service.name"),
                            "scope": sl.scope.name,
                            "severity": r.severity_number,
                            "text": r.severity_text,
                            "body": r.body.string_value,
                            "trace_id": r.trace_id.hex(),
                            "span_id": r.span_id.hex(),
                            "attributes": {a.key: a.value.string_value for a in r.attributes},
                        }
                    )
    return out


def test_warnings_and_errors_reach_the_analyzer_with_ids_service_and_exception(
    make_analyzer: Callable[..., Server], http_receiver: HttpReceiver
) -> None:
    """WARNING and ERROR records logged in a span arrive with its trace/span ids, the service and the exception."""
    analyzer = make_analyzer({"passthrough": {"endpoint": http_receiver.url}})
    env = {"OTEL_SERVICE_NAME": "shop", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{analyzer.http_address}"}
    ids = json.loads(_run(_APP, env).stdout)
    assert analyzer.ingest.wait_idle()
    http_receiver.wait_for(1, timeout=10, path="/v1/logs")  # forwarded by the analyzer's pass-through
    records = _records(http_receiver)
    assert [(r["text"], r["body"]) for r in records] == [
        ("WARN", "slow generation: 4.2 s"),
        ("ERROR", "answer failed"),
    ], "INFO is below the default level; nothing else (exporter, ragotel) is sent"
    for record in records:
        assert (record["trace_id"], record["span_id"]) == (ids["trace_id"], ids["span_id"])
        assert (record["service"], record["scope"]) == ("shop", "shop.rag")
    error = records[1]["attributes"]
    assert (error["exception.type"], error["exception.message"]) == ("KeyError", "missing")
    assert "Traceback" in error["exception.stacktrace"]
    assert "KeyError: 'missing'" in error["exception.stacktrace"]
    logs = api(analyzer, "/api/v1/stats?service=shop").json()["services"][0]["logs"]
    assert (logs["count"], logs["errors"]) == (2, 1)
    (rate,) = api(analyzer, "/api/v1/signals?signal=error_log_rate&service=shop").json()["values"]
    assert rate["value"] > 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RAGOTEL_APP_LOGS": "info"}, ["INFO", "WARN", "ERROR"]),
        ({"OTEL_PYTHON_LOG_HANDLER_LEVEL": "error"}, ["ERROR"]),
        ({"RAGOTEL_APP_LOGS": "error", "OTEL_PYTHON_LOG_HANDLER_LEVEL": "info"}, ["ERROR"]),
        ({"RAGOTEL_APP_LOGS": "off"}, []),
        ({"OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false"}, []),
        ({"OTEL_LOGS_EXPORTER": "none"}, []),
    ],
)
def test_level_and_off_switch(http_receiver: HttpReceiver, env: dict[str, str], expected: list[str]) -> None:
    """The ragotel variable and the standard ones set the exported level or switch the app's logs off."""
    code = _APP.replace("import ragotel", "import ragotel, logging; logging.getLogger().setLevel(logging.INFO)")
    _run(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url, **env})
    assert [r["text"] for r in _records(http_receiver)] == expected


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [
        ('"info"', {}, ["INFO", "WARN", "ERROR"]),
        ("logging.ERROR", {"RAGOTEL_APP_LOGS": "info"}, ["ERROR"]),
        ("False", {"RAGOTEL_APP_LOGS": "info"}, []),
        ("True", {"RAGOTEL_APP_LOGS": "off"}, ["WARN", "ERROR"]),
    ],
)
def test_instrument_logs_argument_beats_the_variables(
    http_receiver: HttpReceiver, argument: str, env: dict[str, str], expected: list[str]
) -> None:
    """instrument(logs=...) sets the exported level or switches the app's logs off, ahead of the environment."""
    code = _APP.replace("import ragotel", "import ragotel, logging; logging.getLogger().setLevel(logging.INFO)")
    code = code.replace("ragotel.instrument()", f"ragotel.instrument(logs={argument})")
    _run(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url, **env})
    assert [r["text"] for r in _records(http_receiver)] == expected


def test_exporter_failures_are_not_re_exported() -> None:
    """Exporters failing against a dead port log warnings that never become exported records, and do not loop."""
    dead = HttpReceiver()
    dead_url = dead.url
    dead.stop()  # nothing listens there any more
    code = """
        import logging, time
        import ragotel
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        handle = ragotel.instrument()
        seen = InMemoryLogRecordExporter()
        handle.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(seen))
        logging.getLogger("shop").warning("one app warning")
        time.sleep(2.5)  # several failed exports of traces, metrics and logs, each logged by its exporter
        print([r.instrumentation_scope.name for r in seen.get_finished_logs()])
        handle.shutdown(2_000)
    """
    proc = _run(
        code,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": dead_url,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{dead_url}/v1/traces",
            "OTEL_BLRP_SCHEDULE_DELAY": "50",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        },
    )
    assert "Failed to export" in proc.stderr or "Transient error" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "['shop']", "only the app's record reached the log pipeline"


def test_basic_config_after_instrument_still_configures_the_console() -> None:
    """logging.basicConfig() called after instrument() still installs the app's console handler, and ours stays."""
    code = """
        import logging, sys
        import ragotel
        handle = ragotel.instrument(endpoint="http://127.0.0.1:9")
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="console: %(message)s")
        logging.getLogger("shop").info("hello")
        print(sorted(type(h).__name__ for h in logging.getLogger().handlers))
        handle.uninstrument()
        print(sorted(type(h).__name__ for h in logging.getLogger().handlers))
    """
    lines = _run(code, {}).stdout.splitlines()
    assert lines == ["console: hello", "['LoggingHandler', 'StreamHandler']", "['StreamHandler']"]


def test_zero_code_gives_one_handler_at_the_same_level(http_receiver: HttpReceiver) -> None:
    """Under opentelemetry-instrument the logging instrumentation's handler is adopted: one record each, WARNING up."""
    command = shutil.which("opentelemetry-instrument")
    assert command is not None, "opentelemetry-instrument missing: pip install 'ragotel[test]'"
    code = _APP.replace("handle = ragotel.instrument()", "handle = ragotel.instrument()  # the zero-code handle")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url, "OTEL_SERVICE_NAME": "zc", "OTEL_PYTHON_DISTRO": "ragotel"}
    env["OTEL_PYTHON_CONFIGURATOR"] = "ragotel"
    _run(code, env, command)
    records = _records(http_receiver)
    assert [(r["text"], r["service"]) for r in records] == [("WARN", "zc"), ("ERROR", "zc")], records


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (30, False)),
        ({"RAGOTEL_APP_LOGS": "OFF"}, (None, False)),
        ({"RAGOTEL_APP_LOGS": "debug"}, (10, True)),
        ({"RAGOTEL_APP_LOGS": "on", "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false"}, (30, False)),
        ({"OTEL_PYTHON_LOG_HANDLER_LEVEL": "warn"}, (30, False)),
        ({"RAGOTEL_APP_LOGS": "loud"}, (30, False)),
        ({"OTEL_PYTHON_LOG_HANDLER_LEVEL": "loud"}, (30, False)),
    ],
)
def test_settings(env: dict[str, str], expected: tuple[int | None, bool]) -> None:
    """RAGOTEL_APP_LOGS beats the standard variables; unknown values fall back to WARNING."""
    assert app_logs(env) == expected
    settings = Settings.from_env(env)
    assert (settings.app_logs_level, settings.app_logs_forced) == expected


def test_an_existing_otel_handler_is_adopted_not_doubled(http_receiver: HttpReceiver) -> None:
    """An app's own OTel logging handler and LoggerProvider are reused: one record each, at ragotel's level."""
    prelude = """
        import logging
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        provider = LoggerProvider()
        provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
        set_logger_provider(provider)
        mine = LoggingHandler(logger_provider=provider)
        logging.getLogger().addHandler(mine)
    """
    check = "assert handle.logger_provider is provider and handle.app_logs.handler is mine; sys.exit("
    after = "\nlogging.getLogger('shop').error('after shutdown'); provider.force_flush()"  # the app's, still working
    code = textwrap.dedent(prelude) + textwrap.dedent(_APP).replace("sys.exit(", check).replace(
        "sys.exit(0 if handle.shutdown(10_000) else 3)",
        f"ok = handle.shutdown(10_000){after}\nsys.exit(0 if ok else 3)",
    )
    _run(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url})
    assert [r["body"] for r in _records(http_receiver)] == ["slow generation: 4.2 s", "answer failed", "after shutdown"]
