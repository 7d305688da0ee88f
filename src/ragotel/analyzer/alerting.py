"""The alerting component: each tick, rules judge the windows, alerts go to the outbox and to recovery.

``Server`` builds it from the configuration and ticks it on its loop thread; delivery and recovery actions run on
their own threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol

from ragotel.analyzer.config.model import Config
from ragotel.analyzer.judge.alert_state import AlertEngine
from ragotel.analyzer.judge.diagnosis import Diagnoser, StatsSource
from ragotel.analyzer.judge.records import Alert
from ragotel.analyzer.judge.rules import build_rule
from ragotel.analyzer.notify.channels import build_channel
from ragotel.analyzer.notify.outbox import DeliveryStats, Outbox
from ragotel.analyzer.recover.manager import RecoveryManager, RecoveryStats
from ragotel.analyzer.state import StateStore
from ragotel.analyzer.windows.history import COARSE_KEEP, COARSE_STEP, FINE_KEEP, STEP

__all__ = ["Alerting", "AlertingStats"]

_log = logging.getLogger("ragotel.analyzer.alerting")
_PRUNE_EVERY: Final = 3600.0
_SAVE_BASELINES_EVERY: Final = 60.0


class AlertingWindows(StatsSource, Protocol):
    """The windows as alerting drives them: read by rules and diagnosis, baselines rolled and persisted."""

    def roll_baselines(self, now: float | None = None, *, hold: frozenset[str] = frozenset()) -> None: ...

    def dump_baselines(self, *, dirty_only: bool = True) -> list[tuple[tuple[str, str, str], list[list[float]]]]: ...

    def restore_baselines(self, rows: Iterable[tuple[tuple[str, str, str], Any]], now: float | None = None) -> int: ...

    def dump_history(self) -> list[tuple[tuple[str, str], float, tuple[float, int, int, int, float, float]]]: ...

    def restore_history(self, rows: Iterable[tuple[tuple[str, str], float, Any]], now: float | None = None) -> int: ...


class AlertingStats(DeliveryStats, RecoveryStats, Protocol):
    """Metrics hooks of rule evaluations, deliveries and recoveries (prometheus counters in production)."""

    def evaluated(self, rule: str, seconds: float, error: BaseException | None) -> None: ...


class _NoStats:
    def evaluated(self, rule: str, seconds: float, error: BaseException | None) -> None:
        pass

    def delivered(self, channel: str, n: int, seconds: float) -> None:
        pass

    def failed(self, channel: str, n: int, *, gave_up: bool) -> None:
        pass

    def recorded(self, hook: str, status: str) -> None:
        pass


class Alerting:
    """The alerting Component: owns the state store, rule engine, outbox and recovery manager."""

    def __init__(self, config: Config, windows: AlertingWindows, stats: AlertingStats | None = None) -> None:
        self.config = config
        self._windows = windows
        self._stats: AlertingStats = stats or _NoStats()
        self._rules = [
            build_rule(spec, window=config.window, min_samples=config.detection.min_samples)
            for spec in config.rules
            if spec.enabled
        ]
        self._adaptive = frozenset(spec.name for spec in config.rules if spec.type == "adaptive")
        self._channel_specs = list(config.channels)
        self.channel_names = [c.name for c in self._channel_specs]
        self.store: StateStore | None = None
        self.engine: AlertEngine | None = None
        self.outbox: Outbox | None = None
        self.recovery: RecoveryManager | None = None
        self.alert_counts: dict[tuple[str, str, str], int] = {}
        self.active: list[Alert] = []
        self._last_prune = 0.0
        self._last_baselines_saved = 0.0

    # -- Component ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the state, restore pending/firing alerts, start delivery threads."""
        now = time.time()
        store = self.store = StateStore(self.config.state.path)
        self.outbox = Outbox(store, [build_channel(c) for c in self._channel_specs], stats=self._stats)
        self.recovery = RecoveryManager(self.config.recovery, store, self.outbox, stats=self._stats)
        diagnoser = Diagnoser(self._windows, window=self.config.window)
        self.engine = AlertEngine(
            self._rules,
            self._windows,
            diagnoser,
            store,
            self.outbox,
            absent_grace=self.config.window,
            listeners=[self.recovery],
            on_evaluation=self._stats.evaluated,
        )
        self.engine.restore(now)
        restored = self._windows.restore_baselines(store.baselines(), now)
        if restored:
            _log.info("restored the baselines of %d series from %s", restored, store.path)
        charted = self._windows.restore_history(store.history(), now)
        if charted:
            _log.info("restored the chart history of %d series from %s", charted, store.path)
        self._last_baselines_saved = now
        self._publish()
        self.outbox.start()
        _log.info(
            "alerting started",
            extra={"rules": len(self._rules), "channels": len(self.channel_names), "state": store.path},
        )

    def tick(self, now: float) -> None:
        if self.engine is None or self.recovery is None or self.outbox is None or self.store is None:
            return
        # A service under an adaptive alert teaches its baselines nothing until the alert is over.
        held = frozenset(a.labels.get("service", "") for a in self.engine.active() if a.rule in self._adaptive)
        self._windows.roll_baselines(now, hold=held)
        self.engine.tick(now)
        self._publish()
        if now - self._last_baselines_saved >= _SAVE_BASELINES_EVERY:
            self._last_baselines_saved = now
            self.store.save_baselines(self._windows.dump_baselines(), now)
            self._save_history(now)
        firing = [a for a in self.active if a.status == "firing"]
        self.outbox.refresh(now, firing)
        self.recovery.tick(now, firing)
        if now - self._last_prune >= _PRUNE_EVERY:
            self._last_prune = now
            removed = self.store.prune(now - self.config.state.retention)
            if removed:
                _log.info("pruned %d old alert/outbox/recovery records", removed)

    def stop(self) -> None:
        """Let running recovery actions record their result, stop delivery, close the state file."""
        if self.recovery is not None:
            self.recovery.close()
        if self.outbox is not None:
            self.outbox.stop()
        if self.engine is not None:
            self.engine.persist(time.time())
        if self.store is not None:
            self.store.save_baselines(self._windows.dump_baselines(), time.time())
            self._save_history(time.time())
            self.store.close()

    def _save_history(self, now: float) -> None:
        if self.store is not None:
            horizons = {STEP: now - FINE_KEEP, COARSE_STEP: now - COARSE_KEEP}
            self.store.save_history(self._windows.dump_history(), older_than=horizons)

    def _publish(self) -> None:
        """Snapshots of the active alerts for other threads (API, scrapes): replaced whole, never mutated."""
        active = [a.snapshot() for a in self.engine.active()] if self.engine is not None else []
        counts: dict[tuple[str, str, str], int] = {}
        for alert in active:
            key = (alert.rule, alert.status, alert.severity)
            counts[key] = counts.get(key, 0) + 1
        self.active, self.alert_counts = active, counts
