"""The ``ragotel`` command: ``ragotel demo`` (the end-to-end demo) and ``ragotel version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import ragotel

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ragotel`` console script; returns the exit code."""
    parser = argparse.ArgumentParser(prog="ragotel", description="OpenTelemetry-native observability for RAG apps")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "demo",
        help="run the end-to-end demo (ragotel demo --help for its options)",
        add_help=False,
    )
    sub.add_parser("version", help="print the version")
    args, rest = parser.parse_known_args(argv)
    if args.command == "version":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        print(ragotel.__version__)
        return 0
    from ragotel import demo  # noqa: PLC0415  deferred: `ragotel version` must not import the demo

    return demo.main(rest)


if __name__ == "__main__":
    sys.exit(main())
