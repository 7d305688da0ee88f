"""collector-config/prometheus-rules.yaml: valid for promtool, and each alert fires and stays quiet where it should."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from ragotel import semconv as sc

CONFIG = Path(__file__).resolve().parents[1] / "collector-config"
RULES = CONFIG / "prometheus-rules.yaml"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is required (Debian package prometheus, installed by .ci/services.sh)"
    return promtool


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the file (syntax, PromQL, no duplicate recording rules)."""
    out = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_fires_and_stays_quiet_in_the_unit_tests() -> None:
    """`promtool test rules` passes, and its test file checks every alert both firing and not firing."""
    tests = CONFIG / "prometheus-rules.test.yaml"
    out = subprocess.run(
        [_promtool(), "test", "rules", tests.name], cwd=CONFIG, check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {"RagStageSlow", "RagStageErrorRatioHigh", "RagDependencyDown", "RagTokenSpike"}
    cases = [c for t in yaml.safe_load(tests.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for alert in alerts:
        outcomes = {bool(c["exp_alerts"]) for c in cases if c["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert}: tested {outcomes}"


def test_rules_read_the_metrics_ragotel_emits_under_their_translated_names() -> None:
    """Every metric the rules query is one ragotel emits, named as the OTLP -> Prometheus translation names it."""
    translated = {
        sc.M_STAGE_DURATION: "ragotel_stage_duration_seconds",
        sc.M_GEN_AI_OPERATION_DURATION: "gen_ai_client_operation_duration_seconds",
        sc.M_DB_OPERATION_DURATION: "db_client_operation_duration_seconds",
        sc.M_GEN_AI_TOKEN_USAGE: "gen_ai_client_token_usage",
        sc.M_DEPENDENCY_HEALTH: "ragotel_dependency_health_ratio",
    }
    exprs = " ".join(r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"])
    # A metric selector is followed by its matchers, its range or a comparison; a label name by `=`, `,` or `)`.
    selectors = re.findall(r"\b((?:ragotel|gen_ai|db)_[a-z_]+)(?=\{|\[| ==)", exprs)
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in selectors}
    assert used == set(translated.values()), used
