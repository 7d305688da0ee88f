"""LlamaIndex extractors and the method table: which calls are which RAG step, and what each one records.

Pure functions of (instance, method, bound arguments) and (instance, result); none touches a span.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ragotel import semconv as sc
from ragotel import telemetry as _telemetry
from ragotel.bounds import items
from ragotel.instrumentation._rerank import is_reranker, top_n_of
from ragotel.instrumentation._rerank import rerank_request as rerank_attrs
from ragotel.instrumentation._rerank import rerank_response as rerank_result_attrs

COMPONENT: Final = "llama_index"
_UNKNOWN: Final = "unknown"  # LlamaIndex's placeholder model name: not worth recording

Args = Mapping[str, Any]


# -- request extractors: (instance, method, bound arguments) -> attributes ----------------------------------------
def _provider(cls: type) -> str:
    """``llama_index.llms.openai.base`` → ``openai``; classes of llama-index-core itself → ``llama_index``."""
    parts = cls.__module__.split(".")
    if len(parts) > 2 and parts[0] == "llama_index" and parts[1] in ("llms", "embeddings"):
        return parts[2]
    return COMPONENT


def _known(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != _UNKNOWN else None


def _llm_model(instance: Any) -> str | None:
    for field in ("model", "model_name"):
        name = _known(getattr(instance, field, None))
        if name is not None:
            return name
    return _known(getattr(getattr(instance, "metadata", None), "model_name", None))


def _first(args: Args, name: str) -> Any:
    """An argument by name, or the first positional one when LlamaIndex's callback wrapper took ``*args``."""
    if name in args:
        return args[name]
    positional = args.get("args") or ()
    if positional:
        return positional[0]
    return (args.get("kwargs") or {}).get(name)


def generation_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT if "chat" in method else sc.OP_TEXT_COMPLETION,
        sc.GEN_AI_PROVIDER_NAME: _provider(type(instance)),
        sc.GEN_AI_REQUEST_MODEL: _llm_model(instance),
    }
    if method.startswith(("stream", "astream")):
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    temperature = getattr(instance, "temperature", None)
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        attrs[sc.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)
    max_tokens = getattr(instance, "max_tokens", None)
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    return attrs


def _embedding_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    texts = args.get("texts")
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EMBEDDINGS,
        sc.GEN_AI_PROVIDER_NAME: _provider(type(instance)),
        sc.GEN_AI_REQUEST_MODEL: _known(getattr(instance, "model_name", None)),
        sc.RAGOTEL_EMBEDDING_BATCH_SIZE: len(texts) if isinstance(texts, list | tuple) else 1,
    }


def _retrieval_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    store = getattr(instance, "_vector_store", None)
    top_k = getattr(instance, "_similarity_top_k", None)
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_RETRIEVAL,
        # A class name, not an index id: span names must stay low-cardinality.
        sc.GEN_AI_DATA_SOURCE_ID: type(store).__name__ if store is not None else type(instance).__name__,
        sc.GEN_AI_RETRIEVAL_TOP_K: top_k if isinstance(top_k, int) and not isinstance(top_k, bool) else None,
    }


def _pipeline_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    return {sc.RAGOTEL_PIPELINE_NAME: type(instance).__name__}


# -- response extractors: (instance, result) -> attributes -------------------------------------------------------
def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def generation_response(instance: Any, result: Any) -> dict[str, Any] | None:
    """Usage, response model and finish reasons from a ChatResponse/CompletionResponse's provider ``raw`` payload."""
    if result is None:
        return None
    raw = getattr(result, "raw", None)
    extra = getattr(result, "additional_kwargs", None) or {}
    usage = _field(raw, "usage") if raw is not None else None
    attrs: dict[str, Any] = {
        sc.GEN_AI_USAGE_INPUT_TOKENS: _int(_field(usage, "prompt_tokens")) or _int(_field(usage, "input_tokens")),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _int(_field(usage, "completion_tokens")) or _int(_field(usage, "output_tokens")),
    }
    if attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] is None and isinstance(extra, Mapping):
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = _int(extra.get("prompt_tokens"))
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = _int(extra.get("completion_tokens"))
    if raw is not None:
        model = _field(raw, "model")
        attrs[sc.GEN_AI_RESPONSE_MODEL] = model if isinstance(model, str) else None
        choices = _field(raw, "choices")
        if isinstance(choices, list):
            reasons = [r for r in (_field(c, "finish_reason") for c in items(choices)) if isinstance(r, str)]
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons or None
    return attrs


