"""scripts/audit turns pip-audit's report into the right exit status (a stand-in pip_audit module plays the service)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for `python -m pip_audit`: writes the report given in FAKE_REPORT (or fails as FAKE_ERROR says), so
# the script's decisions can be checked without the network. The real pip-audit is what CI runs.
_FAKE_MAIN = """
import os, sys
if "--version" in sys.argv:
    print("pip-audit 0.0-test"); sys.exit(0)
if os.environ.get("FAKE_ERROR"):
    print(os.environ["FAKE_ERROR"], file=sys.stderr); sys.exit(1)
out = sys.argv[sys.argv.index("--output") + 1]
open(out, "w").write(os.environ["FAKE_REPORT"])
sys.exit(1 if '"id"' in os.environ["FAKE_REPORT"] else 0)
"""


def _run(tmp_path: Path, *, report: object = None, error: str | None = None, strict: bool = False) -> tuple[int, str]:
    package = tmp_path / "pip_audit"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(_FAKE_MAIN)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RAGOTEL_AUDIT_STRICT": "1" if strict else "0"}
    env["FAKE_REPORT"] = json.dumps(report) if report is not None else ""
    if error:
        env["FAKE_ERROR"] = error
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "audit")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, result.stdout + result.stderr


def _dep(name: str, vulns: list[dict[str, object]] | None = None, skip: str | None = None) -> dict[str, object]:
    return {"name": name, "version": "1.0", "skip_reason": skip} if skip else {"name": name, "version": "1.0",
                                                                                 "vulns": vulns or []}  # fmt: skip


def test_known_vulnerability_fails_with_its_id(tmp_path: Path) -> None:
    """A vulnerable dependency makes the audit exit 1 and name the advisory and the fixed version."""
    report = {"dependencies": [_dep("ok"), _dep("bad", [{"id": "GHSA-xxxx", "fix_versions": ["1.1"]}])]}
    code, out = _run(tmp_path, report=report)
    assert code == 1
    assert "VULNERABLE bad 1.0: GHSA-xxxx (fixed in: 1.1)" in out


def test_clean_audit_passes(tmp_path: Path) -> None:
    """No vulnerability among audited packages exits 0 and says how many were audited."""
    code, out = _run(tmp_path, report={"dependencies": [_dep("a"), _dep("b"), _dep("c", skip="editable")]})
    assert code == 0
    assert "no known vulnerabilities in 2 audited package(s) (1 skipped" in out


@pytest.mark.parametrize(
    ("report", "error"),
    [
        ({"dependencies": [_dep("a", skip="Dependency not found on PyPI and could not be audited: a (1.0)")]}, None),
        (None, "requests.exceptions.ConnectionError: Max retries exceeded with url: /pypi/a/1.0/json"),
    ],
    ids=["index-without-vulnerability-data", "no-network"],
)
def test_unreachable_service_is_reported_not_failed(tmp_path: Path, report: object, error: str | None) -> None:
    """When nothing could be audited for network reasons, the audit says so and exits 0 (1 in strict mode)."""
    code, out = _run(tmp_path, report=report, error=error)
    assert code == 0
    assert "NOTHING AUDITED" in out
    assert _run(tmp_path, report=report, error=error, strict=True)[0] == 1


def test_other_pip_audit_failure_fails(tmp_path: Path) -> None:
    """A pip-audit failure that is not a network error fails the audit."""
    code, out = _run(tmp_path, error="pip_audit: error: unrecognized arguments")
    assert code == 1
    assert "pip-audit failed" in out
