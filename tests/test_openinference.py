"""RAGOTEL_OPENINFERENCE: every stage's span carries its OpenInference kind and Phoenix's columns, only when asked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import chromadb
import openai
import pytest
from chromadb.config import Settings as ChromaSettings
from tests.servers.openai import FakeOpenAI

import ragotel
from ragotel import semconv as sc
from ragotel import telemetry
from ragotel.config import Settings
from ragotel.instrumentation.chromadb import ChromaInstrumentor
from ragotel.instrumentation.openai import OpenAIInstrumentor
from ragotel.testing import Capture, capture

_OI_NAMES = {v for k, v in vars(sc).items() if k.startswith(("OI_", "OPENINFERENCE_")) and isinstance(v, str)}
_KINDS = {
    "pipeline": "CHAIN",
    "retrieval": "RETRIEVER",
    "rerank": "RERANKER",
    "embedding": "EMBEDDING",
    "vector_db": "RETRIEVER",
    "generation": "LLM",
}


@contextmanager
def _captured(*, openinference: bool, capture_content: bool = False) -> Iterator[Capture]:
    with capture(openinference=openinference, capture_content=capture_content) as cap:
        instrumentors = [ChromaInstrumentor(), OpenAIInstrumentor()]
        for inst in instrumentors:
            inst.instrument()
        try:
            yield cap
        finally:
            for inst in instrumentors:
                inst.uninstrument()


def _rag(server: FakeOpenAI, question: str) -> str:
    """One request through every stage: custom pipeline/retrieval/rerank, OpenAI embeddings and chat, Chroma query."""
    client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
    col = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False)).create_collection(
        f"kb-{uuid.uuid4().hex[:8]}", embedding_function=None
    )
    col.add(ids=["d1", "d2"], embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], documents=["Paris is...", "Rome is..."])
    with ragotel.pipeline("answer", user_id="u-7", session_id="s-1"):
        with ragotel.retrieval("kb", top_k=2) as step:
            client.embeddings.create(model="text-embedding-3-small", input=question, dimensions=3)
            found = col.query(query_embeddings=[[1.0, 0.1, 0.0]], n_results=2)
            step.add_documents(list(zip(found["ids"][0], [1 - d for d in found["distances"][0]], strict=True)))
        with ragotel.rerank("cross-encoder-mini", top_n=1) as ranked:
            ranked.add_documents([("d1", 0.9)])
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content or ""


def _by_stage(cap: Capture) -> dict[str, dict[str, Any]]:
    return {str(s.attributes[sc.RAGOTEL_STAGE]): dict(s.attributes or {}) for s in cap.spans() if s.attributes}


def test_every_stage_gets_its_kind_and_phoenix_columns(fake_openai: FakeOpenAI) -> None:
    """With the setting on, each of the six stages' spans carries its OpenInference kind, models and token counts."""
    with _captured(openinference=True) as cap:
        _rag(fake_openai, "What is the capital of France?")
    kinds = [(s.attributes[sc.RAGOTEL_STAGE], s.attributes[sc.OPENINFERENCE_SPAN_KIND]) for s in cap.spans()]
    assert len(kinds) == 7  # the six stages and the Chroma add before the request
    assert set(kinds) == set(_KINDS.items())
    spans = _by_stage(cap)
    llm = spans["generation"]
    assert llm[sc.OI_LLM_MODEL_NAME] == llm[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert llm[sc.OI_LLM_PROVIDER] == "openai"
    prompt, completion = llm[sc.GEN_AI_USAGE_INPUT_TOKENS], llm[sc.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert (llm[sc.OI_LLM_TOKEN_COUNT_PROMPT], llm[sc.OI_LLM_TOKEN_COUNT_COMPLETION]) == (prompt, completion)
    assert llm[sc.OI_LLM_TOKEN_COUNT_TOTAL] == prompt + completion
    assert spans["embedding"][sc.OI_EMBEDDING_MODEL_NAME] == "text-embedding-3-small"
    assert spans["rerank"][sc.OI_RERANKER_MODEL_NAME] == "cross-encoder-mini"
    assert spans["pipeline"][sc.OI_USER_ID] == "u-7"
    leaked = {name for a in spans.values() for name in a if name.startswith(("input.", "output."))}
    assert leaked == set(), "content-derived names without content capture"


def test_nothing_is_added_when_off(fake_openai: FakeOpenAI) -> None:
    """With the setting off (the default), no span carries any OpenInference name."""
    with _captured(openinference=False) as cap:
        _rag(fake_openai, "What is the capital of France?")
    names = {name for s in cap.spans() for name in (s.attributes or {})}
    assert len(cap.spans()) >= 6
    assert names & _OI_NAMES == set()


def test_input_and_output_values_come_only_from_captured_content(fake_openai: FakeOpenAI) -> None:
    """With content capture on, input.value/output.value repeat the captured prompt and reply, typed as JSON."""
    with _captured(openinference=True, capture_content=True) as cap:
        _rag(fake_openai, "What is the capital of France?")
    llm = _by_stage(cap)["generation"]
    assert llm[sc.OI_INPUT_VALUE] == llm[sc.GEN_AI_INPUT_MESSAGES]
    assert "What is the capital of France?" in json.loads(llm[sc.OI_INPUT_VALUE])[0]["parts"][0]["content"]
    assert llm[sc.OI_OUTPUT_VALUE] == llm[sc.GEN_AI_OUTPUT_MESSAGES]
    assert llm[sc.OI_INPUT_MIME_TYPE] == llm[sc.OI_OUTPUT_MIME_TYPE] == "application/json"


def test_cut_content_is_plain_text() -> None:
    """A captured value cut at the length limit is no longer JSON: its mime type says text/plain."""
    with capture(openinference=True, capture_content=True, capture_max_length=10) as cap:
        with ragotel.generation("m") as op:
            op.capture(sc.GEN_AI_INPUT_MESSAGES, [{"role": "user", "content": "a long question indeed"}])
    attrs = dict(cap.span("chat m").attributes or {})
    assert attrs[sc.OI_INPUT_VALUE].endswith("…")
    assert attrs[sc.OI_INPUT_MIME_TYPE] == "text/plain"


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("true", True), ("0", False), ("bogus", False)])
def test_setting_is_read_from_the_environment(value: str | None, expected: bool) -> None:
    """RAGOTEL_OPENINFERENCE turns the mapping on; unset, false or unparsable leaves it off."""
    env = {} if value is None else {"RAGOTEL_OPENINFERENCE": value}
    assert Settings.from_env(env).openinference is expected


def test_instrument_reads_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """ragotel.instrument() with RAGOTEL_OPENINFERENCE=true makes its spans carry the kinds."""
    monkeypatch.setenv("RAGOTEL_OPENINFERENCE", "true")
    with capture() as cap:
        handle = ragotel.instrument(
            tracer_provider=cap.tracer_provider, meter_provider=cap.meter_provider, libraries=[], host_metrics=False
        )
        telemetry.pop(telemetry.current())  # report through instrument()'s Telemetry, not capture()'s
        try:
            with ragotel.pipeline("p"), ragotel.generation("m"):
                pass
        finally:
            handle.uninstrument()
    assert {s.name: (s.attributes or {})[sc.OPENINFERENCE_SPAN_KIND] for s in cap.spans()} == {
        "pipeline p": "CHAIN",
        "chat m": "LLM",
    }
