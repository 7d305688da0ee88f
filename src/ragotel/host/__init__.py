"""Host and process resource gauges (psutil, OTel system/process/hw names): low cardinality, fork-safe, never raising.

Every callback runs on the metric reader's collection thread and must not block or raise: a reading the platform
does not support (``NotImplementedError``, ``psutil.AccessDenied``, a missing ``/proc`` file) switches that one
gauge off with a single log line; any other failure skips that collection (rate-limited DEBUG log).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.config import Settings
from ragotel.host.readings import UNSUPPORTED, Sampler, load_gpu
from ragotel.telemetry import VERSION

__all__ = ["HostMetrics", "install", "watch_filesystem"]

_log = logging.getLogger("ragotel")

Reader = Callable[[], Iterable[Observation]]

# Paths whose filesystem is reported besides "/": RAGOTEL_HOST_FILESYSTEM_PATHS and persistent vector indexes
# (ragotel.health registers those when it sees a PersistentClient / local Qdrant path).
_watched_paths: set[str] = set()
_watched_lock = threading.Lock()


def watch_filesystem(path: str | os.PathLike[str]) -> None:
    """Also report the filesystem holding ``path`` (e.g. a persistent vector index). Never raises."""
    try:
        resolved = os.path.realpath(os.fspath(path))
    except (TypeError, ValueError, OSError) as exc:
        _guard.report("host.watch_filesystem", exc)
        return
    with _watched_lock:
        _watched_paths.add(resolved)


def _watched() -> frozenset[str]:
    with _watched_lock:
        return frozenset(_watched_paths)


@dataclass(frozen=True, slots=True)
class _Spec:
    """One host instrument: name, kind (gauge | counter | updown), unit, description and reading."""

    name: str
    kind: str
    unit: str
    description: str
    read: Reader


# The host instruments: (name, instrument, unit, Sampler method, description). Semconv instrument kinds:
# utilization is a gauge, usage/limit/count an up-down counter, network bytes a counter.
_TABLE: Final = (
    (sc.M_SYSTEM_CPU_UTILIZATION, "gauge", sc.UNIT_RATIO, "cpu_utilization", "CPU busy fraction (1 - idle - iowait)."),
    (sc.M_SYSTEM_MEMORY_UTILIZATION, "gauge", sc.UNIT_RATIO, "memory_utilization", "Fraction of memory not available."),
    (sc.M_SYSTEM_MEMORY_USAGE, "updown", sc.UNIT_BYTES, "memory_usage", "Memory used and available, by state."),
    (sc.M_SYSTEM_MEMORY_LIMIT, "updown", sc.UNIT_BYTES, "memory_limit", "Total physical memory."),
    (sc.M_SYSTEM_FILESYSTEM_UTILIZATION, "gauge", sc.UNIT_RATIO, "filesystem_utilization", "Filesystem bytes used."),
    (sc.M_SYSTEM_FILESYSTEM_USAGE, "updown", sc.UNIT_BYTES, "filesystem_usage", "Filesystem bytes by state."),
    (sc.M_SYSTEM_NETWORK_IO, "counter", sc.UNIT_BYTES, "network_io", "Bytes transmitted and received."),
    (sc.M_PROCESS_CPU_UTILIZATION, "gauge", sc.UNIT_RATIO, "process_cpu_utilization", "Process CPU per available CPU."),
    (sc.M_PROCESS_MEMORY_USAGE, "updown", sc.UNIT_BYTES, "process_memory_usage", "Resident memory of the process."),
    (
        sc.M_RAGOTEL_PROCESS_MEMORY_LIMIT,
        "updown",
        sc.UNIT_BYTES,
        "process_memory_limit",
        "Memory limit of the process's cgroup (absent without one).",
    ),
    (sc.M_PROCESS_THREAD_COUNT, "updown", sc.UNIT_THREADS, "process_thread_count", "Threads of the process."),
    (sc.M_PROCESS_FILE_DESCRIPTOR_COUNT, "updown", sc.UNIT_FILE_DESCRIPTORS, "process_fd_count", "Open descriptors."),
)
_LOAD_AVERAGES: Final = (
    (sc.M_SYSTEM_CPU_LOAD_AVERAGE_1M, "1 minute"),
    (sc.M_SYSTEM_CPU_LOAD_AVERAGE_5M, "5 minutes"),
    (sc.M_SYSTEM_CPU_LOAD_AVERAGE_15M, "15 minutes"),
)


class _Instruments:
    """The observable instruments on one meter provider, created once; callbacks read the active HostMetrics.

    The SDK keeps an instrument's first callbacks when the same name is created again on the same meter, so a
    second ``install()`` on one provider (instrument → uninstrument → instrument) re-points this holder instead.
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        self.meter = metrics.get_meter("ragotel", VERSION, meter_provider=meter_provider)
        self.active: HostMetrics | None = None
        self.created: set[str] = set()

    def ensure(self, spec: _Spec) -> None:
        if spec.name in self.created:
            return
        callback = functools.partial(self._observe, spec.name)
        create = {
            "gauge": self.meter.create_observable_gauge,
            "counter": self.meter.create_observable_counter,
            "updown": self.meter.create_observable_up_down_counter,
        }[spec.kind]
        create(spec.name, callbacks=[callback], unit=spec.unit, description=spec.description)
        self.created.add(spec.name)

    def _observe(self, name: str, options: CallbackOptions) -> Iterable[Observation]:
        host = self.active
        if host is None:
            return []
        return host.observe(name)


