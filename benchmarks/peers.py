"""ragotel against today's RAG/LLM instrumentations on three workloads: per-call overhead, CPU and memory.

    bash benchmarks/peers_env.sh          # once: the peers' own virtualenv (/tmp/ragotel-peers-venv)
    python benchmarks/peers.py            # all workloads and configurations (a few minutes), prints the tables
    python benchmarks/peers.py --workloads W3 --reps 30
    python benchmarks/peers.py --quick    # a smoke run: 5 reps, figures meaningless

Workloads (BENCHMARKS.md): W1 ``collection.query`` on an ephemeral Chroma collection of 2,000 docs with fixed
384-d embeddings; W1s the same call with Chroma's native query stubbed (its thread hand-offs make W1's wall time
unresolvable at this scale, so W1s isolates the instrumentation's own cost); W2 a LangChain retrieval chain
(InMemoryVectorStore, DeterministicFakeEmbedding, a fake chat model, StrOutputParser); W3 ``openai``
``chat.completions.create`` against FakeOpenAI (tests/servers/openai.py) on the loopback; W4 ``anthropic``
``messages.create`` against FakeAnthropic (tests/servers/anthropic.py); W5 a Cohere ``rerank`` (v2 client, 20 documents,
``top_n=5``) against FakeCohere (tests/servers/cohere.py) on the loopback.

Method: every configuration (uninstrumented, ragotel, OpenLLMetry, OpenInference, OpenLIT, contrib openai-v2) runs
in its own fresh worker process from the peers' virtualenv, so all use the same library versions and no patch
leaks between them. Every worker installs the same SDK setup (TracerProvider + BatchSpanProcessor into a counting
no-op exporter, MeterProvider + InMemoryMetricReader, both global) and then its instrumentation with that
configuration's defaults (content capture as each ships it). The workers of one workload start together, warm
up, then take turns: one timed repetition each per cycle, in rotating order, so drift hits all alike. Overhead is
paired per cycle (configuration minus the uninstrumented repetition of the same cycle): median and IQR over the
cycles, for wall time and for process CPU time; peak RSS is reported above the uninstrumented worker's.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_VENV = os.environ.get("RAGOTEL_PEERS_VENV", "/tmp/ragotel-peers-venv")
PRICING_JSON = HERE / "openlit_pricing.json"
ANTHROPIC_URL_ENV = "RAGOTEL_BENCH_ANTHROPIC_URL"  # FakeAnthropic's URL, set by main() for the workers (W4)
COHERE_URL_ENV = "RAGOTEL_BENCH_COHERE_URL"  # FakeCohere's URL, handed to the workers through their environment

CONFIGS = ("uninstrumented", "floor", "ragotel", "openllmetry", "openinference", "openlit", "contrib")
PEERS = ("openllmetry", "openinference", "openlit", "contrib")
LABELS = {
    "uninstrumented": "uninstrumented",
    "floor": "SDK floor for ragotel's telemetry",
    "ragotel": "ragotel",
    "openllmetry": "OpenLLMetry 0.62",
    "openinference": "OpenInference",
    "openlit": "OpenLIT 1.45",
    "contrib": "contrib openai-v2",
}


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    library: str  # ragotel registry name of the library the workload exercises
    calls: int  # calls per timed repetition
    quick_calls: int


WORKLOADS = {
    w.name: w
    for w in (
        Workload("W1", "Chroma collection.query, 2,000 docs x 384-d, n_results=5", "chromadb", 20, 3),
        Workload(
            "W1s", "the same Chroma query, native search stubbed (instrumentation cost only)", "chromadb", 200, 20
        ),
        Workload(
            "W2",
            "LangChain retrieval chain: in-memory store, fake embeddings, fake chat model, parser",
            "langchain",
            20,
            3,
        ),
        Workload("W3", "openai chat.completions.create against FakeOpenAI on the loopback", "openai", 20, 3),
        Workload("W4", "anthropic messages.create against FakeAnthropic on the loopback", "anthropic", 20, 3),
        Workload(
            "W5",
            "Cohere rerank (v2 client), 20 documents, top_n=5, against FakeCohere on the loopback",
            "cohere",
            20,
            3,
        ),
    )
}


class NotApplicable(Exception):
    """This peer has no instrumentation for the workload's library."""