def _embedding_response(instance: Any, result: Any) -> dict[str, Any] | None:
    vector = result[0] if isinstance(result, list) and result and isinstance(result[0], list) else result
    return {sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(vector)} if isinstance(vector, list) and vector else None


def _scored(result: Any) -> list[tuple[str, float | None]]:
    return [(str(n.node.node_id), n.score) for n in items(result)] if isinstance(result, list) else []


def _retrieval_response(instance: Any, result: Any) -> dict[str, Any] | None:
    found = _scored(result)
    scores = [float(s) for _, s in found if isinstance(s, int | float)]
    return {
        sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(result) if isinstance(result, list) else 0,
        sc.RAGOTEL_RETRIEVAL_TOP_SCORE: max(scores) if scores else None,
    }


# -- content (only with content capture on) ---------------------------------------------------------------------
def _query_text(args: Args) -> str | None:
    query = _first(args, "str_or_query_bundle")
    text = getattr(query, "query_str", query)
    return text if isinstance(text, str) else None


def _message(message: Any) -> dict[str, Any]:
    role = getattr(message, "role", None)
    return {"role": str(getattr(role, "value", role)), "content": getattr(message, "content", None)}


def generation_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    if "chat" in method:
        messages = _first(args, "messages")
        return {sc.GEN_AI_INPUT_MESSAGES: [_message(m) for m in items(messages)]}
    prompt = _first(args, "prompt")
    return {sc.GEN_AI_INPUT_MESSAGES: [{"role": "user", "content": prompt}]} if isinstance(prompt, str) else None


def generation_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    message = getattr(result, "message", None)
    if message is not None:
        return {sc.GEN_AI_OUTPUT_MESSAGES: [_message(message)]}
    text = getattr(result, "text", None)
    return {sc.GEN_AI_OUTPUT_MESSAGES: [{"role": "assistant", "content": text}]} if isinstance(text, str) else None


def _embedding_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    texts = args.get("texts")
    if texts is None:
        texts = [args.get("query", args.get("text"))]
    return {sc.RAGOTEL_INPUT: [t for t in items(texts) if isinstance(t, str)]}


def _retrieval_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    text = _query_text(args)
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: text} if text is not None else None


def _retrieval_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    if not isinstance(result, list):
        return None
    documents = [{"id": str(n.node.node_id), "score": n.score, "content": n.node.get_content()} for n in items(result)]
    return {sc.RAGOTEL_RETRIEVAL_DOCUMENT_IDS: [d["id"] for d in documents], sc.GEN_AI_RETRIEVAL_DOCUMENTS: documents}


def _pipeline_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    text = _query_text(args)
    return {sc.RAGOTEL_INPUT: text} if text is not None else None


def _pipeline_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    text = getattr(result, "response", None)
    return {sc.RAGOTEL_OUTPUT: text} if isinstance(text, str) else None


# -- the method table --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Step:
    """How one kind of LlamaIndex call maps to an operation."""

    stage: str
    request: Callable[[Any, str, Args], dict[str, Any]]
    response: Callable[[Any, Any], dict[str, Any] | None] | None = None
    request_content: Callable[[Any, str, Args], dict[str, Any] | None] | None = None
    response_content: Callable[[Any, Any], dict[str, Any] | None] | None = None


