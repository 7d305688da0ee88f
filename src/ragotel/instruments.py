"""Instruments: the tracer, the six histograms (built from one table) and the content settings of one provider pair.

An :class:`~ragotel.operation.Operation` records through these; :class:`ragotel.telemetry.Telemetry` adds opening
operations. Recording never raises into the caller (failures go to :mod:`ragotel._guard`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.trace import SpanKind

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.bounds import clip
from ragotel.config import DEFAULT_CAPTURE_MAX_LENGTH
from ragotel.naming import span_name
from ragotel.openinference import SPAN_KINDS

__all__ = [
    "CLIENT_STAGES",
    "DB_METRIC_KEYS",
    "GEN_AI_METRIC_KEYS",
    "METRIC_KEYS",
    "VERSION",
    "Instruments",
    "RecordPlan",
    "StartPlan",
    "metric_attributes",
    "record_plan",
]

VERSION: Final = "0.1.0"
GEN_AI_METRIC_KEYS: Final = frozenset(sc.GEN_AI_METRIC_ATTRIBUTES)
DB_METRIC_KEYS: Final = frozenset(sc.DB_METRIC_ATTRIBUTES)
METRIC_KEYS: Final = GEN_AI_METRIC_KEYS | DB_METRIC_KEYS
CLIENT_STAGES: Final = frozenset({sc.STAGE_GENERATION, sc.STAGE_EMBEDDING, sc.STAGE_VECTOR_DB})
# Stages whose duration gen_ai.client.operation.duration measures, and the operation name when a step gave none.
_GEN_AI_STAGES: Final = {sc.STAGE_GENERATION: sc.OP_CHAT, sc.STAGE_EMBEDDING: sc.OP_EMBEDDINGS}
_NO_EXEMPLAR: Final = Context()  # an empty context: the SDK neither looks up the current one nor samples an exemplar
_PLAN_MAX_TEXT: Final = 256  # longest string attribute value a cached start plan's key may hold
_PLAN_CACHE_SIZE: Final = 1024  # distinct (stage, component, attributes) of one process are few; bounded anyway

# (attribute, metric name, unit, description, bucket boundaries advised by the semantic conventions)
_HISTOGRAMS: Final = (
    (
        "stage_duration",
        sc.M_STAGE_DURATION,
        sc.UNIT_SECONDS,
        "Duration of one RAG stage (pipeline, retrieval, rerank, embedding, vector_db, generation).",
        sc.STAGE_DURATION_BUCKETS,
    ),
    (
        "gen_ai_duration",
        sc.M_GEN_AI_OPERATION_DURATION,
        sc.UNIT_SECONDS,
        "GenAI operation duration.",
        sc.GEN_AI_DURATION_BUCKETS,
    ),
    (
        "token_usage",
        sc.M_GEN_AI_TOKEN_USAGE,
        sc.UNIT_TOKENS,
        "Number of input and output tokens used.",
        sc.GEN_AI_TOKEN_BUCKETS,
    ),
    (
        "time_to_first_chunk",
        sc.M_GEN_AI_TIME_TO_FIRST_CHUNK,
        sc.UNIT_SECONDS,
        "Time from the request to the first chunk of a streamed response, measured by the client.",
        sc.GEN_AI_DURATION_BUCKETS,
    ),
    (
        "db_duration",
        sc.M_DB_OPERATION_DURATION,
        sc.UNIT_SECONDS,
        "Duration of database client operations.",
        sc.DB_DURATION_BUCKETS,
    ),
    (
        "retrieval_documents",
        sc.M_RETRIEVAL_DOCUMENTS,
        sc.UNIT_DOCUMENTS,
        "Number of documents a retrieval step returned.",
        sc.DOCUMENT_COUNT_BUCKETS,
    ),
)


class Instruments:
    """A tracer, the metric instruments and the content settings, bound to one tracer/meter provider pair.

    ``None`` providers mean the global OpenTelemetry ones (resolved lazily by the API's proxies, so instruments
    made before the app installs its providers still report to them).
    """

    stage_duration: Histogram
    gen_ai_duration: Histogram
    token_usage: Histogram
    time_to_first_chunk: Histogram
    db_duration: Histogram
    retrieval_documents: Histogram

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        capture_content: bool = False,
        capture_max_length: int = DEFAULT_CAPTURE_MAX_LENGTH,
        stability: Mapping[str, str] | None = None,
        openinference: bool = False,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer = trace.get_tracer("ragotel", VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter("ragotel", VERSION, meter_provider=meter_provider)
        self.meter = meter
        self.capture_content = capture_content
        self.capture_max_length = max(1, capture_max_length)
        self.openinference = openinference  # also emit OpenInference names (ragotel.openinference)
        self.aliases, self.dropped = sc.legacy_aliases(stability if stability is not None else sc.stability_modes())
        for attribute, name, unit, description, buckets in _HISTOGRAMS:
            histogram = meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=[float(b) for b in buckets],
            )
            setattr(self, attribute, histogram)
        self._start_plans: dict[tuple[Any, ...], StartPlan] = {}
        self._record_plans: dict[tuple[Any, ...], RecordPlan] = {}

    def truncate(self, text: str) -> str:
        """Cut captured content to the configured length."""
        limit = self.capture_max_length
        return text if len(text) <= limit else text[:limit] + "…"

    def aliased(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """``attrs`` with the legacy names the semconv stability opt-in asks for (``OTEL_SEMCONV_STABILITY_OPT_IN``)."""
        if not self.aliases:
            return attrs
        out = {k: v for k, v in attrs.items() if k not in self.dropped}
        for key, old in self.aliases.items():
            if key in attrs:
                out[old] = attrs[key]
        return out

    def start_plan(
        self, stage: str, component: str, attributes: Mapping[str, Any] | None, name: str | None
    ) -> StartPlan:
        """The span name, kind, start attributes and metric attributes of a step; computed once per distinct input.

        Steps of one call site repeat the same (stage, component, request attributes): the cleaning, naming and
        aliasing is done the first time and reused (a bounded cache; unhashable attribute values are not cached).
        """
        items = tuple(attributes.items()) if attributes else ()
        for _, value in items:
            if isinstance(value, str) and len(value) > _PLAN_MAX_TEXT:
                # A long text (a query passed as an attribute): not kept as a cache key (memory), computed every time.
                return self._start_plan(stage, component, items, name)
        key = (stage, component, name, items)
        try:
            plan = self._start_plans.get(key)
        except TypeError:  # a list value: computed every time
            return self._start_plan(stage, component, items, name)
        if plan is None:
            plan = self._start_plan(stage, component, items, name)
            if len(self._start_plans) >= _PLAN_CACHE_SIZE:
                self._start_plans.clear()
            self._start_plans[key] = plan
        return plan

    def _start_plan(
        self, stage: str, component: str, items: tuple[tuple[str, Any], ...], name: str | None
    ) -> StartPlan:
        attrs: dict[str, Any] = {sc.RAGOTEL_STAGE: stage, sc.RAGOTEL_COMPONENT: component}
        attrs.update((k, clip(v)) for k, v in items if v is not None)
        metric_attrs = metric_attributes(attrs)
        kind = SpanKind.CLIENT if stage in CLIENT_STAGES else SpanKind.INTERNAL
        span_name_ = name or span_name(stage, attrs)
        if self.openinference:
            attrs[sc.OPENINFERENCE_SPAN_KIND] = SPAN_KINDS.get(stage, "UNKNOWN")
        return StartPlan(span_name_, kind, self.aliased(attrs), metric_attrs)

    def record(
        self,
        stage: str,
        component: str,
        duration: float,
        metric_attrs: Mapping[str, Any],
        context: Context,
        *,
        time_to_first_chunk: float | None = None,
        usage: tuple[int | None, int | None] = (None, None),
        documents: int | None = None,
    ) -> None:
        """Record one ended step in the histograms that measure its stage. Never raises.

        ``metric_attrs`` are the step's low-cardinality attributes (never query text or ids: they label metrics).
        ``context`` holds the step's own span: the duration record passes it, so a sampled step's duration
        carries an exemplar pointing at its span; the other records pass an empty context and carry none.
        """
        _guard.call(
            "Operation.record_metrics",
            functools.partial(
                self._record, stage, component, duration, metric_attrs, context, time_to_first_chunk, usage, documents
            ),
            None,
        )

    def _record(
        self,
        stage: str,
        component: str,
        duration: float,
        metric_attrs: Mapping[str, Any],
        context: Context,
        time_to_first_chunk: float | None,
        usage: tuple[int | None, int | None],
        documents: int | None,
    ) -> None:
        plan = self._record_plan(stage, component, metric_attrs)
        plan.duration.record(duration, plan.duration_attrs, context)
        if time_to_first_chunk is not None and plan.first_chunk_attrs is not None:
            self.time_to_first_chunk.record(time_to_first_chunk, plan.first_chunk_attrs, _NO_EXEMPLAR)
        if plan.token_attrs is not None:
            for tokens, attrs in zip(usage, plan.token_attrs, strict=True):
                if tokens is not None:
                    self.token_usage.record(tokens, attrs, _NO_EXEMPLAR)
        if plan.documents_attrs is not None and documents is not None:
            self.retrieval_documents.record(documents, plan.documents_attrs, _NO_EXEMPLAR)
        if plan.also_stage_attrs is not None:
            self.stage_duration.record(duration, plan.also_stage_attrs, _NO_EXEMPLAR)

    def _record_plan(self, stage: str, component: str, m: Mapping[str, Any]) -> RecordPlan:
        key = (stage, component, tuple(m.items()))
        plan = self._record_plans.get(key)
        if plan is None:
            plan = record_plan(self, stage, component, m)
            if len(self._record_plans) >= _PLAN_CACHE_SIZE:
                self._record_plans.clear()
            self._record_plans[key] = plan
        return plan


@dataclass(frozen=True, slots=True)
class StartPlan:
    """How a step's span starts: name, kind, attributes (aliased as the stability opt-in asks), metric attributes."""

    name: str
    kind: SpanKind
    attributes: dict[str, Any]
    metric_attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordPlan:
    """The histogram points one ended step records, with their attribute sets (built once per distinct step)."""

    duration: Histogram
    duration_attrs: dict[str, Any]
    also_stage_attrs: dict[str, Any] | None  # a retrieval step: both its GenAI duration and its stage duration
    first_chunk_attrs: dict[str, Any] | None
    token_attrs: tuple[dict[str, Any], dict[str, Any]] | None
    documents_attrs: dict[str, Any] | None


