"""Configuration: the built-in YAML, merging files and flags, and --check-config's one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragotel.analyzer.__main__ import main
from ragotel.analyzer.config.loading import ConfigError, load_config
from ragotel.analyzer.config.model import Config
from ragotel.analyzer.vocabulary import parse_duration, parse_size


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_print_default_config_is_what_runs_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    """--print-default-config prints YAML that validates to exactly the configuration used when no file is given."""
    assert main(["--print-default-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert Config.model_validate(printed) == Config() == load_config()
    assert printed["receivers"]["grpc"]["endpoint"] == "127.0.0.1:4317"
    assert printed["receivers"]["http"]["endpoint"] == "127.0.0.1:4318"
    assert printed["api"]["endpoint"] == "127.0.0.1:4319"


def test_files_deep_merge_later_wins_and_flags_win_over_files(tmp_path: Path) -> None:
    """Later files override single keys only; named lists merge by name; command-line values beat every file."""
    first = _write(
        tmp_path,
        "a.yaml",
        "window: 5m\nlimits: {max_series: 10}\nchannels:\n  - {name: ops, type: log}\n  - {name: pager, type: log}\n",
    )
    second = _write(
        tmp_path,
        "b.yaml",
        "window: 90s\nlimits: {ingest_queue_size: 3}\nchannels: [{name: ops, type: webhook, url: 'http://127.0.0.1:9/h'}]\n",
    )
    config = load_config([first, second], {"receivers": {"http": {"endpoint": "0.0.0.0:9999"}}, "window": "2m"})
    assert config.window == 120.0
    assert (config.limits.max_series, config.limits.ingest_queue_size) == (10, 3)
    assert [(c.name, c.type) for c in config.channels] == [("ops", "webhook"), ("pager", "log")]
    assert config.receivers.http.endpoint == "0.0.0.0:9999"
    assert config.receivers.grpc.endpoint == "127.0.0.1:4317"


@pytest.mark.parametrize(
    ("text", "seconds"), [("250ms", 0.25), ("60s", 60.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (2, 2.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    """Durations accept ms/s/m/h suffixes and plain seconds."""
    assert parse_duration(text) == seconds


def test_sizes() -> None:
    """Sizes accept binary and decimal suffixes and plain bytes."""
    assert [parse_size(v) for v in ("4MiB", "512KiB", "1GB", 100, "7")] == [4 * 2**20, 512 * 1024, 10**9, 100, 7]


def test_check_config_prints_one_line_per_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each problem is reported as 'file: key.path: expected ...', across several files, with exit code 2."""
    bad = _write(
        tmp_path,
        "bad.yaml",
        "window: soon\n"
        "receivers:\n  grpc: {endpont: 1.2.3.4:5, max_message_size: -1}\n  http: {endpoint: 'nohost'}\n"
        "limits: {max_series: many}\n"
        "log: {level: loud}\n"
        "passthrough: {endpoint: 'ftp://x'}\n"
        "rules: {name: x}\n",
    )
    broken = _write(tmp_path, "broken.yaml", "window: [60s\n")
    missing = str(tmp_path / "missing.yaml")
    assert main(["--check-config", bad, broken, missing]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{bad}: window: expected a duration such as 60s, 5m, 1h or 250ms (got 'soon')",
        f"{bad}: receivers.grpc.max_message_size: expected a value > 0 (got -1)",
        f"{bad}: receivers.grpc.endpont: unknown key (expected one of: enabled, endpoint, max_message_size, workers, "
        "max_concurrent_rpcs, max_concurrent_streams, handshake_timeout, max_connection_age, max_connection_age_grace)",
        f"{bad}: receivers.http.endpoint: expected HOST:PORT (port 0 picks a free port) (got 'nohost')",
        f"{bad}: limits.max_series: expected an integer (got 'many')",
        f"{bad}: passthrough.endpoint: expected http://HOST:PORT or https://HOST:PORT (got 'ftp://x')",
        f"{bad}: log.level: expected one of 'debug', 'info', 'warning' or 'error' (got 'loud')",
        f"{bad}: rules: expected a list",
        f"{broken}: line 2 column 1: invalid YAML: expected ',' or ']', but got '<stream end>'",
        f"{missing}: cannot read: No such file or directory",
    ]


