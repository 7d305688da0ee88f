"""`ragotel demo` end to end: a real subprocess, its printed story, its APIs while kept running, its exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ragotel.demo import EXTRAS_COMMAND

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "RAGAPP_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _get(url: str, data: bytes | None = None) -> dict[str, object]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


@pytest.mark.timeout(240)  # issue 12: the demo runs the analyzer at its defaults (30 s `for`)
def test_demo_tells_the_whole_story_and_keeps_running_until_sigterm() -> None:
    """`ragotel demo --keep-running` prints stages, alert, diagnosis, dry-run recovery, resolution; serves; exits 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragotel.cli", "demo", "--keep-running"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Still running"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(210), "demo did not reach --keep-running:\n" + "\n".join(lines)
        time.sleep(0.5)  # the URL lines follow "Still running"
        text = "\n".join(lines)
        for step in range(1, 7):
            assert f"[{step}/6]" in text, text
        # The per-stage latency table from the analyzer, with every stage of the RAG request.
        for stage, component in [
            ("pipeline", "langchain"),
            ("retrieval", "langchain"),
            ("embedding", "langchain"),
            ("vector_db", "chromadb"),
            ("generation", "langchain"),
        ]:
            assert re.search(rf"^\s+{stage}\s+{component}\s+\d+\s+[\d.]+ ms\s+[\d.]+ ms\s+\d+%$", text, re.M), text
        assert "embedding: deterministic local hash embedding" in text
        assert "LLM: local extractive answerer" in text
        assert re.search(r"ALERT high_response_time \[critical\] .*service=ragotel-example-rag", text), text
        assert "diagnosis: primary cause retrieval_latency" in text
        assert "recommended actions:" in text
        assert "firing notification received" in text
        assert re.search(
            r"'clear-answer-cache' \(redis_flush\): delete keys answers:ragotel-example-rag:\* at redis://127\.0\.0\.1:6379/0"
            r"\s+\[DRY RUN, nothing executed",
            text,
        ), text
        assert re.search(
            r"resolved [\d.]+s after the fault was cleared \(webhook: resolved notification received\)", text
        )
        done = re.search(r"Done in ([\d.]+)s", text)
        assert done, text
        assert float(done.group(1)) < 150, text

        app_url = re.search(r"app:\s+(http://127\.0\.0\.1:\d+)", text)
        api_url = re.search(r"analyzer: (http://127\.0\.0\.1:\d+)/api/v1/stats", text)
        assert app_url, text
        assert api_url, text
        answer = _get(f"{app_url.group(1)}/ask", json.dumps({"question": "What is ragotel?"}).encode())
        assert answer["answer"]
        assert answer["sources"]
        alerts = _get(f"{api_url.group(1)}/api/v1/alerts")
        assert any(a["rule"] == "high_response_time" and a["status"] == "resolved" for a in alerts["alerts"])  # type: ignore[attr-defined, index]
        recoveries = _get(f"{api_url.group(1)}/api/v1/recoveries")
        assert recoveries["recoveries"][0]["status"] == "dry_run"  # type: ignore[index]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        reader.join(timeout=5)
    assert code == 0, "\n".join(lines)
    assert lines[-1] == "stopped."


def test_demo_without_example_extras_names_the_install_command() -> None:
    """With a required package missing, `ragotel demo` prints the exact pip command and exits 2."""
    code = "import sys; sys.modules['langchain_chroma'] = None\nfrom ragotel.cli import main\nsys.exit(main(['demo']))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "langchain-chroma missing" in result.stdout
    assert f"    {EXTRAS_COMMAND}\n" in result.stdout
    assert EXTRAS_COMMAND == "pip install -e '.[example]'"