# ======================================================================================================================
# worker side (runs in the peers' virtualenv)
# ======================================================================================================================
def _instrument(config: str, library: str, tracer_provider: Any, meter_provider: Any) -> str:
    """Install ``config``'s instrumentation for ``library``; returns a one-line description."""
    if config == "uninstrumented":
        return "no instrumentation"
    if config == "ragotel":
        import ragotel

        # Instruments the library now if imported, else when the workload imports it (see _check_ragotel).
        ragotel.instrument(
            tracer_provider=tracer_provider, meter_provider=meter_provider, libraries=[library], host_metrics=False
        )
        return f"ragotel.instrument(libraries=[{library!r}])"
    if config == "floor":
        return "hand-written wrapt wrapper: ragotel's span and metric records as constants (see _install_floor)"
    if config == "openllmetry":
        if library == "chromadb":
            from opentelemetry.instrumentation.chromadb import ChromaInstrumentor as Inst
        elif library == "langchain":
            from opentelemetry.instrumentation.langchain import LangchainInstrumentor as Inst
        elif library == "anthropic":
            from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor as Inst
        elif library == "cohere":
            from opentelemetry.instrumentation.cohere import CohereInstrumentor as Inst
        else:
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Inst
        Inst().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        return f"{Inst.__module__}.{Inst.__name__}"
    if config == "openinference":
        if library == "chromadb":
            raise NotApplicable("OpenInference has no Chroma instrumentation")
        if library == "cohere":
            raise NotApplicable("OpenInference has no Cohere instrumentation")
        if library == "langchain":
            from openinference.instrumentation.langchain import LangChainInstrumentor as OiInst
        elif library == "anthropic":
            from openinference.instrumentation.anthropic import AnthropicInstrumentor as OiInst
        else:
            from openinference.instrumentation.openai import OpenAIInstrumentor as OiInst
        OiInst().instrument(tracer_provider=tracer_provider)  # OpenInference records no metrics
        return f"{OiInst.__module__}.{OiInst.__name__}"
    if config == "openlit":
        if library == "cohere":
            raise NotApplicable("OpenLIT 1.45 traces Cohere chat, chat_stream and embed, not rerank")
        import openlit

        # init() reuses the global providers installed by the worker; a local pricing file keeps it off the network.
        openlit.init(pricing_json=str(PRICING_JSON), collect_gpu_stats=False)
        return "openlit.init(pricing_json=<local file>) -- instruments every library it finds"
    if config == "contrib":
        if library != "openai":
            raise NotApplicable("contrib openai-v2 instruments only the openai client")
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as ContribInst

        ContribInst().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        return "opentelemetry.instrumentation.openai_v2.OpenAIInstrumentor"
    raise ValueError(f"unknown configuration {config!r}")


class _StubBindings:
    """Chroma's native bindings with ``query`` answered from the first real answer: every Python layer above the
    native search (Collection.query, the API's ``_query``, result shaping, and any wrapper on them) still runs."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._canned: Any = None

    def query(self, *args: Any) -> Any:
        if self._canned is None:
            self._canned = self._real.query(*args)
        return self._canned

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _floor_target(workload: str) -> tuple[Any, str] | None:
    """The class and method ragotel hooks for the workload's call (single-span workloads only)."""
    if workload in ("W1", "W1s"):
        from chromadb.api.models.Collection import Collection

        return Collection, "query"
    if workload == "W3":
        from openai.resources.chat.completions import Completions

        return Completions, "create"
    if workload == "W4":
        from anthropic.resources.messages.messages import Messages

        return Messages, "create"
    if workload == "W5":
        from cohere.v2.raw_client import RawV2Client

        return RawV2Client, "rerank"
    return None


