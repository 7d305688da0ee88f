"""The ``ragotel-analyzer`` command: run the daemon, ``--check-config`` files, or ``--print-default-config``."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ragotel.analyzer.config.loading import DEFAULT_CONFIG_YAML, ConfigError, check_config, load_config
from ragotel.analyzer.logfmt import configure_logging
from ragotel.analyzer.receive.auth import load_credentials

__all__ = ["main"]

_log = logging.getLogger("ragotel.analyzer")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragotel-analyzer",
        description="Receive OTLP telemetry from RAG applications, keep live per-stage statistics, "
        "evaluate alert rules and run recovery actions.",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config file; repeat to deep-merge (later wins)",
    )
    parser.add_argument("--grpc-endpoint", metavar="HOST:PORT", help="OTLP/gRPC receiver (port 0 = any free port)")
    parser.add_argument("--http-endpoint", metavar="HOST:PORT", help="OTLP/HTTP receiver (port 0 = any free port)")
    parser.add_argument("--api-endpoint", metavar="HOST:PORT", help="HTTP API (port 0 = any free port)")
    parser.add_argument("--state", metavar="PATH", help="SQLite state file")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level")
    parser.add_argument("--log-format", choices=["text", "json"], help="log format: text (logfmt) or json")
    parser.add_argument(
        "--check-config", nargs="+", metavar="FILE", help="validate config files and exit (2 when any is invalid)"
    )
    parser.add_argument("--print-default-config", action="store_true", help="print the built-in configuration")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("ragotel")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def put(path: tuple[str, ...], value: Any) -> None:
        if value is None:
            return
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    put(("receivers", "grpc", "endpoint"), args.grpc_endpoint)
    put(("receivers", "http", "endpoint"), args.http_endpoint)
    put(("api", "endpoint"), args.api_endpoint)
    put(("state", "path"), args.state)
    put(("log", "level"), args.log_level)
    put(("log", "format"), args.log_format)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (0 ok, 1 runtime failure, 2 invalid configuration)."""
    args = _parser().parse_args(argv)
    if args.print_default_config:
        sys.stdout.write(DEFAULT_CONFIG_YAML)
        return EXIT_OK
    if args.check_config:
        problems = check_config(args.check_config, startup=load_credentials)  # what Server checks at start-up
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return EXIT_CONFIG
        print(f"{len(args.check_config)} config file(s) OK")
        return EXIT_OK
    from ragotel.analyzer.server import Server  # noqa: PLC0415  deferred: --check-config needs no network stack

    try:
        config = load_config(args.config, _overrides(args))
        server = Server(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log.level, config.log.format)  # only now: a refused config leaves logging untouched
    try:
        return server.run()
    except (OSError, RuntimeError) as exc:
        _log.error("cannot start: %s", exc)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
