"""Every attribute and metric name ragotel emits, with units and bucket advice: the one place to edit on semconv churn.

Upstream names (OpenTelemetry GenAI, database, system/process conventions) come first; ragotel's own extras
live under ``ragotel.*``. The GenAI and database conventions are still moving, so renames that are pending
upstream go through :data:`LEGACY_NAMES` and the ``OTEL_SEMCONV_STABILITY_OPT_IN`` switch (see
:func:`legacy_aliases`) rather than through the instrumentations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

# --- ragotel's own span attributes -------------------------------------------------------------------------------
RAGOTEL_STAGE: Final = "ragotel.stage"
RAGOTEL_COMPONENT: Final = "ragotel.component"
RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: Final = "ragotel.retrieval.document_count"
RAGOTEL_RETRIEVAL_TOP_SCORE: Final = "ragotel.retrieval.top_score"
RAGOTEL_RETRIEVAL_DOCUMENT_IDS: Final = "ragotel.retrieval.document.ids"  # content capture only
RAGOTEL_RETRIEVAL_DOCUMENT_SCORES: Final = "ragotel.retrieval.document.scores"  # content capture only
RAGOTEL_STREAM_ENDED_EARLY: Final = "ragotel.stream.ended_early"
RAGOTEL_STREAM_CHUNKS: Final = "ragotel.stream.chunks"
RAGOTEL_PIPELINE_NAME: Final = "ragotel.pipeline.name"
RAGOTEL_PIPELINE_BATCH_SIZE: Final = "ragotel.pipeline.batch_size"  # inputs of one batched pipeline run
RAGOTEL_RERANK_MODEL: Final = "ragotel.rerank.model"
# Rerank spans: model (above), top_n as gen_ai.retrieval.top_k (only when sent), the documents given to the reranker
# (below), the documents it returned as ragotel.retrieval.document_count and their best relevance score as
# ragotel.retrieval.top_score (higher is better, in the reranker's own scale).
RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT: Final = "ragotel.rerank.input_document_count"
RAGOTEL_EMBEDDING_BATCH_SIZE: Final = "ragotel.embedding.batch_size"
RAGOTEL_DB_RESULT_COUNT: Final = "ragotel.db.result_count"
RAGOTEL_DB_TOP_SCORE: Final = "ragotel.db.top_score"
RAGOTEL_DB_BEST_DISTANCE: Final = "ragotel.db.best_distance"
RAGOTEL_DB_TOP_K: Final = "ragotel.db.top_k"  # nearest neighbours asked for per query (n_results / limit)
RAGOTEL_INPUT: Final = "ragotel.input"  # content capture only (custom stages)
RAGOTEL_OUTPUT: Final = "ragotel.output"  # content capture only (custom stages)

# --- stage values --------------------------------------------------------------------------------------------------
STAGE_PIPELINE: Final = "pipeline"
STAGE_RETRIEVAL: Final = "retrieval"
STAGE_RERANK: Final = "rerank"
STAGE_EMBEDDING: Final = "embedding"
STAGE_VECTOR_DB: Final = "vector_db"
STAGE_GENERATION: Final = "generation"
STAGES: Final = (STAGE_PIPELINE, STAGE_RETRIEVAL, STAGE_RERANK, STAGE_EMBEDDING, STAGE_VECTOR_DB, STAGE_GENERATION)

COMPONENT_CUSTOM: Final = "custom"

# --- GenAI (upstream) ----------------------------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
GEN_AI_DATA_SOURCE_ID: Final = "gen_ai.data_source.id"
GEN_AI_RETRIEVAL_TOP_K: Final = "gen_ai.retrieval.top_k"
GEN_AI_RETRIEVAL_QUERY_TEXT: Final = "gen_ai.retrieval.query.text"  # content capture only
GEN_AI_RETRIEVAL_DOCUMENTS: Final = "gen_ai.retrieval.documents"  # content capture only
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"  # content capture only
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"  # content capture only
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"  # content capture only
GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"
GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
GEN_AI_OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"  # "json" when a response format asks for it, "text"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"

OP_CHAT: Final = "chat"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_EMBEDDINGS: Final = "embeddings"
OP_RETRIEVAL: Final = "retrieval"
OP_GENERATE_CONTENT: Final = "generate_content"
# gen_ai.provider.name values of the provider clients (upstream well-known values; `ollama` is not listed upstream)
PROVIDER_ANTHROPIC: Final = "anthropic"
PROVIDER_AWS_BEDROCK: Final = "aws.bedrock"
PROVIDER_GCP_GEMINI: Final = "gcp.gemini"
PROVIDER_GCP_VERTEX_AI: Final = "gcp.vertex_ai"
PROVIDER_OLLAMA: Final = "ollama"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# --- database (upstream) -------------------------------------------------------------------------------------------
DB_SYSTEM_NAME: Final = "db.system.name"
DB_OPERATION_NAME: Final = "db.operation.name"
DB_COLLECTION_NAME: Final = "db.collection.name"
DB_NAMESPACE: Final = "db.namespace"
DB_OPERATION_BATCH_SIZE: Final = "db.operation.batch_size"
DB_RESPONSE_RETURNED_ROWS: Final = "db.response.returned_rows"
DB_QUERY_TEXT: Final = "db.query.text"  # content capture only
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# --- OpenInference (Phoenix, Arize), only with RAGOTEL_OPENINFERENCE=true ----------------------------------------
# Mapped at span end from the names above (ragotel.openinference); the GenAI / database names stay as they are.
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OI_LLM_MODEL_NAME: Final = "llm.model_name"
OI_LLM_PROVIDER: Final = "llm.provider"
OI_LLM_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
OI_LLM_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
OI_LLM_TOKEN_COUNT_TOTAL: Final = "llm.token_count.total"
OI_EMBEDDING_MODEL_NAME: Final = "embedding.model_name"
OI_RERANKER_MODEL_NAME: Final = "reranker.model_name"
OI_USER_ID: Final = "user.id"
OI_INPUT_VALUE: Final = "input.value"  # content capture only
OI_INPUT_MIME_TYPE: Final = "input.mime_type"  # content capture only
OI_OUTPUT_VALUE: Final = "output.value"  # content capture only
OI_OUTPUT_MIME_TYPE: Final = "output.mime_type"  # content capture only

# --- general (upstream) --------------------------------------------------------------------------------------------
ERROR_TYPE: Final = "error.type"
ENDUSER_ID: Final = "enduser.id"
SESSION_ID: Final = "session.id"
SERVICE_NAME: Final = "service.name"

# --- metrics -------------------------------------------------------------------------------------------------------
M_STAGE_DURATION: Final = "ragotel.stage.duration"
M_GEN_AI_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
M_GEN_AI_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
M_GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
M_DB_OPERATION_DURATION: Final = "db.client.operation.duration"
M_RETRIEVAL_DOCUMENTS: Final = "ragotel.retrieval.documents"
M_DEPENDENCY_HEALTH: Final = "ragotel.dependency.health"
M_DEPENDENCY_CHECK_DURATION: Final = "ragotel.dependency.check.duration"
M_INDEX_DOCUMENTS: Final = "ragotel.index.documents"

RAGOTEL_DEPENDENCY_NAME: Final = "ragotel.dependency.name"
RAGOTEL_DEPENDENCY_KIND: Final = "ragotel.dependency.kind"

# Host and process gauges (system / process conventions).
M_SYSTEM_CPU_UTILIZATION: Final = "system.cpu.utilization"
M_SYSTEM_MEMORY_USAGE: Final = "system.memory.usage"
M_SYSTEM_MEMORY_UTILIZATION: Final = "system.memory.utilization"
M_SYSTEM_FILESYSTEM_UTILIZATION: Final = "system.filesystem.utilization"
M_SYSTEM_FILESYSTEM_USAGE: Final = "system.filesystem.usage"
M_SYSTEM_NETWORK_IO: Final = "system.network.io"
M_SYSTEM_CPU_LOAD_AVERAGE_1M: Final = "system.cpu.load_average.1m"
M_PROCESS_CPU_UTILIZATION: Final = "process.cpu.utilization"
M_PROCESS_MEMORY_USAGE: Final = "process.memory.usage"
M_PROCESS_THREAD_COUNT: Final = "process.thread.count"
M_PROCESS_FILE_DESCRIPTOR_COUNT: Final = "process.unix.file_descriptor.count"
M_SYSTEM_MEMORY_LIMIT: Final = "system.memory.limit"
# The memory limit of the process's cgroup (no upstream name yet); absent when the cgroup has no limit.
M_RAGOTEL_PROCESS_MEMORY_LIMIT: Final = "ragotel.process.memory.limit"
# Load average has no upstream name yet; these are the OTel Collector hostmetrics receiver's.
M_SYSTEM_CPU_LOAD_AVERAGE_5M: Final = "system.cpu.load_average.5m"
M_SYSTEM_CPU_LOAD_AVERAGE_15M: Final = "system.cpu.load_average.15m"
# GPU (hardware conventions), only when NVML (pynvml) is importable and finds a device.
M_HW_GPU_UTILIZATION: Final = "hw.gpu.utilization"
M_HW_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"
M_HW_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"

# Host gauge attributes (system / process / hardware conventions); all low cardinality.
CPU_LOGICAL_NUMBER: Final = "cpu.logical_number"  # only with RAGOTEL_HOST_PER_CPU=true
SYSTEM_MEMORY_STATE: Final = "system.memory.state"
SYSTEM_DEVICE: Final = "system.device"
SYSTEM_FILESYSTEM_MOUNTPOINT: Final = "system.filesystem.mountpoint"
SYSTEM_FILESYSTEM_TYPE: Final = "system.filesystem.type"
SYSTEM_FILESYSTEM_STATE: Final = "system.filesystem.state"
NETWORK_IO_DIRECTION: Final = "network.io.direction"
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_VENDOR: Final = "hw.vendor"
STATE_USED: Final = "used"
STATE_FREE: Final = "free"
DIRECTION_TRANSMIT: Final = "transmit"
DIRECTION_RECEIVE: Final = "receive"
DB_SYSTEM_CHROMA: Final = "chroma"
DB_SYSTEM_QDRANT: Final = "qdrant"
# No well-known db.system.name value upstream for these: the lowercase library name (pgvector runs in PostgreSQL).
DB_SYSTEM_FAISS: Final = "faiss"
DB_SYSTEM_LANCEDB: Final = "lancedb"
DB_SYSTEM_MILVUS: Final = "milvus"
DB_SYSTEM_POSTGRESQL: Final = "postgresql"

UNIT_SECONDS: Final = "s"
UNIT_TOKENS: Final = "{token}"
UNIT_DOCUMENTS: Final = "{document}"
UNIT_RATIO: Final = "1"
UNIT_BYTES: Final = "By"
UNIT_THREADS: Final = "{thread}"
UNIT_FILE_DESCRIPTORS: Final = "{file_descriptor}"

# Bucket advice: GenAI conventions for durations and token counts, database conventions for db durations.
GEN_AI_DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
GEN_AI_TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DB_DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
# Stages span both: a millisecond vector lookup and a minute-long generation.
STAGE_DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
DOCUMENT_COUNT_BUCKETS: Final = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)

# Metric attributes: low cardinality only, never query text, ids or user ids.
STAGE_METRIC_ATTRIBUTES: Final = (RAGOTEL_STAGE, RAGOTEL_COMPONENT, ERROR_TYPE)
GEN_AI_METRIC_ATTRIBUTES: Final = (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    SERVER_ADDRESS,
    ERROR_TYPE,
)
DB_METRIC_ATTRIBUTES: Final = (DB_SYSTEM_NAME, DB_OPERATION_NAME, DB_COLLECTION_NAME, SERVER_ADDRESS, ERROR_TYPE)
RETRIEVAL_METRIC_ATTRIBUTES: Final = (RAGOTEL_COMPONENT,)

# --- pending renames -----------------------------------------------------------------------------------------------
# Current name -> the name it replaced upstream. With OTEL_SEMCONV_STABILITY_OPT_IN containing ``gen_ai/dup`` or
# ``database/dup`` both names are emitted on spans, so backends keyed on the old name keep working during a
# migration; ``gen_ai/old`` / ``database/old`` emit the old name only. A future upstream rename is one line here.
LEGACY_NAMES: Final[Mapping[str, tuple[str, str]]] = {
    GEN_AI_PROVIDER_NAME: ("gen_ai", "gen_ai.system"),
    GEN_AI_USAGE_INPUT_TOKENS: ("gen_ai", "gen_ai.usage.prompt_tokens"),
    GEN_AI_USAGE_OUTPUT_TOKENS: ("gen_ai", "gen_ai.usage.completion_tokens"),
    DB_SYSTEM_NAME: ("database", "db.system"),
    DB_OPERATION_NAME: ("database", "db.operation"),
    DB_COLLECTION_NAME: ("database", "db.sql.table"),
}
STABILITY_ENV: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"


def stability_modes(value: str | None = None) -> dict[str, str]:
    """Return ``{domain: "new" | "dup" | "old"}`` for the ``gen_ai`` and ``database`` domains.

    Reads ``OTEL_SEMCONV_STABILITY_OPT_IN`` when ``value`` is None. Unknown tokens are ignored (other
    instrumentations share the variable).
    """
    raw = os.environ.get(STABILITY_ENV, "") if value is None else value
    modes = {"gen_ai": "new", "database": "new"}
    for token in (t.strip() for t in raw.split(",")):
        domain, _, mode = token.partition("/")
        if domain in modes and mode in ("dup", "old"):
            modes[domain] = mode
    return modes


def legacy_aliases(modes: Mapping[str, str]) -> tuple[dict[str, str], frozenset[str]]:
    """Return ``(aliases, drop)``: extra names to emit beside current ones, and current names to drop ("old" mode)."""
    aliases: dict[str, str] = {}
    drop: set[str] = set()
    for current, (domain, old) in LEGACY_NAMES.items():
        mode = modes.get(domain, "new")
        if mode in ("dup", "old"):
            aliases[current] = old
        if mode == "old":
            drop.add(current)
    return aliases, frozenset(drop)
