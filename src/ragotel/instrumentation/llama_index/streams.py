"""Streamed LlamaIndex LLM calls: the stream methods of every ``BaseLLM`` subclass, wrapped by the common wrapper."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import wrapt

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.instrumentation._base import Target, make_wrapper
from ragotel.instrumentation.llama_index.extract import (
    COMPONENT,
    STREAM_METHODS,
    generation_content,
    generation_request,
    generation_response,
    generation_result_content,
    inside_llama_step,
)
from ragotel.telemetry import Operation


def _stream_request(
    method: str, patcher: StreamPatcher
) -> Callable[[Any, tuple[Any, ...], Mapping[str, Any]], dict[str, Any] | None]:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        if not patcher.active:
            return None  # uninstrumented, but our wrapper is still inside someone else's: call through
        if inside_llama_step(sc.STAGE_GENERATION):
            return None  # e.g. CustomLLM.stream_chat -> stream_complete, or an override calling super()
        return generation_request(instance, method, kwargs)

    return request


def _stream_content(method: str) -> Callable[[Any, tuple[Any, ...], Mapping[str, Any]], dict[str, Any] | None]:
    def request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        return generation_content(instance, method, {"args": args, "kwargs": kwargs})

    return request_content


class _StreamReader:
    """Keeps the last chunk: LlamaIndex's final chunk carries the whole text and the provider's usage."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: Any = None

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        self.last = chunk

    def on_end(self, op: Operation) -> None:
        if self.last is None:
            return
        op.set_attributes(generation_response(None, self.last) or {})
        if op.capture_content:
            for key, value in (generation_result_content(None, self.last) or {}).items():
                op.capture(key, value)


def _stream_reader(
    instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any
) -> _StreamReader | None:
    return _StreamReader() if inspect.isgenerator(result) or inspect.isasyncgen(result) else None


class StreamPatcher:
    """Wraps the stream methods each ``BaseLLM`` subclass defines, now and in classes defined later; undoes it."""

    def __init__(self) -> None:
        self.wrapped: list[tuple[type, str, Any, Any]] = []  # (class, name, original, our wrapper)
        self.seen: set[int] = set()
        self.base: type | None = None
        self.active = True

    def patch_class(self, cls: type) -> None:
        if id(cls) in self.seen:
            return
        self.seen.add(id(cls))
        for name in STREAM_METHODS:
            original = vars(cls).get(name)
            if original is None or not callable(original) or getattr(original, "__isabstractmethod__", False):
                continue
            target = Target(
                cls.__module__,
                f"{cls.__qualname__}.{name}",
                sc.STAGE_GENERATION,
                COMPONENT,
                request=_stream_request(name, self),
                request_content=_stream_content(name),
                stream=_stream_reader,
            )
            # one class that cannot be patched must not stop the others
            patch = functools.partial(self._patch, cls, name, original, target)
            _guard.call(f"llama_index: wrapping {cls.__qualname__}.{name}", patch, None)

    def _patch(self, cls: type, name: str, original: Any, target: Target) -> None:
        wrapper = wrapt.FunctionWrapper(original, make_wrapper(target, getattr(original, "__func__", original)))
        type.__setattr__(cls, name, wrapper)
        self.wrapped.append((cls, name, original, wrapper))

    def install(self, base: type) -> None:
        pending = [base]
        while pending:
            cls = pending.pop()
            self.patch_class(cls)
            pending.extend(cls.__subclasses__())
        if "__init_subclass__" in vars(base):
            return  # LlamaIndex defines its own one day: classes defined later then go untraced, nothing breaks
        patcher = self
        above: Any = base  # the next __init_subclass__ after `base` in each new class's MRO (DispatcherSpanMixin's)

        def __init_subclass__(cls: Any, /, **kwargs: Any) -> None:
            super(above, cls).__init_subclass__(**kwargs)
            _guard.call("llama_index: new LLM class", lambda: patcher.patch_class(cls), None)

        type.__setattr__(base, "__init_subclass__", classmethod(__init_subclass__))
        self.base = base

    def uninstall(self) -> None:
        self.active = False
        base, self.base = self.base, None
        if base is not None and "__init_subclass__" in vars(base):
            type.__delattr__(base, "__init_subclass__")
        for cls, name, original, wrapper in reversed(self.wrapped):
            # The exact original object goes back (LlamaIndex's own dispatcher wrapper), unless someone wrapped
            # ours meanwhile: then it stays, and our wrapper inside it only calls through (``active`` is False).
            if vars(cls).get(name) is wrapper:
                type.__setattr__(cls, name, original)
        self.wrapped.clear()
        self.seen.clear()
