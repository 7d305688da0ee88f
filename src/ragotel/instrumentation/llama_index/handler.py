"""The LlamaIndex dispatcher span handler: dispatcher spans of value-returning calls become ragotel operations."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ragotel import _guard
from ragotel import semconv as sc
from ragotel import telemetry as _telemetry
from ragotel.instrumentation.llama_index.extract import COMPONENT, METHODS, Step, classify, inside_llama_step
from ragotel.telemetry import Operation


class Calls:
    """The operations of the dispatcher spans in flight, keyed by span id (``Class.method-<uuid4>``)."""

    def __init__(self) -> None:
        self.ops: dict[str, tuple[Operation, Step]] = {}

    def enter(self, id_: str, bound_args: inspect.BoundArguments, instance: Any) -> None:
        if instance is None or not is_instrumentation_enabled():
            return
        method = id_.partition("-")[0].rpartition(".")[2]
        if method not in METHODS:
            return
        step = classify(type(instance), method)
        if step is None:
            return
        if step.stage == sc.STAGE_PIPELINE and _telemetry.current_operation() is not None:
            return  # a query engine inside a running step (a user pipeline, a router engine, an agent tool)
        if inside_llama_step(step.stage):
            return
        args = bound_args.arguments
        op = _telemetry.current()._open(step.stage, COMPONENT, step.request(instance, method, args))
        if not op.recording:
            return
        if step.request_content is not None and op.capture_content:
            for key, value in (step.request_content(instance, method, args) or {}).items():
                op.capture(key, value)
        self.ops[id_] = (op, step)

    def exit(self, id_: str, instance: Any, result: Any) -> None:
        entry = self.ops.pop(id_, None)
        if entry is None:
            return
        op, step = entry
        # a result of an unexpected shape must not reach the caller
        _guard.call("llama_index response extractor", functools.partial(_read, op, step, instance, result), None)
        op.end()

    def drop(self, id_: str, err: BaseException | None) -> None:
        entry = self.ops.pop(id_, None)
        if entry is not None:
            entry[0].end(err)


def _read(op: Operation, step: Step, instance: Any, result: Any) -> None:
    op.detach()
    if step.response is not None:
        op.set_attributes(step.response(instance, result) or {})
    if step.response_content is not None and op.capture_content:
        for key, value in (step.response_content(instance, result) or {}).items():
            op.capture(key, value)


@functools.lru_cache(maxsize=1)
def span_handler_class() -> type:
    """The dispatcher span handler class (defined lazily: it subclasses LlamaIndex's pydantic base)."""
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler  # noqa: PLC0415 - optional library, imported only when instrumenting
    from pydantic import PrivateAttr  # noqa: PLC0415 - optional library, imported only when instrumenting

    class RagotelSpanHandler(BaseSpanHandler[Any]):
        """Maps LlamaIndex dispatcher spans to ragotel operations (never raises)."""

        _calls: Calls = PrivateAttr()

        def __init__(self, calls: Calls) -> None:
            super().__init__()
            self._calls = calls

        @classmethod
        def class_name(cls) -> str:
            return "RagotelSpanHandler"

        def span_enter(
            self,
            id_: str,
            bound_args: inspect.BoundArguments,
            instance: Any = None,
            parent_id: str | None = None,
            tags: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            _guard.call("llama_index span_enter", lambda: self._calls.enter(id_, bound_args, instance), None)

        def span_exit(
            self,
            id_: str,
            bound_args: inspect.BoundArguments,
            instance: Any = None,
            result: Any = None,
            **kwargs: Any,
        ) -> None:
            _guard.call("llama_index span_exit", lambda: self._calls.exit(id_, instance, result), None)

        def span_drop(
            self,
            id_: str,
            bound_args: inspect.BoundArguments,
            instance: Any = None,
            err: BaseException | None = None,
            **kwargs: Any,
        ) -> None:
            _guard.call("llama_index span_drop", lambda: self._calls.drop(id_, err), None)

        # Required by the base class; unused because the three methods above are overridden.
        def new_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
            return None

    return RagotelSpanHandler
