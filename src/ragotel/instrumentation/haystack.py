"""Haystack (``haystack-ai``): pipelines, retrievers, embedders, rankers and generators as RAG stage spans.

Haystack components share no base class, only the ``@component`` metaclass, and the library's ``run`` / ``run_async``
are defined by each component class. So each component class is wrapped where it defines them — every class in
Haystack's component registry at instrument time, and any other when its first instance is created (a wrapper on
``ComponentMeta.__call__``). The stage comes from where Haystack files the class, for core and integration packages
alike (``haystack.components.<family>`` / ``haystack_integrations.components.<family>``): ``retrievers`` → retrieval,
``embedders`` → embedding, ``rankers`` → rerank, ``generators`` → generation; other components (builders, joiners,
routers, the app's own) are not steps of their own. ``Pipeline.run`` / ``run_async`` (and 2.x's ``AsyncPipeline``)
is the pipeline, unless a ragotel step is already running; ``run_async_generator``, which streams a pipeline's
outputs, has no pipeline span of its own (its components' spans are made as usual).

Haystack's own tracing hook (``haystack.tracing.enable_tracing``) was not used: it holds one tracer for the whole
process (ours would displace the app's), and components' inputs and outputs reach a tracer only when Haystack's
content tracing is on, which would hand prompts and documents to every other tracer too. Wrapping ``run`` reads
them in process, records content only with ragotel's own switch, and works for components called outside a
pipeline as well. A provider client the component calls (the instrumented OpenAI client under
``OpenAIChatGenerator``, sentence-transformers under its embedders and rankers) is the same stage directly inside,
so it merges into the component's span: one span per call, with the provider's model and usage.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.bounds import items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, make_wrapper
from ragotel.instrumentation._classes import PerClassWrapper, WrapperFactory
from ragotel.instrumentation._rerank import rerank_request, rerank_response
from ragotel.telemetry import current_operation

__all__ = ["HaystackInstrumentor", "stage_of"]

COMPONENT: Final = "haystack"
_FAMILIES: Final = {
    "retrievers": sc.STAGE_RETRIEVAL,
    "embedders": sc.STAGE_EMBEDDING,
    "rankers": sc.STAGE_RERANK,
    "generators": sc.STAGE_GENERATION,
}
_ROOTS: Final = frozenset({"haystack", "haystack_integrations"})
# Integration package (haystack_integrations.components.<family>.<package>) -> GenAI provider name.
_PROVIDERS: Final = {
    "openai": "openai",
    "anthropic": "anthropic",
    "cohere": "cohere",
    "mistral": "mistral_ai",
    "amazon_bedrock": "aws.bedrock",
    "google_genai": "gcp.gen_ai",
    "google_vertex": "gcp.vertex_ai",
    "ollama": "ollama",
    "sentence_transformers": "sentence_transformers",
    "huggingface_api": "huggingface",
    "nvidia": "nvidia",
    "jina": "jina",
}
_PARAMS: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE, float),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P, float),
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, int),
    ("max_completion_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS, int),
    ("seed", sc.GEN_AI_REQUEST_SEED, int),
)


def stage_of(cls: type) -> str | None:
    """The stage of a component class from where Haystack files it (core or integration); None: not a step."""
    parts = cls.__module__.split(".")
    if len(parts) >= 3 and parts[0] in _ROOTS and parts[1] == "components":
        return _FAMILIES.get(parts[2])
    return None


# -- reading a call ------------------------------------------------------------------------------------------------
_signatures: dict[type, inspect.Signature | None] = {}


def _arguments(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The run's arguments by name (a pipeline passes keywords; a caller may pass positions)."""
    if not args:
        return kwargs
    cls = type(instance)
    if cls not in _signatures:
        try:
            _signatures[cls] = inspect.signature(cls.run)
        except (TypeError, ValueError):  # no signature: positions stay unread
            _signatures[cls] = None
    sig = _signatures[cls]
    if sig is None:
        return kwargs
    try:
        return sig.bind_partial(instance, *args, **kwargs).arguments
    except TypeError:
        return kwargs


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _model(instance: Any) -> str | None:
    for attr in ("model", "model_name", "model_name_or_path", "azure_deployment"):
        value = getattr(instance, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _provider(instance: Any) -> str | None:
    cls = type(instance)
    parts = cls.__module__.split(".")
    if parts[0] == "haystack_integrations" and len(parts) > 3:
        return _PROVIDERS.get(parts[3], parts[3])
    name = cls.__name__
    if name.startswith("Azure"):
        return "azure.ai.openai"
    if "OpenAI" in name:
        return "openai"
    return None


def _documents(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def _best_score(documents: list[Any] | None) -> Any:
    return (getattr(d, "score", None) for d in items(documents or []))


def _output(result: Any, key: str) -> Any:
    return result.get(key) if isinstance(result, Mapping) else None


# -- retrieval ------------------------------------------------------------------------------------------------------
def _retrieval_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    given = _arguments(instance, args, kwargs)
    store = getattr(instance, "document_store", None)
    top_k = given.get("top_k")
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_RETRIEVAL,
        sc.GEN_AI_DATA_SOURCE_ID: type(store).__name__ if store is not None else type(instance).__name__,
        sc.GEN_AI_RETRIEVAL_TOP_K: _int(top_k if top_k is not None else getattr(instance, "top_k", None)),
    }


def _retrieval_response(instance: Any, result: Any) -> dict[str, Any]:
    docs = _documents(_output(result, "documents"))
    found = rerank_response(docs, _best_score(docs))  # count and best score: the same reading as a rerank's
    return found if docs is not None else {}


def _query_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    query = _arguments(instance, args, kwargs).get("query")
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: query} if isinstance(query, str) else None


