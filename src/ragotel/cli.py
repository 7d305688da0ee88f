"""The ``ragotel`` command: ``ragotel demo`` and small helpers around the SDK."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import ragotel
from ragotel.testing import capture


def _sample_demo() -> int:
    """Run a small instrumented pipeline in memory and print its spans and per-stage latency."""
    with capture() as cap:

        @ragotel.pipeline("sample")
        def answer(question: str) -> str:
            with ragotel.retrieval("sample-kb", top_k=2) as r:
                time.sleep(0.01)
                r.add_documents([("doc-1", 0.92), ("doc-2", 0.71)])
            with ragotel.generation("local-extractive", provider="ragotel") as g:
                time.sleep(0.02)
                g.record_usage(input_tokens=len(question.split()), output_tokens=5)
            return "ragotel traces each RAG stage."

        print(answer("What does ragotel do?"))
        for span in cap.spans():
            duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            print(f"  {span.name:<28} {duration_ms:8.2f} ms  {dict(span.attributes or {}).get('ragotel.stage')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ragotel`` console script."""
    parser = argparse.ArgumentParser(prog="ragotel", description="OpenTelemetry-native observability for RAG apps")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the end-to-end demo")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(ragotel.__version__)
        return 0
    return _sample_demo()


if __name__ == "__main__":
    sys.exit(main())
