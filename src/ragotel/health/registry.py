"""HealthRegistry: registered checks, the scheduler and worker threads that run them time-boxed, and their verdicts."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from opentelemetry.metrics import Observation

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.health import checks
from ragotel.health.model import Dependency, HealthReport, Outcome, Run, evaluate, overall_status, validate

__all__ = ["DEFAULT_WORKERS", "HealthRegistry"]

_log = logging.getLogger("ragotel")

DEFAULT_WORKERS: Final = 4
_MAX_STUCK_PER_DEPENDENCY: Final = 2  # hung runs of one check still holding a thread before it is not started again
_WORKER_IDLE_S: Final = 30.0
_JOIN_TIMEOUT_S: Final = 2.0


class HealthRegistry:
    """Registered checks, the scheduler and worker threads that run them, and their latest verdicts. Thread-safe.

    ``ragotel.health.register/unregister/status`` use one process-wide instance; tests and embedders may make
    their own. Threads start with the first registration; :meth:`stop` ends them (joined with a timeout).
    """

    def __init__(self, *, workers: int = DEFAULT_WORKERS) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: expected an integer >= 1, got {workers!r}")
        self._max_workers = workers
        self._cond = threading.Condition()
        self._deps: dict[str, Dependency] = {}
        self._generation = 0
        self._running = False
        self._scheduler: threading.Thread | None = None
        self._queue: deque[Run] = deque()
        self._alive = 0  # worker threads of the current generation
        self._idle = 0
        self._stuck = 0  # of those, threads still inside an abandoned (timed-out) check
        self._logs: list[tuple[int, str, tuple[Any, ...]]] = []
        _registries.add(self)

    # --- public API -----------------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        check: Callable[[], Any],
        *,
        kind: str,
        interval: float = 15.0,
        timeout: float = 5.0,
    ) -> None:
        """Probe ``check`` every ``interval`` seconds, cut at ``timeout``; replaces a check of the same name.

        Raises ``ValueError`` naming the bad argument. The first probe starts at once, on ragotel's threads.
        """
        name, kind = validate(name, check, kind, interval, timeout)
        dep = Dependency(name, check, kind, float(interval), float(timeout))
        with self._cond:
            self._deps[name] = dep
            self._start_locked()
            self._cond.notify_all()

    def unregister(self, name: str) -> bool:
        """Stop probing ``name`` and drop its gauges; False if it was not registered."""
        with self._cond:
            found = self._deps.pop(name, None) is not None
            self._cond.notify_all()
        return found

    def unregister_check(self, name: str, check: Callable[[], Any]) -> bool:
        """Unregister ``name`` only if its check is still ``check`` (a newer registration of the name stays)."""
        with self._cond:
            dep = self._deps.get(name)
            if dep is None or dep.check is not check:
                return False
            del self._deps[name]
            return True

    def names(self) -> tuple[str, ...]:
        """Registered dependency names."""
        with self._cond:
            return tuple(self._deps)

    def status(self) -> HealthReport:
        """Overall status and the last verdict per dependency; never blocks on a probe."""
        with self._cond:
            deps = tuple(sorted((d.snapshot() for d in self._deps.values()), key=lambda d: d.name))
        down = sum(1 for d in deps if d.healthy is False)
        return HealthReport(overall_status(len(deps), down), deps)

    def start(self) -> None:
        """Start the scheduler if it is not running (registration does this). Idempotent."""
        with self._cond:
            self._start_locked()

    def stop(self, timeout: float = _JOIN_TIMEOUT_S) -> None:
        """Stop the scheduler and idle workers promptly; a check still running finishes unobserved. Never raises."""
        with self._cond:
            if not self._running:
                return
            self._running = False
            self._generation += 1
            self._queue.clear()
            for dep in self._deps.values():
                dep.running = None
            scheduler, self._scheduler = self._scheduler, None
            self._alive = self._idle = self._stuck = 0
            self._cond.notify_all()
        if scheduler is not None and scheduler is not threading.current_thread():
            scheduler.join(timeout)

    @property
    def running(self) -> bool:
        """True while the scheduler thread is active."""
        return self._running

    # --- scheduler ------------------------------------------------------------------------------------------------
    def _start_locked(self) -> None:
        if self._running:
            return
        self._running = True
        self._generation += 1
        thread = threading.Thread(
            target=self._schedule, args=(self._generation,), name="ragotel-health-scheduler", daemon=True
        )
        self._scheduler = thread
        thread.start()

    def _schedule(self, generation: int) -> None:
        while True:
            with self._cond:
                if self._generation != generation:
                    return
                now = time.monotonic()
                wake = _guard.call("health scheduler tick", functools.partial(self._tick, now), now + 1.0)
                logs, self._logs = self._logs, []
                if not logs:
                    self._cond.wait(max(0.0, wake - time.monotonic()))
            for level, message, args in logs:
                _guard.call("health log", functools.partial(_log.log, level, message, *args), None)

    def _tick(self, now: float) -> float:
        """Cut overdue runs, start due ones; return when to look again. Called with the lock held."""
        wake = now + 60.0
        for dep in list(self._deps.values()):
            run = dep.running
            if run is not None:
                if run.started is not None:
                    deadline = run.started + dep.timeout
                    if now >= deadline:
                        self._abandon(dep, run)
                    else:
                        wake = min(wake, deadline)
                        continue
                else:
                    continue  # queued; the worker notifies when it starts
            if now >= dep.next_due:
                self._launch(dep, now)
            if dep.running is None:
                wake = min(wake, dep.next_due)
        return wake

    def _launch(self, dep: Dependency, now: float) -> None:
        dep.next_due += dep.interval
        if dep.next_due <= now:
            dep.next_due = now + dep.interval
        if dep.stuck >= _MAX_STUCK_PER_DEPENDENCY:
            reason = f"earlier probes are still hung ({dep.stuck} past their {dep.timeout:g}s timeout)"
            self._record(dep, Outcome(False, reason), dep.timeout)
            return
        run = Run(dep, self._generation)
        dep.running = run
        self._queue.append(run)
        self._spawn_if_needed()
        self._cond.notify_all()

    def _abandon(self, dep: Dependency, run: Run) -> None:
        run.abandoned = True
        dep.running = None
        dep.stuck += 1
        self._stuck += 1
        self._record(dep, Outcome(False, f"timed out after {dep.timeout:g}s"), dep.timeout)
        self._spawn_if_needed()

    def _spawn_if_needed(self) -> None:
        if len(self._queue) > self._idle and self._alive - self._stuck < self._max_workers:
            thread = threading.Thread(
                target=self._work, args=(self._generation,), name="ragotel-health-worker", daemon=True
            )
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": the queued runs wait for a worker to free up
                _guard.report("starting a health worker", exc)
                return
            self._alive += 1

    # --- workers --------------------------------------------------------------------------------------------------
    def _work(self, generation: int) -> None:
        while True:
            with self._cond:
                run = self._next_run(generation)
                if run is None:
                    return
                run.started = started = time.monotonic()
                deadline = started + run.dep.timeout
                self._cond.notify_all()
            token = checks.probe_deadline.set(deadline)
            try:
                outcome = evaluate(run.dep.check)
            finally:
                checks.probe_deadline.reset(token)
            duration = time.monotonic() - started
            with self._cond:
                if self._generation != generation:
                    return
                if run.abandoned:
                    run.dep.stuck -= 1
                    self._stuck -= 1
                else:
                    run.dep.running = None
                    if self._deps.get(run.dep.name) is run.dep:
                        self._record(run.dep, outcome, duration)
                self._cond.notify_all()
                if self._alive - self._stuck > self._max_workers:
                    self._alive -= 1  # a formerly hung worker came back while its replacement runs
                    return

    def _next_run(self, generation: int) -> Run | None:
        """Wait for a queued run (lock held); None when this worker should exit (stopped, or idle too long)."""
        idle_until = time.monotonic() + _WORKER_IDLE_S
        while not self._queue:
            remaining = idle_until - time.monotonic()
            if self._generation != generation:
                return None
            if remaining <= 0:
                self._alive -= 1
                return None
            self._idle += 1
            try:
                self._cond.wait(remaining)
            finally:
                self._idle -= 1
        return self._queue.popleft()

    # --- verdicts -------------------------------------------------------------------------------------------------
    def _record(self, dep: Dependency, outcome: Outcome, duration: float | None) -> None:
        """Store a verdict and queue a log line on a change of state (lock held; logged by the scheduler)."""
        before = dep.healthy
        dep.healthy = outcome.healthy
        dep.reason = outcome.reason
        dep.duration = duration
        dep.checked_at = time.time()
        dep.index = outcome.index if outcome.healthy else None
        dep.failures = 0 if outcome.healthy else dep.failures + 1
        if not outcome.healthy and before is not False:
            self._logs.append(
                (logging.WARNING, "ragotel: dependency %r (%s) is unhealthy: %s", (dep.name, dep.kind, dep.reason))
            )
        elif outcome.healthy and before is False:
            self._logs.append((logging.INFO, "ragotel: dependency %r (%s) is healthy again", (dep.name, dep.kind)))
        self._cond.notify_all()

    # --- gauges ---------------------------------------------------------------------------------------------------
    def observe_health(self) -> list[Observation]:
        """``ragotel.dependency.health`` points: 1 healthy, 0 not; nothing before a first verdict."""
        with self._cond:
            return [
                Observation(
                    1 if d.healthy else 0, {sc.RAGOTEL_DEPENDENCY_NAME: d.name, sc.RAGOTEL_DEPENDENCY_KIND: d.kind}
                )
                for d in self._deps.values()
                if d.healthy is not None
            ]

    def observe_duration(self) -> list[Observation]:
        """``ragotel.dependency.check.duration`` points: the last probe's duration (the timeout when cut)."""
        with self._cond:
            return [
                Observation(d.duration, {sc.RAGOTEL_DEPENDENCY_NAME: d.name, sc.RAGOTEL_DEPENDENCY_KIND: d.kind})
                for d in self._deps.values()
                if d.duration is not None
            ]

    def observe_index(self) -> list[Observation]:
        """``ragotel.index.documents`` points from the last healthy vector-database probe of each dependency."""
        out = []
        with self._cond:
            for d in self._deps.values():
                if d.index is None:
                    continue
                for collection, count in d.index.counts.items():
                    attrs = {
                        sc.DB_SYSTEM_NAME: d.index.system,
                        sc.DB_COLLECTION_NAME: collection,
                        sc.RAGOTEL_DEPENDENCY_NAME: d.name,
                    }
                    out.append(Observation(count, attrs))
        return out

    # --- fork -----------------------------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        """The parent's threads do not exist here: fresh lock, no runs in flight, scheduler restarted if it ran."""
        self._cond = threading.Condition()
        was_running = self._running
        self._running = False
        self._scheduler = None
        self._queue.clear()
        self._alive = self._idle = self._stuck = 0
        self._logs = []
        now = time.monotonic()
        for dep in self._deps.values():
            dep.running = None
            dep.stuck = 0
            dep.next_due = now
        if was_running:
            self._start_locked()


_registries: weakref.WeakSet[HealthRegistry] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for registry in list(_registries):
        _guard.call("health after fork", registry._after_fork_in_child, None)


def _stop_all_at_exit() -> None:
    # Daemon threads die with the interpreter anyway; stopping first keeps probes from starting during teardown.
    for registry in list(_registries):
        _guard.call("health stop at exit", functools.partial(registry.stop, 0.5), None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_all_at_exit)