def _install_floor(workload: str, call: Callable[[], Any], tracer_provider: Any, meter_provider: Any) -> None:
    """The OTel SDK floor of ragotel's telemetry for this call: the cheapest code making the same span and metrics.

    One call is first made under ``ragotel.testing.capture()`` with ragotel's instrumentor, to read back exactly
    what ragotel emits (span name, kind, attributes; each metric point's instrument, unit, buckets and
    attributes). A plain wrapt wrapper on the same method then emits that span with those attributes as
    constants (no extraction from arguments or results) and records the same histograms: durations with the
    measured time, token counts with the captured values. ragotel minus this floor is ragotel's own code.
    """
    import wrapt
    from opentelemetry.trace import SpanKind

    from ragotel.bootstrap import LIBRARIES
    from ragotel.testing import capture

    found = _floor_target(workload)
    if found is None:
        raise NotApplicable("the floor is defined for the single-span workloads (W1, W1s, W3, W4, W5)")
    owner, method = found
    module_name, _, class_name = LIBRARIES[WORKLOADS[workload].library].instrumentor.partition(":")
    import importlib

    inst = getattr(importlib.import_module(module_name), class_name)()
    with capture() as cap:
        inst.instrument()
        try:
            call()
        finally:
            inst.uninstrument()
        spans = cap.spans()
        points = cap.metrics()
    if len(spans) != 1:
        raise RuntimeError(f"expected one ragotel span per call, got {[s.name for s in spans]}")
    span = spans[0]
    name, kind, attributes = span.name, span.kind or SpanKind.INTERNAL, dict(span.attributes or {})
    tracer = tracer_provider.get_tracer("floor")
    meter = meter_provider.get_meter("floor")
    durations = []
    constants = []
    for p in points:
        histogram = meter.create_histogram(
            p.name, unit=p.unit, explicit_bucket_boundaries_advisory=list(p.explicit_bounds)
        )
        labels = dict(p.attributes)
        if p.unit == "s":
            durations.append((histogram, labels))
        else:
            constants.append((histogram, p.sum, labels))
    perf_counter = time.perf_counter

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        t0 = perf_counter()
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes):
            result = wrapped(*args, **kwargs)
        duration = perf_counter() - t0
        for histogram, labels in durations:
            histogram.record(duration, labels)
        for histogram, value, labels in constants:
            histogram.record(value, labels)
        return result

    wrapt.wrap_function_wrapper(owner, method, wrapper)


def _check_ragotel(library: str) -> None:
    """After the workload imported its library: ragotel must have instrumented it (not silently skipped it)."""
    from ragotel.bootstrap import current_instrumentation

    handle = current_instrumentation()
    if handle is None or library not in handle.instrumentors:
        failed = handle.failed if handle is not None else "no instrument() handle"
        raise RuntimeError(f"ragotel did not instrument {library}: {failed or 'instrumentation missing'}")


