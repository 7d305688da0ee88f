"""Host and process readings behind the host gauges: psutil (and NVML for GPUs), one reading per collection.

Bound to the current process: a forked child gets its own psutil handle. Readings raise what the platform raises;
the gauges in :mod:`ragotel.host` decide what switches a gauge off (:data:`UNSUPPORTED`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import psutil
from opentelemetry.metrics import Observation

from ragotel import _guard
from ragotel import semconv as sc

__all__ = ["UNSUPPORTED", "Gpu", "Sampler", "cgroup_memory_limit", "load_gpu"]

_log = logging.getLogger("ragotel")

# Errors meaning "this platform cannot give that reading": the gauge is switched off, not retried every minute.
UNSUPPORTED: Final = (NotImplementedError, psutil.AccessDenied, PermissionError, FileNotFoundError, AttributeError)
# Several gauges read the same psutil call; one reading serves one collection (callbacks run back to back).
_SNAPSHOT_TTL_S: Final = 0.25
# The memory limit of this process's cgroup: v2 first, then v1. "max" (v2) or a huge v1 value means no limit.
_CGROUP_MEMORY_LIMITS: Final = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
_NO_LIMIT_BYTES: Final = 1 << 60


def cgroup_memory_limit(paths: Iterable[str] = _CGROUP_MEMORY_LIMITS) -> int | None:
    """Bytes of the cgroup memory limit, or None when there is none (no cgroup file, ``max``, or unlimited)."""
    for path in paths:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and 0 < int(text) < _NO_LIMIT_BYTES:
            return int(text)
        return None
    return None


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


class Sampler:
    """The readings behind the gauges, bound to the current process (re-created after a fork, never cached across)."""

    def __init__(self, *, per_cpu: bool, paths: Iterable[str], watched: Callable[[], frozenset[str]]) -> None:
        self.per_cpu = per_cpu
        self._extra_paths = tuple(paths)
        self._watched = watched  # the paths watch_filesystem() added since, read at every collection
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
            except (*UNSUPPORTED, OSError):
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
        wanted = frozenset(("/" if os.name != "nt" else os.path.realpath(os.sep), *self._extra_paths))
        wanted |= self._watched()
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

    def process_memory_limit(self) -> list[Observation]:
        limit = cgroup_memory_limit()
        return [] if limit is None else [Observation(limit)]

    def process_thread_count(self) -> list[Observation]:
        return [Observation(self.process().num_threads())]

    def process_fd_count(self) -> list[Observation]:
        return [Observation(self.process().num_fds())]


class Gpu:
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


def load_gpu() -> Gpu | None:
    """Import and initialise NVML if present; None (quietly) without pynvml, a driver or a GPU."""
    if importlib.util.find_spec("pynvml") is None:
        return None
    # NVML raises its own NVMLError family (no driver, no device, ...): any failure means no GPU series.
    gpu, exc = _guard.caught(_open_gpu)
    if gpu is None:
        _log.info("ragotel: GPU metrics off (NVML unavailable: %s)", exc)
        return None
    return gpu if gpu.count else None


def _open_gpu() -> Gpu:
    nvml = importlib.import_module("pynvml")
    nvml.nvmlInit()
    return Gpu(nvml)
