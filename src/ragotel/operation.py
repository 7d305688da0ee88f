"""Operation: one object per RAG step that owns its span, context, timer and metrics; the only code creating spans.

Instrumentations and the stage API never touch spans or instruments directly: they start an :class:`Operation`
through the current :class:`~ragotel.telemetry.Telemetry`, feed it attributes, usage and documents, and end it once.
Every public method here is safe to call from telemetry code: none raises into the caller (failures go to
:mod:`ragotel._guard`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.bounds import MAX_TEXT, clip, items, prune
from ragotel.instruments import METRIC_KEYS, Instruments
from ragotel.naming import error_type, span_name
from ragotel.openinference import end_attributes

__all__ = ["NOOP", "OP_KEY", "VECTOR_DB_WATCH_KEY", "MergedOperation", "Operation", "Started"]

OP_KEY: Final = otel_context.create_key("ragotel-operation")
# A framework call that makes a vector_db span only when no client underneath makes one (LangChain's generic
# vector store search) puts a callable here; every vector_db operation opened in that context calls it.
VECTOR_DB_WATCH_KEY: Final = otel_context.create_key("ragotel-vector-db-watch")
Started = tuple[int, float]  # (time.time_ns(), time.perf_counter()) of a step recorded after the fact
AttrValue = str | bool | int | float | list[str] | list[int] | list[float] | list[bool] | tuple[Any, ...]


def _span_key() -> str:
    """The context key the trace API keeps the current span under, asked of the API (not its private name)."""
    (key,) = trace.set_span_in_context(trace.INVALID_SPAN, Context()).keys()
    return key


_SPAN_KEY: Final = _span_key()
_END_LOCK: Final = threading.Lock()  # "ended exactly once" across threads; held for a flag flip only
_EMPTY: Final = Context()
_USAGE_KEYS: Final = frozenset({sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS})
# An inner step reporting one of these renames the merged span (the provider call knows the model best).
_NAMING_KEYS: Final = frozenset({sc.GEN_AI_REQUEST_MODEL, sc.DB_COLLECTION_NAME, sc.RAGOTEL_RERANK_MODEL})


class Operation:
    """One RAG step: a span (made current while the step's own code runs), a timer and its metric records.

    Attributes reported while the step runs are kept and set on the span once, when it ends (with the error,
    usage and stream outcome): one ``set_attributes`` per span.

    Thread-safety: an operation belongs to the call that started it; ``end`` may come from another thread (a
    stream finished at garbage collection) and runs at most once.
    """

    __slots__ = (
        "_ctx",
        "_depth",
        "_docs",
        "_ended",
        "_metric_attrs",
        "_metric_owned",
        "_pending",
        "_start",
        "_tel",
        "_token",
        "_ttfc",
        "_usage_depth",
        "_usage_in",
        "_usage_out",
        "component",
        "span",
        "stage",
    )

    def __init__(
        self,
        tel: Instruments | None,
        stage: str,
        component: str,
        attributes: dict[str, Any] | None,
        name: str | None,
        attach: bool,
        parent: Context | None = None,
        started: Started | None = None,
    ) -> None:
        """Start the step's span (a child of ``parent``, else of the current context) and, if ``attach``, make it
        current. Callers guard it: :meth:`ragotel.telemetry.Telemetry.start`."""
        self.stage = stage
        self.component = component
        self._tel = tel
        self._ended = tel is None
        self._token: object | None = None
        self._ttfc: float | None = None
        self._usage_in: int | None = None
        self._usage_out: int | None = None
        self._usage_depth = 0
        self._depth = 0
        self._docs: int | None = None
        self._pending: dict[str, Any] = {}
        if tel is None:
            self._metric_attrs: dict[str, Any] = {}
            self._metric_owned = True
            self.span: trace.Span = trace.INVALID_SPAN
            self._ctx = _EMPTY
            self._start = 0.0
            return
        plan = tel.start_plan(stage, component, attributes, name)
        # The plan's own (shared, never mutated) dict until the step adds a metric attribute: see _own_metric_attrs.
        self._metric_attrs = plan.metric_attributes
        self._metric_owned = False
        if parent is None:
            parent = otel_context.get_current()
        start_ns = started[0] if started is not None else None  # a step recorded after it ran
        self.span = span = tel.tracer.start_span(plan.name, parent, plan.kind, plan.attributes, start_time=start_ns)
        # Built once: the context this step runs in (attach, every stream step) and its metrics' exemplar context;
        # one Context with both values (what set_span_in_context then set_value would give, in one copy, not four).
        self._ctx = Context({**parent, _SPAN_KEY: span, OP_KEY: self})
        self._start = started[1] if started is not None else time.perf_counter()
        if attach:
            self._token = otel_context.attach(self._ctx)

    # -- context ---------------------------------------------------------------------------------------------------
    def attach(self) -> None:
        """Make this operation's span current in the calling context (until :meth:`detach` or :meth:`end`)."""
        if self._tel is None or self._token is not None or self._ended:
            return
        self._token = otel_context.attach(self._ctx)

    def detach(self) -> None:
        """Restore the context that was current before :meth:`attach`."""
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]  # the token attach() returned

    def enter_step(self) -> object | None:
        """Make the span current for one step of a stream or generator; pass the result to :meth:`exit_step`."""
        if self._tel is None or self._ended:
            return None
        return otel_context.attach(self._ctx)

    @staticmethod
    def exit_step(token: object | None) -> None:
        """Restore the caller's context after a step :meth:`enter_step` began."""
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]  # the token attach() returned

    @contextmanager
    def activated(self) -> Iterator[None]:
        """:meth:`enter_step` / :meth:`exit_step` around a block."""
        token = self.enter_step()
        try:
            yield
        finally:
            self.exit_step(token)

    @property
    def ended(self) -> bool:
        """True once the operation has ended."""
        return self._ended

    @property
    def recording(self) -> bool:
        """False for the no-op operation (suppressed or failed to start)."""
        return self._tel is not None

    @property
    def capture_content(self) -> bool:
        """Whether prompts, completions, query text, documents and vectors may be recorded."""
        return self._tel is not None and self._tel.capture_content

    @property
    def capture_limit(self) -> int:
        """Most characters of one captured value (0 when content is not captured): the bound for accumulating it."""
        tel = self._tel
        return tel.capture_max_length if tel is not None and tel.capture_content else 0

    # -- recording -------------------------------------------------------------------------------------------------
    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set span attributes (``None`` values skipped); low-cardinality ones also label this step's metrics."""
        tel = self._tel  # _set_attributes_at(attributes, self._depth), one call less on every step's response
        if tel is None or self._ended or not attributes:
            return
        _guard.run("Operation.set_attributes", None, self._apply, tel, attributes, self._depth)

    def _set_attributes_at(self, attributes: Mapping[str, Any], depth: int) -> None:
        """Set attributes reported by the step ``depth`` merges deep (0: this step itself)."""
        tel = self._tel
        if tel is None or self._ended or not attributes:
            return
        _guard.run("Operation.set_attributes", None, self._apply, tel, attributes, depth)

    def _apply(self, tel: Instruments, attributes: Mapping[str, Any], depth: int) -> None:
        # clip() only cuts strings: numbers (most response attributes) are taken as they are.
        clean = {
            k: v if v.__class__ is not str or len(v) <= MAX_TEXT else clip(v)
            for k, v in attributes.items()
            if v is not None
        }
        if not clean:
            return
        if not METRIC_KEYS.isdisjoint(clean):
            self._note_metric_attrs(clean)
        if not _USAGE_KEYS.isdisjoint(clean):
            self._add_usage(
                clean.pop(sc.GEN_AI_USAGE_INPUT_TOKENS, None), clean.pop(sc.GEN_AI_USAGE_OUTPUT_TOKENS, None), depth
            )
        count = clean.get(sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT)
        if isinstance(count, int):
            self._docs = count
        self._pending.update(tel.aliased(clean))

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (see :meth:`set_attributes`)."""
        self.set_attributes({key: value})

    def capture(self, key: str, value: Any) -> None:
        """Record content (text, messages, documents) only when content capture is on, truncated to the limit."""
        tel = self._tel
        if tel is None or not tel.capture_content or self._ended or value is None:
            return
        _guard.run("Operation.capture", None, self._capture, tel, key, value)

    def _capture(self, tel: Instruments, key: str, value: Any) -> None:
        if not isinstance(value, str):
            # Pruned first: serialising a huge or deep value only to cut it would cost its whole size.
            value = json.dumps(prune(value, tel.capture_max_length), default=str, ensure_ascii=False)
        self.span.set_attribute(key, tel.truncate(value))

    def record_usage(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """Add token usage (summed when several provider calls make up one step)."""
        self.set_attributes({sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens, sc.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens})

    def add_documents(self, documents: Iterable[Any], *, scores: Iterable[float | None] | None = None) -> None:
        """Record retrieved documents: count and best score always; ids and scores only with content capture.

        Each document may be a mapping with ``id``/``score``, an object with ``id``/``score`` attributes,
        an ``(id, score)`` pair, or a bare id. ``scores`` overrides the scores found on the documents. All are
        counted; ids and scores are read from the first :data:`~ragotel.bounds.MAX_ITEMS` only.
        """
        if self._tel is None or self._ended:
            return
        _guard.run("Operation.add_documents", None, self._add_documents, documents, scores)

    def _add_documents(self, documents: Iterable[Any], scores: Iterable[float | None] | None) -> None:
        ids: list[str] = []
        found: list[float] = []
        listed = documents if isinstance(documents, list | tuple) else list(documents)
        docs = items(listed)
        explicit = None if scores is None else items(scores if isinstance(scores, list | tuple) else list(scores))
        for i, doc in enumerate(docs):
            doc_id, score = _doc_id_score(doc)
            if explicit is not None and i < len(explicit):
                score = explicit[i]
            if doc_id is not None:
                ids.append(str(doc_id))
            if isinstance(score, int | float):
                found.append(float(score))
        attrs: dict[str, Any] = {sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(listed)}
        if found:
            attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] = max(found)
        self.set_attributes(attrs)
        if self.capture_content:
            if ids:
                self.capture(sc.RAGOTEL_RETRIEVAL_DOCUMENT_IDS, ids)
            if found:
                self.span.set_attribute(sc.RAGOTEL_RETRIEVAL_DOCUMENT_SCORES, found)

    def set_response_model(self, model: str | None) -> None:
        """Record the model that actually answered."""
        self.set_attributes({sc.GEN_AI_RESPONSE_MODEL: model})

    def first_chunk(self) -> None:
        """Mark the arrival of a streamed generation's first chunk (only the first call counts).

        Time to first chunk is a GenAI measure: other streamed stages (a retrieval generator) do not record it.
        """
        if self._tel is None or self._ended or self._ttfc is not None or self.stage != sc.STAGE_GENERATION:
            return
        self._ttfc = time.perf_counter() - self._start
        self._pending[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = self._ttfc

    def fail(self, exc: BaseException) -> None:
        """End the operation as failed: status ERROR, ``error.type``, the exception recorded. Never raises."""
        self.end(exc)

    def end(self, exc: BaseException | None = None, *, ended_early: bool = False) -> None:
        """End the span and record the metrics, exactly once. Never raises."""
        if self._ended:
            return
        with _END_LOCK:
            if self._ended:
                return
            self._ended = True
        _guard.run("Operation.end", None, self._end_and_record, exc, ended_early)
        # The context holds this operation (OP_KEY): dropping it breaks that reference cycle, so the operation, its
        # context and span go when the caller lets go of them, not at the next garbage collection.
        self._ctx = _EMPTY

    def _end_and_record(self, exc: BaseException | None, ended_early: bool) -> None:
        """End the span, then record the step's metrics (none when ending the span failed)."""
        duration = self._end_span(exc, ended_early)
        tel = self._tel
        assert tel is not None  # only a recording operation ends
        # Unguarded here: Operation.end's guard covers it (a failure is reported as Operation.end).
        tel.record(
            self.stage,
            self.component,
            duration,
            self._metric_attrs,
            self._ctx,
            self._ttfc,
            (self._usage_in, self._usage_out),
            self._docs,
        )

    def _end_span(self, exc: BaseException | None, ended_early: bool) -> float:
        """End the span; the step's duration."""
        duration = time.perf_counter() - self._start
        self.detach()
        span = self.span
        final = self._pending
        if exc is not None:
            kind = error_type(exc)
            self._own_metric_attrs()[sc.ERROR_TYPE] = final[sc.ERROR_TYPE] = kind
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {exc}"[:1024]))
        if ended_early:
            final[sc.RAGOTEL_STREAM_ENDED_EARLY] = True
        tel = self._tel
        assert tel is not None  # only a recording operation ends
        if self._usage_in is not None or self._usage_out is not None:
            usage = {}
            if self._usage_in is not None:
                usage[sc.GEN_AI_USAGE_INPUT_TOKENS] = self._usage_in
            if self._usage_out is not None:
                usage[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = self._usage_out
            final.update(tel.aliased(usage))
        if tel.openinference:
            # Read back from the SDK span (an API-only span has no attributes: the kind alone was set at start).
            # What the step reported is still pending here (set once below): it wins over what the span carries.
            carried = {**(getattr(span, "attributes", None) or {}), **final}
            final.update(
                end_attributes(
                    self.stage, carried, self._usage_in, self._usage_out, capture_content=tel.capture_content
                )
            )
        if final:
            span.set_attributes(final)
        span.end()
        return duration

    # -- internals -------------------------------------------------------------------------------------------------
    def _own_metric_attrs(self) -> dict[str, Any]:
        """The step's metric attributes, copied from the shared start plan the first time the step changes them."""
        if not self._metric_owned:
            self._metric_attrs = dict(self._metric_attrs)
            self._metric_owned = True
        return self._metric_attrs

    def _note_metric_attrs(self, attrs: Mapping[str, Any]) -> None:
        owned = self._own_metric_attrs()
        for key in METRIC_KEYS.intersection(attrs):
            value = attrs[key]
            if isinstance(value, str | int | float | bool):
                owned[key] = value

    def _add_usage(self, input_tokens: Any, output_tokens: Any, depth: int = 0) -> None:
        # The innermost reporter wins: a framework step (LangChain) and the provider call it merged (OpenAI) both
        # read the same usage from the same response; only the deepest level's figures are kept (summed when that
        # level made several calls), whatever order the reports arrive in.
        if depth < self._usage_depth:
            return
        if depth > self._usage_depth:
            self._usage_depth = depth
            self._usage_in = self._usage_out = None
        if isinstance(input_tokens, int) and not isinstance(input_tokens, bool):
            self._usage_in = (self._usage_in or 0) + input_tokens
        if isinstance(output_tokens, int) and not isinstance(output_tokens, bool):
            self._usage_out = (self._usage_out or 0) + output_tokens


class MergedOperation(Operation):
    """A same-stage step nested directly in another: its records go to the outer step, which alone is counted."""

    __slots__ = ("_outer",)

    def __init__(
        self, outer: Operation, attributes: Mapping[str, Any] | None, name: str | None, attach: bool = True
    ) -> None:
        self._outer = outer
        self.stage = outer.stage
        self.component = outer.component
        self.span = outer.span
        self._tel = outer._tel
        self._ended = False
        self._token = None
        self._depth = outer._depth + 1
        self._ctx = otel_context.set_value(OP_KEY, self, trace.set_span_in_context(outer.span))
        # The timer, usage, document and metric slots stay unset: every method reading them is forwarded.
        if attributes:
            self._set_attributes_at(attributes, self._depth)
            new_name = name or span_name(outer.stage, attributes)
            if _NAMING_KEYS.intersection(attributes) or name:
                _guard.call("span.update_name", lambda: outer.span.update_name(new_name), None)
        # Current as the operation (on the outer span), so a step nested deeper merges through it and its
        # depth is known: see Operation._add_usage.
        if attach:
            self.attach()

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Forward to the outer step."""
        if not self._ended:
            self._outer._set_attributes_at(attributes, self._depth)

    def _set_attributes_at(self, attributes: Mapping[str, Any], depth: int) -> None:
        self._outer._set_attributes_at(attributes, depth)

    def capture(self, key: str, value: Any) -> None:
        """Forward to the outer step."""
        if not self._ended:
            self._outer.capture(key, value)

    def add_documents(self, documents: Iterable[Any], *, scores: Iterable[float | None] | None = None) -> None:
        """Forward to the outer step."""
        if not self._ended:
            self._outer.add_documents(documents, scores=scores)

    def first_chunk(self) -> None:
        """Forward to the outer step."""
        if not self._ended:
            self._outer.first_chunk()

    def end(self, exc: BaseException | None = None, *, ended_early: bool = False) -> None:
        """Only stop forwarding (and restore the context): the outer step ends the span and records metrics once."""
        self._ended = True
        self.detach()
        self._ctx = _EMPTY  # no reference cycle left (see Operation.end)


NOOP: Final = Operation(None, "", "", None, None, False)
"""The operation returned when instrumentation is suppressed or a start failed: every method does nothing."""


def _doc_id_score(doc: Any) -> tuple[Any, Any]:
    if isinstance(doc, Mapping):
        return doc.get("id"), doc.get("score")
    if isinstance(doc, tuple) and len(doc) == 2:
        return doc[0], doc[1]
    if isinstance(doc, str | int):
        return doc, None
    return getattr(doc, "id", None), getattr(doc, "score", None)
