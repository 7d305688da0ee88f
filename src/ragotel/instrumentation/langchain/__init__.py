"""LangChain (langchain-core) instrumentation: retrievers, chat models/LLMs, embeddings, vector stores, rerankers,
sequences.

Hooks sit where langchain-core defines the entry points (``BaseRetriever.invoke``, ``BaseChatModel.generate`` ...),
so every integration inherits them and nothing is wrapped twice. Embeddings, vector store searches, document
compressors and cross-encoders are the exception: their methods are abstract (or overridden) on the base and defined
by each integration class, so :class:`~ragotel.instrumentation._classes.SubclassHook` wraps them where each class
defines them. Callbacks were not used: a callback handler cannot make its span current around the step, so the
OpenAI call inside a chat model would not nest (and merge) under it.

``RunnableSequence.batch`` / ``abatch`` make one pipeline span for the whole batch, with its size: LangChain runs a
sequence's batch step by step across all inputs (every input's retrieval, then every input's generation), so no
input has a boundary of its own to time, and one span lets every step of every input nest in one trace.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.instrumentation._base import RagotelInstrumentor, Target, make_wrapper
from ragotel.instrumentation._classes import SubclassHook, WrapperFactory
from ragotel.instrumentation.langchain import models as m
from ragotel.instrumentation.langchain import rerank as rr
from ragotel.instrumentation.langchain import retrieval as r
from ragotel.instrumentation.langchain import stores as st
from ragotel.telemetry import Operation, current_operation

__all__ = ["LangChainInstrumentor"]

COMPONENT: Final = m.COMPONENT
_RETRIEVERS: Final = "langchain_core.retrievers"
_VECTORSTORES: Final = "langchain_core.vectorstores.base"
_IN_MEMORY: Final = "langchain_core.vectorstores.in_memory"
_CHAT: Final = "langchain_core.language_models.chat_models"
_LLMS: Final = "langchain_core.language_models.llms"
_RUNNABLES: Final = "langchain_core.runnables.base"
_EMBEDDINGS: Final = "langchain_core.embeddings.embeddings"
_COMPRESSORS: Final = "langchain_core.documents.compressor"
_CROSS_ENCODERS: Final = "langchain_core.cross_encoders"


# -- pipeline -----------------------------------------------------------------------------------------------------
def pipeline_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``RunnableSequence`` run at the top level (no ragotel step current) is a pipeline; nested ones are not."""
    if current_operation() is not None:
        return None
    config = kwargs.get("config", args[1] if len(args) > 1 else None)
    name = config.get("run_name") if isinstance(config, Mapping) else None
    return {sc.RAGOTEL_PIPELINE_NAME: name or getattr(instance, "name", None) or type(instance).__name__}


def pipeline_batch_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """``batch(inputs, config=None)``: one pipeline span for the batch (see the module docstring), with its size."""
    inputs = kwargs.get("inputs", args[0] if args else None)
    config = kwargs.get("config", args[1] if len(args) > 1 else None)
    first = config[0] if isinstance(config, list | tuple) and config else config
    attrs = pipeline_request(instance, (None, first), {})
    if attrs is not None:
        attrs[sc.RAGOTEL_PIPELINE_BATCH_SIZE] = len(inputs) if isinstance(inputs, list | tuple) else None
    return attrs


class _PassThrough:
    """A stream reader for pipelines: the span only needs to last as long as the stream."""

    __slots__ = ()

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Nothing to read from a pipeline's chunks."""

    def on_end(self, op: Operation) -> None:
        """Nothing to record."""


_PASS_THROUGH: Final = _PassThrough()


def pipeline_stream(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any) -> _PassThrough:
    """Follow the stream so the pipeline span covers it."""
    return _PASS_THROUGH