def _chroma_workload(stub: bool) -> Callable[[], Any]:
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
    collection = client.create_collection("bench", embedding_function=None)  # fixed embeddings passed explicitly
    rng = np.random.default_rng(42)
    vectors = rng.standard_normal((2000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, 2000, 500):
        collection.add(
            ids=[f"doc-{i}" for i in range(start, start + 500)],
            embeddings=vectors[start : start + 500],
            documents=[f"Document {i} about topic {i % 17}." for i in range(start, start + 500)],
        )
    query = [vectors[7].tolist()]
    if stub:
        api = collection._client
        api.bindings = _StubBindings(api.bindings)

    def call() -> Any:
        return collection.query(query_embeddings=query, n_results=5)

    result = call()
    if result["ids"][0][0] != "doc-7":
        raise RuntimeError(f"unexpected Chroma answer {result['ids']}")
    return call


def _langchain_workload() -> Callable[[], Any]:
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore

    # Small store and vectors: InMemoryVectorStore rebuilds a numpy array of every vector on each search, which
    # would otherwise drown the instrumentation's cost in noise.
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=64))
    store.add_texts([f"Document {i} about topic {i % 17}." for i in range(100)])
    retriever = store.as_retriever(search_kwargs={"k": 4})
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from this context only:\n{context}"), ("human", "{question}")]
    )
    llm = FakeListChatModel(responses=["Retrieval-augmented generation grounds answers in retrieved documents."])

    def format_docs(docs: list[Any]) -> str:
        return "\n".join(d.page_content for d in docs)

    chain = (
        {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | prompt
        | llm
        | StrOutputParser()
    )

    def call() -> Any:
        return chain.invoke("What is retrieval-augmented generation?")

    if not call().startswith("Retrieval-augmented"):
        raise RuntimeError("unexpected chain answer")
    return call


def _openai_workload(base_url: str) -> Callable[[], Any]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0, timeout=30.0)
    messages = [{"role": "user", "content": "What is retrieval-augmented generation?"}]

    def call() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=64)  # type: ignore[arg-type]

    if not call().choices[0].message.content:
        raise RuntimeError("empty answer from FakeOpenAI")
    return call


def _anthropic_workload(base_url: str) -> Callable[[], Any]:
    from anthropic import Anthropic

    client = Anthropic(base_url=base_url, api_key="sk-ant-bench", max_retries=0, timeout=30.0)
    messages = [{"role": "user", "content": "What is retrieval-augmented generation?"}]

    def call() -> Any:
        return client.messages.create(model="claude-sonnet-4-5", messages=messages, max_tokens=64)  # type: ignore[arg-type]

    if not call().content[0].text:
        raise RuntimeError("empty answer from FakeAnthropic")
    return call


def _cohere_workload(base_url: str) -> Callable[[], Any]:
    import cohere

    client = cohere.ClientV2(api_key="bench", base_url=base_url, timeout=30.0)
    documents = [f"Document {i} about topic {i % 17}: retrieval, ranking and generation." for i in range(20)]

    def call() -> Any:
        return client.rerank(model="rerank-v3.5", query="topic 7 ranking", documents=documents, top_n=5)

    if len(call().results) != 5:
        raise RuntimeError("unexpected rerank answer from FakeCohere")
    return call


def _build(workload: str, openai_url: str) -> Callable[[], Any]:
    if workload in ("W1", "W1s"):
        return _chroma_workload(stub=workload == "W1s")
    if workload == "W2":
        return _langchain_workload()
    if workload == "W4":
        return _anthropic_workload(os.environ[ANTHROPIC_URL_ENV])
    if workload == "W5":
        return _cohere_workload(os.environ[COHERE_URL_ENV])
    return _openai_workload(openai_url)


def _span_tree(spans: list[Any]) -> list[str]:
    """One line per span, indented under its parent, with its ragotel.stage when it has one."""
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int | None, list[Any]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in by_id else None
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            stage = (s.attributes or {}).get("ragotel.stage")
            n = len(s.attributes or {})
            lines.append(
                "  " * depth + s.name + (f"  [ragotel.stage={stage}]" if stage else "") + f"  ({n} attributes)"
            )
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def _linked(spans: list[Any]) -> dict[str, Any]:
    """Whether the call made one trace with pipeline -> retrieval -> generation spans, each under the pipeline."""
    by_id = {s.context.span_id: s for s in spans}
    stages: dict[str, list[Any]] = {}
    for s in spans:
        stage = (s.attributes or {}).get("ragotel.stage")
        if stage:
            stages.setdefault(str(stage), []).append(s)

    def under(span: Any, ancestor: Any) -> bool:
        node = span
        while node.parent is not None and node.parent.span_id in by_id:
            node = by_id[node.parent.span_id]
            if node is ancestor:
                return True
        return False

    pipelines = stages.get("pipeline", [])
    ok = (
        len(pipelines) == 1
        and len({s.context.trace_id for s in spans}) == 1
        and all(under(s, pipelines[0]) for st in ("retrieval", "generation") for s in stages.get(st, []))
        and bool(stages.get("retrieval"))
        and bool(stages.get("generation"))
    )
    return {"linked": ok, "stages": {k: len(v) for k, v in stages.items()}}