def _documents_content(instance: Any, result: Any) -> dict[str, Any] | None:
    docs = _documents(_output(result, "documents"))
    if docs is None:
        return None
    found = [{"id": getattr(d, "id", None), "score": getattr(d, "score", None)} for d in items(docs)]
    return {sc.GEN_AI_RETRIEVAL_DOCUMENTS: found}


# -- rerank ---------------------------------------------------------------------------------------------------------
def _rerank_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    given = _arguments(instance, args, kwargs)
    top_k = given.get("top_k")
    top_k = top_k if top_k is not None else getattr(instance, "top_k", None)
    return rerank_request(_model(instance), top_k, given.get("documents"))


def _rerank_response(instance: Any, result: Any) -> dict[str, Any]:
    docs = _documents(_output(result, "documents"))
    return rerank_response(docs, _best_score(docs))


# -- embedding ------------------------------------------------------------------------------------------------------
def _embedding_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    given = _arguments(instance, args, kwargs)
    docs = given.get("documents")
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EMBEDDINGS,
        sc.GEN_AI_PROVIDER_NAME: _provider(instance),
        sc.GEN_AI_REQUEST_MODEL: _model(instance),
        sc.RAGOTEL_EMBEDDING_BATCH_SIZE: len(docs) if isinstance(docs, list) else (1 if "text" in given else None),
    }


def _embedding_response(instance: Any, result: Any) -> dict[str, Any]:
    vector = _output(result, "embedding")
    docs = _documents(_output(result, "documents"))
    if vector is None and docs:
        vector = getattr(docs[0], "embedding", None)
    usage = _output(_output(result, "meta"), "usage")
    return {
        sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(vector) if isinstance(vector, list) and vector else None,
        sc.GEN_AI_USAGE_INPUT_TOKENS: _int(_output(usage, "prompt_tokens")),
    }


def _embedding_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    given = _arguments(instance, args, kwargs)
    text = given.get("text")
    if isinstance(text, str):
        return {sc.RAGOTEL_INPUT: [text]}
    docs = _documents(given.get("documents"))
    return {sc.RAGOTEL_INPUT: [getattr(d, "content", None) for d in items(docs)]} if docs else None


# -- generation -----------------------------------------------------------------------------------------------------
def _generation_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    given = _arguments(instance, args, kwargs)
    chat = "messages" in given or "Chat" in type(instance).__name__
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT if chat else sc.OP_TEXT_COMPLETION,
        sc.GEN_AI_PROVIDER_NAME: _provider(instance),
        sc.GEN_AI_REQUEST_MODEL: _model(instance),
    }
    if given.get("streaming_callback") or getattr(instance, "streaming_callback", None):
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    params: dict[str, Any] = {}
    for source in (getattr(instance, "generation_kwargs", None), given.get("generation_kwargs")):
        if isinstance(source, Mapping):  # the call's own parameters override the component's
            params.update(source)
    for key, attr, kind in _PARAMS:
        value = params.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[attr] = kind(value)
    return attrs


def _replies(result: Any) -> list[Any]:
    replies = _output(result, "replies")
    return items(replies) if isinstance(replies, list) else []


def _metas(result: Any) -> list[Any]:
    """Each reply's metadata: a ChatMessage's ``meta``, else the generator's parallel ``meta`` list."""
    metas = [getattr(r, "meta", None) for r in _replies(result) if not isinstance(r, str)]
    if not metas:
        listed = _output(result, "meta")
        metas = items(listed) if isinstance(listed, list) else []
    return [m for m in metas if isinstance(m, Mapping)]


def _generation_response(instance: Any, result: Any) -> dict[str, Any]:
    metas = _metas(result)
    usage = [m.get("usage") for m in metas if isinstance(m.get("usage"), Mapping)]
    inputs = [_int(u.get("prompt_tokens", u.get("input_tokens"))) for u in usage]
    outputs = [_int(u.get("completion_tokens", u.get("output_tokens"))) for u in usage]
    models = [m.get("model") for m in metas if isinstance(m.get("model"), str)]
    reasons = [m.get("finish_reason") for m in metas if isinstance(m.get("finish_reason"), str)]
    return {
        sc.GEN_AI_RESPONSE_MODEL: models[0] if models else None,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: reasons or None,
        # usage is per response: every reply of one call carries the same figures
        sc.GEN_AI_USAGE_INPUT_TOKENS: inputs[0] if inputs else None,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: outputs[0] if outputs else None,
    }


