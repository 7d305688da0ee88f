"""Alerting configuration: built-in rules, override by name, layered files, and precise --check-config errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from ragotel.analyzer.config.hooks import CommandActionSpec
from ragotel.analyzer.config.loading import DEFAULT_CONFIG_YAML, check_config, load_config
from ragotel.analyzer.config.model import Config
from ragotel.analyzer.config.specs import WebhookChannelSpec

BUILTINS = [
    "high_response_time",
    "high_error_rate",
    "database_connection",
    "service_unavailable",
    "memory_leak",
    "cpu_saturation",
    "memory_saturation",
    "disk_saturation",
    "empty_retrieval_rate",
    "availability_burn_rate",
    "latency_regression",
    "stage_latency",
    "stage_errors",
    "empty_retrievals",
    "token_spike",
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_rules_are_the_printed_default() -> None:
    """The built-in rules run with no file and are exactly what the default configuration YAML shows."""
    config = Config()
    assert [r.name for r in config.rules] == BUILTINS
    assert Config.model_validate(yaml.safe_load(DEFAULT_CONFIG_YAML)) == config
    by_name = {r.name: r for r in config.rules}
    # Issue 12: the seed's SLOs (2 s, 1 %, 99 %), dependency down at once, saturation sustained for 30 s.
    assert (by_name["high_response_time"].signal, by_name["high_response_time"].threshold) == ("latency_p95", 2.0)
    assert (by_name["high_error_rate"].threshold, by_name["high_error_rate"].min_errors) == (0.01, 3)
    assert by_name["availability_burn_rate"].objective == 0.99
    assert by_name["cpu_saturation"].warning_ratio == 1.2
    assert by_name["cpu_saturation"].for_ == 30.0
    assert by_name["service_unavailable"].for_ == 0.0
    assert [w.factor for w in by_name["availability_burn_rate"].burn_windows] == [14.4, 6.0, 3.0, 1.0]


def test_rule_of_the_same_name_replaces_the_builtin(tmp_path: Path) -> None:
    """A configured rule replaces the built-in of its name, `enabled: false` turns one off, others are added."""
    path = write(
        tmp_path,
        "rules.yaml",
        """
rules:
  - {name: high_response_time, signal: latency_p99, match: {stage: generation}, threshold: 3, for: 0s}
  - {name: memory_leak, enabled: false}
  - name: slow_generation
    signal: latency_p95
    match: {stage: generation, component: [openai, anthropic]}
    condition: greater_than
    threshold: 2.0
    for: 0s
    severity: critical
    cooldown: 300s
""",
    )
    config = load_config([path])
    by_name = {r.name: r for r in config.rules}
    assert len(config.rules) == len(BUILTINS) + 1
    assert (by_name["high_response_time"].signal, by_name["high_response_time"].match) == (
        "latency_p99",
        {"stage": "generation"},
    )
    assert by_name["high_response_time"].severity == "warning", "replaced whole: unspecified keys take defaults"
    assert by_name["memory_leak"].enabled is False
    assert by_name["slow_generation"].match == {"stage": "generation", "component": ["openai", "anthropic"]}


def test_layered_files_merge_channels_and_hooks_by_name(tmp_path: Path) -> None:
    """A production overlay changes one channel's URL by name and adds a hook; the base file's other items stay."""
    base = write(
        tmp_path,
        "base.yaml",
        """
channels:
  - {name: ops, type: webhook, url: "http://127.0.0.1:9000/hook"}
  - {name: log, type: log}
recovery:
  - name: flush-cache
    on: [clear_cache]
    action: {type: redis_flush, url: "redis://127.0.0.1:6379/0", pattern: "cache:{service}:*"}
""",
    )
    prod = write(
        tmp_path,
        "prod.yaml",
        """
channels:
  - {name: ops, type: webhook, url: "https://hooks.example.org/ops"}
recovery:
  - name: restart
    on: [restart_service]
    dry_run: true
    action: {type: command, argv: [systemctl, restart, "{service}"]}
