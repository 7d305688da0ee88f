"""The RAG app that ``fault_matrix.py`` runs and breaks: real Chroma, the real openai client, ragotel, one process.

Run by ``fault_matrix.py`` as ``python benchmarks/_rag_app.py --service S --endpoint URL --redis-url URL`` (one
fresh process per fault, so each fault gets a pristine ``ragotel.instrument(service_name=...)``: the SDK's global
providers cannot be replaced inside one process). Nothing here is downloaded and nothing leaves 127.0.0.1.

- Each request: ``ragotel.pipeline`` -> ``ragotel.retrieval`` around a Chroma ``Collection.query`` (an ephemeral
  client, 60 documents, a deterministic hash embedding function, so the vector_db span is Chroma's own) -> an
  ``openai`` chat completion (``max_retries=0``) against :class:`LoopbackLLM`, a small server in this process
  speaking the chat-completions wire format, with a base delay of lognormal(median 0.25 s, sigma 0.3) and
  1-in-200 slow outliers (+1.5..3 s).
- Load: ``--rate`` requests/s with exponential inter-arrival times, submitted to a thread pool of 48 so a slow
  call never throttles the rate.
- Health: ``ragotel.health.register("cache", redis_check(url), kind="cache")`` at the default interval; host
  gauges on (the default).

Control: JSON lines on stdin (``{"cmd": "fault", "name": "slow_llm"}``, ``{"cmd": "clear"}``, ``{"cmd": "stop"}``);
events as JSON lines on stdout (``ready``, ``fault_on``, ``first_faulty`` with the wall time the first request
that met the fault completed, ``cleared`` and ``stopped`` with counters). EOF on stdin stops the app, so it never
outlives the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

APP_FAULTS = ("slow_llm", "slow_vectordb", "llm_errors", "vectordb_errors", "leak", "empty_retrieval", "token_spike")
EXTRA_DELAY_S = 1.5
LEAK_BYTES_PER_S = 8 * 1024 * 1024
LEAK_CAP_BYTES = 1536 * 1024 * 1024
OUTLIER_EVERY = 200
MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
REPLY = "Paris is the capital of France, according to the retrieved documents about European geography."
QUESTIONS = (
    "What is the capital of France?",
    "How do vector databases index embeddings?",
    "Which topics does document seven cover?",
    "Summarise the retrieval augmented generation pattern.",
    "What is an approximate nearest neighbour search?",
)


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout for the benchmark (flushed at once)."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


# -- the loopback LLM --------------------------------------------------------------------------------------------
class LoopbackLLM:
    """``POST /v1/chat/completions`` in OpenAI's wire format, on 127.0.0.1; every knob may change while it runs.

    ``extra_delay`` (s added to every answer), ``error_fraction`` (share answered HTTP 500 with OpenAI's error
    body), ``usage_multiplier`` (reported token usage). Requests carrying ``x-bench-request: ID`` that met a fault
    are remembered in ``faulted`` so the app can tell which of its requests were faulty.
    """

    def __init__(self, seed: int) -> None:
        self.extra_delay = 0.0
        self.error_fraction = 0.0
        self.usage_multiplier = 1
        self.faulted: set[str] = set()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = owner.answer(self.path, body, self.headers.get("x-bench-request"))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-request-id", "req_" + uuid.uuid4().hex)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, name="loopback-llm", daemon=True).start()

    def answer(self, path: str, body: bytes, request_id: str | None) -> tuple[int, dict[str, Any]]:
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"Invalid URL (POST {path})", "type": "invalid_request_error"}}
        with self._lock:
            delay = self._rng.lognormvariate(math.log(0.25), 0.3)
            if self._rng.random() < 1.0 / OUTLIER_EVERY:
                delay += self._rng.uniform(1.5, 3.0)
            fail = self._rng.random() < self.error_fraction
            extra, multiplier = self.extra_delay, self.usage_multiplier
        if request_id and (fail or extra or multiplier != 1):
            self.faulted.add(request_id)
        time.sleep(delay + extra)
        if fail:
            message = "The server had an error while processing your request. Sorry about that!"
            return 500, {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        request = json.loads(body or b"{}")
        prompt = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
        completion = len(REPLY.split())
        usage = {"prompt_tokens": prompt * multiplier, "completion_tokens": completion * multiplier}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": RESPONSE_MODEL,
            "system_fingerprint": "fp_bench000001",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the app -----------------------------------------------------------------------------------------------------
class App:
    """The instrumented RAG service, its load generator and its fault switches."""

    def __init__(self, args: argparse.Namespace) -> None:
        import chromadb
        import numpy as np
        import openai
        from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
        from chromadb.config import Settings

        import ragotel
        from ragotel.health import redis_check

        self.ragotel = ragotel
        self.rate: float = args.rate
        self.rng = random.Random(args.seed)
        self.fault: str | None = None
        self.episode = 0
        self.reported_episode = -1
        self.lock = threading.Lock()
        self.local = threading.local()
        self.counts = {"requests": 0, "errors": 0, "faulty": 0, "empty": 0}
        self.leak: list[bytearray] = []
        self.stop_event = threading.Event()

        self.handle = ragotel.instrument(service_name=args.service, endpoint=args.endpoint)
        ragotel.health.register("cache", redis_check(args.redis_url), kind="cache")
        self.llm = LoopbackLLM(args.seed)
        self.client = openai.OpenAI(base_url=self.llm.base_url, api_key="sk-bench", max_retries=0, timeout=30.0)
        app = self

        class HashEmbedding(EmbeddingFunction[Documents]):
            """Deterministic 16-d embedding from a hash; the slow/failing vector DB faults act here, inside query."""

            def __init__(self) -> None:
                pass

            def __call__(self, input: Documents) -> Embeddings:
                app.vector_db_fault()
                digests = [hashlib.sha256(text.encode()).digest()[:16] for text in input]
                return [np.frombuffer(d, dtype=np.uint8).astype(np.float32) / 255.0 for d in digests]

            @staticmethod
            def name() -> str:
                return "bench-hash"

            def get_config(self) -> dict[str, Any]:
                return {}

            @staticmethod
            def build_from_config(config: dict[str, Any]) -> HashEmbedding:
                return HashEmbedding()

        chroma = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        embed = cast(Any, HashEmbedding())  # Chroma types the function over its image inputs too
        self.full = chroma.get_or_create_collection("kb-docs", embedding_function=embed)
        self.full.add(
            ids=[f"doc-{i}" for i in range(60)],
            documents=[f"document {i} about topic {i % 7}: retrieval, vectors and generation" for i in range(60)],
        )
        self.empty = chroma.get_or_create_collection("kb-docs-empty", embedding_function=embed)
        self.collection = self.full
        self.pool = ThreadPoolExecutor(max_workers=48, thread_name_prefix="request")

    # -- faults --------------------------------------------------------------------------------------------------
    def vector_db_fault(self) -> None:
        """Called inside Chroma's query (by the embedding function), so the effect lies inside the vector_db span."""
        fault = self.fault
        if fault == "slow_vectordb":
            self.local.faulty = True
            time.sleep(EXTRA_DELAY_S)
        elif fault == "vectordb_errors":
            self.local.faulty = True
            raise RuntimeError("injected vector DB failure")

    def set_fault(self, name: str | None) -> None:
        with self.lock:
            self.fault = name
            self.episode += 1
            self.llm.extra_delay = EXTRA_DELAY_S if name == "slow_llm" else 0.0
            self.llm.error_fraction = 0.5 if name == "llm_errors" else 0.0
            self.llm.usage_multiplier = 20 if name == "token_spike" else 1
            self.collection = self.empty if name == "empty_retrieval" else self.full
        if name == "leak":
            threading.Thread(target=self._leak, args=(self.episode,), name="leak", daemon=True).start()
        else:
            self.leak = []  # frees the held buffers (large bytearrays go back to the OS)

    def _leak(self, episode: int) -> None:
        step = LEAK_BYTES_PER_S // 4
        next_at = time.monotonic()
        while self.episode == episode and not self.stop_event.is_set() and len(self.leak) * step < LEAK_CAP_BYTES:
            buf = bytearray(step)
            buf[::4096] = b"\x01" * len(range(0, step, 4096))  # touch every page so it is resident
            self.leak.append(buf)
            next_at += 0.25
            time.sleep(max(0.0, next_at - time.monotonic()))

    # -- requests ------------------------------------------------------------------------------------------------
    def one_request(self, n: int) -> None:
        ragotel = self.ragotel
        episode, fault = self.episode, self.fault
        self.local.faulty = False
        request_id = str(n)
        question = QUESTIONS[n % len(QUESTIONS)]
        failed = empty = False
        try:
            with ragotel.pipeline("answer"):
                with ragotel.retrieval("kb-docs", top_k=3) as op:
                    result = self.collection.query(query_texts=[question], n_results=3)
                    ids = (result["ids"] or [[]])[0]
                    op.add_documents(ids)
                empty = not ids
                context = " ".join((result.get("documents") or [[]])[0] or [])
                self.client.chat.completions.create(
                    model=MODEL,
                    messages=[
                        {"role": "system", "content": f"Answer from the context. Context: {context}"},
                        {"role": "user", "content": question},
                    ],
                    max_tokens=64,
                    extra_headers={"x-bench-request": request_id},
                )
        except Exception:
            failed = True
        done = time.time()
        faulty = bool(
            self.local.faulty
            or request_id in self.llm.faulted
            or (empty and fault == "empty_retrieval")
            or (failed and fault is not None)
        )
        self.llm.faulted.discard(request_id)
        with self.lock:
            self.counts["requests"] += 1
            self.counts["errors"] += failed
            self.counts["empty"] += empty
            self.counts["faulty"] += faulty
            first = faulty and fault is not None and episode == self.episode and self.reported_episode != episode
            if first:
                self.reported_episode = episode
        if first:
            emit("first_faulty", fault=fault, t=done)

    def load(self) -> None:
        """Poisson arrivals at ``rate``: exponential gaps, each request on the pool (bounded by stop_event)."""
        n = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            next_at += self.rng.expovariate(self.rate)
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))
            if self.stop_event.is_set():
                break
            self.pool.submit(self.one_request, n)
            n += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            stats: dict[str, Any] = dict(self.counts)
        stats["leak_mb"] = round(sum(len(b) for b in self.leak) / 2**20, 1)
        return stats

    def close(self) -> None:
        self.stop_event.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.handle.shutdown()
        self.llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="the fault-matrix RAG app (run by fault_matrix.py)")
    parser.add_argument("--service", required=True)
    parser.add_argument("--endpoint", required=True, help="the analyzer's OTLP/HTTP base URL")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
    os.environ.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "1000")
    app = App(args)
    loader = threading.Thread(target=app.load, name="load", daemon=True)
    loader.start()
    emit("ready", t=time.time(), pid=os.getpid())
    try:
        for line in sys.stdin:  # EOF (the benchmark went away) ends the loop
            command = json.loads(line)
            if command["cmd"] == "fault":
                app.set_fault(command["name"])
                emit("fault_on", fault=command["name"], t=time.time())
            elif command["cmd"] == "clear":
                app.set_fault(None)
                emit("cleared", t=time.time(), stats=app.snapshot())
            elif command["cmd"] == "stop":
                break
    finally:
        stats = app.snapshot()
        with contextlib.suppress(Exception):
            app.close()
        emit("stopped", t=time.time(), stats=stats)


if __name__ == "__main__":
    main()
