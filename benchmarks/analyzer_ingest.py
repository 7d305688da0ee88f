"""Analyzer ingest throughput (spans per analyzer CPU-second) over OTLP/HTTP and gRPC, and RSS at 100k series.

Run: ``python benchmarks/analyzer_ingest.py`` (``--quick`` for a short run).

The analyzer runs as its own process (``python -m ragotel.analyzer``, ports 0, windows on, default limits except
``max_series``); a separate load-generator process sends pre-encoded ExportTraceServiceRequests of 512 realistic
RAG spans (64 traces of 8 spans: pipeline, embedding, vector_db, retrieval, rerank, generation, two untagged
framework spans). Throughput is spans accepted divided by the analyzer process's own CPU time (user + system),
so the load generator's cost does not count. Rounds alternate HTTP and gRPC; medians are reported. The baseline,
measured in this process in the same run, is the CPU cost of only decoding the same requests with the generated
opentelemetry-proto classes (upb); the ratio says how many times that floor the whole analyzer path costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

SPANS_PER_REQUEST = 512


def _kv(key: str, value: Any) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build_request(seed: int, *, distinct_collections: int = 0, offset: int = 0) -> bytes:
    """One ExportTraceServiceRequest of 512 RAG spans; ``distinct_collections`` gives every span its own series."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    service = f"rag-api-{seed % 4}"
    resource_spans.resource.attributes.extend(
        [
            _kv("service.name", service),
            _kv("service.version", "1.4.2"),
            _kv("service.instance.id", f"{service}-7c9f"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.version", "1.45.2"),
            _kv("host.name", "worker-3"),
        ]
    )
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "ragotel"
    scope.scope.version = "0.1.0"
    base = 1_764_300_000_000_000_000
    n = 0
    while n < SPANS_PER_REQUEST:
        trace_id = rng.randbytes(16)
        root = rng.randbytes(8)
        start = base + rng.randrange(10**12)
        steps = [
            ("pipeline", "custom", "rag.answer", 0.4, 2.5, {"enduser.id": f"user-{rng.randrange(500)}"}),
            (
                "embedding",
                "openai",
                "embeddings text-embedding-3-small",
                0.02,
                0.2,
                {
                    "gen_ai.operation.name": "embeddings",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "text-embedding-3-small",
                    "gen_ai.usage.input_tokens": rng.randrange(5, 60),
                },
            ),
            (
                "vector_db",
                "chromadb",
                "query docs",
                0.005,
                0.08,
                {
                    "db.system.name": "chroma",
                    "db.operation.name": "query",
                    "db.collection.name": "docs",
                    "server.address": "127.0.0.1",
                },
            ),
            (
                "retrieval",
                "langchain",
                "retrieval docs",
                0.01,
                0.1,
                {
                    "gen_ai.operation.name": "retrieval",
                    "gen_ai.data_source.id": "docs",
                    "gen_ai.retrieval.top_k": 4,
                    "ragotel.retrieval.document_count": rng.choice([0, 4, 4, 4, 4, 4, 4, 4, 4, 4]),
                    "ragotel.retrieval.top_score": rng.random(),
                },
            ),
            ("rerank", "custom", "rerank", 0.01, 0.05, {"ragotel.rerank.top_n": 3}),
            (
                "generation",
                "openai",
                "chat gpt-4o-mini",
                0.3,
                2.0,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.usage.input_tokens": rng.randrange(300, 1500),
                    "gen_ai.usage.output_tokens": rng.randrange(20, 400),
                    "gen_ai.response.finish_reasons": "stop",
                    "server.address": "api.openai.com",
                    "server.port": 443,
                },
            ),
            (None, None, "RunnableSequence", 0.001, 0.01, {"langchain.run_type": "chain"}),
            (None, None, "StrOutputParser", 0.0001, 0.001, {"langchain.run_type": "parser"}),
        ]
        for i, (stage, component, name, low, high, attributes) in enumerate(steps):
            span = scope.spans.add()
            span.trace_id = trace_id
            span.span_id = root if i == 0 else rng.randbytes(8)
            if i:
                span.parent_span_id = root
            span.name = name
            span.kind = 3 if stage in ("embedding", "vector_db", "generation") else 1
            span.start_time_unix_nano = start
            span.end_time_unix_nano = start + int(rng.uniform(low, high) * 1e9)
            attrs = dict(attributes)
            if stage is not None:
                attrs["ragotel.stage"] = stage
                attrs["ragotel.component"] = component
            if distinct_collections:
                attrs["db.collection.name"] = f"coll-{offset + n:06d}"
            span.attributes.extend(_kv(k, v) for k, v in attrs.items())
            if rng.random() < 0.02:
                span.status.code = 2
                span.status.message = "upstream timeout"
                span.attributes.append(_kv("error.type", "TimeoutError"))
            n += 1
            if n == SPANS_PER_REQUEST:
                break
    return bytes(request.SerializeToString())