def test_check_config_accepts_valid_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Valid files pass (exit 0), and a conflict only visible once files merge is still caught."""
    one = _write(tmp_path, "one.yaml", "window: 10s\n")
    two = _write(tmp_path, "two.yaml", "evaluation_interval: 5s\n")
    assert main(["--check-config", one, two]) == 0
    assert capsys.readouterr().out == "2 config file(s) OK\n"
    three = _write(tmp_path, "three.yaml", "evaluation_interval: 20s\n")
    assert main(["--check-config", one, three]) == 2
    assert capsys.readouterr().err == f"{three}: top level: expected evaluation_interval no longer than window\n"


def test_invalid_file_at_startup_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The daemon refuses a bad file with exit code 2 and the --check-config messages; flag values are checked too."""
    bad = _write(tmp_path, "bad.yaml", "api: {endpoint: 'nowhere'}\nreceivers: {tls: {cert_file: a.pem}}\n")
    assert main(["--config", bad]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{bad}: receivers.tls: expected both cert_file and key_file, or neither",
        f"{bad}: api.endpoint: expected HOST:PORT (port 0 picks a free port) (got 'nowhere')",
    ]
    with pytest.raises(ConfigError) as caught:
        load_config([], {"api": {"endpoint": "x"}})
    assert caught.value.problems == [
        "command line: api.endpoint: expected HOST:PORT (port 0 picks a free port) (got 'x')"
    ]


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the command name and the installed ragotel version."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("ragotel-analyzer 0.")


def test_unreadable_tls_files_exit_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Certificate files that cannot be loaded are a configuration error (exit 2) naming the key, before any bind."""
    (tmp_path / "cert.pem").write_text("not a certificate")
    config = _write(
        tmp_path,
        "tls.yaml",
        f"api: {{tls: {{cert_file: {tmp_path / 'cert.pem'}, key_file: {tmp_path / 'missing.key'}}}}}\n",
    )
    assert main(["--config", config]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("api.tls: expected a readable PEM certificate chain and matching key (")


_REPLICA = Path(__file__).resolve().parents[2] / "collector-config" / "analyzer-replica.yaml"


def test_check_config_runs_what_startup_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """analyzer-replica.yaml without its token variables fails --check-config with the very problems start-up
    reports (exit 2 both), and passes once they are set; unreadable token and TLS files are caught the same way."""
    monkeypatch.delenv("RAGOTEL_RECEIVER_TOKEN", raising=False)
    monkeypatch.delenv("RAGOTEL_API_TOKEN", raising=False)
    assert main(["--check-config", str(_REPLICA)]) == 2
    checked = capsys.readouterr().err.splitlines()
    assert checked == [
        f"{_REPLICA}: receivers.auth.token_env: expected environment variable RAGOTEL_RECEIVER_TOKEN to hold a token",
        f"{_REPLICA}: api.auth.token_env: expected environment variable RAGOTEL_API_TOKEN to hold a token",
    ]
    assert main(["--config", str(_REPLICA)]) == 2
    assert capsys.readouterr().err.splitlines() == [line.split(": ", 1)[1] for line in checked]
    monkeypatch.setenv("RAGOTEL_RECEIVER_TOKEN", "receiver-secret")
    monkeypatch.setenv("RAGOTEL_API_TOKEN", "api-secret")
    assert main(["--check-config", str(_REPLICA)]) == 0
    assert capsys.readouterr().out == "1 config file(s) OK\n"
    files = _write(
        tmp_path,
        "files.yaml",
        f"api: {{auth: {{token_file: {tmp_path / 'missing-token'}}}}}\n"
        f"receivers: {{tls: {{cert_file: {tmp_path / 'cert.pem'}, key_file: {tmp_path / 'key.pem'}}}}}\n",
    )
    assert main(["--check-config", files]) == 2
    problems = capsys.readouterr().err.splitlines()
    assert [p.split(": ", 2)[:2] for p in problems] == [[files, "api.auth.token_file"], [files, "receivers.tls"]]
