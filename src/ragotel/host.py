"""Host and process resource gauges (psutil, OTel system/process/hw names): low cardinality, fork-safe, never raising.

Every callback runs on the metric reader's collection thread and must not block or raise: a reading the platform
does not support (``NotImplementedError``, ``psutil.AccessDenied``, a missing ``/proc`` file) switches that one
gauge off with a single log line; any other failure skips that collection (rate-limited DEBUG log).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import psutil
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.config import Settings
from ragotel.telemetry import VERSION

__all__ = ["HostMetrics", "install", "watch_filesystem"]

_log = logging.getLogger("ragotel")

# Errors meaning "this platform cannot give that reading": the gauge is switched off, not retried every minute.
_UNSUPPORTED: Final = (NotImplementedError, psutil.AccessDenied, PermissionError, FileNotFoundError, AttributeError)
# Several gauges read the same psutil call; one reading serves one collection (callbacks run back to back).
_SNAPSHOT_TTL_S: Final = 0.25

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


@dataclass(frozen=True, slots=True)
class _Mount:
    """A filesystem to report, identified by its mount point (so two paths on one disk make one series)."""

    mountpoint: str
    device: str
    fstype: str

    @property
    def attributes(self) -> dict[str, str]:
        attrs = {sc.SYSTEM_FILESYSTEM_MOUNTPOINT: self.mountpoint}
        if self.device:
            attrs[sc.SYSTEM_DEVICE] = self.device
        if self.fstype:
            attrs[sc.SYSTEM_FILESYSTEM_TYPE] = self.fstype
        return attrs


def _mount_for(path: str, partitions: list[Any]) -> _Mount:
    best: Any = None
    for part in partitions:
        mp = part.mountpoint
        if (path == mp or path.startswith(mp.rstrip(os.sep) + os.sep)) and (
            best is None or len(mp) > len(best.mountpoint)
        ):
            best = part
    if best is None:  # containers often list no partition for an overlay "/": report the path itself
        return _Mount(path, "", "")
    return _Mount(best.mountpoint, best.device, best.fstype)


def _cpu_busy_idle(times: Any) -> tuple[float, float]:
    """(busy, total) seconds from a psutil cpu_times tuple; guest time is already inside user/nice on Linux."""
    fields = times._asdict()
    total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total - idle, total


class _Sampler:
    """The readings behind the gauges, bound to the current process (re-created after a fork, never cached across)."""

    def __init__(self, *, per_cpu: bool, paths: Iterable[str]) -> None:
        self.per_cpu = per_cpu
        self._extra_paths = tuple(paths)
        self._lock = threading.Lock()
        self._snapshots: dict[str, tuple[float, Any]] = {}
        self._mounts: tuple[_Mount, ...] = ()
        self._mount_paths: frozenset[str] = frozenset()
        self._pid = -1
        self._proc: psutil.Process | None = None
        self._ncpu = 1
        self._proc_last: tuple[float, float] | None = None
        self._cpu_last: list[tuple[float, float]] | None = None
        self._cpu_util: list[float] = []

    # --- process handle -------------------------------------------------------------------------------------------
    def process(self) -> psutil.Process:
        """psutil handle of the calling process: a forked child gets its own (PITFALLS: cached Process after fork)."""
        pid = os.getpid()
        if pid != self._pid or self._proc is None:
            self._proc = psutil.Process(pid)
            self._pid = pid
            self._proc_last = None
            try:
                self._ncpu = len(self._proc.cpu_affinity() or ()) or (psutil.cpu_count() or 1)
            except (*_UNSUPPORTED, OSError):
                self._ncpu = psutil.cpu_count() or 1
        return self._proc

    @property
    def pid(self) -> int:
        """The pid the process gauges last reported (a debug accessor for fork tests)."""
        return self._pid

    def after_fork(self) -> None:
        """In a forked child: forget the parent's process handle, CPU baselines and snapshots."""
        self._lock = threading.Lock()
        self._snapshots = {}
        self._pid = -1
        self._proc = None
        self._proc_last = None
        self._cpu_last = None

    def snapshot(self, key: str, read: Callable[[], Any]) -> Any:
        """One psutil reading shared by the gauges of one collection."""
        now = time.monotonic()
        with self._lock:
            cached = self._snapshots.get(key)
            if cached is not None and now - cached[0] < _SNAPSHOT_TTL_S:
                return cached[1]
        value = read()
        with self._lock:
            self._snapshots[key] = (now, value)
        return value

    # --- system ---------------------------------------------------------------------------------------------------
    def cpu_utilization(self) -> list[Observation]:
        raw = psutil.cpu_times(percpu=True) if self.per_cpu else [psutil.cpu_times()]
        now = [_cpu_busy_idle(t) for t in raw]
        with self._lock:
            last, self._cpu_last = self._cpu_last, now
            if last is None or len(last) != len(now):
                # First reading: utilization since boot, so the gauge has a value from the first collection on.
                self._cpu_util = [b / t if t > 0 else 0.0 for b, t in now]
            else:
                util = []
                for (b0, t0), (b1, t1), prev in zip(last, now, self._cpu_util or [0.0] * len(now), strict=False):
                    dt = t1 - t0
                    util.append(min(1.0, max(0.0, (b1 - b0) / dt)) if dt > 0 else prev)
                self._cpu_util = util
            values = list(self._cpu_util)
        if not self.per_cpu:
            return [Observation(values[0])]
        return [Observation(v, {sc.CPU_LOGICAL_NUMBER: i}) for i, v in enumerate(values)]

    def _vm(self) -> Any:
        return self.snapshot("vm", psutil.virtual_memory)

    def memory_utilization(self) -> list[Observation]:
        vm = self._vm()
        # "used" means not available: cache and buffers the kernel can reclaim do not count (psutil's percent).
        return [Observation((vm.total - vm.available) / vm.total, {sc.SYSTEM_MEMORY_STATE: sc.STATE_USED})]

    def memory_usage(self) -> list[Observation]:
        vm = self._vm()
        return [
            Observation(vm.total - vm.available, {sc.SYSTEM_MEMORY_STATE: sc.STATE_USED}),
            Observation(vm.available, {sc.SYSTEM_MEMORY_STATE: sc.STATE_FREE}),
        ]

    def memory_limit(self) -> list[Observation]:
        return [Observation(self._vm().total)]

    def mounts(self) -> tuple[_Mount, ...]:
        with _watched_lock:
            wanted = frozenset(("/" if os.name != "nt" else os.path.realpath(os.sep), *self._extra_paths))
            wanted |= _watched_paths
        if wanted != self._mount_paths:
            partitions = psutil.disk_partitions(all=True)  # all: tmpfs and bind mounts count as filesystems too
            found: dict[str, _Mount] = {}
            for path in sorted(wanted):
                mount = _mount_for(path, partitions)
                found.setdefault(mount.mountpoint, mount)
            self._mounts = tuple(found.values())
            self._mount_paths = wanted
        return self._mounts

    def _disk(self) -> list[tuple[_Mount, Any]]:
        def read() -> list[tuple[_Mount, Any]]:
            out = []
            for mount in self.mounts():
                try:
                    out.append((mount, psutil.disk_usage(mount.mountpoint)))
                except OSError as exc:  # an unmounted or vanished path: skip just that one this time
                    _guard.report(f"host.disk_usage {mount.mountpoint}", exc)
            return out

        result: list[tuple[_Mount, Any]] = self.snapshot("disk", read)
        return result

    def filesystem_utilization(self) -> list[Observation]:
        out = []
        for mount, du in self._disk():
            size = du.used + du.free
            attrs = {**mount.attributes, sc.SYSTEM_FILESYSTEM_STATE: sc.STATE_USED}
            out.append(Observation(du.used / size if size else 0.0, attrs))
        return out

    def filesystem_usage(self) -> list[Observation]:
        out = []
        for mount, du in self._disk():
            out.append(Observation(du.used, {**mount.attributes, sc.SYSTEM_FILESYSTEM_STATE: sc.STATE_USED}))
            out.append(Observation(du.free, {**mount.attributes, sc.SYSTEM_FILESYSTEM_STATE: sc.STATE_FREE}))
        return out

    def network_io(self) -> list[Observation]:
        io = psutil.net_io_counters(pernic=False)
        if io is None:  # no network interface at all
            return []
        return [
            Observation(io.bytes_sent, {sc.NETWORK_IO_DIRECTION: sc.DIRECTION_TRANSMIT}),
            Observation(io.bytes_recv, {sc.NETWORK_IO_DIRECTION: sc.DIRECTION_RECEIVE}),
        ]

    def load_average(self, index: int) -> list[Observation]:
        return [Observation(self.snapshot("load", psutil.getloadavg)[index])]

    # --- process --------------------------------------------------------------------------------------------------
    def process_cpu_utilization(self) -> list[Observation]:
        proc = self.process()
        times = proc.cpu_times()
        cpu = times.user + times.system
        now = time.monotonic()
        with self._lock:
            last, self._proc_last = self._proc_last, (now, cpu)
        if last is None:
            # First reading: average since the process started.
            elapsed = max(1e-9, time.time() - proc.create_time())
            value = cpu / elapsed / self._ncpu
        else:
            elapsed = now - last[0]
            if elapsed <= 0:
                return []
            value = (cpu - last[1]) / elapsed / self._ncpu
        return [Observation(min(1.0, max(0.0, value)))]

    def process_memory_usage(self) -> list[Observation]:
        return [Observation(self.process().memory_info().rss)]

    def process_thread_count(self) -> list[Observation]:
        return [Observation(self.process().num_threads())]

    def process_fd_count(self) -> list[Observation]:
        return [Observation(self.process().num_fds())]


