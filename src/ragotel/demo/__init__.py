"""``ragotel demo``: the analyzer in-process, the LangChain example app, a burst, a fault, its alert and recovery.

Everything runs in this process on 127.0.0.1 with free ports and a temporary directory: ragotel-analyzer (SQLite
state), a webhook receiver standing in for the on-call channel, and the example RAG app instrumented by one
``ragotel.instrument()`` call exporting OTLP/HTTP to the analyzer with short intervals. The analyzer runs with a
short window and the built-in rules retuned to demo time scales (``analyzer_overrides``), so a fault becomes an
alert in seconds and clears in seconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ragotel.demo.parts import (
    DEMO_FAULTS,
    DEMO_SERVICE,
    EXTRAS_COMMAND,
    DemoFault,
    WebhookSink,
    analyzer_overrides,
    find_example_app,
    missing_extras,
)
from ragotel.demo.report import Out
from ragotel.demo.runner import Demo

__all__ = [
    "DEMO_FAULTS",
    "DEMO_SERVICE",
    "EXTRAS_COMMAND",
    "DemoFault",
    "WebhookSink",
    "analyzer_overrides",
    "find_example_app",
    "main",
    "missing_extras",
]


@contextmanager
def _demo_logging(path: Path) -> Iterator[None]:
    """Send every log record to ``path`` so that stdout shows only the demo's story."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragotel demo",
        description="Run the example LangChain RAG app against an in-process ragotel-analyzer, inject a fault "
        "and show the alert, its diagnosis, the (dry-run) recovery and the resolution.",
    )
    parser.add_argument("--fault", choices=sorted(DEMO_FAULTS), default="slow-retrieval", help="fault to inject")
    parser.add_argument(
        "--embedding",
        choices=["hash", "sentence-transformers", "auto"],
        default="hash",
        help="embedding of the example app (default: hash, the fast deterministic one)",
    )
    parser.add_argument("--questions", type=int, default=40, help="questions in the first burst (default 40)")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the analyzer and the app (with its HTTP API) running until Ctrl-C",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the alert, and again for "
                        "its resolution (default 90)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the demo; 0 when the alert fired, was diagnosed, recovered (dry run) and resolved; 2 when unable to start."""
    args = _parser().parse_args(argv)
    out = Out(stdout or sys.stdout)
    if args.questions < 1:
        out.line("error: --questions must be at least 1")
        return 2
    missing = missing_extras()
    if missing:
        out.line(f"ragotel demo needs the example extras ({', '.join(missing)} missing). Install them with:")
        out.line(f"    {EXTRAS_COMMAND}")
        out.line("(from a ragotel checkout; outside one: pip install 'ragotel[example]')")
        return 2
    example = find_example_app()
    if example is None:
        out.line("ragotel demo runs the example app in examples/langchain_app of a ragotel source checkout;")
        out.line(f"run it from the checkout after {EXTRAS_COMMAND}")
        return 2
    with tempfile.TemporaryDirectory(prefix="ragotel-demo-") as tmp, _demo_logging(Path(tmp) / "demo.log"):
        return Demo(args, out, example, Path(tmp)).run()
