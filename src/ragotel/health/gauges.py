"""The health gauges (dependency health, check duration, index documents) on a meter provider, bound to a registry."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.health.registry import HealthRegistry
from ragotel.telemetry import VERSION

__all__ = ["Binding", "bind"]


class _Gauges:
    """The three health instruments on one meter provider, created once; callbacks read the bound registry.

    The SDK keeps an instrument's first callbacks when the same name is created again on one meter, so binding
    again (instrument → uninstrument → instrument) re-points this holder instead of creating instruments.
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        meter = metrics.get_meter("ragotel", VERSION, meter_provider=meter_provider)
        self.registry: HealthRegistry | None = None
        meter.create_observable_gauge(
            sc.M_DEPENDENCY_HEALTH,
            callbacks=[functools.partial(self._observe, HealthRegistry.observe_health)],
            unit=sc.UNIT_RATIO,
            description="1 when the dependency's last health probe succeeded, 0 when it failed or timed out.",
        )
        meter.create_observable_gauge(
            sc.M_DEPENDENCY_CHECK_DURATION,
            callbacks=[functools.partial(self._observe, HealthRegistry.observe_duration)],
            unit=sc.UNIT_SECONDS,
            description="Duration of the dependency's last health probe.",
        )
        meter.create_observable_gauge(
            sc.M_INDEX_DOCUMENTS,
            callbacks=[functools.partial(self._observe, HealthRegistry.observe_index)],
            unit=sc.UNIT_DOCUMENTS,
            description="Documents in a vector-database collection, refreshed by its health probe.",
        )

    def _observe(
        self, read: Callable[[HealthRegistry], list[Observation]], options: CallbackOptions
    ) -> Iterable[Observation]:
        registry = self.registry
        if registry is None:
            return []
        result: list[Observation] = _guard.call("health gauge", functools.partial(read, registry), [])
        return result


class _ProviderKey:
    """Stands in for "the global meter provider" as a weak-dictionary key."""


_GLOBAL_PROVIDER = _ProviderKey()
_gauges: weakref.WeakKeyDictionary[object, _Gauges] = weakref.WeakKeyDictionary()
_gauges_lock = threading.Lock()


class Binding:
    """A registry reporting through one provider's gauges; ``stop()`` detaches it."""

    def __init__(self, registry: HealthRegistry, meter_provider: metrics.MeterProvider | None) -> None:
        key: object = meter_provider if meter_provider is not None else _GLOBAL_PROVIDER
        with _gauges_lock:
            holder = _gauges.get(key)
            if holder is None:
                holder = _gauges[key] = _Gauges(meter_provider)
            holder.registry = registry
        self._holder = holder
        self._registry = registry

    def stop(self) -> None:
        with _gauges_lock:
            if self._holder.registry is self._registry:
                self._holder.registry = None


def bind(registry: HealthRegistry, meter_provider: metrics.MeterProvider | None) -> Binding:
    """Report ``registry``'s verdicts through gauges on ``meter_provider`` until the binding is stopped."""
    return Binding(registry, meter_provider)
