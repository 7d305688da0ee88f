"""The dialect table: other instrumentations' spans read as stages, components, models, tokens, documents, errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from tests.analyzer.analyzer_helpers import encoded_spans

from ragotel.analyzer.receive.dialects import read_span
from ragotel.analyzer.receive.extract import extract_traces
from ragotel.analyzer.receive.payload import decode
from ragotel.analyzer.receive.wire import any_value_text
from ragotel.analyzer.windows.records import SpanGroup


@dataclass(frozen=True, slots=True)
class Read:
    """A Reading with its labels decoded, for comparisons."""

    stage: str
    component: str
    model: str
    collection: str
    tokens: int | None
    documents: int | None
    error: bool
    user: str
    dialect: str


def _any(value: Any) -> bytes:
    if isinstance(value, bool):
        return bytes(AnyValue(bool_value=value).SerializeToString())
    if isinstance(value, int):
        return bytes(AnyValue(int_value=value).SerializeToString())
    if isinstance(value, float):
        return bytes(AnyValue(double_value=value).SerializeToString())
    return bytes(AnyValue(string_value=value).SerializeToString())


def read(attributes: Mapping[str, Any], *, root: bool = False) -> Read:
    """read_span over the attributes serialized as the receiver sees them (AnyValue bytes)."""
    encoded = {name: _any(value) for name, value in attributes.items()}
    r = read_span(encoded.get, root=root)
    return Read(
        r.stage,
        any_value_text(r.component) or "",
        any_value_text(r.model) or "",
        any_value_text(r.collection) or "",
        r.tokens,
        r.documents,
        r.error,
        any_value_text(r.user) or "",
        r.dialect,
    )


def groups(body: bytes) -> list[SpanGroup]:
    decoded = decode("traces", body, "application/x-protobuf")  # type: ignore[arg-type]
    return extract_traces(decoded.message).groups


def one(body: bytes) -> SpanGroup:
    found = groups(body)
    assert len(found) == 1, found
    return found[0]


# Attribute sets as the peers emit them (recorded from OpenLIT 1.45.0, OpenLLMetry 0.62.4, OpenInference and
# contrib openai-v2 2.4b0 against the loopback OpenAI server; content attributes left out).
OPENLIT_CHAT = {
    "telemetry.sdk.name": "openlit",
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 2,
    "gen_ai.usage.output_tokens": 10,
    "gen_ai.client.token.usage": 12,
}
OPENLIT_QUERY = {
    "gen_ai.operation.name": "vectordb",
    "db.system.name": "chroma",
    "db.operation.name": "GET",
    "db.collection.name": "docs",
    "db.vector.query.top_k": 2,
    "db.response.returned_rows": 0,
}
OPENLLMETRY_QUERY = {"db.system": "chroma", "db.operation": "query", "db.chroma.query.n_results": 2}
OPENLLMETRY_WORKFLOW = {
    "traceloop.span.kind": "workflow",
    "traceloop.entity.name": "RunnableSequence",
    "gen_ai.provider.name": "langchain",
    "gen_ai.operation.name": "invoke_agent",
}
OPENLLMETRY_TASK = {
    "traceloop.span.kind": "task",
    "gen_ai.provider.name": "langchain",
    "gen_ai.operation.name": "execute_task",
}
OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.token_count.prompt": 2,
    "llm.token_count.completion": 10,
    "llm.token_count.total": 12,
}
OPENINFERENCE_EMBEDDING = {
    "openinference.span.kind": "EMBEDDING",
    "llm.system": "openai",
    "embedding.model_name": "text-embedding-3-small",
    "llm.token_count.prompt": 2,
}


def test_semconv_chat_as_openlit_and_openai_v2_write_it() -> None:
    """A GenAI chat span is a generation named by its provider, response model and input + output tokens."""
    assert read(OPENLIT_CHAT) == Read(
        stage="generation",
        component="openai",
        model="gpt-4o-mini-2024-07-18",
        collection="",
        tokens=12,
        documents=None,
        error=False,
        user="",
        dialect="otel",
    )


def test_legacy_semconv_names() -> None:
    """Previous semconv names still read: gen_ai.system, db.system, gen_ai.usage.prompt/completion_tokens."""
    chat = read(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 7,
            "gen_ai.usage.completion_tokens": 5,
        }
    )
    assert (chat.stage, chat.component, chat.model, chat.tokens) == ("generation", "openai", "gpt-4o", 12)
    query = read(OPENLLMETRY_QUERY)
    assert (query.stage, query.component, query.dialect) == ("vector_db", "chroma", "otel")


def test_openinference_kinds() -> None:
    """OpenInference span kinds map to stages, with llm.* model, provider and token counts."""
    llm = read(OPENINFERENCE_LLM)
    assert (llm.stage, llm.component, llm.model, llm.tokens, llm.dialect) == (
        "generation",
        "openai",
        "gpt-4o-mini-2024-07-18",
        12,
        "openinference",
    )
    embedding = read(OPENINFERENCE_EMBEDDING)
    assert (embedding.stage, embedding.model, embedding.tokens) == ("embedding", "text-embedding-3-small", 2)
    assert read({"openinference.span.kind": "RERANKER", "reranker.model_name": "bge"}).stage == "rerank"
    assert read({"openinference.span.kind": "TOOL"}).stage == "other"


def test_openinference_retrieval_documents() -> None:
    """A RETRIEVER span with retrieval.documents returned some; one without any returned none (empty)."""
    found = read({"openinference.span.kind": "RETRIEVER", "retrieval.documents.0.document.score": 0.8})
    assert (found.stage, found.documents) == ("retrieval", 1)
    assert read({"openinference.span.kind": "RETRIEVER"}).documents == 0


def test_openllmetry_request_type_and_span_kind() -> None:
    """llm.request.type names generation/embedding/rerank; workflow is the pipeline, task is other."""
    assert read({"llm.request.type": "embedding", "gen_ai.system": "OpenAI"}).stage == "embedding"
    assert read({"llm.request.type": "rerank"}).stage == "rerank"
    workflow = read(OPENLLMETRY_WORKFLOW)
    assert (workflow.stage, workflow.component) == ("pipeline", "langchain")
    assert read(OPENLLMETRY_WORKFLOW, root=False).stage == "pipeline", "a workflow under an HTTP server span"
    assert read(OPENLLMETRY_TASK, root=True).stage == "other"
    assert read({"vector_db.vendor": "Qdrant"}).stage == "vector_db"


def test_wrappers_are_the_pipeline_only_at_the_root() -> None:
    """CHAIN/AGENT and invoke_agent/invoke_workflow spans are the pipeline at a trace's root, other below it."""
    for attributes in ({"openinference.span.kind": "CHAIN"}, {"gen_ai.operation.name": "invoke_workflow"}):
        assert read(attributes, root=True).stage == "pipeline"
        assert read(attributes, root=False).stage == "other"


