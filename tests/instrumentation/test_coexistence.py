"""Coexistence with a real peer (contrib `opentelemetry-instrumentation-openai-v2`): one chat call, spans per mode.

Each case is a fresh process making one chat call against the loopback OpenAI server, either under
`opentelemetry-instrument` (both entry points registered: `openai` and `ragotel_openai`) or with the peer's
`instrument()` called in code before `ragotel.instrument()`. The console exporter prints the spans.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import wrapt
from opentelemetry.instrumentation.utils import unwrap
from tests.instrumentation.instrumentation_helpers import Instrumented, console_objects
from tests.servers import FakeOpenAI

from ragotel import coexistence
from ragotel import semconv as sc
from ragotel.instrumentation.openai import OpenAIInstrumentor

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

PEER = "opentelemetry-instrumentation-openai-v2"

APP = """
import os
if os.environ["APP_MODE"] == "code":
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider())
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    OpenAIInstrumentor().instrument()
    import ragotel
    ragotel.instrument(coexistence=os.environ.get("CODE_COEXISTENCE") or None, host_metrics=False)
import openai
client = openai.OpenAI(base_url=os.environ["FAKE_OPENAI_BASE_URL"], api_key="sk-test", max_retries=0)
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
"""


def _spans(stdout: str) -> list[dict[str, Any]]:
    return [o for o in console_objects(stdout) if isinstance(o, dict) and "context" in o]


def test_the_peer_is_found_from_its_metadata() -> None:
    """The installed peer is recognised as an `openai` instrumentation by its entry point, without importing it."""
    assert any(p.package == PEER and p.library == "openai" for p in coexistence.registered_peers()), (
        f"{PEER} missing: bash scripts/setup-tests installs it"
    )


# (app mode, RAGOTEL_COEXISTENCE or instrument(coexistence=...), expected spans (ragotel's, the peer's), warned)
CASES = [
    ("zero-code", None, (0, 1), True),
    ("zero-code", "defer", (0, 1), True),
    ("zero-code", "exclusive", (1, 0), False),
    ("zero-code", "both", (1, 1), False),
    # opentelemetry-distro's distro and configurator chosen: the peer loads, then the post-instrument hook stops it
    ("zero-code/opentelemetry-distro", "exclusive", (1, 0), False),
    ("zero-code/opentelemetry-distro", None, (0, 1), True),
    ("code", None, (0, 1), True),
    ("code", "defer", (0, 1), True),
    ("code", "exclusive", (1, 0), False),
    ("code", "both", (1, 1), False),
]


@pytest.mark.parametrize(("app_mode", "mode", "expected", "warned"), CASES)
def test_one_chat_call_makes_the_spans_the_mode_says(
    fake_openai: FakeOpenAI, tmp_path: Path, app_mode: str, mode: str | None, expected: tuple[int, int], warned: bool
) -> None:
    """defer (the default): the peer's span only, and one warning naming it and the setting; exclusive: ragotel's
    only; both: one of each."""
    script = tmp_path / "app.py"
    script.write_text(APP, encoding="utf-8")
    others = [
        e.name for e in entry_points(group="opentelemetry_instrumentor") if e.name not in ("openai", "ragotel_openai")
    ]
    env = {
        **os.environ,
        "APP_MODE": app_mode.partition("/")[0],
        "FAKE_OPENAI_BASE_URL": fake_openai.base_url,
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(others),
        "RAGOTEL_HEALTH_AUTO_REGISTER": "false",
    }
    for name in ("RAGOTEL_COEXISTENCE", "CODE_COEXISTENCE"):
        env.pop(name, None)
    if mode is not None:
        env["CODE_COEXISTENCE" if app_mode == "code" else "RAGOTEL_COEXISTENCE"] = mode
    if app_mode == "zero-code/opentelemetry-distro":
        env.update(OTEL_PYTHON_DISTRO="distro", OTEL_PYTHON_CONFIGURATOR="configurator")
    if app_mode.startswith("zero-code"):
        command = shutil.which("opentelemetry-instrument")
        assert command is not None
        argv = [command, "--traces_exporter", "console", "--metrics_exporter", "none", "--logs_exporter", "none",
                sys.executable, str(script)]  # fmt: skip
    else:
        argv = [sys.executable, str(script)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    spans = _spans(proc.stdout)
    ours = [s for s in spans if s["attributes"].get(sc.RAGOTEL_STAGE)]
    assert (len(ours), len(spans) - len(ours)) == expected, [s["name"] for s in spans]
    warnings = [line for line in proc.stderr.splitlines() if PEER in line]
    if warned:
        assert len(warnings) == 1, proc.stderr[-4000:]
        assert "RAGOTEL_COEXISTENCE=exclusive" in warnings[0]
        if app_mode != "code":
            assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=openai" in warnings[0]
    else:
        assert warnings == [], proc.stderr[-4000:]
    if app_mode != "code":
        assert "Attempting to instrument while already instrumented" not in proc.stderr


def _foreign_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return wrapped(*args, **kwargs)  # stands in for a wrapper ragotel does not know (OpenLIT's)


@pytest.mark.parametrize(("mode", "spans"), [("defer", 0), ("exclusive", 1), ("both", 1)])
def test_a_foreign_wrapper_on_a_target_counts_as_a_peer(
    fake_openai: FakeOpenAI,
    instrumented: Instrumented,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    spans: int,
) -> None:
    """A wrapt wrapper already on `Completions.create` makes ragotel step aside (defer) or say it cannot remove it."""
    import openai
    from openai.resources.chat.completions import completions

    monkeypatch.setenv("RAGOTEL_COEXISTENCE", mode)
    wrapt.wrap_function_wrapper(completions, "Completions.create", _foreign_wrapper)
    try:
        cap = instrumented(OpenAIInstrumentor)
        client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finally:
        unwrap(completions.Completions, "create")
    assert len(cap.spans()) == spans
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and __name__ in r.getMessage()]
    assert len(warnings) == (0 if mode == "both" else 1), warnings