def profile(workload: str, config: str, openai_url: str, calls: int) -> int:
    """cProfile ``calls`` calls of one workload under one configuration (run inside the peers' virtualenv)."""
    import cProfile
    import pstats

    from _harness import sdk_setup
    from opentelemetry import metrics, trace

    setup = sdk_setup()
    trace.set_tracer_provider(setup.tracer_provider)
    metrics.set_meter_provider(setup.meter_provider)
    _instrument(config, WORKLOADS[workload].library, setup.tracer_provider, setup.meter_provider)
    call = _build(workload, openai_url)
    if config == "floor":
        _install_floor(workload, call, setup.tracer_provider, setup.meter_provider)
    for _ in range(max(5, calls // 10)):
        call()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        call()
    prof.disable()
    stats = pstats.Stats(prof, stream=sys.stderr).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    setup.shutdown()
    return 0


def _histogram_records(reader: Any) -> int:
    """Total count over every histogram point the reader holds (cumulative): measurements recorded so far."""
    data = reader.get_metrics_data()
    total = 0
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    total += getattr(point, "count", 0) or 0
    return total


def worker(workload: str, config: str, openai_url: str) -> int:
    """One configuration's process: set up, warm up, then answer ``run``/``finish`` commands on stdin."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a library prints goes to the log, never into the protocol
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    try:
        from _harness import peak_rss_mb, rss_mb, sdk_setup
        from opentelemetry import metrics, trace

        setup = sdk_setup(keep=512)
        trace.set_tracer_provider(setup.tracer_provider)
        metrics.set_meter_provider(setup.meter_provider)
        description = _instrument(config, WORKLOADS[workload].library, setup.tracer_provider, setup.meter_provider)
        call = _build(workload, openai_url)
        if config == "ragotel":
            _check_ragotel(WORKLOADS[workload].library)
        if config == "floor":
            _install_floor(workload, call, setup.tracer_provider, setup.meter_provider)
        for _ in range(5):
            call()
    except NotApplicable as exc:
        send({"skip": str(exc)})
        return 0
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send({"ready": True, "description": description, "rss_mb": rss_mb()})

    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "run":
            n = int(command["calls"])
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                call()
            t1, c1 = time.perf_counter(), time.process_time()
            send({"wall": t1 - t0, "cpu": c1 - c0})
        elif command["cmd"] == "finish":
            peak = peak_rss_mb()
            setup.tracer_provider.force_flush()
            before = setup.exporter.count
            records_before = _histogram_records(setup.reader)
            setup.exporter.kept.clear()
            call()
            setup.tracer_provider.force_flush()
            records = _histogram_records(setup.reader) - records_before
            spans = list(setup.exporter.kept)
            send(
                {
                    "peak_rss_mb": peak,
                    "spans_per_call": setup.exporter.count - before,
                    "records_per_call": records,
                    "tree": _span_tree(spans),
                    "shape": _linked(spans),
                }
            )
            break
    setup.shutdown()
    return 0


# ======================================================================================================================
# orchestrator side
# ======================================================================================================================
class Worker:
    """A worker process and a reader thread turning its protocol lines into a queue."""

    def __init__(self, python: str, workload: str, config: str, openai_url: str, log_dir: Path) -> None:
        self.config = config
        self.log_path = log_dir / f"{workload}-{config}.log"
        env = dict(os.environ)
        env.update(
            {
                # The caller's PYTHONPATH (a checkout's src/ put there is the ragotel measured), else this checkout's.
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(HERE), os.environ.get("PYTHONPATH", ""), str(ROOT / "src")) if p
                ),
                "OTEL_TRACES_EXPORTER": "none",  # no peer may add an exporter of its own
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "ANONYMIZED_TELEMETRY": "False",
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "OPENAI_API_KEY": "sk-bench",
            }
        )
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [python, str(HERE / "peers.py"), "--worker", workload, config, "--openai-url", openai_url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=env,
                text=True,
            )
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                continue
        self.messages.put(None)

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.config}: no answer in {timeout:.0f}s (log: {self.log_path})") from None
        if message is None:
            raise RuntimeError(f"{self.config}: worker exited (log: {self.log_path})")
        return message

    def request(self, command: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.receive(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@dataclass
class Outcome:
    """One workload's measurements: per-configuration per-cycle µs per call (wall and CPU) and the finish data."""

    workload: Workload
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    finish: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)


def run_workload(
    workload: Workload, configs: list[str], python: str, reps: int, warmup: int, calls: int, url: str, log_dir: Path
) -> Outcome:
    out = Outcome(workload)
    workers = {c: Worker(python, workload.name, c, url, log_dir) for c in configs}
    try:
        active = []
        for config, w in workers.items():
            try:
                hello = w.receive(timeout=600)
            except RuntimeError as exc:
                out.notes[config] = f"failed to start: {exc}"
                continue
            if "skip" in hello:
                out.notes[config] = f"n/a ({hello['skip']})"
            elif "error" in hello:
                out.notes[config] = f"failed: {hello['error']} (log: {w.log_path})"
            else:
                out.descriptions[config] = hello.get("description", "")
                active.append(config)
        if "uninstrumented" not in active:
            raise SystemExit(f"{workload.name}: the uninstrumented worker did not start: {out.notes}")
        for r in range(warmup + reps):
            shift = r % len(active)
            for config in active[shift:] + active[:shift]:
                reply = workers[config].request({"cmd": "run", "calls": calls})
                if r >= warmup:
                    out.wall.setdefault(config, []).append(reply["wall"] / calls * 1e6)
                    out.cpu.setdefault(config, []).append(reply["cpu"] / calls * 1e6)
        for config in active:
            out.finish[config] = workers[config].request({"cmd": "finish"})
    finally:
        for w in workers.values():
            w.stop()
    return out


def start_fake_server(module: str = "openai") -> tuple[subprocess.Popen[str], str]:
    """A loopback stand-in (tests/servers/<module>.py) in its own process; returns it and its base URL."""
    # TCP_NODELAY on the server's sockets: its handler writes headers and body in two sends, and Nagle's algorithm
    # against the client's delayed ACK otherwise adds ~40 ms to every call.
    code = (
        "import tests.servers._http as h\n"
        "h.RequestHandler.disable_nagle_algorithm = True\n"
        f"from tests.servers.{module} import main\n"
        "raise SystemExit(main(['--port', '0']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if " on " not in line:
        proc.kill()
        raise SystemExit(f"tests.servers.{module} did not start: {line!r}")
    return proc, line.rsplit(" on ", 1)[1]


# -- reporting ---------------------------------------------------------------------------------------------------
def _paired(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def analyse(out: Outcome) -> dict[str, dict[str, float]]:
    """Per configuration: paired wall/CPU overhead medians and IQRs, ratio to uninstrumented, RSS above baseline."""
    from _harness import summarize

    base_wall, base_cpu = out.wall["uninstrumented"], out.cpu["uninstrumented"]
    base_rss = out.finish["uninstrumented"]["peak_rss_mb"]
    stats: dict[str, dict[str, float]] = {}
    for config, wall in out.wall.items():
        over = summarize(_paired(wall, base_wall))
        cpu = summarize(_paired(out.cpu[config], base_cpu))
        stats[config] = {
            "us": summarize(wall).median,
            "over": over.median,
            "over_iqr": over.iqr,
            "x_base": summarize([x / y for x, y in zip(wall, base_wall, strict=True)]).median,
            "cpu_over": cpu.median,
            "cpu_iqr": cpu.iqr,
            "rss_above": out.finish[config]["peak_rss_mb"] - base_rss,
            "spans": out.finish[config]["spans_per_call"],
            "records": out.finish[config].get("records_per_call", float("nan")),
        }
    peers = [stats[c]["over"] for c in PEERS if c in stats]
    best = min(peers) if peers else float("nan")
    for s in stats.values():
        s["vs_best"] = s["over"] / best if best and best > 0 else float("nan")
    return stats


def workload_table(out: Outcome, stats: dict[str, dict[str, float]]) -> str:
    from _harness import render_table

    headers = [
        "configuration",
        "µs/call",
        "overhead µs/call (IQR)",
        "x uninstrumented",
        "CPU overhead µs/call (IQR)",
        "peak RSS above baseline MB",
        "spans/call",
        "histogram records/call",
        "overhead vs best peer",
    ]
    rows = []
    for config in CONFIGS:
        if config in stats:
            s = stats[config]
            base = config == "uninstrumented"
            rows.append(
                [
                    LABELS[config],
                    f"{s['us']:,.0f}",
                    "—" if base else f"{s['over']:+,.0f} ({s['over_iqr']:,.0f})",
                    "—" if base else f"{s['x_base']:.3f}",
                    "—" if base else f"{s['cpu_over']:+,.0f} ({s['cpu_iqr']:,.0f})",
                    "—" if base else f"{s['rss_above']:+.1f}",
                    f"{s['spans']:.0f}",
                    f"{s['records']:.0f}",
                    "—" if base else f"{s['vs_best']:.2f}",
                ]
            )
        elif config in out.notes:
            rows.append([LABELS[config], out.notes[config], "", "", "", "", "", "", ""])
    return render_table(headers, rows)


def summary_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Per workload: each peer's wall overhead, ragotel and the SDK floor of its telemetry against the best peer."""
    from _harness import render_table

    headers = [
        "workload",
        *[LABELS[c] for c in PEERS],
        "ragotel",
        "ragotel / best peer (wall)",
        "ragotel / best peer (CPU)",
        "SDK floor",
        "floor / best peer (wall)",
        "ragotel RSS above baseline MB",
    ]
    rows = []
    for name, stats in results.items():
        cells = [name, *[f"{stats[c]['over']:+,.0f}" if c in stats else "—" for c in PEERS]]
        best = {
            key: min((stats[c][key] for c in PEERS if c in stats), default=float("nan")) for key in ("over", "cpu_over")
        }

        def against_best(value: float, key: str, best: dict[str, float] = best) -> str:
            return f"{value / best[key]:.2f} (best {best[key]:+,.0f})" if best[key] > 0 else "n/a"

        rag, floor = stats.get("ragotel"), stats.get("floor")
        cells += (
            [f"{rag['over']:+,.0f}", against_best(rag["over"], "over"), against_best(rag["cpu_over"], "cpu_over")]
            if rag is not None
            else ["—", "—", "—"]
        )
        cells += [f"{floor['over']:+,.0f}", against_best(floor["over"], "over")] if floor is not None else ["—", "—"]
        cells.append(f"{rag['rss_above']:+.1f}" if rag is not None else "—")
        rows.append(cells)
    return render_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=DEFAULT_VENV, help="the peers' virtualenv (benchmarks/peers_env.sh)")
    parser.add_argument(
        "--workloads", default="W1,W1s,W2,W3,W4,W5", help="comma-separated subset of W1,W1s,W2,W3,W4,W5"
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--reps", type=int, default=60, help="timed cycles per workload (default 60)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed cycles first (default 5)")
    parser.add_argument("--calls", type=int, default=None, help="calls per repetition (default: per workload)")
    parser.add_argument("--quick", action="store_true", help="5 cycles of a few calls: a smoke run, not a measurement")
    parser.add_argument("--json", type=Path, help="also write the raw per-cycle figures here")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/ragotel-peers-logs"))
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "CONFIG"), help=argparse.SUPPRESS)
    parser.add_argument("--openai-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile", nargs=2, metavar=("WORKLOAD", "CONFIG"), help="cProfile one configuration")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.openai_url)
    if args.profile and args.openai_url:
        return profile(args.profile[0], args.profile[1], args.openai_url, args.calls or 500)

    python = str(Path(args.venv) / "bin" / "python")
    if not Path(python).exists():
        print(f"no peers virtualenv at {args.venv}: run `bash benchmarks/peers_env.sh` first", file=sys.stderr)
        return 2
    configs = [c for c in args.configs.split(",") if c]
    if "uninstrumented" not in configs:
        configs.insert(0, "uninstrumented")
    reps, warmup = (5, 1) if args.quick else (args.reps, args.warmup)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    versions = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m; print(' '.join(f'{n}=={m.version(n)}' for n in "
            "('openai','chromadb','langchain-core','opentelemetry-sdk','opentelemetry-instrumentation-openai',"
            "'openinference-instrumentation-openai','openinference-instrumentation-langchain','openlit',"
            "'opentelemetry-instrumentation-openai-v2','anthropic','opentelemetry-instrumentation-anthropic',"
            "'openinference-instrumentation-anthropic','cohere','opentelemetry-instrumentation-cohere')))",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"peers venv: {args.venv}\nversions: {versions}\ncycles: {reps} timed after {warmup} warm-up")

    server, url = start_fake_server("openai")
    anthropic_server, os.environ[ANTHROPIC_URL_ENV] = start_fake_server("anthropic")
    cohere_server = None
    if "W5" in args.workloads.split(",") or (args.profile and args.profile[0] == "W5"):
        cohere_server, os.environ[COHERE_URL_ENV] = start_fake_server("cohere")
    if args.profile:
        try:
            cmd = [python, str(HERE / "peers.py"), "--profile", *args.profile, "--openai-url", url]
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(HERE), os.environ.get("PYTHONPATH", ""), str(ROOT / "src")) if p
                ),
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "ANONYMIZED_TELEMETRY": "False",
            }
            return subprocess.run([*cmd, "--calls", str(args.calls or 500)], cwd=ROOT, env=env, check=False).returncode
        finally:
            for proc in (server, anthropic_server, cohere_server):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=10)
    results: dict[str, dict[str, dict[str, float]]] = {}
    raw: dict[str, Any] = {}
    exit_code = 0
    try:
        for name in [w for w in args.workloads.split(",") if w]:
            workload = WORKLOADS[name]
            calls = args.calls or (workload.quick_calls if args.quick else workload.calls)
            started = time.monotonic()
            out = run_workload(workload, configs, python, reps, warmup, calls, url, args.log_dir)
            stats = analyse(out)
            results[name] = stats
            raw[name] = {"wall": out.wall, "cpu": out.cpu, "finish": out.finish, "notes": out.notes, "calls": calls}
            print(f"\n## {name}: {workload.title}")
            print(f"{calls} calls per repetition, {time.monotonic() - started:.0f}s\n")
            print(workload_table(out, stats))
            print("\nspans of one call:")
            for config in CONFIGS:
                if config in out.finish and config != "uninstrumented":
                    print(f"  {LABELS[config]}:")
                    print("\n".join("    " + line for line in out.finish[config]["tree"]) or "    (none)")
            if "ragotel" in out.finish:
                fin = out.finish["ragotel"]
                if name == "W2":
                    linked = fin["shape"]["linked"]
                    print(f"ragotel W2 trace linked pipeline -> retrieval -> generation: {'yes' if linked else 'NO'}")
                    if not linked:
                        exit_code = 1
                rss = stats["ragotel"]["rss_above"]
                if rss > 10:
                    print(f"ragotel peak RSS above baseline {rss:.1f} MB exceeds the 10 MB goal")
    finally:
        for proc in (server, anthropic_server, cohere_server):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
    if results:
        print("\n## Wall overhead µs/call (median of paired cycles); ragotel against the best peer (goal: ≤ 0.5)\n")
        print(summary_table(results))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
