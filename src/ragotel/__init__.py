"""ragotel: OpenTelemetry-native observability for RAG applications — call ``ragotel.instrument()``."""

from __future__ import annotations

from ragotel import health
from ragotel.bootstrap import Instrumentation, instrument, uninstrument
from ragotel.stages import embedding, generation, pipeline, rerank, retrieval
from ragotel.telemetry import VERSION as __version__

__all__ = [
    "Instrumentation",
    "__version__",
    "embedding",
    "generation",
    "health",
    "instrument",
    "pipeline",
    "rerank",
    "retrieval",
    "uninstrument",
]
