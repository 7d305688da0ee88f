"""Stage helpers for custom code: ``ragotel.pipeline/retrieval/rerank/embedding/generation``.

Each helper works as a decorator (sync, async, generator and async generator functions) and as a context
manager (``with`` / ``async with``) yielding the :class:`~ragotel.telemetry.Operation`, whose methods record
documents, usage and models. A decorated generator's span lasts until the generator is exhausted, closed or
collected. Telemetry failures never reach the caller; the caller's own exceptions pass through untouched.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from ragotel import semconv as sc
from ragotel import telemetry as _telemetry
from ragotel.streams import wrap_stream
from ragotel.telemetry import Operation

__all__ = ["Stage", "embedding", "generation", "pipeline", "rerank", "retrieval"]

F = TypeVar("F", bound=Callable[..., Any])

# The operations opened by `with stage:` blocks, innermost last, per context (task/thread) so that one Stage
# object may be entered concurrently.
_open: ContextVar[tuple[Operation, ...]] = ContextVar("ragotel_open_stages", default=())


class Stage:
    """A reusable description of a step; each call of the decorated function, or each ``with``, is one span."""

    __slots__ = ("_attributes", "_name_from_function", "component", "stage")

    def __init__(
        self,
        stage: str,
        attributes: dict[str, Any],
        *,
        component: str = sc.COMPONENT_CUSTOM,
        name_from_function: bool = False,
    ) -> None:
        self.stage = stage
        self.component = component
        self._attributes = {k: v for k, v in attributes.items() if v is not None}
        self._name_from_function = name_from_function

    def _start(self, attributes: dict[str, Any], *, attach: bool = True) -> Operation:
        return _telemetry.current().start(self.stage, self.component, attributes, attach=attach)

    # -- decorator ---------------------------------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        attributes = dict(self._attributes)
        if self._name_from_function and sc.RAGOTEL_PIPELINE_NAME not in attributes:
            attributes[sc.RAGOTEL_PIPELINE_NAME] = getattr(func, "__qualname__", None) or repr(func)
        start = self._start

        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                op = start(attributes, attach=False)
                try:
                    gen = func(*args, **kwargs)  # runs none of the body: each step runs in the span (the proxy)
                except BaseException as exc:
                    op.fail(exc)
                    raise
                return wrap_stream(gen, op)

            return cast(F, gen_wrapper)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                op = start(attributes)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    op.fail(exc)
                    raise
                op.end()
                return result

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            op = start(attributes)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                op.fail(exc)
                raise
            op.end()
            return result

        return cast(F, sync_wrapper)

    # -- context manager ---------------------------------------------------------------------------------------------
    def __enter__(self) -> Operation:
        op = self._start(self._attributes)
        _open.set((*_open.get(), op))
        return op

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        stack = _open.get()
        if not stack:
            return
        op = stack[-1]
        _open.set(stack[:-1])
        # GeneratorExit / KeyboardInterrupt are not failures of the step itself, but still end it.
        op.end(exc if isinstance(exc, Exception) else None)

    async def __aenter__(self) -> Operation:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def pipeline(
    name: str | None = None, *, user_id: str | None = None, session_id: str | None = None, component: str = "custom"
) -> Stage:
    """The root of one RAG request. ``user_id``/``session_id`` go on the span only (never on metrics)."""
    return Stage(
        sc.STAGE_PIPELINE,
        {sc.RAGOTEL_PIPELINE_NAME: name, sc.ENDUSER_ID: user_id, sc.SESSION_ID: session_id},
        component=component,
        name_from_function=name is None,
    )


def retrieval(data_source: str | None = None, *, top_k: int | None = None, component: str = "custom") -> Stage:
    """A retrieval step; record what it found with ``op.add_documents(...)``."""
    return Stage(
        sc.STAGE_RETRIEVAL,
        {
            sc.GEN_AI_OPERATION_NAME: sc.OP_RETRIEVAL,
            sc.GEN_AI_DATA_SOURCE_ID: data_source,
            sc.GEN_AI_RETRIEVAL_TOP_K: top_k,
        },
        component=component,
    )


def rerank(model: str | None = None, *, top_n: int | None = None, component: str = "custom") -> Stage:
    """A re-ranking step; record the surviving documents with ``op.add_documents(...)``."""
    return Stage(
        sc.STAGE_RERANK, {sc.RAGOTEL_RERANK_MODEL: model, sc.GEN_AI_RETRIEVAL_TOP_K: top_n}, component=component
    )


def embedding(model: str | None = None, *, provider: str | None = None, component: str = "custom") -> Stage:
    """An embedding step; record usage with ``op.record_usage(...)``."""
    return Stage(
        sc.STAGE_EMBEDDING,
        {sc.GEN_AI_OPERATION_NAME: sc.OP_EMBEDDINGS, sc.GEN_AI_REQUEST_MODEL: model, sc.GEN_AI_PROVIDER_NAME: provider},
        component=component,
    )


def generation(model: str | None = None, *, provider: str | None = None, component: str = "custom") -> Stage:
    """A generation step; record ``op.record_usage(...)`` and ``op.set_response_model(...)``."""
    return Stage(
        sc.STAGE_GENERATION,
        {sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT, sc.GEN_AI_REQUEST_MODEL: model, sc.GEN_AI_PROVIDER_NAME: provider},
        component=component,
    )
