"""Smoke tests: the benchmark scripts still run and print their tables (figures are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    "pipeline",
    "retrieval",
    "rerank",
    "embedding",
    "generation",
    "generation (async)",
    "retrieval (generator)",
)


def _run_quick(script: str) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<script> --quick`` run to completion; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.timeout(120)
def test_overhead_quick_prints_every_row() -> None:
    """`overhead.py --quick` exits 0 and prints one table row per stage case with numeric ratios."""
    proc = _run_quick("overhead.py")
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    for case in CASES:
        assert case in rows, f"missing row {case!r} in:\n{proc.stdout}"
        cells = [c.strip() for c in rows[case].strip("|").split("|")]
        assert len(cells) == 10, rows[case]
        assert all(c.endswith("x") and float(c[:-1]) > 0 for c in cells[-3:]), rows[case]
    assert "worst ratio vs the bare SDK span" in proc.stdout


@pytest.mark.timeout(120)
def test_fault_matrix_quick_prints_table() -> None:
    """`fault_matrix.py --quick` exits 0 and prints its table; whether the analyzer catches the fault is not checked."""
    proc = _run_quick("fault_matrix.py")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(lines) == 3, proc.stdout  # header, separator, one fault
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "fault",
        "first alert (rule, severity)",
        "primary cause",
        "stage/component",
        "right?",
        "detection s",
        "resolution s",
    ]
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    assert row[0] == "llm_errors"
    assert row[4] in ("yes", "no")
    for cell in row[5:]:
        assert cell == "—" or float(cell) == float(cell), row  # a dash or a number of seconds


@pytest.mark.timeout(120)
def test_telemetry_snapshot_compares_and_catches_a_difference(tmp_path: Path) -> None:
    """`telemetry_snapshot.py` writes a snapshot, finds it identical to itself, and fails on a lost metric point."""
    script = str(ROOT / "benchmarks" / "telemetry_snapshot.py")
    snap = tmp_path / "snap.json"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, *args], capture_output=True, text=True, timeout=110, cwd=ROOT, check=False
        )

    written = run("--write", str(snap))
    assert written.returncode == 0, written.stderr[-3000:]
    same = run("--compare", str(snap), str(snap))
    assert same.returncode == 0, same.stdout
    assert "telemetry identical: yes" in same.stdout
    data = json.loads(snap.read_text())
    assert {"W1 chroma query", "W2 langchain retrieval chain", "W3 openai chat"} <= set(data)
    data["W3 openai chat"]["metrics"] = [
        p for p in data["W3 openai chat"]["metrics"] if p["name"] != "gen_ai.client.token.usage"
    ]
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    different = run("--compare", str(snap), str(changed))
    assert different.returncode == 1, different.stdout
    assert "telemetry identical: NO" in different.stdout
    assert "gen_ai.client.token.usage" in different.stdout
