"""Frozen SDK settings read once from arguments and the environment; every RAGOTEL_* variable is defined here."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

_log = logging.getLogger("ragotel")

# Standard OpenTelemetry variables we read ourselves (the SDK and exporters read the rest).
ENV_SERVICE_NAME: Final = "OTEL_SERVICE_NAME"
ENV_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_HEADERS: Final = "OTEL_EXPORTER_OTLP_HEADERS"
ENV_DISABLED: Final = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
ENV_CAPTURE: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_BSP_MAX_QUEUE_SIZE: Final = "OTEL_BSP_MAX_QUEUE_SIZE"
ENV_BSP_SCHEDULE_DELAY: Final = "OTEL_BSP_SCHEDULE_DELAY"
ENV_BSP_MAX_EXPORT_BATCH_SIZE: Final = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
ENV_BSP_EXPORT_TIMEOUT: Final = "OTEL_BSP_EXPORT_TIMEOUT"
ENV_METRIC_EXPORT_INTERVAL: Final = "OTEL_METRIC_EXPORT_INTERVAL"
ENV_EXPORTER_TIMEOUT: Final = "OTEL_EXPORTER_OTLP_TIMEOUT"
ENV_LOGS_EXPORTER: Final = "OTEL_LOGS_EXPORTER"  # "none": no log exporter
# opentelemetry-instrumentation-logging's: its handler on/off and level (read here too, so code and zero-code agree)
ENV_LOG_AUTO_INSTRUMENTATION: Final = "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION"
ENV_LOG_HANDLER_LEVEL: Final = "OTEL_PYTHON_LOG_HANDLER_LEVEL"

# ragotel's own variables.
ENV_CAPTURE_MAX_LENGTH: Final = "RAGOTEL_CAPTURE_MAX_LENGTH"
ENV_HOST_METRICS: Final = "RAGOTEL_HOST_METRICS"
ENV_HEALTH_AUTO: Final = "RAGOTEL_HEALTH_AUTO_REGISTER"
ENV_HEALTH_INTERVAL: Final = "RAGOTEL_HEALTH_INTERVAL"  # seconds between probes of auto-registered dependencies
ENV_HEALTH_TIMEOUT: Final = "RAGOTEL_HEALTH_TIMEOUT"  # seconds before an auto-registered probe is cut
ENV_HEALTH_PROBE_LLM: Final = "RAGOTEL_HEALTH_PROBE_LLM"  # opt-in: probe LLM endpoints of new OpenAI clients
ENV_HOST_FILESYSTEM_PATHS: Final = "RAGOTEL_HOST_FILESYSTEM_PATHS"  # extra paths whose filesystem is reported
ENV_HOST_PER_CPU: Final = "RAGOTEL_HOST_PER_CPU"  # opt-in: one system.cpu.utilization series per logical CPU
ENV_LOG_LEVEL: Final = "RAGOTEL_LOG_LEVEL"
ENV_COEXISTENCE: Final = "RAGOTEL_COEXISTENCE"  # defer | exclusive | both: another instrumentation of a library
ENV_APP_LOGS: Final = "RAGOTEL_APP_LOGS"  # off | debug | info | warning | error | critical: the app's logs as OTLP
ENV_OPENINFERENCE: Final = "RAGOTEL_OPENINFERENCE"  # opt-in: OpenInference span kinds and names (Phoenix, Arize)

PROTOCOLS: Final = ("http/protobuf", "grpc")
# What ragotel does about another instrumentation of a library it instruments (ragotel.coexistence):
# defer = leave that library to it; exclusive = switch the other off where possible; both = keep both.
COEXISTENCE_MODES: Final = ("defer", "exclusive", "both")
DEFAULT_COEXISTENCE: Final = "defer"
DEFAULT_PROTOCOL: Final = "http/protobuf"
DEFAULT_CAPTURE_MAX_LENGTH: Final = 4096
# Exporter queue: spans beyond this many waiting are dropped (and counted by the SDK), so an endpoint that is
# down never grows the app's memory without bound.
DEFAULT_MAX_QUEUE_SIZE: Final = 2048
DEFAULT_SCHEDULE_DELAY_MS: Final = 5000
DEFAULT_MAX_EXPORT_BATCH_SIZE: Final = 512
DEFAULT_EXPORT_TIMEOUT_MS: Final = 30000
DEFAULT_METRIC_EXPORT_INTERVAL_MS: Final = 60000
DEFAULT_EXPORTER_TIMEOUT_S: Final = 10.0
DEFAULT_HEALTH_INTERVAL_S: Final = 15.0
DEFAULT_HEALTH_TIMEOUT_S: Final = 5.0

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _warn(variable: str, value: object, expected: str, fallback: object) -> None:
    _log.warning("ragotel: %s=%r is not %s; using %r", variable, value, expected, fallback)


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Parse a boolean variable; an unparsable value warns and yields ``default``."""
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    _warn(name, raw, "a boolean (true/false)", default)
    return default


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """Parse an integer variable; a non-numeric or too-small value warns and yields ``default``."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        _warn(name, raw, "an integer", default)
        return default
    if value < minimum:
        _warn(name, raw, f"an integer >= {minimum}", default)
        return default
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    """Parse a float variable; a non-numeric or too-small value warns and yields ``default``."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        _warn(name, raw, "a number", default)
        return default
    if value < minimum or math.isnan(value):
        _warn(name, raw, f"a number >= {minimum}", default)
        return default
    return value


_LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
_OFF: Final = frozenset({"off", "none", "false", "0", "no"})
DEFAULT_APP_LOGS_LEVEL: Final = logging.WARNING


def _logs_setting(value: bool | str | int) -> str:
    """``instrument(logs=...)`` as a RAGOTEL_APP_LOGS value: False off, True on, a level number or name."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(logging.getLevelName(value)).lower()
    return value


def app_logs(env: Mapping[str, str]) -> tuple[int | None, bool]:
    """``(level, forced)`` for the app's logs: None when off; forced when RAGOTEL_APP_LOGS itself named the level.

    RAGOTEL_APP_LOGS wins (``off``, a level name, or ``on`` for the default); else ``OTEL_LOGS_EXPORTER=none`` or
    ``OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false`` switch them off and ``OTEL_PYTHON_LOG_HANDLER_LEVEL`` gives the
    level; else WARNING. An unknown value warns and is ignored.
    """
    raw = (env.get(ENV_APP_LOGS) or "").strip().lower()
    if raw in _OFF:
        return None, False
    if raw in _LOG_LEVELS:
        return logging.getLevelName(raw.upper()), True
    if raw and raw not in _TRUE:
        _warn(ENV_APP_LOGS, env[ENV_APP_LOGS], "off, on or one of " + ", ".join(_LOG_LEVELS), "the default")
    if not raw:
        if (env.get(ENV_LOGS_EXPORTER) or "").strip().lower() == "none":
            return None, False
        if not env_bool(env, ENV_LOG_AUTO_INSTRUMENTATION, True):
            return None, False
    level = (env.get(ENV_LOG_HANDLER_LEVEL) or "").strip().lower()
    if level and isinstance(logging.getLevelName(level.upper()), int):  # also warn, fatal, notset
        return logging.getLevelName(level.upper()), False
    if level:
        _warn(ENV_LOG_HANDLER_LEVEL, env[ENV_LOG_HANDLER_LEVEL], "one of " + ", ".join(_LOG_LEVELS), "warning")
    return DEFAULT_APP_LOGS_LEVEL, False


def apply_log_level(env: Mapping[str, str] | None = None) -> None:
    """Set the ``ragotel`` logger's level from RAGOTEL_LOG_LEVEL (debug|info|warning|error|critical) when set."""
    env = os.environ if env is None else env
    raw = env.get(ENV_LOG_LEVEL)
    if raw is None or not raw.strip():
        return
    level = raw.strip().lower()
    if level not in _LOG_LEVELS:
        _warn(ENV_LOG_LEVEL, raw, "one of " + ", ".join(_LOG_LEVELS), "the logging configuration's level")
        return
    _log.setLevel(level.upper())