# --- load generator (runs in its own process) -------------------------------------------------------------------


def _send_http(address: str, payloads: list[bytes], count: int, connections: int) -> int:
    host, port = address.rsplit(":", 1)
    errors = [0]
    per = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]

    def worker(n: int, offset: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for i in range(n):
            body = payloads[(offset + i) % len(payloads)]
            while True:
                conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
                if response.status == 503:
                    time.sleep(0.01)
                    continue
                if response.status != 200:
                    errors[0] += 1
                break
        conn.close()

    starts = [sum(per[:i]) for i in range(connections)]  # each connection sends its own slice of the payloads
    threads = [threading.Thread(target=worker, args=(n, start)) for n, start in zip(per, starts, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors[0]


def _send_grpc(address: str, payloads: list[bytes], count: int, connections: int) -> int:
    import grpc

    channel = grpc.insecure_channel(address)
    call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    errors = [0]
    per = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]

    def worker(n: int, offset: int) -> None:
        for i in range(n):
            while True:
                try:
                    call(payloads[(offset + i) % len(payloads)], timeout=30)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        time.sleep(0.01)
                        continue
                    errors[0] += 1
                break

    starts = [sum(per[:i]) for i in range(connections)]  # each connection sends its own slice of the payloads
    threads = [threading.Thread(target=worker, args=(n, start)) for n, start in zip(per, starts, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()
    return errors[0]


def _loadgen(conn: Any, http_address: str, grpc_address: str, variants: int) -> None:
    payloads = [build_request(seed) for seed in range(variants)]
    conn.send("ready")
    while True:
        command = conn.recv()
        if command is None:
            return
        kind, count, connections = command
        if kind == "series":
            bodies = [build_request(i, distinct_collections=1, offset=i * SPANS_PER_REQUEST) for i in range(count)]
            conn.send(_send_http(http_address, bodies, count, connections))
        elif kind == "http":
            conn.send(_send_http(http_address, payloads, count, connections))
        else:
            conn.send(_send_grpc(grpc_address, payloads, count, connections))


# --- analyzer process ------------------------------------------------------------------------------------------


class Analyzer:
    """``python -m ragotel.analyzer`` on free ports; addresses read from its JSON log."""

    def __init__(self, workdir: Path, max_series: int) -> None:
        config = workdir / "bench.yaml"
        config.write_text(
            "receivers:\n  grpc: {endpoint: 127.0.0.1:0}\n  http: {endpoint: 127.0.0.1:0}\n"
            f"api: {{endpoint: 127.0.0.1:0}}\nstate: {{path: {workdir / 'state.db'}}}\n"
            f"limits: {{max_series: {max_series}}}\nlog: {{format: json}}\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ragotel.analyzer", "--config", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            cwd=workdir,
        )
        self.addresses: dict[str, str] = {}
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while len(self.addresses) < 3:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"analyzer did not start (exit {self.proc.poll()})")
            record = json.loads(line)
            if record.get("msg") == "listening":
                self.addresses[record["service"]] = record["address"]
        threading.Thread(target=self._drain, daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def totals(self) -> dict[str, int]:
        host, port = self.addresses["api"].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/api/v1/stats?service=none")
        data = json.loads(conn.getresponse().read())
        conn.close()
        return dict(data["totals"])

    def wait_spans(self, expected: int) -> None:
        deadline = time.monotonic() + 120
        while self.totals()["spans"] < expected:
            if time.monotonic() > deadline:
                raise RuntimeError("analyzer did not merge every accepted span in time")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _decode_baseline(payloads: list[bytes], repeat: int) -> float:
    """CPU seconds per span to decode the requests with the generated opentelemetry-proto classes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    started = time.process_time()
    for _ in range(repeat):
        for body in payloads:
            ExportTraceServiceRequest.FromString(body)
    return (time.process_time() - started) / (repeat * len(payloads) * SPANS_PER_REQUEST)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per round and transport")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--series", type=int, default=100_000, help="distinct series for the RSS measurement")
    parser.add_argument("--quick", action="store_true", help="60 requests x 2 rounds, 20k series")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.series = 60, 2, 20_000

    with tempfile.TemporaryDirectory() as tmp:
        analyzer = Analyzer(Path(tmp), max_series=args.series + 1000)
        try:
            rss_idle = analyzer.ps.memory_info().rss
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            gen = ctx.Process(
                target=_loadgen,
                args=(child, analyzer.addresses["otlp-http"], analyzer.addresses["otlp-grpc"], 16),
                daemon=True,  # never outlives a failed run
            )
            gen.start()
            assert parent.recv() == "ready"
            sent = 0

            def run(kind: str, count: int) -> tuple[float, float]:
                nonlocal sent
                cpu0, wall0 = analyzer.cpu(), time.perf_counter()
                parent.send((kind, count, args.connections))
                errors = parent.recv()
                sent += count * SPANS_PER_REQUEST
                analyzer.wait_spans(sent)
                cpu, wall = analyzer.cpu() - cpu0, time.perf_counter() - wall0
                if errors:
                    raise RuntimeError(f"{errors} {kind} requests failed")
                return count * SPANS_PER_REQUEST / cpu, count * SPANS_PER_REQUEST / wall

            run("http", 30)  # warm-up: imports, connections, first series
            run("grpc", 30)
            results: dict[str, list[tuple[float, float]]] = {"http": [], "grpc": []}
            for i in range(args.rounds):
                for kind in ("http", "grpc") if i % 2 == 0 else ("grpc", "http"):
                    results[kind].append(run(kind, args.requests))

            payloads = [build_request(seed) for seed in range(16)]
            baseline = _decode_baseline(payloads, 3)

            series_requests = -(-args.series // SPANS_PER_REQUEST)
            parent.send(("series", series_requests, args.connections))
            if parent.recv():
                raise RuntimeError("series requests failed")
            sent += series_requests * SPANS_PER_REQUEST
            analyzer.wait_spans(sent)
            totals = analyzer.totals()
            rss_series = analyzer.ps.memory_info().rss
            parent.send(None)
            gen.join(30)
        finally:
            analyzer.stop()

    print(f"analyzer ingest, {SPANS_PER_REQUEST} spans/request, {args.requests} requests x {args.rounds} rounds")
    print(f"baseline: protobuf decode only (opentelemetry-proto, upb): {1 / baseline:,.0f} spans/CPU-s")
    for kind, label in (("http", "OTLP/HTTP protobuf"), ("grpc", "OTLP/gRPC")):
        per_cpu = statistics.median(r[0] for r in results[kind])
        q = statistics.quantiles([r[0] for r in results[kind]], n=4) if len(results[kind]) > 1 else [per_cpu] * 3
        wall = statistics.median(r[1] for r in results[kind])
        print(
            f"{label:20s}: {per_cpu:,.0f} spans per analyzer CPU-second (IQR {q[0]:,.0f}-{q[2]:,.0f}); "
            f"{wall:,.0f} spans/s wall; cost {1 / (baseline * per_cpu):.2f}x the decode-only baseline"
        )
    print(
        f"RSS: {rss_idle / 2**20:.0f} MiB idle -> {rss_series / 2**20:.0f} MiB holding {totals['series']:,} series "
        f"(overflowed items: {totals['overflow']})"
    )
    print(f"cpu count {os.cpu_count()}, python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