class _Gpu:
    """NVML readings for each GPU; built only when ``pynvml`` imports and initialises (else no hw.gpu series)."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._devices: list[tuple[Any, dict[str, str]]] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            name = nvml.nvmlDeviceGetName(handle)
            attrs = {
                sc.HW_ID: uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                sc.HW_NAME: name.decode() if isinstance(name, bytes) else str(name),
                sc.HW_VENDOR: "NVIDIA",
            }
            self._devices.append((handle, attrs))

    @property
    def count(self) -> int:
        return len(self._devices)

    def utilization(self) -> list[Observation]:
        get = self._nvml.nvmlDeviceGetUtilizationRates
        return [Observation(get(h).gpu / 100.0, a) for h, a in self._devices]

    def memory_usage(self) -> list[Observation]:
        get = self._nvml.nvmlDeviceGetMemoryInfo
        return [Observation(get(h).used, a) for h, a in self._devices]

    def memory_limit(self) -> list[Observation]:
        get = self._nvml.nvmlDeviceGetMemoryInfo
        return [Observation(get(h).total, a) for h, a in self._devices]


def _load_gpu() -> _Gpu | None:
    """Import and initialise NVML if present; None (quietly) without pynvml, a driver or a GPU."""
    if importlib.util.find_spec("pynvml") is None:
        return None
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
        gpu = _Gpu(nvml)
    except Exception as exc:  # noqa: BLE001 - NVML raises its own NVMLError family; no driver must mean no series
        _log.info("ragotel: GPU metrics off (NVML unavailable: %s)", exc)
        return None
    return gpu if gpu.count else None


@dataclass(frozen=True, slots=True)
class _Spec:
    """One host instrument: name, kind (gauge | counter | updown), unit, description and reading."""

    name: str
    kind: str
    unit: str
    description: str
    read: Reader


# The host instruments: (name, instrument, unit, _Sampler method, description). Semconv instrument kinds:
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
        self.sampler = _Sampler(per_cpu=settings.host_per_cpu, paths=settings.host_filesystem_paths)
        self._disabled: set[str] = set()
        self._stopped = False
        s = self.sampler
        specs = [_Spec(name, kind, unit, text, getattr(s, method)) for name, kind, unit, method, text in _TABLE]
        specs += [
            _Spec(name, "gauge", sc.UNIT_THREADS, f"Load average over {label}.", functools.partial(s.load_average, i))
            for i, (name, label) in enumerate(_LOAD_AVERAGES)
        ]
        gpu = _load_gpu()
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
        except _UNSUPPORTED as exc:
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