def _message(message: Any) -> dict[str, Any]:
    if isinstance(message, str):
        return {"role": "user", "content": message}
    role = getattr(message, "role", None)
    return {"role": str(getattr(role, "value", role)), "content": getattr(message, "text", None)}


def _generation_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    given = _arguments(instance, args, kwargs)
    messages = given.get("messages", given.get("prompt"))
    listed = messages if isinstance(messages, list) else [messages] if isinstance(messages, str) else []
    return {sc.GEN_AI_INPUT_MESSAGES: [_message(m) for m in items(listed)]} if listed else None


def _generation_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    replies = _replies(result)
    out = [{**_message(r), "role": "assistant"} for r in replies]
    return {sc.GEN_AI_OUTPUT_MESSAGES: out} if out else None


# -- pipeline -------------------------------------------------------------------------------------------------------
def _pipeline_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    if current_operation() is not None:
        return None  # a pipeline inside a running step (an app pipeline, a SuperComponent, an agent's tool)
    meta = getattr(instance, "metadata", None)
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return {sc.RAGOTEL_PIPELINE_NAME: name if isinstance(name, str) and name else type(instance).__name__}


# -- the tables -----------------------------------------------------------------------------------------------------
def _extractors() -> dict[str, dict[str, Any]]:
    return {
        sc.STAGE_RETRIEVAL: {"request": _retrieval_request, "response": _retrieval_response,
                             "request_content": _query_content, "response_content": _documents_content},
        sc.STAGE_RERANK: {"request": _rerank_request, "response": _rerank_response,
                          "request_content": _query_content, "response_content": _documents_content},
        sc.STAGE_EMBEDDING: {"request": _embedding_request, "response": _embedding_response,
                             "request_content": _embedding_content},
        sc.STAGE_GENERATION: {"request": _generation_request, "response": _generation_response,
                              "request_content": _generation_content, "response_content": _generation_result_content},
    }  # fmt: skip


_EXTRACTORS: Final = _extractors()


@functools.lru_cache(maxsize=1024)
def _component_targets(module: str, qualname: str, stage: str) -> dict[str, WrapperFactory]:
    """``run`` / ``run_async`` of one component class as targets of its stage (built once per class)."""
    return {
        method: functools.partial(
            make_wrapper, Target(module, f"{qualname}.{method}", stage, COMPONENT, **_EXTRACTORS[stage])
        )
        for method in ("run", "run_async")
    }


def _factories_for(klass: type) -> Mapping[str, WrapperFactory]:
    stage = stage_of(klass)
    return _component_targets(klass.__module__, klass.__qualname__, stage) if stage is not None else {}


class HaystackInstrumentor(RagotelInstrumentor):
    """Traces Haystack pipelines and their retriever, embedder, ranker and generator components."""

    library: ClassVar[str] = "haystack"
    # AsyncPipeline exists in Haystack 2.x only (3.x folds it into Pipeline): a target missing is skipped quietly.
    targets: ClassVar[tuple[Target, ...]] = tuple(
        Target(f"haystack.core.pipeline.{module}", f"{cls}.{method}", sc.STAGE_PIPELINE, COMPONENT,
               request=_pipeline_request)
        for module, cls in (("pipeline", "Pipeline"), ("async_pipeline", "AsyncPipeline"))
        for method in ("run", "run_async")
    )  # fmt: skip
    dependencies: ClassVar[tuple[str, ...]] = ("haystack-ai >= 2.0",)
    _ragotel_components: PerClassWrapper | None = None
    _ragotel_meta: type | None = None

    def _instrument_extra(self, **kwargs: Any) -> None:
        from haystack.core.component.component import ComponentMeta, component  # noqa: PLC0415  optional library

        classes = PerClassWrapper(_factories_for, "haystack")
        self._ragotel_components = classes
        for cls in list(component.registry.values()):
            classes.wrap_class(cls)

        def on_create(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # `instance` is the component class being instantiated; wrapping it never stops the creation
            if instance is not None and instance not in classes.seen:
                _guard.call("haystack: wrapping a component class", lambda: classes.wrap_class(instance), None)
            return wrapped(*args, **kwargs)

        wrapt.wrap_function_wrapper(ComponentMeta, "__call__", on_create)
        self._ragotel_meta = ComponentMeta

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        meta, self._ragotel_meta = self._ragotel_meta, None
        if meta is not None:
            _guard.call("haystack: unwrapping ComponentMeta.__call__", lambda: unwrap(meta, "__call__"), None)
        classes, self._ragotel_components = self._ragotel_components, None
        if classes is not None:
            classes.remove()
