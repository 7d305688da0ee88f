"""The example's command line: ``serve`` (HTTP API), ``ask`` (one question), ``info`` (what it runs on)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .faults import FAULTS, FaultError, Faults

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_SERVICE_NAME = "ragotel-example-rag"  # AppConfig's default too; app.py is imported only after instrument()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", type=Path, help="directory of *.md files to index (default: the repo's docs/)")
    common.add_argument("--store", type=Path, help="Chroma persistence directory (default: $TMPDIR/ragotel-example)")
    common.add_argument(
        "--embedding", choices=["auto", "sentence-transformers", "hash"], help="embedding model (default: auto)"
    )
    common.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="inject a fault: " + "; ".join(f"{k} ({v[2]}, default {v[1]:g})" for k, v in FAULTS.items()),
    )
    common.add_argument(
        "--service-name",
        help=f"OTEL service.name (default: OTEL_SERVICE_NAME, a service.name in OTEL_RESOURCE_ATTRIBUTES, "
        f"else {DEFAULT_SERVICE_NAME})",
    )
    common.add_argument("--no-instrument", action="store_true", help="run without ragotel.instrument()")
    parser = argparse.ArgumentParser(
        prog="python -m examples.langchain_app",
        description="A LangChain RAG service over ragotel's docs, instrumented by ragotel.instrument(). "
        "Telemetry goes where OTEL_EXPORTER_OTLP_ENDPOINT points (default http://localhost:4318). "
        "OPENAI_BASE_URL / OPENAI_API_KEY switch from the local extractive answerer to a real LLM.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="serve POST /ask, GET /healthz, GET|POST /faults")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    ask = sub.add_parser("ask", parents=[common], help="answer one question and print it")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the JSON the API would return")
    sub.add_parser("info", parents=[common], help="index the corpus and print what the app runs on")
    return parser


def _faults(specs: list[str]) -> Faults:
    faults = Faults()
    faults.load_env(os.environ)
    for spec in specs:
        name, _, value = spec.partition("=")
        faults.set(name, value if value else None)
    return faults


def _service_name(flag: str | None, env: Mapping[str, str]) -> str:
    """--service-name, else the standard variables' name, else the example's own (never ``unknown_service``)."""
    if flag:
        return flag
    if env.get("OTEL_SERVICE_NAME", "").strip():
        return env["OTEL_SERVICE_NAME"].strip()
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if unquote(key).strip() == "service.name" and value.strip():
            return unquote(value).strip()
    return DEFAULT_SERVICE_NAME


def main(argv: list[str] | None = None) -> int:
    """Run one command; return 0 on success, 1 when answering failed, 2 for bad usage or a start-up error."""
    from .app import AppConfig, QuestionError, RagApp, StartupError

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        faults = _faults(args.fault)
    except FaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    handle: Any = None
    service_name = _service_name(args.service_name, os.environ)
    if not args.no_instrument:
        import ragotel

        handle = ragotel.instrument(service_name=service_name)
    config = AppConfig.from_env(
        corpus_dir=args.corpus, store_dir=args.store, embedding=args.embedding, service_name=service_name
    )
    try:
        app = RagApp(config, faults=faults)
    except StartupError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        if handle is not None:
            handle.shutdown()
        return EXIT_USAGE
    try:
        return _run(args, app, handle, QuestionError)
    finally:
        app.close()
        if handle is not None:
            handle.shutdown()


def _run(args: argparse.Namespace, app: Any, handle: Any, question_error: type[Exception]) -> int:
    info = app.describe()
    if args.command != "ask" or not args.json:
        print(f"corpus:    {info['corpus']['directory']} ({info['corpus']['files']} files, {info['chunks']} chunks)")
        print(f"store:     {info['store']['path']} (collection {info['store']['collection']})")
        print(f"embedding: {info['embedding']}")
        print(f"llm:       {info['llm']}")
        active = {k: v for k, v in info["faults"].items() if v}
        print(f"faults:    {active or 'none'}")
        print(f"telemetry: {'ragotel.instrument() ' + ', '.join(handle.libraries) if handle else 'off'}")
    if args.command == "info":
        return EXIT_OK
    if args.command == "ask":
        try:
            answer = app.ask(args.question)
        except question_error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:  # noqa: BLE001  a CLI reports any failure of the chain as one line
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if args.json:
            print(json.dumps(answer.to_json(), indent=2))
        else:
            print(f"\n{answer.answer}\n")
            for s in answer.sources:
                print(f"  - {s['source']} § {s['section']} (score {s['score']})")
            print(f"trace_id: {answer.trace_id}")
        return EXIT_OK
    from .server import ApiServer

    app.register_health()
    try:
        server = ApiServer(app, args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"serving:   {server.url}  (POST /ask {{question}}, GET /healthz, GET|POST /faults); Ctrl-C stops")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK
