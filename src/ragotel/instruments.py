"""Instruments: the tracer, the six histograms (built from one table) and the content settings of one provider pair.

An :class:`~ragotel.operation.Operation` records through these; :class:`ragotel.telemetry.Telemetry` adds opening
operations. Recording never raises into the caller (failures go to :mod:`ragotel._guard`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.config import DEFAULT_CAPTURE_MAX_LENGTH

__all__ = ["DB_METRIC_KEYS", "GEN_AI_METRIC_KEYS", "METRIC_KEYS", "VERSION", "Instruments"]

VERSION: Final = "0.1.0"
GEN_AI_METRIC_KEYS: Final = frozenset(sc.GEN_AI_METRIC_ATTRIBUTES)
DB_METRIC_KEYS: Final = frozenset(sc.DB_METRIC_ATTRIBUTES)
METRIC_KEYS: Final = GEN_AI_METRIC_KEYS | DB_METRIC_KEYS

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

    def record(
        self,
        stage: str,
        component: str,
        duration: float,
        metric_attrs: Mapping[str, Any],
        *,
        time_to_first_chunk: float | None = None,
        usage: tuple[int | None, int | None] = (None, None),
        documents: int | None = None,
    ) -> None:
        """Record one ended step in the histograms that measure its stage. Never raises.

        ``metric_attrs`` are the step's low-cardinality attributes (never query text or ids: they label metrics).
        """
        _guard.call(
            "Operation.record_metrics",
            functools.partial(
                self._record, stage, component, duration, metric_attrs, time_to_first_chunk, usage, documents
            ),
            None,
        )

    def _record(
        self,
        stage: str,
        component: str,
        duration: float,
        m: Mapping[str, Any],
        time_to_first_chunk: float | None,
        usage: tuple[int | None, int | None],
        documents: int | None,
    ) -> None:
        error = m.get(sc.ERROR_TYPE)
        stage_attrs = {sc.RAGOTEL_STAGE: stage, sc.RAGOTEL_COMPONENT: component}
        if error is not None:
            stage_attrs[sc.ERROR_TYPE] = error
        self.stage_duration.record(duration, stage_attrs)
        if stage == sc.STAGE_VECTOR_DB:
            self.db_duration.record(duration, {k: v for k, v in m.items() if k in DB_METRIC_KEYS})
            return
        if sc.GEN_AI_OPERATION_NAME in m:
            gen_attrs = {k: v for k, v in m.items() if k in GEN_AI_METRIC_KEYS}
            self.gen_ai_duration.record(duration, gen_attrs)
            if time_to_first_chunk is not None:
                self.time_to_first_chunk.record(time_to_first_chunk, gen_attrs)
            token_attrs = {k: v for k, v in gen_attrs.items() if k != sc.ERROR_TYPE}
            for tokens, token_type in zip(usage, (sc.TOKEN_TYPE_INPUT, sc.TOKEN_TYPE_OUTPUT), strict=True):
                if tokens is not None:
                    self.token_usage.record(tokens, {**token_attrs, sc.GEN_AI_TOKEN_TYPE: token_type})
        if stage == sc.STAGE_RETRIEVAL and documents is not None:
            self.retrieval_documents.record(documents, {sc.RAGOTEL_COMPONENT: component})