_GENERATION: Final = Step(
    sc.STAGE_GENERATION, generation_request, generation_response, generation_content, generation_result_content
)
_EMBEDDING: Final = Step(sc.STAGE_EMBEDDING, _embedding_request, _embedding_response, _embedding_content)
_RETRIEVAL: Final = Step(
    sc.STAGE_RETRIEVAL, _retrieval_request, _retrieval_response, _retrieval_content, _retrieval_result_content
)
_PIPELINE: Final = Step(sc.STAGE_PIPELINE, _pipeline_request, None, _pipeline_content, _pipeline_result_content)

# (base class path, step, methods): a method counts when the instance is a subclass of the base.
_TABLE: Final = (
    ("llama_index.core.base.llms.base.BaseLLM", _GENERATION, ("chat", "achat", "complete", "acomplete")),
    (
        "llama_index.core.base.embeddings.base.BaseEmbedding",
        _EMBEDDING,
        (
            "get_query_embedding",
            "aget_query_embedding",
            "get_text_embedding",
            "aget_text_embedding",
            "get_text_embedding_batch",
            "aget_text_embedding_batch",
        ),
    ),
    ("llama_index.core.base.base_retriever.BaseRetriever", _RETRIEVAL, ("retrieve", "aretrieve")),
    ("llama_index.core.base.base_query_engine.BaseQueryEngine", _PIPELINE, ("query", "aquery")),
)
METHODS: Final = frozenset(m for _, _, methods in _TABLE for m in methods)
STREAM_METHODS: Final = ("stream_chat", "astream_chat", "stream_complete", "astream_complete")


@functools.lru_cache(maxsize=1)
def _bases() -> tuple[tuple[type, Step, frozenset[str]], ...]:
    found = []
    for path, step, methods in _TABLE:
        module, _, name = path.rpartition(".")
        found.append((getattr(importlib.import_module(module), name), step, frozenset(methods)))
    return tuple(found)


_classified: dict[tuple[type, str], Step | None] = {}


def classify(cls: type, method: str) -> Step | None:
    key = (cls, method)
    try:
        return _classified[key]
    except KeyError:
        pass
    found = None
    for base, step, methods in _bases():
        if method in methods and issubclass(cls, base):
            found = step
            break
    if len(_classified) > 4096:  # bounded: classes are few, but never grow without limit
        _classified.clear()
    _classified[key] = found
    return found


def inside_llama_step(stage: str) -> bool:
    """True when a LlamaIndex step of ``stage`` is already current: LlamaIndex calling itself within one step."""
    current = _telemetry.current_operation()
    return current is not None and current.stage == stage and current.component == COMPONENT


# -- node postprocessors that rerank (common wrapper targets: pure (instance, args, kwargs) extractors) -----------
def rerank_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """``postprocess_nodes(nodes, query_bundle=None, query_str=None)`` of a reranker; None for other postprocessors."""
    if not is_reranker(instance):
        return None
    model = getattr(instance, "model", None)
    if not isinstance(model, str):
        llm = getattr(instance, "llm", None)
        model = _llm_model(llm) if llm is not None else None
    nodes = kwargs.get("nodes", args[0] if args else None)
    return rerank_attrs(model, top_n_of(instance), nodes)


def rerank_response(instance: Any, result: Any) -> dict[str, Any]:
    """The nodes kept and their best score."""
    kept = result if isinstance(result, list) else None
    return rerank_result_attrs(kept, (getattr(n, "score", None) for n in items(kept or [])))


def rerank_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The query."""
    query = kwargs.get("query_str") or kwargs.get("query_bundle", args[1] if len(args) > 1 else None)
    text = getattr(query, "query_str", query)
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: text} if isinstance(text, str) else None


def rerank_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    """Ids and scores of the nodes kept."""
    if not isinstance(result, list):
        return None
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: [{"id": node_id, "score": score} for node_id, score in _scored(result)]}
