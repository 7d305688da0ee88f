"""Telemetry identical: snapshot the spans and metric points ragotel exports for each benchmark workload, and compare.

    PYTHONPATH=/work/main/src python benchmarks/telemetry_snapshot.py --write /tmp/before.json   # the old code
    python benchmarks/telemetry_snapshot.py --write /tmp/after.json
    python benchmarks/telemetry_snapshot.py --compare /tmp/before.json /tmp/after.json

The workloads are those of ``overhead.py`` (every stage decorator, async, generator, plus a failing step) and of
``peers.py`` (W1 Chroma query, W2 LangChain retrieval chain, W3 openai chat against FakeOpenAI, plus a streamed chat
and an embeddings call), each run a few times under ``ragotel.testing.capture()``. A snapshot keeps, per workload:
every span (name, kind, parent's name, status, attributes; values that vary run to run replaced by their type) and
every metric point (name, unit, attributes, count, bucket total; for value histograms — tokens, documents — the sum
and bucket counts too, durations vary run to run).

``--compare`` passes when both snapshots hold the same spans and the same metric points, except the one difference
the telemetry contract makes on purpose: ``ragotel.stage.duration`` is no longer recorded for the generation,
embedding and vector_db stages. For each such point the comparison checks that the semconv histogram of the same
snapshot carries the same information: the same count (and bucket total) per stage and ``error.type``, in
``gen_ai.client.operation.duration`` (generation, embedding) or ``db.client.operation.duration`` (vector_db).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from peers import _chroma_workload, _langchain_workload, start_fake_server

import ragotel
from ragotel import semconv as sc
from ragotel.testing import Capture, capture

CALLS = 3
# Values that differ run to run (a timing, the server's ephemeral port, a response id): compared by type only.
VARIABLE_ATTRIBUTES = frozenset({sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, sc.SERVER_PORT, sc.GEN_AI_RESPONSE_ID})
VALUE_HISTOGRAMS = frozenset({sc.M_GEN_AI_TOKEN_USAGE, sc.M_RETRIEVAL_DOCUMENTS})
# Stages whose duration the semantic conventions' own histograms carry (DESIGN.md section 3).
SEMCONV_DURATION = {
    sc.STAGE_GENERATION: sc.M_GEN_AI_OPERATION_DURATION,
    sc.STAGE_EMBEDDING: sc.M_GEN_AI_OPERATION_DURATION,
    sc.STAGE_VECTOR_DB: sc.M_DB_OPERATION_DURATION,
}


# -- workloads ---------------------------------------------------------------------------------------------------
def _stage_workloads() -> dict[str, Callable[[], Any]]:
    @ragotel.pipeline("rag")
    def pipeline_fn() -> None:
        with ragotel.retrieval("docs", top_k=5) as op:
            op.add_documents([("a", 0.9), ("b", 0.5)])
        with ragotel.rerank("rerank-model", top_n=1) as op:
            op.add_documents([("a", 0.9)])
        with ragotel.generation("gpt-4o-mini", provider="openai") as op:
            op.record_usage(12, 5)
            op.set_response_model("gpt-4o-mini-2024")

    @ragotel.embedding("text-embedding-3-small", provider="openai")
    def embedding_fn() -> None:
        return None

    @ragotel.generation("gpt-4o-mini", provider="openai")
    async def generation_async_fn() -> None:
        return None

    @ragotel.retrieval("docs", top_k=5)
    def retrieval_gen_fn() -> Iterator[int]:
        yield 1
        yield 2

    @ragotel.generation("gpt-4o-mini", provider="openai")
    def generation_gen_fn() -> Iterator[str]:
        yield "a"
        yield "b"

    @ragotel.embedding("text-embedding-3-small", provider="openai")
    def failing_fn() -> None:
        raise ValueError("boom")

    def failing() -> None:
        with contextlib.suppress(ValueError):
            failing_fn()

    return {
        "stages: pipeline tree": pipeline_fn,
        "stages: embedding": embedding_fn,
        "stages: generation (async)": lambda: asyncio.run(generation_async_fn()),
        "stages: retrieval (generator)": lambda: list(retrieval_gen_fn()),
        "stages: generation (generator)": lambda: list(generation_gen_fn()),
        "stages: failing embedding": failing,
    }


def _openai_workloads(base_url: str) -> dict[str, Callable[[], Any]]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0, timeout=30.0)
    messages: Any = [{"role": "user", "content": "What is retrieval-augmented generation?"}]

    def chat() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=64)

    def stream() -> Any:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        return list(chunks)

    def embed() -> Any:
        return client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])

    return {"W3 openai chat": chat, "W3 openai chat (stream)": stream, "W3 openai embeddings": embed}


# -- snapshot ----------------------------------------------------------------------------------------------------
def _value(key: str, value: Any) -> Any:
    if key in VARIABLE_ATTRIBUTES:
        return f"<{type(value).__name__}>"
    return list(value) if isinstance(value, tuple) else value


def _record(name: str, fn: Callable[[], Any]) -> dict[str, Any]:
    with capture() as cap:
        for _ in range(CALLS):
            fn()
        spans = cap.spans()
        points = cap.metrics()
    by_id = {s.context.span_id: s.name for s in spans}
    span_rows = sorted(
        json.dumps(
            {
                "name": s.name,
                "kind": s.kind.name,
                "parent": by_id.get(s.parent.span_id) if s.parent is not None else None,
                "status": s.status.status_code.name,
                "attributes": {k: _value(k, v) for k, v in sorted((s.attributes or {}).items())},
                "events": [e.name for e in s.events],
            },
            sort_keys=True,
        )
        for s in spans
    )
    point_rows = []
    for p in points:
        row: dict[str, Any] = {"name": p.name, "unit": p.unit, "attributes": dict(sorted(p.attributes.items()))}
        if p.count is not None:
            row["count"] = p.count
            row["bucket_total"] = sum(p.bucket_counts)
            if p.name in VALUE_HISTOGRAMS:
                row["sum"] = p.sum
                row["bucket_counts"] = list(p.bucket_counts)
        point_rows.append(row)
    point_rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
    print(f"{name}: {len(spans)} spans, {len(point_rows)} metric points", file=sys.stderr)
    return {"spans": [json.loads(r) for r in span_rows], "metrics": point_rows}


def snapshot() -> dict[str, Any]:
    """Run every workload under an in-memory capture and return what ragotel exported, workload by workload."""
    base = Capture()  # in-memory providers for instrument(); each workload's capture() takes precedence over them
    ragotel.instrument(
        libraries=["chromadb", "langchain", "openai"],
        host_metrics=False,
        tracer_provider=base.tracer_provider,
        meter_provider=base.meter_provider,
    )
    proc, url = start_fake_server()
    try:
        workloads: dict[str, Callable[[], Any]] = {
            **_stage_workloads(),
            "W1 chroma query": _chroma_workload(stub=False),
            "W2 langchain retrieval chain": _langchain_workload(),
            **_openai_workloads(url),
        }
        return {name: _record(name, fn) for name, fn in workloads.items()}
    finally:
        proc.kill()
        proc.wait()


# -- comparison --------------------------------------------------------------------------------------------------
def _key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)


def _carried(stage: str, error: str | None, after: list[dict[str, Any]]) -> tuple[int, int]:
    """(count, bucket total) of the semconv duration histogram in ``after`` for one stage and error.type."""
    semconv = [
        p
        for p in after
        if p["name"] == SEMCONV_DURATION[stage]
        and p["attributes"].get(sc.ERROR_TYPE) == error
        and (
            stage == sc.STAGE_VECTOR_DB
            or (p["attributes"].get(sc.GEN_AI_OPERATION_NAME) == sc.OP_EMBEDDINGS) == (stage == sc.STAGE_EMBEDDING)
        )
        and p["attributes"].get(sc.GEN_AI_OPERATION_NAME) != sc.OP_RETRIEVAL
    ]
    return sum(p["count"] for p in semconv), sum(p["bucket_total"] for p in semconv)


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Every difference between two snapshots the telemetry contract does not explain; empty when identical."""
    problems: list[str] = []
    for workload in sorted(set(before) | set(after)):
        b, a = before.get(workload), after.get(workload)
        if b is None or a is None:
            problems.append(f"{workload}: only in {'after' if b is None else 'before'}")
            continue
        if Counter(map(_key, b["spans"])) != Counter(map(_key, a["spans"])):
            gone = Counter(map(_key, b["spans"])) - Counter(map(_key, a["spans"]))
            new = Counter(map(_key, a["spans"])) - Counter(map(_key, b["spans"]))
            problems.append(f"{workload}: spans differ\n  before only: {list(gone)}\n  after only: {list(new)}")
        b_points, a_points = Counter(map(_key, b["metrics"])), Counter(map(_key, a["metrics"]))
        dropped: Counter[tuple[str, str | None]] = Counter()
        for row in (b_points - a_points).elements():
            point = json.loads(row)
            stage = point["attributes"].get(sc.RAGOTEL_STAGE)
            if point["name"] == sc.M_STAGE_DURATION and stage in SEMCONV_DURATION:
                key = (stage, point["attributes"].get(sc.ERROR_TYPE))
                dropped[key] += point["count"]
                dropped[(*key, "buckets")] += point["bucket_total"]  # type: ignore[index]
            else:
                problems.append(f"{workload}: metric point missing after: {row}")
        for key, count in dropped.items():
            if len(key) == 2:
                stage, error = key
                carried = _carried(stage, error, a["metrics"])
                expected = (count, dropped[(stage, error, "buckets")])  # type: ignore[index]
                if carried != expected:
                    problems.append(
                        f"{workload}: {sc.M_STAGE_DURATION} of {stage} (error.type={error}) counted {expected} before,"
                        f" {SEMCONV_DURATION[stage]} counts {carried} after"
                    )
        for row in (a_points - b_points).elements():
            problems.append(f"{workload}: metric point new after: {row}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="run the workloads and write the snapshot here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="compare two snapshots")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(json.dumps(snapshot(), indent=1, sort_keys=True))
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        problems = compare(before, after)
        for problem in problems:
            print(problem)
        spans = sum(len(w["spans"]) for w in after.values())
        points = sum(len(w["metrics"]) for w in after.values())
        print(
            f"telemetry identical: {'NO' if problems else 'yes'} ({len(after)} workloads, {spans} spans, "
            f"{points} metric points after)"
        )
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