def test_conflicting_dialects_follow_the_documented_precedence() -> None:
    """On conflict the OTel names beat OpenInference, which beats OpenLLMetry, field by field."""
    mixed = read(
        {
            "gen_ai.operation.name": "embeddings",
            "openinference.span.kind": "LLM",
            "llm.request.type": "chat",
            "llm.model_name": "oi-model",
            "gen_ai.request.model": "semconv-model",
            "llm.token_count.prompt": 100,
            "gen_ai.usage.input_tokens": 3,
        }
    )
    assert (mixed.stage, mixed.model, mixed.tokens, mixed.dialect) == ("embedding", "semconv-model", 3, "otel")
    peers = read({"openinference.span.kind": "RERANKER", "llm.request.type": "chat"})
    assert (peers.stage, peers.dialect) == ("rerank", "openinference")
    # A value the first dialect does not classify leaves the decision to the next one.
    task = read({"gen_ai.operation.name": "execute_tool", "openinference.span.kind": "LLM"})
    assert task.stage == "generation"


def test_odd_values_never_raise() -> None:
    """Counts that are not numbers count as absent; unknown values leave the span unclassified."""
    odd = read({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": "many", "db.response.returned_rows": ""})
    assert (odd.stage, odd.tokens, odd.documents) == ("generation", None, None)
    assert read({"gen_ai.operation.name": "summon"}).stage == "other"


def test_ragotel_stage_wins_over_every_dialect() -> None:
    """A span with ragotel.stage keeps ragotel's stage and component, whatever peer attributes it also carries."""
    group = one(
        encoded_spans(
            "svc",
            [
                (
                    "chat",
                    {
                        "ragotel.stage": "generation",
                        "ragotel.component": "langchain",
                        "openinference.span.kind": "RETRIEVER",
                        "gen_ai.operation.name": "embeddings",
                    },
                    0.1,
                )
            ],
        )
    )
    assert (group.stage, group.component) == ("generation", "langchain")


def test_unknown_dialect_counts_as_other_with_its_service() -> None:
    """A span no dialect classifies is counted under stage other, with its service and its error."""
    group = one(encoded_spans("mystery", [("GET /x", {"http.request.method": "GET"}, 0.2)], error_indexes=[0]))
    assert (group.service, group.stage, group.component, group.errors) == ("mystery", "other", "", 1)


def test_extracted_groups_carry_tokens_errors_and_empty_retrievals() -> None:
    """Through the receiver's extraction: token usage, error.type without ERROR status, and empty retrievals count."""
    body = encoded_spans(
        "peer",
        [
            ("chat gpt-4o-mini", OPENLIT_CHAT, 0.1),
            ("chat gpt-4o-mini", {**OPENLIT_CHAT, "error.type": "RateLimitError"}, 0.1),
            ("VectorStoreRetriever", {"openinference.span.kind": "RETRIEVER"}, 0.05),
            ("GET docs", OPENLIT_QUERY, 0.01),
        ],
    )
    by_stage = {g.stage: g for g in groups(body)}
    chat = by_stage["generation"]
    assert (chat.component, chat.model, len(chat.durations), chat.errors) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        2,
        1,
    )
    assert (chat.tokens, chat.token_calls) == (24, 2)
    assert by_stage["retrieval"].empty_retrievals == 1
    query = by_stage["vector_db"]
    assert (query.component, query.collection, query.empty_retrievals) == ("chroma", "docs", 0)


def test_root_and_nested_wrappers_through_extraction() -> None:
    """Real parent/child spans: the root CHAIN is the pipeline, the nested CHAIN other, the LLM a generation."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "oi-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("RunnableSequence", attributes={"openinference.span.kind": "CHAIN"}):
        with tracer.start_as_current_span("RunnableLambda", attributes={"openinference.span.kind": "CHAIN"}):
            with tracer.start_as_current_span("ChatCompletion", attributes=OPENINFERENCE_LLM) as span:
                span.set_status(Status(StatusCode.ERROR))
    provider.shutdown()
    assert trace.get_current_span() is trace.INVALID_SPAN
    found = {
        (g.stage, g.component): (len(g.durations), g.errors)
        for g in groups(bytes(encode_spans(memory.get_finished_spans()).SerializeToString()))
    }
    assert found == {("pipeline", ""): (1, 0), ("other", ""): (1, 0), ("generation", "openai"): (1, 1)}


def test_every_dialect_attribute_is_in_the_docs_table() -> None:
    """docs/analyzer.md names every attribute the dialect table reads, so the table and the docs stay in step."""
    from pathlib import Path

    from ragotel.analyzer.receive.dialects import DIALECTS

    doc = (Path(__file__).parents[2] / "docs" / "analyzer.md").read_text()
    names = set()
    for dialect in DIALECTS:
        names.update(name for name, _ in dialect.stage)
        for field in ("component", "model", "collection", "input_tokens", "output_tokens", "documents", "user"):
            names.update(getattr(dialect, field))
    documented = {name for name in names if f"`{name}`" in doc}
    keys = {key.rsplit(".document.", 1)[0] for dialect in DIALECTS for key in dialect.document_keys}
    assert names - documented == set()
    assert all(f"`{key}.document." in doc for key in keys)