def metric_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of ``attrs`` that label metrics (low cardinality, scalar values)."""
    return {k: v for k, v in attrs.items() if k in METRIC_KEYS and isinstance(v, str | int | float | bool)}


def record_plan(ins: Instruments, stage: str, component: str, m: Mapping[str, Any]) -> RecordPlan:
    """The metric contract (DESIGN.md section 3): which histograms one ended step records, with which attributes.

    A step's duration goes to exactly one duration histogram: ``db.client.operation.duration`` for vector_db,
    ``gen_ai.client.operation.duration`` for generation and embedding, ``ragotel.stage.duration`` for the other
    stages (pipeline, retrieval, rerank, custom). A retrieval step with a ``gen_ai.operation.name`` is also a GenAI
    operation and records both, as before. Token usage and time to first chunk label like the GenAI duration.
    """
    error = m.get(sc.ERROR_TYPE)
    stage_attrs = {sc.RAGOTEL_STAGE: stage, sc.RAGOTEL_COMPONENT: component}
    if error is not None:
        stage_attrs[sc.ERROR_TYPE] = error
    if stage == sc.STAGE_VECTOR_DB:
        db_attrs = {k: v for k, v in m.items() if k in DB_METRIC_KEYS}
        return RecordPlan(ins.db_duration, db_attrs, None, None, None, None)
    documents = {sc.RAGOTEL_COMPONENT: component} if stage == sc.STAGE_RETRIEVAL else None
    gen_attrs = {k: v for k, v in m.items() if k in GEN_AI_METRIC_KEYS}
    if stage in _GEN_AI_STAGES and sc.GEN_AI_OPERATION_NAME not in gen_attrs:
        # A generation/embedding step always has a GenAI operation: its duration histogram is where it is counted.
        gen_attrs = {sc.GEN_AI_OPERATION_NAME: _GEN_AI_STAGES[stage], **gen_attrs}
    if sc.GEN_AI_OPERATION_NAME not in gen_attrs:
        return RecordPlan(ins.stage_duration, stage_attrs, None, None, None, documents)
    token_base = {k: v for k, v in gen_attrs.items() if k != sc.ERROR_TYPE}
    tokens = (
        {**token_base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT},
        {**token_base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT},
    )
    also_stage = None if stage in _GEN_AI_STAGES else stage_attrs
    return RecordPlan(ins.gen_ai_duration, gen_attrs, also_stage, gen_attrs, tokens, documents)
