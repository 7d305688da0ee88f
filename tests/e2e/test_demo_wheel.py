"""`ragotel demo` from the built wheel: the example app and its corpus ship inside it, no checkout needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "src", "examples", "docs")


# ragotel must come from the wheel: no PYTHONPATH to a checkout (pip would even see its egg-info as installed)
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_BASE_URL", "OPENAI_API_KEY")}


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=240, env=ENV, cwd=cwd)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_demo_runs_from_the_wheel_in_an_empty_directory(tmp_path: Path) -> None:
    """The wheel, installed in a fresh venv (ragotel from the wheel only), runs the demo from an empty directory."""
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    # offline: the build backend (setuptools) comes from this environment, not from an isolated download
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)]
    )
    (wheel,) = dist.glob("ragotel-*.whl")
    # issue 14: the analyzer's page ships its static files and the vendored libraries with their licences
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    static = "ragotel/analyzer/api/static/"
    page_files = (
        *("index.html", "app.js", "app.css"),
        *("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "vendor/uPlot.LICENSE"),
        *("vendor/cytoscape.min.js", "vendor/cytoscape.LICENSE", "vendor/VERSIONS.txt"),
    )
    assert {static + f for f in page_files} <= names, sorted(n for n in names if n.startswith(static))

    venv = tmp_path / "venv"  # the heavy dependencies (chromadb, langchain ...) come from this environment
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    python, ragotel_script = venv / "bin" / "python", venv / "bin" / "ragotel"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", str(wheel)])
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run(
        [str(python), "-c", "import ragotel, ragotel._example as e; print(ragotel.__file__); print(e.__file__)"],
        cwd=empty,
    ).stdout.split()
    assert all(Path(path).is_relative_to(venv) for path in where), where  # not the checkout nor an editable install

    demo = _run([str(ragotel_script), "demo"], cwd=empty)
    out = demo.stdout
    assert "source checkout" not in out
    assert f"corpus {venv}" in out  # the packaged copy of docs/
    assert "stage       component" in out  # the per-stage table
    assert "ALERT high_response_time" in out
    assert "resolved" in out
    assert list(empty.iterdir()) == []  # nothing written to the working directory