class _ProviderKey:
    """Stands in for "the global meter provider" as a weak-dictionary key."""


_GLOBAL_PROVIDER = _ProviderKey()
_holders: weakref.WeakKeyDictionary[object, _Instruments] = weakref.WeakKeyDictionary()
_holders_lock = threading.Lock()
_live: weakref.WeakSet[HostMetrics] = weakref.WeakSet()


class HostMetrics:
    """Host and process gauges on one meter provider, active until :meth:`stop`. Thread-safe; callbacks never raise."""

    def __init__(self, meter_provider: metrics.MeterProvider | None, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        self.sampler = Sampler(per_cpu=settings.host_per_cpu, paths=settings.host_filesystem_paths, watched=_watched)
        self._disabled: set[str] = set()
        self._stopped = False
        s = self.sampler
        specs = [_Spec(name, kind, unit, text, getattr(s, method)) for name, kind, unit, method, text in _TABLE]
        specs += [
            _Spec(name, "gauge", sc.UNIT_THREADS, f"Load average over {label}.", functools.partial(s.load_average, i))
            for i, (name, label) in enumerate(_LOAD_AVERAGES)
        ]
        gpu = load_gpu()
        if gpu is not None:
            specs += [
                _Spec(sc.M_HW_GPU_UTILIZATION, "gauge", sc.UNIT_RATIO, "GPU busy fraction.", gpu.utilization),
                _Spec(sc.M_HW_GPU_MEMORY_USAGE, "updown", sc.UNIT_BYTES, "GPU memory used.", gpu.memory_usage),
                _Spec(sc.M_HW_GPU_MEMORY_LIMIT, "updown", sc.UNIT_BYTES, "GPU memory size.", gpu.memory_limit),
            ]
        self._specs = {spec.name: spec for spec in specs}
        # Baselines now, so the first collection reports utilization over a real interval where it can.
        _guard.call("host baseline", s.process, None)
        key: object = meter_provider if meter_provider is not None else _GLOBAL_PROVIDER
        with _holders_lock:
            holder = _holders.get(key)
            if holder is None:
                holder = _holders[key] = _Instruments(meter_provider)
            for spec in specs:
                holder.ensure(spec)
            holder.active = self
        self._holder = holder
        _live.add(self)

    @property
    def names(self) -> tuple[str, ...]:
        """Metric names this instance reports (GPU names only when NVML found a device)."""
        return tuple(self._specs)

    @property
    def observed_pid(self) -> int:
        """The pid whose process gauges were last collected (debug accessor: after a fork, the child's own)."""
        return self.sampler.pid

    @property
    def disabled(self) -> frozenset[str]:
        """Gauges switched off because this platform cannot read them."""
        return frozenset(self._disabled)

    def observe(self, name: str) -> Iterable[Observation]:
        """Readings for one instrument; [] when stopped, unsupported or failing. Never raises."""
        spec = self._specs.get(name)
        if spec is None or self._stopped or name in self._disabled:
            return []
        result: list[Observation] = _guard.call(f"host gauge {name}", functools.partial(self._read, spec), [])
        return result

    def _read(self, spec: _Spec) -> list[Observation]:
        try:
            return list(spec.read())
        except UNSUPPORTED as exc:
            self._disabled.add(spec.name)
            _log.warning("ragotel: %s is not available on this platform (%r); that gauge is off", spec.name, exc)
            return []

    def after_fork(self) -> None:
        """Called in a forked child: re-read everything for the child's own pid."""
        self.sampler.after_fork()

    def stop(self) -> None:
        """Stop reporting (the SDK cannot drop callbacks; they now yield nothing). Idempotent, never raises."""
        self._stopped = True
        with _holders_lock:
            if self._holder.active is self:
                self._holder.active = None
        _live.discard(self)


def _after_fork_in_child() -> None:
    for host in list(_live):
        _guard.call("host after fork", host.after_fork, None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def install(meter_provider: metrics.MeterProvider | None, settings: Settings | None = None) -> HostMetrics:
    """Start the host and process gauges on ``meter_provider`` (None: the global one); ``stop()`` ends them."""
    return HostMetrics(meter_provider, settings)