""",
    )
    config = load_config([base, prod])
    channels = {c.name: c for c in config.channels}
    assert isinstance(channels["ops"], WebhookChannelSpec)
    assert channels["ops"].url == "https://hooks.example.org/ops"
    assert set(channels) == {"ops", "log"}
    hooks = {h.name: h for h in config.recovery}
    assert set(hooks) == {"flush-cache", "restart"}
    assert isinstance(hooks["restart"].action, CommandActionSpec)
    assert hooks["restart"].action.argv == ["systemctl", "restart", "{service}"]
    assert check_config([base, prod]) == []


def test_check_config_reports_every_problem_with_its_key_path(tmp_path: Path) -> None:
    """Unknown signal, bad duration, unknown channel and action types, unsafe placeholders: one line each."""
    path = write(
        tmp_path,
        "bad.yaml",
        """
rules:
  - {name: slow, signal: latency_p955, threshold: 2, for: 5 minutes}
channels:
  - {name: ops, type: pager, url: "http://x"}
  - {name: mail, type: webhook, url: "ftp://x"}
recovery:
  - {name: a, on: [high_response_time], action: {type: shell, cmd: "rm -rf /"}}
  - {name: b, on: [high_response_time], action: {type: command, argv: [echo, "{message}"]}}
  - {name: c, on: [high_response_time], action: {type: redis_flush, url: "redis://x", pattern: "*"}}
""",
    )
    problems = check_config([path])
    assert problems == [
        f"{path}: rules[0].signal: expected one of cpu_utilization, dependency_health, disk_utilization, "
        "empty_retrieval_rate, error_log_rate, error_rate, latency_avg, latency_p50, latency_p95, latency_p99, "
        "memory_exhaustion_eta, memory_growth, memory_utilization, request_rate (got 'latency_p955')",
        f"{path}: rules[0].for: expected a duration such as 60s, 5m, 1h or 250ms (got '5 minutes')",
        f"{path}: channels[0].type: expected one of 'log', 'webhook', 'slack', 'email', 'alertmanager' (got 'pager')",
        f"{path}: channels[1].url: expected an http:// or https:// URL (got 'ftp://x')",
        f"{path}: recovery[0].action.type: expected one of 'command', 'webhook', 'python', 'redis_flush' (got 'shell')",
        f"{path}: recovery[1].action.argv[1]: expected placeholders among {{service}}, {{stage}}, {{component}}, "
        "{rule}, {severity} only (got '{message}')",
        f"{path}: recovery[2].action: expected allow_flush_all: true with pattern '*' "
        "(it deletes every key of the database)",
    ]


def test_check_config_cross_references(tmp_path: Path) -> None:
    """Hooks must name a known rule, cause or action and known channels; names must be unique."""
    path = write(
        tmp_path,
        "refs.yaml",
        """
channels:
  - {name: ops, type: log}
recovery:
  - {name: r, on: [hgh_response_time], escalate_to: [pager], action: {type: command, argv: ["true"]}}
  - {name: r, on: [vector_db_errors], action: {type: command, argv: ["true"]}}
""",
    )
    (problem,) = check_config([path])
    assert problem.startswith(f"{path}: recovery: ")
    assert "recovery[1] repeats 'r'" in problem
    assert "recovery[0].on[0] to name a rule, a cause or an action" in problem
    assert "got 'hgh_response_time'" in problem
    assert "recovery[0].escalate_to[0] to name a configured channel, got 'pager'" in problem


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    """`ragotel-analyzer --check-config` exits 0 on a valid file and non-zero with the problems on a bad one."""
    good = write(tmp_path, "good.yaml", "channels: [{name: ops, type: log}]\n")
    bad = write(tmp_path, "bad.yaml", "rules: [{name: x, signal: error_rate, threshold: 1, for: soon}]\n")
    ok = subprocess.run([sys.executable, "-m", "ragotel.analyzer", "--check-config", str(good)], check=False)
    assert ok.returncode == 0
    failed = subprocess.run(
        [sys.executable, "-m", "ragotel.analyzer", "--check-config", str(bad)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert failed.returncode != 0
    assert f"{bad}: rules[0].for: expected a duration" in failed.stdout + failed.stderr
