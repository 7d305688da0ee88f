"""Dialects: how a span without ``ragotel.stage`` maps to a stage, component, model, tokens and documents (pure).

Other instrumentations describe the same RAG steps in their own words: the OTel GenAI and database semantic
conventions (current names and the previous ones libraries still emit), OpenInference (Arize Phoenix),
OpenLLMetry (Traceloop) and OpenLIT. Each is one row of :data:`DIALECTS`, a table of attribute names; the one
function :func:`read_span` walks the rows in order. Precedence, per field: ragotel's own attributes, then the
OTel conventions, OpenInference, OpenLLMetry, OpenLIT; the first row that gives a value wins. The stage comes
from the first row whose attribute values name one, so a span carrying several dialects is classified by the
most standard one that classifies it.

Wrapper spans (OpenInference CHAIN/AGENT, GenAI ``invoke_agent``/``invoke_workflow``) are the ``pipeline`` of a
request only at the root of a trace; nested they are ``other`` (one pipeline span per request, so per-stage
counts and the leaf-first attribution stay right) unless a later row names a stage. OpenLLMetry's ``workflow``
is its top-level span by definition and is always ``pipeline`` (also under an HTTP server span); its ``task``
and ``tool`` spans are ``other``. Spans no row classifies
(HTTP client spans under an LLM call, SQL queries, tools) are ``other``: they never count as a generation.

The table mirrors ``docs/analyzer.md`` ("Other instrumentations"); keep both in step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from ragotel.analyzer.receive.wire import any_value_text
from ragotel.semconv import (
    DB_COLLECTION_NAME,
    DB_SYSTEM_NAME,
    ENDUSER_ID,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    RAGOTEL_COMPONENT,
    STAGE_EMBEDDING,
    STAGE_GENERATION,
    STAGE_PIPELINE,
    STAGE_RERANK,
    STAGE_RETRIEVAL,
    STAGE_VECTOR_DB,
)

__all__ = ["DIALECTS", "OTHER_STAGE", "Dialect", "Reading", "count_value", "read_span"]

OTHER_STAGE: Final = "other"
WRAPPER: Final = "~wrapper"
"""A stage value meaning: ``pipeline`` at the root of a trace, ``other`` below it."""
ERROR_TYPE: Final = "error.type"
_MISSING: Final = object()

# db.system.name values (and the legacy db.system / vendor names) of vector databases; any other database is `other`.
_VECTOR_DBS: Final = dict.fromkeys(
    (
        "chroma",
        "chromadb",
        "qdrant",
        "pinecone",
        "weaviate",
        "milvus",
        "lancedb",
        "marqo",
        "pgvector",
        "faiss",
        "vespa",
        "astra",
        "mongodb_atlas_vector_search",
    ),
    STAGE_VECTOR_DB,
)
_GENAI_OPERATIONS: Final = {
    "chat": STAGE_GENERATION,
    "text_completion": STAGE_GENERATION,
    "generate_content": STAGE_GENERATION,
    "embeddings": STAGE_EMBEDDING,
    "retrieval": STAGE_RETRIEVAL,
    "invoke_agent": WRAPPER,
    "invoke_workflow": WRAPPER,
}


@dataclass(frozen=True, slots=True)
class Dialect:
    """One instrumentation's attribute names. Every field lists names in the order they are tried.

    ``stage``: (attribute, lower-cased value -> stage or :data:`WRAPPER`); a value not in the mapping does not
    classify. ``documents``: attributes holding a count of documents returned; ``document_keys``: attributes whose
    presence means at least one document came back (a retrieval span of this dialect without any of them
    returned none).
    """

    name: str
    stage: tuple[tuple[str, Mapping[str, str]], ...] = ()
    component: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    collection: tuple[str, ...] = ()
    input_tokens: tuple[str, ...] = ()
    output_tokens: tuple[str, ...] = ()
    documents: tuple[str, ...] = ()
    document_keys: tuple[str, ...] = ()
    user: tuple[str, ...] = ()


DIALECTS: Final[tuple[Dialect, ...]] = (
    # ragotel.stage itself is read on the fast path before this table; a lone ragotel.component still names
    # the component.
    Dialect("ragotel", component=(RAGOTEL_COMPONENT,)),
    Dialect(
        "otel",
        stage=(
            (GEN_AI_OPERATION_NAME, _GENAI_OPERATIONS),
            (DB_SYSTEM_NAME, _VECTOR_DBS),
            ("db.system", _VECTOR_DBS),  # before semconv 1.30
        ),
        component=(GEN_AI_PROVIDER_NAME, DB_SYSTEM_NAME, "gen_ai.system", "db.system"),
        model=(GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL),
        collection=(DB_COLLECTION_NAME,),
        input_tokens=(GEN_AI_USAGE_INPUT_TOKENS, "gen_ai.usage.prompt_tokens"),  # the latter before semconv 1.27
        output_tokens=(GEN_AI_USAGE_OUTPUT_TOKENS, "gen_ai.usage.completion_tokens"),
        documents=("db.response.returned_rows",),
        user=(ENDUSER_ID,),
    ),
    Dialect(
        "openinference",
        stage=(
            (
                "openinference.span.kind",
                {
                    "llm": STAGE_GENERATION,
                    "embedding": STAGE_EMBEDDING,
                    "retriever": STAGE_RETRIEVAL,
                    "reranker": STAGE_RERANK,
                    "chain": WRAPPER,
                    "agent": WRAPPER,
                },
            ),
        ),
        component=("llm.provider", "llm.system"),
        model=("llm.model_name", "embedding.model_name", "reranker.model_name"),
        input_tokens=("llm.token_count.prompt",),
        output_tokens=("llm.token_count.completion",),
        document_keys=(
            "retrieval.documents.0.document.id",
            "retrieval.documents.0.document.content",
            "retrieval.documents.0.document.score",
            "reranker.output_documents.0.document.id",
            "reranker.output_documents.0.document.content",
            "reranker.output_documents.0.document.score",
        ),
        user=("user.id",),
    ),
    Dialect(
        "openllmetry",
        stage=(
            (
                "llm.request.type",
                {
                    "chat": STAGE_GENERATION,
                    "completion": STAGE_GENERATION,
                    "embedding": STAGE_EMBEDDING,
                    "rerank": STAGE_RERANK,
                },
            ),
            ("traceloop.span.kind", {"workflow": STAGE_PIPELINE, "agent": WRAPPER}),
            ("vector_db.vendor", _VECTOR_DBS),
        ),
        component=("vector_db.vendor",),
        input_tokens=("llm.usage.prompt_tokens",),
        output_tokens=("llm.usage.completion_tokens",),
    ),
    # OpenLIT writes the OTel names above (its returned-row count is db.response.returned_rows; its db.n_results
    # is the count asked for, not returned); only its vector-DB operation name is its own.
    Dialect("openlit", stage=((GEN_AI_OPERATION_NAME, {"vectordb": STAGE_VECTOR_DB}),)),
)


class Reading(NamedTuple):
    """What a span says in its dialect. Labels stay serialized ``AnyValue`` bytes (None when absent), as the
    receiver keys its groups; ``tokens`` is input + output (None without usage), read on generation and embedding
    spans; ``documents`` the documents returned on retrieval and rerank spans (None when the dialect does not
    tell); ``dialect`` the row that gave the stage ("" none).

    A NamedTuple, not a frozen dataclass: one is built per span of another instrumentation on the ingest hot path.
    """

    stage: str
    component: bytes | None
    model: bytes | None
    collection: bytes | None
    tokens: int | None
    documents: int | None
    error: bool
    user: bytes | None
    dialect: str


def _flat(field: str) -> tuple[str, ...]:
    names: list[str] = []
    for dialect in DIALECTS:
        names.extend(name for name in getattr(dialect, field) if name not in names)
    return tuple(names)


# The table compiled once, in precedence order: what read_span walks.
_STAGES: Final = tuple((name, values, dialect.name) for dialect in DIALECTS for name, values in dialect.stage)
_COMPONENT: Final = _flat("component")
# A span no row classifies (HTTP, framework, tool, SQL spans: the most common kind) is read for its component from
# these only, in the same order: four lookups instead of every component name.
_COMPONENT_UNCLASSIFIED: Final = tuple(
    name for name in _COMPONENT if name in (RAGOTEL_COMPONENT, GEN_AI_PROVIDER_NAME, DB_SYSTEM_NAME, "db.system")
)
_MODEL: Final = _flat("model")
_COLLECTION: Final = _flat("collection")
_INPUT_TOKENS: Final = _flat("input_tokens")
_OUTPUT_TOKENS: Final = _flat("output_tokens")
_DOCUMENTS: Final = _flat("documents")
_USER: Final = _flat("user")
_DOCUMENT_KEYS: Final = {dialect.name: dialect.document_keys for dialect in DIALECTS if dialect.document_keys}
_USAGE_STAGES: Final = frozenset({STAGE_GENERATION, STAGE_EMBEDDING})
_DOCUMENT_STAGES: Final = frozenset({STAGE_RETRIEVAL, STAGE_RERANK})
_MODEL_STAGES: Final = frozenset({STAGE_GENERATION, STAGE_EMBEDDING, STAGE_RERANK})

# Memos keyed by raw AnyValue bytes: the same few hundred values recur in every request. Bounded by clearing.
_MEMO_MAX: Final = 65_536
_CLASSES: Final[tuple[dict[bytes, str | None], ...]] = tuple({} for _ in _STAGES)  # per stage attribute
_COUNTS: dict[bytes, int | None] = {}
_LOWER: dict[bytes, bytes] = {}


def count_value(raw: bytes | None) -> int | None:
    """A count attribute (int, or a numeric string/double) as a non-negative int; None when absent or not a number."""
    if raw is None:
        return None
    value = _COUNTS.get(raw, -1)
    if value == -1:
        try:
            value = max(0, int(float(any_value_text(raw) or "")))
        except (ValueError, OverflowError):
            value = None
        if len(_COUNTS) >= _MEMO_MAX:
            _COUNTS.clear()
        _COUNTS[raw] = value
    return value


def _lowered(raw: bytes) -> bytes:
    """The label lower-cased (``Chroma`` -> ``chroma``), still serialized."""
    found = _LOWER.get(raw)
    if found is None:
        text = any_value_text(raw)
        found = AnyValue(string_value=text.lower()).SerializeToString() if text and not text.islower() else raw
        if len(_LOWER) >= _MEMO_MAX:
            _LOWER.clear()
        _LOWER[raw] = found
    return found


def _first(get: Callable[[str], bytes | None], names: tuple[str, ...]) -> bytes | None:
    for name in names:
        raw = get(name)
        if raw:
            return raw
    return None


def _stage(get: Callable[[str], bytes | None], root: bool) -> tuple[str, str]:
    wrapper = ""
    for (name, values, dialect), memo in zip(_STAGES, _CLASSES, strict=True):
        raw = get(name)
        if raw:
            stage = memo.get(raw, _MISSING)
            if stage is _MISSING:
                text = any_value_text(raw)
                stage = values.get(text.lower()) if text else None
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[raw] = stage
            if stage == WRAPPER:
                if root:
                    return STAGE_PIPELINE, dialect
                wrapper = wrapper or dialect  # nested: a later dialect may still say it is the pipeline
            elif stage is not None:
                return stage, dialect  # type: ignore[return-value]
    return OTHER_STAGE, wrapper


def _tokens(get: Callable[[str], bytes | None]) -> int | None:
    tokens_in = count_value(_first(get, _INPUT_TOKENS))
    tokens_out = count_value(_first(get, _OUTPUT_TOKENS))
    if tokens_in is None and tokens_out is None:
        return None
    return (tokens_in or 0) + (tokens_out or 0)


def _documents(get: Callable[[str], bytes | None], dialect: str) -> int | None:
    count = count_value(_first(get, _DOCUMENTS))
    if count is not None:
        return count
    keys = _DOCUMENT_KEYS.get(dialect)
    if keys:
        return 1 if _first(get, keys) is not None else 0
    return None


def read_span(get: Callable[[str], bytes | None], *, root: bool) -> Reading:
    """Classify one span from its attributes.

    ``get(name)`` returns an attribute as serialized ``AnyValue`` bytes (None when absent), as the receiver's lean
    decoding gives them; ``root``: the span has no parent. Never raises on odd values: a count that is not a
    number counts as absent, an unknown value as unclassified.
    """
    stage, dialect = _stage(get, root)
    component = _first(get, _COMPONENT if dialect else _COMPONENT_UNCLASSIFIED)
    return Reading(
        stage,
        _lowered(component) if component is not None else None,
        _first(get, _MODEL) if stage in _MODEL_STAGES else None,
        _first(get, _COLLECTION),
        _tokens(get) if stage in _USAGE_STAGES else None,
        _documents(get, dialect) if stage in _DOCUMENT_STAGES else None,
        get(ERROR_TYPE) is not None,
        _first(get, _USER) if stage == STAGE_PIPELINE else None,
        dialect,
    )