# -- the target table ---------------------------------------------------------------------------------------------
def _targets() -> tuple[Target, ...]:
    gen, ret, vdb = sc.STAGE_GENERATION, sc.STAGE_RETRIEVAL, sc.STAGE_VECTOR_DB
    rows: list[Target] = []
    for method in ("invoke", "ainvoke"):
        rows.append(
            Target(_RETRIEVERS, f"BaseRetriever.{method}", ret, COMPONENT,
                   request=r.retriever_request, response=r.retriever_response,
                   request_content=r.retriever_request_content, response_content=r.retriever_response_content)
        )  # fmt: skip
    for method in ("similarity_search_with_relevance_scores", "asimilarity_search_with_relevance_scores"):
        rows.append(
            Target(_VECTORSTORES, f"VectorStore.{method}", ret, COMPONENT,
                   request=r.scored_search_request, response=r.scored_search_response,
                   request_content=r.scored_search_request_content,
                   response_content=r.scored_search_response_content)
        )  # fmt: skip
    for module, cls, generate_request, stream_request in (
        (_CHAT, "BaseChatModel", m.chat_generate_request, m.chat_stream_request),
        (_LLMS, "BaseLLM", m.llm_generate_request, m.llm_stream_request),
    ):
        for method in ("generate", "agenerate"):
            rows.append(
                Target(module, f"{cls}.{method}", gen, COMPONENT,
                       request=generate_request, response=m.generate_response,
                       request_content=m.generate_request_content, response_content=m.generate_response_content)
            )  # fmt: skip
        for method in ("stream", "astream"):
            rows.append(
                Target(module, f"{cls}.{method}", gen, COMPONENT, request=stream_request,
                       request_content=m.stream_request_content, stream=m.model_stream, is_async=False)
            )  # fmt: skip
    for method, request, response in (
        ("_similarity_search_with_score_by_vector", r.in_memory_query_request, r.in_memory_query_response),
        ("add_documents", r.in_memory_add_request, None),
        ("aadd_documents", r.in_memory_add_request, None),
        ("delete", r.in_memory_delete_request, None),
        ("get_by_ids", r.in_memory_get_request, r.rows_response),
    ):
        rows.append(Target(_IN_MEMORY, f"InMemoryVectorStore.{method}", vdb, COMPONENT, request=request,
                           response=response))  # fmt: skip
    for method in ("invoke", "ainvoke", "stream", "astream"):
        rows.append(
            Target(_RUNNABLES, f"RunnableSequence.{method}", sc.STAGE_PIPELINE, COMPONENT, request=pipeline_request,
                   stream=pipeline_stream if "stream" in method else None,
                   is_async=method == "ainvoke")
        )  # fmt: skip
    for method in ("batch", "abatch"):
        rows.append(
            Target(_RUNNABLES, f"RunnableSequence.{method}", sc.STAGE_PIPELINE, COMPONENT,
                   request=pipeline_batch_request, is_async=method == "abatch")
        )  # fmt: skip
    return tuple(rows)


def _embedding_targets() -> dict[str, Target]:
    emb = sc.STAGE_EMBEDDING
    docs = {"request": r.embed_documents_request, "response": r.embed_documents_response}
    query = {"request": r.embed_query_request, "response": r.embed_query_response}
    return {
        name: Target(_EMBEDDINGS, f"Embeddings.{name}", emb, COMPONENT, request_content=r.embed_request_content,
                     is_async=name.startswith("a"), **extractors)  # type: ignore[arg-type]
        for name, extractors in (
            ("embed_documents", docs), ("embed_query", query), ("aembed_documents", docs), ("aembed_query", query)
        )
    }  # fmt: skip


def _rerank_targets() -> tuple[dict[str, Target], dict[str, Target]]:
    """Targets of reranking compressors, and of cross-encoders (which merge into them)."""
    compress = {
        name: Target(_COMPRESSORS, f"BaseDocumentCompressor.{name}", sc.STAGE_RERANK, COMPONENT,
                     request=rr.compress_request, response=rr.compress_response,
                     request_content=rr.compress_request_content, response_content=rr.compress_response_content,
                     is_async=name.startswith("a"))
        for name in ("compress_documents", "acompress_documents")
    }  # fmt: skip
    score = {
        "score": Target(_CROSS_ENCODERS, "BaseCrossEncoder.score", sc.STAGE_RERANK, COMPONENT,
                        request=rr.score_request, response=rr.score_response, is_async=False)
    }  # fmt: skip
    return compress, score


def _factories(targets: dict[str, Target]) -> dict[str, WrapperFactory]:
    return {name: functools.partial(make_wrapper, target) for name, target in targets.items()}


class LangChainInstrumentor(RagotelInstrumentor):
    """Spans and metrics for langchain-core: retrieval, generation, embedding, vector_db, rerank and pipelines."""

    library: ClassVar[str] = "langchain"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("langchain-core >= 0.3",)

    def _instrument_extra(self, **kwargs: Any) -> None:
        self._ragotel_hooks: list[SubclassHook] = []
        compress, score = _rerank_targets()
        for module, name, factories in (
            (_EMBEDDINGS, "Embeddings", _factories(_embedding_targets())),
            (_VECTORSTORES, "VectorStore", {method: st.search_wrapper(method) for method in st.SEARCH_METHODS}),
            (_COMPRESSORS, "BaseDocumentCompressor", _factories(compress)),
            (_CROSS_ENCODERS, "BaseCrossEncoder", _factories(score)),
        ):
            # one family failing must not undo the other hooks
            hook = functools.partial(self._hook, module, name, factories)
            _guard.warned(f"instrumenting langchain {name} classes", hook, None)

    def _hook(self, module: str, name: str, factories: dict[str, WrapperFactory]) -> None:
        try:
            base = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:  # not installed, or not in this version: quietly nothing
            _guard.report(f"langchain: {module}.{name} not importable", exc)
            return
        hook = SubclassHook(base, factories)
        hook.install()
        self._ragotel_hooks.append(hook)

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        for hook in reversed(getattr(self, "_ragotel_hooks", [])):
            _guard.call(f"uninstrumenting langchain {hook.base.__name__} classes", hook.remove, None)
        self._ragotel_hooks = []
