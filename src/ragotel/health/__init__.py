"""Dependency health: ``register()`` checks, run time-boxed on ragotel's own threads, gauges and ``status()``.

Threads: one scheduler plus a few daemon workers, started on the first registration. A check runs on a worker with
instrumentation suppressed (probes make no spans) and is cut at its ``timeout``: the dependency is reported
unhealthy and the scheduler moves on, while a hung call finishes (or not) on a thread that no longer counts against
the pool. Nothing here runs inside a metrics callback (the gauges read the last verdicts) or on the application's
threads, and nothing raises into the application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import metrics

from ragotel import _guard
from ragotel.config import Settings
from ragotel.health.auto import KIND_LLM, KIND_VECTOR_DB, AutoRegistration
from ragotel.health.checks import CheckError, IndexSizes, http_check, redis_check, sql_check, time_left
from ragotel.health.client_checks import chroma_check, openai_check, qdrant_check
from ragotel.health.gauges import bind
from ragotel.health.model import DependencyStatus, HealthReport, Status
from ragotel.health.registry import HealthRegistry

__all__ = [
    "KIND_LLM",
    "KIND_VECTOR_DB",
    "CheckError",
    "DependencyStatus",
    "HealthInstallation",
    "HealthRegistry",
    "HealthReport",
    "IndexSizes",
    "Status",
    "chroma_check",
    "http_check",
    "install",
    "openai_check",
    "qdrant_check",
    "redis_check",
    "register",
    "sql_check",
    "status",
    "time_left",
    "unregister",
]

_default = HealthRegistry()


class HealthInstallation:
    """What ``install()`` started: gauges on a provider, constructor patches; ``stop()`` undoes both."""

    def __init__(self, registry: HealthRegistry, meter_provider: metrics.MeterProvider | None, settings: Settings):
        self.registry = registry
        self._binding = bind(registry, meter_provider)
        self._auto = AutoRegistration(registry, settings)
        if settings.health_auto_register or settings.health_probe_llm:
            self._auto.start()
        if registry.names():
            registry.start()

    def stop(self) -> None:
        """Unpatch, drop auto-registered checks, detach the gauges, stop the scheduler (joined). Never raises."""
        _guard.call("health auto-registration stop", self._auto.stop, None)
        _guard.call("health gauges stop", self._binding.stop, None)
        _guard.call("health scheduler stop", self.registry.stop, None)


def install(
    meter_provider: metrics.MeterProvider | None,
    settings: Settings | None = None,
    *,
    registry: HealthRegistry | None = None,
) -> HealthInstallation:
    """Report dependency health through ``meter_provider`` and auto-register vector-DB clients (per ``settings``)."""
    return HealthInstallation(registry or _default, meter_provider, settings or Settings())


def register(name: str, check: Callable[[], Any], *, kind: str, interval: float = 15.0, timeout: float = 5.0) -> None:
    """Probe ``check`` (no arguments; raising, returning ``False`` or overrunning ``timeout`` = unhealthy).

    Runs every ``interval`` seconds on ragotel's own threads with instrumentation suppressed; re-registering a
    name replaces its check. ``ValueError`` names a bad argument. Results feed ``ragotel.dependency.health``,
    ``ragotel.dependency.check.duration`` and :func:`status`.
    """
    _default.register(name, check, kind=kind, interval=interval, timeout=timeout)


def unregister(name: str) -> bool:
    """Stop probing ``name``; False if it was not registered."""
    return _default.unregister(name)


def status() -> HealthReport:
    """Overall ``healthy | degraded | unhealthy`` and per-dependency details, e.g. for a readiness endpoint."""
    return _default.status()
