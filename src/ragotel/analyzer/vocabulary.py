"""The analyzer's shared words: stages, signals and their units, severities, cause and action ids, durations, sizes.

Every other part of the analyzer imports its vocabulary from here; this module imports nothing else of the
analyzer (of ragotel only ``semconv``).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Final, Literal

import httpx
from pydantic_core import PydanticCustomError

from ragotel import semconv

__all__ = [
    "ACTION_IDS",
    "ADAPTIVE_SIGNALS",
    "CAUSE_ACTIONS",
    "CAUSE_IDS",
    "LOG_SIGNALS",
    "METRIC_SIGNALS",
    "SERVICE_INSTANCE_ID",
    "SERVICE_VERSION",
    "SEVERITIES",
    "SEVERITY_ORDER",
    "SIGNALS",
    "SPAN_SIGNALS",
    "STAGES",
    "STATE_ATTRIBUTES",
    "Severity",
    "format_value",
    "iso_time",
    "parse_duration",
    "parse_size",
    "signal_unit",
    "url_host_only",
    "url_without_credentials",
]

# OTel names the analyzer reads that ragotel's SDK does not emit (so they are not in ``ragotel.semconv``, whose
# names docs/semantic-conventions.md lists as emitted): other producers' resources and host metrics set them.
SERVICE_INSTANCE_ID: Final = "service.instance.id"
SERVICE_VERSION: Final = "service.version"
"""The resource attribute naming the deployed version of a service (deploy-aware diagnosis)."""
STATE_ATTRIBUTES: Final = (
    "cpu.mode",
    "system.cpu.state",
    semconv.SYSTEM_MEMORY_STATE,
    semconv.SYSTEM_FILESYSTEM_STATE,
    "state",
)
"""Where a host metric point says which state it counts (idle, used, ...), newest convention first."""

STAGES: Final = ("pipeline", "retrieval", "rerank", "embedding", "vector_db", "generation", "other")
"""The ``ragotel.stage`` values, plus ``other`` for spans no mapping classifies."""

# --- signals ---------------------------------------------------------------------------------------------------------

SPAN_SIGNALS: Final = frozenset(
    {"latency_p50", "latency_p95", "latency_p99", "latency_avg", "error_rate", "request_rate", "empty_retrieval_rate"}
)
METRIC_SIGNALS: Final = frozenset(
    {
        "dependency_health",
        "cpu_utilization",
        "memory_utilization",
        "disk_utilization",
        "memory_growth",
        "memory_exhaustion_eta",
    }
)
LOG_SIGNALS: Final = frozenset({"error_log_rate"})
SIGNALS: Final = SPAN_SIGNALS | METRIC_SIGNALS | LOG_SIGNALS
ADAPTIVE_SIGNALS: Final = ("latency", "error_rate", "empty_retrieval_rate", "tokens_per_call")
"""What an ``adaptive`` rule compares with each stage's baseline (recent p50 against usual p95 for latency)."""

_UNITS: Final[dict[str, str]] = {
    "latency_p50": "s",
    "latency_p95": "s",
    "latency_p99": "s",
    "latency_avg": "s",
    "error_rate": "ratio",
    "empty_retrieval_rate": "ratio",
    "cpu_utilization": "ratio",
    "memory_utilization": "ratio",
    "disk_utilization": "ratio",
    "request_rate": "/s",
    "memory_growth": "B/s",
    "memory_exhaustion_eta": "eta",
    "dependency_health": "",
    "latency": "s",
    "tokens_per_call": "",
}


def signal_unit(signal: str | None) -> str:
    """The unit of a signal: ``s``, ``ratio``, ``/s``, ``B/s``, ``eta`` (seconds, spelt in minutes/hours) or empty."""
    return _UNITS.get(signal or "", "")


def format_value(value: float, unit: str) -> str:
    """A human spelling of a value in its unit (``6.20 s``, ``12.5%``, ``3.0 MiB/min``)."""
    if not math.isfinite(value):
        return str(value)
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "/s":
        return f"{value:.2f}/s"
    if unit == "eta":
        return f"{value / 60:.0f} min" if value < 2 * 3600 else f"{value / 3600:.1f} h"
    if unit == "B/s":
        return f"{value * 60 / (1024 * 1024):.1f} MiB/min"
    return f"{value:g}"


# --- severities ------------------------------------------------------------------------------------------------------

Severity = Literal["info", "warning", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "critical")
SEVERITY_ORDER: Final = {"info": 0, "warning": 1, "critical": 2}
"""Rank of each severity: a larger number is worse."""

# --- causes and actions ----------------------------------------------------------------------------------------------

ACTION_IDS: Final = (
    "clear_cache",
    "restart_service",
    "failover",
    "scale_up",
    "rollback",
    "reindex",
    "limit_tokens",
    "investigate",
)
"""Recovery actions the diagnosis recommends; a hook binds to one with ``on: [restart_service]``."""

# What to do about each kind of cause, most useful first. The seed's defaults are the first entries: high response
# time -> clear cache; errors, memory leak, database connection -> restart service; dependency down -> failover.
CAUSE_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    "latency": ("clear_cache", "scale_up", "failover"),
    "errors": ("restart_service", "failover", "rollback"),
    "dependency_down": ("failover", "restart_service"),
    "load_spike": ("scale_up",),
    "cpu_saturation": ("scale_up", "restart_service"),
    "memory_saturation": ("restart_service", "scale_up"),
    "disk_saturation": ("investigate",),
    "memory_leak": ("restart_service", "rollback"),
    "empty_index": ("reindex", "investigate"),
    "retrieval_regression": ("rollback", "reindex"),
    "code_regression": ("rollback",),
    "token_spike": ("limit_tokens", "investigate"),
    "unknown": ("investigate",),
}
CAUSE_IDS: Final = frozenset(
    {f"{stage}_{kind}" for stage in STAGES for kind in ("latency", "errors")}
    | {"dependency_down", "load_spike", "cpu_saturation", "memory_saturation", "disk_saturation", "memory_leak"}
    | {"empty_index", "retrieval_regression", "code_regression", "token_spike", "unknown"}
)
"""Every ``primary_cause`` a diagnosis can name (a recovery hook may bind to one)."""

# --- durations and sizes ---------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def parse_duration(value: Any) -> float:
    """Return seconds from ``"250ms"``, ``"60s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "expected a duration such as 60s, 5m, 1h or 250ms")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise PydanticCustomError("duration", "expected a duration such as 60s, 5m, 1h or 250ms")


def parse_size(value: Any) -> int:
    """Return bytes from ``"4MiB"``, ``"512KB"``, ``"1GiB"`` or a plain integer number of bytes."""
    if isinstance(value, bool):
        raise PydanticCustomError("size", "expected a size such as 4MiB, 512KiB or a number of bytes")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    raise PydanticCustomError("size", "expected a size such as 4MiB, 512KiB or a number of bytes")


# --- times ------------------------------------------------------------------------------------------------------------


def iso_time(ts: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as Alertmanager and most receivers expect."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- URLs in messages ------------------------------------------------------------------------------------------------


def url_host_only(url: str) -> str:
    """Scheme, host and port of ``url``: for URLs that are secrets as a whole (Slack webhooks)."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{':' + str(parsed.port) if parsed.port else ''}/..."


def url_without_credentials(url: str) -> str:
    """``url`` without its ``user:password@`` part."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
