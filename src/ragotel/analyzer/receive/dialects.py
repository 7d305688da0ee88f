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
from typing import Final

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

__all__ = ["DIALECTS", "OTHER_STAGE", "Dialect", "Reading", "read_span"]

OTHER_STAGE: Final = "other"
WRAPPER: Final = "~wrapper"
"""A stage value meaning: ``pipeline`` at the root of a trace, ``other`` below it."""
ERROR_TYPE: Final = "error.type"

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


@dataclass(frozen=True, slots=True)
class Reading:
    """What a span says in its dialect. ``tokens`` is input + output (None without usage); ``documents`` the
    documents returned (None when the dialect does not tell); ``dialect`` the row that gave the stage ("" none)."""

    stage: str
    component: str
    model: str
    collection: str
    tokens: int | None
    documents: int | None
    error: bool
    user: str
    dialect: str


def _first(get: Callable[[str], str | None], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = get(name)
        if value:
            return value
    return None


def _pick(get: Callable[[str], str | None], field: str) -> str | None:
    for dialect in DIALECTS:
        value = _first(get, getattr(dialect, field))
        if value is not None:
            return value
    return None


def _number(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return max(0, int(float(value)))
    except (ValueError, OverflowError):
        return None


def _stage(get: Callable[[str], str | None], root: bool) -> tuple[str, Dialect | None]:
    wrapper: Dialect | None = None
    for dialect in DIALECTS:
        for name, values in dialect.stage:
            value = get(name)
            if value:
                stage = values.get(value.lower())
                if stage == WRAPPER:
                    if root:
                        return STAGE_PIPELINE, dialect
                    wrapper = wrapper or dialect  # nested: a later dialect may still say it is the pipeline
                elif stage is not None:
                    return stage, dialect
    return OTHER_STAGE, wrapper


def _documents(get: Callable[[str], str | None], stage: str, source: Dialect | None) -> int | None:
    for dialect in DIALECTS:
        count = _number(_first(get, dialect.documents))
        if count is not None:
            return count
    if source is not None and source.document_keys and stage in (STAGE_RETRIEVAL, STAGE_RERANK):
        return 1 if _first(get, source.document_keys) is not None else 0
    return None


def read_span(get: Callable[[str], str | None], *, root: bool) -> Reading:
    """Classify one span from its attributes.

    ``get(name)`` returns an attribute as text (None when absent); ``root``: the span has no parent. Never raises
    on odd values: a count that is not a number counts as absent, an unknown value as unclassified.
    """
    stage, source = _stage(get, root)
    tokens: int | None = None
    if stage in (STAGE_GENERATION, STAGE_EMBEDDING):
        tokens_in = tokens_out = None
        for dialect in DIALECTS:
            tokens_in = tokens_in if tokens_in is not None else _number(_first(get, dialect.input_tokens))
            tokens_out = tokens_out if tokens_out is not None else _number(_first(get, dialect.output_tokens))
        if tokens_in is not None or tokens_out is not None:
            tokens = (tokens_in or 0) + (tokens_out or 0)
    return Reading(
        stage=stage,
        component=(_pick(get, "component") or "").lower(),
        model=_pick(get, "model") or "",
        collection=_pick(get, "collection") or "",
        tokens=tokens,
        documents=_documents(get, stage, source),
        error=get(ERROR_TYPE) is not None,
        user=_pick(get, "user") or "",
        dialect=source.name if source is not None else "",
    )