def parse_headers(raw: str, *, source: str) -> dict[str, str] | None:
    """Parse W3C-baggage-style ``k1=v1,k2=v2`` headers; return None (after one warning) when malformed."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip().lower()
        if not sep or not key or any(c in key for c in " \t\r\n:\"'"):
            _log.warning(
                "ragotel: %s=%r is malformed (expected comma-separated key=value pairs, bad item %r); "
                "sending no extra headers",
                source,
                raw,
                item,
            )
            return None
        headers[key] = unquote(value).strip()
    return headers


_bad_coexistence: set[str | None] = set()


def coexistence_mode(value: str | None, *, source: str) -> str:
    """A valid coexistence mode (None, empty: the default); another value warns and gives the default."""
    mode = (value or "").strip().lower() or DEFAULT_COEXISTENCE
    if mode not in COEXISTENCE_MODES:
        if value not in _bad_coexistence:  # read by every instrumentor and by instrument(): warned once
            _bad_coexistence.add(value)
            _warn(source, value, " | ".join(COEXISTENCE_MODES), DEFAULT_COEXISTENCE)
        return DEFAULT_COEXISTENCE
    return mode


def normalize_protocol(value: str | None, *, source: str) -> str:
    """Return a supported OTLP protocol; an unknown one warns and falls back to http/protobuf."""
    if value is None or value.strip() == "":
        return DEFAULT_PROTOCOL
    protocol = value.strip().lower()
    if protocol in ("http", "http/json"):
        # The OTLP HTTP exporter speaks protobuf only; JSON is accepted by receivers but not sent by the SDK.
        _warn(source, value, "a supported protocol (http/protobuf, grpc)", DEFAULT_PROTOCOL)
        return DEFAULT_PROTOCOL
    if protocol not in PROTOCOLS:
        _warn(source, value, "one of http/protobuf, grpc", DEFAULT_PROTOCOL)
        return DEFAULT_PROTOCOL
    return protocol


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ragotel's bootstrap decides from arguments and environment. Explicit arguments win."""

    service_name: str | None = None
    endpoint: str | None = None
    protocol: str = DEFAULT_PROTOCOL
    headers: dict[str, str] | None = None  # None: the exporters read OTEL_EXPORTER_OTLP_[TRACES_]HEADERS
    capture_content: bool = False
    capture_max_length: int = DEFAULT_CAPTURE_MAX_LENGTH
    libraries: tuple[str, ...] | None = None
    disabled_libraries: frozenset[str] = field(default_factory=frozenset)
    host_metrics: bool = True
    health_auto_register: bool = True
    health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S
    health_probe_llm: bool = False
    host_filesystem_paths: tuple[str, ...] = ()
    host_per_cpu: bool = False
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    schedule_delay_ms: int = DEFAULT_SCHEDULE_DELAY_MS
    max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE
    export_timeout_ms: int = DEFAULT_EXPORT_TIMEOUT_MS
    metric_export_interval_ms: int = DEFAULT_METRIC_EXPORT_INTERVAL_MS
    exporter_timeout_s: float = DEFAULT_EXPORTER_TIMEOUT_S
    coexistence: str = DEFAULT_COEXISTENCE
    openinference: bool = False
    app_logs_level: int | None = DEFAULT_APP_LOGS_LEVEL  # None: the app's logs are not exported
    app_logs_forced: bool = False  # RAGOTEL_APP_LOGS named the level: it also applies to an adopted handler

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        service_name: str | None = None,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: Mapping[str, str] | str | None = None,
        capture_content: bool | None = None,
        libraries: list[str] | tuple[str, ...] | None = None,
        host_metrics: bool = True,
        coexistence: str | None = None,
        logs: bool | str | int | None = None,
    ) -> Settings:
        """Build settings; never raises: bad values warn once, naming the variable, and use the documented default."""
        env = os.environ if env is None else env
        if protocol is not None:
            proto = normalize_protocol(protocol, source="instrument(protocol=...)")
        else:
            proto = normalize_protocol(env.get(ENV_PROTOCOL), source=ENV_PROTOCOL)
        # Headers: explicit ones win. A valid environment value is left to the exporters (they also read the
        # per-signal variables); a malformed one warns once here and {} stops the exporters re-parsing it.
        parsed_headers: dict[str, str] | None = None
        if isinstance(headers, str):
            parsed_headers = parse_headers(headers, source="instrument(headers=...)") or {}
        elif headers is not None:
            parsed_headers = {str(k).lower(): str(v) for k, v in headers.items()}
        elif env.get(ENV_HEADERS) and parse_headers(env[ENV_HEADERS], source=ENV_HEADERS) is None:
            parsed_headers = {}
        capture = env_bool(env, ENV_CAPTURE, False) if capture_content is None else bool(capture_content)
        logs_level, logs_forced = app_logs(env if logs is None else {**env, ENV_APP_LOGS: _logs_setting(logs)})
        disabled = frozenset(
            name.strip().removeprefix("ragotel_") for name in env.get(ENV_DISABLED, "").split(",") if name.strip()
        )
        return cls(
            service_name=service_name or env.get(ENV_SERVICE_NAME) or None,
            endpoint=endpoint or None,  # None: the exporters read OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT
            protocol=proto,
            headers=parsed_headers,
            capture_content=capture,
            capture_max_length=env_int(env, ENV_CAPTURE_MAX_LENGTH, DEFAULT_CAPTURE_MAX_LENGTH, minimum=1),
            libraries=tuple(libraries) if libraries is not None else None,
            disabled_libraries=disabled,
            host_metrics=host_metrics and env_bool(env, ENV_HOST_METRICS, True),
            health_auto_register=env_bool(env, ENV_HEALTH_AUTO, True),
            health_interval_s=env_float(env, ENV_HEALTH_INTERVAL, DEFAULT_HEALTH_INTERVAL_S, minimum=0.001),
            health_timeout_s=env_float(env, ENV_HEALTH_TIMEOUT, DEFAULT_HEALTH_TIMEOUT_S, minimum=0.001),
            health_probe_llm=env_bool(env, ENV_HEALTH_PROBE_LLM, False),
            host_filesystem_paths=tuple(
                p.strip() for p in env.get(ENV_HOST_FILESYSTEM_PATHS, "").split(os.pathsep) if p.strip()
            ),
            host_per_cpu=env_bool(env, ENV_HOST_PER_CPU, False),
            max_queue_size=env_int(env, ENV_BSP_MAX_QUEUE_SIZE, DEFAULT_MAX_QUEUE_SIZE, minimum=1),
            schedule_delay_ms=env_int(env, ENV_BSP_SCHEDULE_DELAY, DEFAULT_SCHEDULE_DELAY_MS, minimum=1),
            max_export_batch_size=env_int(env, ENV_BSP_MAX_EXPORT_BATCH_SIZE, DEFAULT_MAX_EXPORT_BATCH_SIZE, minimum=1),
            export_timeout_ms=env_int(env, ENV_BSP_EXPORT_TIMEOUT, DEFAULT_EXPORT_TIMEOUT_MS, minimum=1),
            metric_export_interval_ms=env_int(
                env, ENV_METRIC_EXPORT_INTERVAL, DEFAULT_METRIC_EXPORT_INTERVAL_MS, minimum=1
            ),
            exporter_timeout_s=env_float(env, ENV_EXPORTER_TIMEOUT, DEFAULT_EXPORTER_TIMEOUT_S, minimum=0.001),
            coexistence=coexistence_mode(coexistence, source="instrument(coexistence=...)")
            if coexistence is not None
            else coexistence_mode(env.get(ENV_COEXISTENCE), source=ENV_COEXISTENCE),
            openinference=env_bool(env, ENV_OPENINFERENCE, False),
            app_logs_level=logs_level,
            app_logs_forced=logs_forced,
        )
