"""The example RAG app: the real chain over the shipped docs with Chroma and the hash embedding; API; errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.langchain_app import (
    FAULTS,
    ApiServer,
    AppConfig,
    FaultError,
    Faults,
    LLMFaultError,
    QuestionError,
    RagApp,
    StartupError,
    StoreUnavailableError,
)
from examples.langchain_app.cli import main as cli_main
from examples.langchain_app.corpus import default_corpus_dir
from examples.langchain_app.embeddings import HashEmbeddings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import StatusCode
from tests.servers import HttpReceiver

import ragotel
from ragotel.testing import Capture, capture

QUESTION = "How does ragotel end the span of a streamed response that is abandoned?"
NO_OPENAI: dict[str, str] = {}
# What the app uses; the other installed libraries (torch via sentence-transformers) would only slow the import.
APP_LIBRARIES = [
    "langchain",
    "chromadb",
    "openai",
]  # an empty environment: the local extractive answerer, whatever the host has set


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[RagApp, Capture]]:
    """The app with its default instrumentation (only ragotel.instrument()), recording into memory."""
    with capture() as cap:
        handle = ragotel.instrument(
            tracer_provider=cap.tracer_provider,
            meter_provider=cap.meter_provider,
            libraries=APP_LIBRARIES,
            host_metrics=False,
        )
        try:
            app = RagApp(AppConfig(store_dir=tmp_path / "store", embedding="hash"), env=NO_OPENAI)
            try:
                cap.clear()
                yield app, cap
            finally:
                app.close()
        finally:
            handle.uninstrument()


def _attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def _by_stage(cap: Capture, stage: str) -> list[Any]:
    return [s for s in cap.spans() if _attrs(s).get("ragotel.stage") == stage]


def test_chain_over_shipped_docs_exports_pipeline_retrieval_vector_db_generation(
    traced: tuple[RagApp, Capture],
) -> None:
    """One question through the real chain yields one trace: pipeline -> retrieval -> vector_db, and generation."""
    app, cap = traced
    answer = app.ask(QUESTION)

    assert answer.answer
    assert answer.sources
    assert {s["source"] for s in answer.sources} <= {p.name for p in default_corpus_dir().glob("*.md")}
    (pipeline,) = _by_stage(cap, "pipeline")
    (retrieval,) = _by_stage(cap, "retrieval")
    (vector_db,) = _by_stage(cap, "vector_db")
    (generation,) = _by_stage(cap, "generation")
    (embedding,) = _by_stage(cap, "embedding")
    trace_id = pipeline.context.trace_id
    assert answer.trace_id == format(trace_id, "032x")
    assert {s.context.trace_id for s in cap.spans()} == {trace_id}
    assert pipeline.parent is None
    assert retrieval.parent.span_id == pipeline.context.span_id
    assert generation.parent.span_id == pipeline.context.span_id
    assert vector_db.parent.span_id == retrieval.context.span_id
    assert embedding.parent.span_id == retrieval.context.span_id

    assert _attrs(pipeline)["ragotel.pipeline.name"] == "rag_pipeline"
    r = _attrs(retrieval)
    assert r["ragotel.component"] == "langchain"
    assert r["gen_ai.operation.name"] == "retrieval"
    assert r["gen_ai.data_source.id"] == app.collection_name
    assert r["gen_ai.retrieval.top_k"] == 4
    assert r["ragotel.retrieval.document_count"] == len(answer.sources) == 4
    assert r["ragotel.retrieval.top_score"] == pytest.approx(max(s["score"] for s in answer.sources), abs=1e-3)
    v = _attrs(vector_db)
    assert (v["db.system.name"], v["db.operation.name"], v["db.collection.name"]) == (
        "chroma",
        "query",
        app.collection_name,
    )
    assert vector_db.name == f"query {app.collection_name}"
    g = _attrs(generation)
    assert generation.name == "chat ragotel-extractive-v1"
    assert g["gen_ai.operation.name"] == "chat"
    assert g["gen_ai.request.model"] == g["gen_ai.response.model"] == "ragotel-extractive-v1"
    assert isinstance(g["gen_ai.usage.input_tokens"], int)
    assert g["gen_ai.usage.input_tokens"] > 0
    assert isinstance(g["gen_ai.usage.output_tokens"], int)
    assert g["gen_ai.usage.output_tokens"] > 0
    assert _attrs(embedding)["gen_ai.request.model"] == HashEmbeddings.model_name
    stages = {p.attributes["ragotel.stage"] for p in cap.metrics("ragotel.stage.duration")}
    assert stages == {"pipeline", "retrieval"}  # the others: in their semconv duration histograms
    ops = {p.attributes["gen_ai.operation.name"] for p in cap.metrics("gen_ai.client.operation.duration")}
    assert {"chat", "embeddings"} <= ops
    assert cap.metrics("db.client.operation.duration")


def test_content_is_not_captured_by_default(traced: tuple[RagApp, Capture]) -> None:
    """With content capture off, neither the question, the documents nor the answer appear in any span attribute."""
    app, cap = traced
    answer = app.ask(QUESTION)
    values = json.dumps([_attrs(s) for s in cap.spans()], default=str)
    assert "abandoned" not in values
    assert answer.answer[:40] not in values
    assert "Context:" not in values


def test_injected_faults_fail_the_right_stage(traced: tuple[RagApp, Capture]) -> None:
    """store-unavailable fails the retrieval span, llm-errors the generation span; both fail the pipeline."""
    app, cap = traced
    app.faults.set("store-unavailable")
    with pytest.raises(StoreUnavailableError):
        app.ask(QUESTION)
    (retrieval,) = _by_stage(cap, "retrieval")
    assert retrieval.status.status_code is StatusCode.ERROR
    assert _attrs(retrieval)["error.type"].endswith("StoreUnavailableError")
    assert _by_stage(cap, "generation") == []
    cap.clear()
    app.faults.clear()
    app.faults.set("llm-errors", 1.0)
    with pytest.raises(LLMFaultError):
        app.ask(QUESTION)
    (generation,) = _by_stage(cap, "generation")
    (pipeline,) = _by_stage(cap, "pipeline")
    assert generation.status.status_code is StatusCode.ERROR
    assert pipeline.status.status_code is StatusCode.ERROR
    assert _attrs(pipeline)["error.type"].endswith("LLMFaultError")


def test_slow_retrieval_fault_delays_only_retrieval(traced: tuple[RagApp, Capture]) -> None:
    """slow-retrieval adds its delay inside the retrieval span and nowhere else."""
    app, cap = traced
    app.faults.set("slow-retrieval", 0.3)
    app.ask(QUESTION)
    (retrieval,) = _by_stage(cap, "retrieval")
    (generation,) = _by_stage(cap, "generation")
    assert (retrieval.end_time - retrieval.start_time) / 1e9 >= 0.3
    assert (generation.end_time - generation.start_time) / 1e9 < 0.3


def test_memory_growth_fault_leaks_and_frees() -> None:
    """memory-growth holds more memory the longer it is on, and releases it when switched off."""
    faults = Faults()
    faults.set("memory-growth", 50)
    try:
        time.sleep(0.5)
        assert faults.leaked_bytes >= 10 * 1024 * 1024
    finally:
        faults.set("memory-growth", 0)
    assert faults.leaked_bytes == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("slow-network", 1, "unknown fault 'slow-network'"),
        ("slow-retrieval", "fast", "expected a number"),
        ("slow-retrieval", -1, "expected a number >= 0"),
        ("llm-errors", 2, "expected a fraction from 0 to 1"),
    ],
)
def test_bad_fault_switches_are_refused_precisely(name: str, value: Any, message: str) -> None:
    """A bad fault name or value raises FaultError naming the switch and what was expected."""
    with pytest.raises(FaultError, match=message):
        Faults().set(name, value)


def test_faults_read_from_environment() -> None:
    """RAGAPP_FAULT_* variables switch faults on; a bad value names the variable."""
    faults = Faults()
    faults.load_env({"RAGAPP_FAULT_SLOW_RETRIEVAL": "0.25", "RAGAPP_FAULT_STORE_UNAVAILABLE": "on"})
    assert faults.snapshot()["slow-retrieval"] == 0.25
    assert faults.snapshot()["store-unavailable"] == FAULTS["store-unavailable"][1]
    with pytest.raises(FaultError, match="RAGAPP_FAULT_LLM_ERRORS"):
        Faults().load_env({"RAGAPP_FAULT_LLM_ERRORS": "lots"})


def test_store_persists_and_reindexes_when_corpus_changes(tmp_path: Path) -> None:
    """A second start over the same store reuses the index; a changed corpus is re-indexed."""
    corpus = tmp_path / "docs"
    shutil.copytree(default_corpus_dir(), corpus)
    config = AppConfig(corpus_dir=corpus, store_dir=tmp_path / "store", embedding="hash")
    first = RagApp(config, env=NO_OPENAI)
    assert first.indexed == len(first.corpus.chunks) > 0
    first.close()
    second = RagApp(config, env=NO_OPENAI)
    assert second.indexed == 0
    assert second.store._collection.count() == len(second.corpus.chunks)
    second.close()
    (corpus / "extra.md").write_text("# Extra\n\nThe extra page mentions quokkas, which nothing else does.\n")
    third = RagApp(config, env=NO_OPENAI)
    assert third.indexed == len(third.corpus.chunks) == len(first.corpus.chunks) + 1
    assert third.ask("Which page mentions quokkas?").sources[0]["source"] == "extra.md"
    third.close()


def test_missing_corpus_and_unwritable_store_fail_at_start(tmp_path: Path) -> None:
    """A missing or empty corpus and a store path that cannot be a directory fail with a message naming the path."""
    with pytest.raises(StartupError, match=r"corpus directory .*nowhere does not exist"):
        RagApp(AppConfig(corpus_dir=tmp_path / "nowhere", store_dir=tmp_path / "s", embedding="hash"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StartupError, match=r"holds no \*\.md file"):
        RagApp(AppConfig(corpus_dir=tmp_path / "empty", store_dir=tmp_path / "s", embedding="hash"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StartupError, match=r"vector store path .*a-file/store is not a writable directory"):
        RagApp(AppConfig(store_dir=blocker / "store", embedding="hash"))


def test_cli_start_up_error_exits_2_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI turns a start-up error into one line on stderr and exit status 2."""
    code = cli_main(["ask", "anything", "--no-instrument", "--corpus", str(tmp_path / "missing")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: cannot start: corpus directory" in err
    assert "missing" in err


def test_cli_answers_one_question_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ask --json` prints what the API returns: answer, sources and trace_id."""
    code = cli_main(
        ["ask", QUESTION, "--json", "--no-instrument", "--store", str(tmp_path / "s"), "--embedding", "hash"]
    )
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert set(body) == {"answer", "sources", "trace_id"}
    assert len(body["sources"]) == 4


def test_question_validation() -> None:
    """Empty, blank, oversized and non-string questions are refused before the chain runs."""
    app = RagApp.__new__(RagApp)
    app.config = AppConfig(max_question_chars=10)
    with pytest.raises(QuestionError, match="empty"):
        app.validate("  ")
    with pytest.raises(QuestionError, match="11 characters long; expected at most 10"):
        app.validate("x" * 11)
    with pytest.raises(QuestionError, match="must be a string, got int"):
        app.validate(42)
    assert app.validate("  why?  ") == "why?"


def _request(url: str, method: str = "GET", body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_api_answers_validates_and_reports_health(tmp_path: Path) -> None:
    """POST /ask answers with sources and trace id, bad input gets 400 with a message, /healthz follows the probes."""
    app = RagApp(AppConfig(store_dir=tmp_path / "store", embedding="hash"), env=NO_OPENAI)
    server = ApiServer(app, "127.0.0.1", 0).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = _request(f"{server.url}/ask", "POST", {"question": QUESTION})
        assert status == 200
        assert set(body) == {"answer", "sources", "trace_id"}
        assert body["sources"][0]["source"].endswith(".md")

        for payload, message in [
            ({"question": ""}, "'question' is empty"),
            ({"question": "x" * 2001}, "expected at most 2000"),
            ({"question": 7}, "must be a string"),
            ({"q": "hi"}, 'expected a JSON object with a "question" string'),
        ]:
            status, body = _request(f"{server.url}/ask", "POST", payload)
            assert (status, message in body["error"]) == (400, True), body
        status, body = _request(f"{server.url}/ask", "POST", raw=b"{not json")
        assert status == 400
        assert "not valid JSON" in body["error"]
        status, body = _request(f"{server.url}/faults", "POST", {"slow-retrieval": -2})
        assert status == 400
        assert "slow-retrieval" in body["error"]
        status, body = _request(f"{server.url}/nope")
        assert status == 404

        names = app.register_health(interval=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, body = _request(f"{server.url}/healthz")
            if all(body["dependencies"].get(n, {}).get("state") == "up" for n in names):
                break
            time.sleep(0.1)
        assert status == 200, body
        assert {body["dependencies"][n]["kind"] for n in names} == {"vector_db", "llm"}

        status, body = _request(f"{server.url}/faults", "POST", {"store-unavailable": True})
        assert (status, body["store-unavailable"]) == (200, 1.0)
        status, body = _request(f"{server.url}/ask", "POST", {"question": QUESTION})
        assert status == 503
        assert "vector store unavailable" in body["error"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, body = _request(f"{server.url}/healthz")
            if status == 503:
                break
            time.sleep(0.1)
        assert status == 503
        store = next(n for n in names if n.startswith("chroma:"))
        assert body["dependencies"][store]["state"] == "down"
        assert "StoreUnavailableError" in body["dependencies"][store]["reason"]
    finally:
        server.stop()
        app.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "ragotel-example-rag"),
        ({"OTEL_SERVICE_NAME": "from-env"}, "from-env"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,service.name=from-resource"}, "from-resource"),
    ],
    ids=["default", "otel-service-name", "resource-attributes"],
)
def test_cli_reports_its_service_name_over_otlp(
    tmp_path: Path, http_receiver: HttpReceiver, env: dict[str, str], expected: str
) -> None:
    """With only OTEL_EXPORTER_OTLP_ENDPOINT set the CLI exports as `ragotel-example-rag`, never unknown_service."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RAGOTEL_", "RAGAPP_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "examples.langchain_app", "ask", QUESTION, "--embedding", "hash"],
        env={
            **clean,
            **env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.url,
            "RAGOTEL_HOST_METRICS": "false",
            "RAGAPP_STORE_DIR": str(tmp_path / "store"),
        },
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    names: set[str] = set()
    for request in http_receiver.requests:
        if request.path == "/v1/traces":
            message = ExportTraceServiceRequest()
            message.ParseFromString(request.body)
            for spans in message.resource_spans:
                names |= {a.value.string_value for a in spans.resource.attributes if a.key == "service.name"}
    assert names == {expected}
