"""LangChain (langchain-core) instrumentation: retrievers, chat models/LLMs, embeddings, vector stores, sequences.

Hooks sit where langchain-core defines the entry points (``BaseRetriever.invoke``, ``BaseChatModel.generate`` ...),
so every integration inherits them and nothing is wrapped twice. Embeddings are the exception: their methods are
abstract on ``Embeddings`` and defined by each integration class, and LangChain's callbacks never see them. So the
concrete classes are wrapped where they define the methods — every subclass that exists at instrument time, and
any later one when its first instance is created (a ``__new__`` on ``Embeddings``; ``__init_subclass__`` would miss
pydantic-based classes, whose ``BaseModel.__init_subclass__`` does not chain up). Callbacks were not used for the
other steps either: a callback handler cannot make its span current around the step, so the OpenAI call inside a
chat model would not nest (and merge) under it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.instrumentation._base import RagotelInstrumentor, Target, make_wrapper
from ragotel.instrumentation.langchain import models as m
from ragotel.instrumentation.langchain import retrieval as r
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


# -- pipeline -----------------------------------------------------------------------------------------------------
def pipeline_request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``RunnableSequence`` run at the top level (no ragotel step current) is a pipeline; nested ones are not."""
    if current_operation() is not None:
        return None
    config = kwargs.get("config", args[1] if len(args) > 1 else None)
    name = config.get("run_name") if isinstance(config, Mapping) else None
    return {sc.RAGOTEL_PIPELINE_NAME: name or getattr(instance, "name", None) or type(instance).__name__}


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


class _EmbeddingsHook:
    """Wraps the embed methods of concrete ``Embeddings`` classes where each defines them, once per class.

    The ``__new__`` hook is installed once and stays: after ``remove()`` it only passes through. CPython cannot
    give a class back its C-level constructor slot once a Python ``__new__`` was set on a base — deleting it makes
    every subclass reject constructor arguments (``object.__new__() takes exactly one argument``) — so an inert
    pass-through is the transparent way to uninstrument.
    """

    active: ClassVar[_EmbeddingsHook | None] = None  # the hook the installed __new__ reports to, if any

    def __init__(self, base: type) -> None:
        self.base = base
        self.targets = _embedding_targets()
        self.wrapped: list[tuple[weakref.ref[type], str]] = []
        self.seen: weakref.WeakSet[type] = weakref.WeakSet()
        self.lock = threading.Lock()

    def wrap_class(self, cls: type) -> None:
        """Wrap ``cls`` and its ``Embeddings`` bases (idempotent; thread-safe)."""
        with self.lock:
            for klass in cls.__mro__:
                if klass in self.seen or not issubclass(klass, self.base):
                    continue
                self.seen.add(klass)
                for name, target in self.targets.items():
                    func = vars(klass).get(name)
                    if func is None or getattr(func, "__isabstractmethod__", False):
                        continue
                    if isinstance(func, wrapt.ObjectProxy):
                        continue  # wrapped already (by us earlier, or another tool): never twice
                    # one odd class must not stop the others
                    wrap = functools.partial(self._wrap, klass, name, target, func)
                    _guard.call(f"langchain: wrapping {klass.__qualname__}.{name}", wrap, None)

    def _wrap(self, klass: type, name: str, target: Target, func: Any) -> None:
        wrapt.wrap_function_wrapper(klass, name, make_wrapper(target, func))
        self.wrapped.append((weakref.ref(klass), name))

    def install(self) -> None:
        """Wrap every existing subclass, and any later one at its first instantiation."""
        pending = [self.base]
        while pending:
            cls = pending.pop()
            self.wrap_class(cls)
            pending.extend(cls.__subclasses__())
        base = self.base
        _EmbeddingsHook.active = self
        current = vars(base).get("__new__")
        if getattr(getattr(current, "__func__", current), "__ragotel__", False):
            return  # installed by an earlier instrument(): it now reports to this hook
        if current is not None:
            raise TypeError(f"{base.__qualname__} defines __new__ itself; not hooking it")

        def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
            hook = _EmbeddingsHook.active
            if hook is not None and cls not in hook.seen:
                _guard.call("langchain: wrapping a new Embeddings class", lambda: hook.wrap_class(cls), None)
            following = super(base, cls).__new__  # type: ignore[arg-type]  # the next __new__ after Embeddings
            return following(cls) if following is object.__new__ else following(cls, *args, **kwargs)

        __new__.__ragotel__ = True  # type: ignore[attr-defined]
        base.__new__ = staticmethod(__new__)  # type: ignore[assignment,method-assign]

    def remove(self) -> None:
        """Unwrap every wrapped method; the ``__new__`` hook turns into a pass-through (see the class docstring)."""
        if _EmbeddingsHook.active is self:
            _EmbeddingsHook.active = None
        with self.lock:
            for ref, name in reversed(self.wrapped):
                klass = ref()
                if klass is not None:
                    _guard.call(f"unwrapping {klass.__qualname__}.{name}", functools.partial(unwrap, klass, name), None)
            self.wrapped.clear()
            self.seen = weakref.WeakSet()


class LangChainInstrumentor(RagotelInstrumentor):
    """Spans and metrics for langchain-core: retrieval, generation, embedding, vector_db (in-memory) and pipelines."""

    library: ClassVar[str] = "langchain"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("langchain-core >= 0.3",)

    def _instrument_extra(self, **kwargs: Any) -> None:
        self._ragotel_embeddings: _EmbeddingsHook | None = None
        try:
            from langchain_core.embeddings import Embeddings  # noqa: PLC0415  only once langchain is being instrumented
        except ImportError as exc:  # not installed (e.g. loaded by opentelemetry-instrument anyway): quietly nothing
            _guard.report("langchain: langchain_core not importable", exc)
            return
        # embeddings failing must not undo the other hooks
        _guard.warned("instrumenting langchain embeddings", functools.partial(self._hook_embeddings, Embeddings), None)

    def _hook_embeddings(self, embeddings: type) -> None:
        hook = _EmbeddingsHook(embeddings)
        hook.install()
        self._ragotel_embeddings = hook

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        hook = getattr(self, "_ragotel_embeddings", None)
        if hook is not None:
            _guard.call("uninstrumenting langchain embeddings", hook.remove, None)
        self._ragotel_embeddings = None
