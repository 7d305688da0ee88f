"""Durable notification outbox: rows in SQLite, one delivery thread per channel, retries with exponential backoff.

Delivery is at-least-once: a row is marked delivered only after the channel accepted it, and rows survive a crash.
Per channel and alert, rows go out in order (a later row waits for an earlier undelivered one). Channels that hold
alert *state* (Alertmanager) get one coalesced row per alert carrying its latest state, refreshed while it fires.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ragotel.analyzer.config.specs import RetrySpec
from ragotel.analyzer.judge.records import Alert
from ragotel.analyzer.state import StateStore

__all__ = ["Channel", "DeliveryError", "DeliveryStats", "Notification", "Outbox"]

_log = logging.getLogger("ragotel.analyzer.outbox")


class DeliveryError(Exception):
    """A channel could not deliver; ``permanent`` means retrying the same payload cannot succeed (HTTP 4xx)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Notification:
    """What a channel formats: the event (``firing``, ``resolved``, ``escalation``), the alert, event extras."""

    kind: str
    alert: Alert
    extra: Mapping[str, Any]
    created_at: float


class Channel(Protocol):
    """A notification channel. ``send`` blocks (on the channel's own thread) and raises DeliveryError on failure.

    ``stateful`` channels receive every state change of every alert (coalesced), not just notifications, and
    ``resend_interval`` asks for the firing alerts to be re-sent that often (Alertmanager's ``endsAt`` refresh).
    """

    name: str
    stateful: bool
    max_batch: int
    resend_interval: float | None
    severities: frozenset[str]
    send_resolved: bool
    retry: RetrySpec

    def send(self, batch: Sequence[Notification], now: float) -> None: ...

    def close(self) -> None: ...


class DeliveryStats(Protocol):
    """Metrics hooks (prometheus counters in production)."""

    def delivered(self, channel: str, n: int, seconds: float) -> None: ...

    def failed(self, channel: str, n: int, *, gave_up: bool) -> None: ...


class _NoStats:
    def delivered(self, channel: str, n: int, seconds: float) -> None:
        pass

    def failed(self, channel: str, n: int, *, gave_up: bool) -> None:
        pass


class Outbox:
    """Queues notifications in the store and delivers them; implements the engine's Notifier protocol."""

    def __init__(self, store: StateStore, channels: Sequence[Channel], *, stats: DeliveryStats | None = None) -> None:
        self._store = store
        self.channels = {c.name: c for c in channels}
        self._stats: DeliveryStats = stats or _NoStats()
        self._wake = {name: threading.Event() for name in self.channels}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_refresh: dict[str, float] = {}

    # -- Notifier --------------------------------------------------------------------------------------------------
    def enqueue(
        self,
        kind: str,
        alert: Alert,
        now: float,
        *,
        notify: bool,
        extra: Mapping[str, Any] | None = None,
        targets: Sequence[str] | None = None,
    ) -> None:
        """Queue ``kind`` for every channel it concerns. Call inside the store transaction of the transition."""
        payload = {"alert": alert.to_dict(), "extra": dict(extra or {})}
        fp = alert.fingerprint
        for channel in self.channels.values():
            if targets is not None and channel.name not in targets:
                continue
            if alert.severity not in channel.severities:
                continue
            if channel.stateful:
                key = f"{fp}:escalation:{(extra or {}).get('hook')}" if kind == "escalation" else fp
                self._store.enqueue(channel.name, key, alert.id, kind, payload, now=now, coalesce=True)
                continue
            if kind == "resolved" and not channel.send_resolved:
                continue
            if notify or kind == "escalation":
                self._store.enqueue(channel.name, fp, alert.id, kind, payload, now=now)

    def refresh(self, now: float, firing: Sequence[Alert]) -> None:
        """Re-queue firing alerts for stateful channels every ``resend_interval`` (so their ``endsAt`` moves on)."""
        due = [
            c
            for c in self.channels.values()
            if c.resend_interval and now - self._last_refresh.get(c.name, float("-inf")) >= c.resend_interval
        ]
        if not due:
            return
        with self._store.transaction():
            for channel in due:
                self._last_refresh[channel.name] = now
                for alert in firing:
                    if alert.severity in channel.severities:
                        payload = {"alert": alert.to_dict(), "extra": {"refresh": True}}
                        self._store.enqueue(
                            channel.name, alert.fingerprint, alert.id, "firing", payload,
                            now=now, coalesce=True,
                        )  # fmt: skip
        self.wake()

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    # -- delivery --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start one delivery thread per channel (daemon threads; ``stop()`` joins them)."""
        self._stop.clear()
        for name in self.channels:
            thread = threading.Thread(target=self._run, args=(name,), name=f"ragotel-outbox-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        for channel in self.channels.values():
            channel.close()

    def _run(self, name: str) -> None:
        channel, event = self.channels[name], self._wake[name]
        while not self._stop.is_set():
            try:
                worked = self.deliver_due(name, time.time())
            except Exception as exc:  # noqa: BLE001  the store or a channel bug must not end delivery for good
                _log.error("outbox %s: delivery loop error: %r", name, exc)
                worked = False
            if worked:
                continue
            next_due = self._store.next_due(name)
            wait = 1.0 if next_due is None else min(1.0, max(0.005, next_due - time.time()))
            event.wait(wait)
            event.clear()
        del channel

    def deliver_due(self, name: str, now: float) -> bool:
        """Try every row of channel ``name`` that is due; return whether any was attempted."""
        channel = self.channels[name]
        rows = self._store.due(name, now, limit=max(channel.max_batch, 50))
        if not rows:
            return False
        batches = [rows[i : i + channel.max_batch] for i in range(0, len(rows), channel.max_batch)]
        for batch in batches:
            ids = [int(r["id"]) for r in batch]
            started = time.perf_counter()
            try:
                notifications = [_notification(r) for r in batch]  # a malformed stored row fails like a send
                channel.send(notifications, time.time())
            except Exception as exc:  # noqa: BLE001  any channel failure is recorded and retried, never raised
                self._failed(channel, batch, exc)
                continue
            self._store.mark_delivered([(int(r["id"]), int(r["revision"])) for r in batch], time.time())
            self._stats.delivered(name, len(ids), time.perf_counter() - started)
        return True

    def _failed(self, channel: Channel, batch: Sequence[Mapping[str, Any]], exc: BaseException) -> None:
        now = time.time()
        retry = channel.retry
        attempts = int(batch[0]["attempts"]) + 1
        delay = min(retry.max, retry.initial * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)  # noqa: S311  jitter
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        give_up = permanent or now + delay - float(batch[0]["created_at"]) > retry.give_up_after
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, DeliveryError) else str(exc)
        self._store.mark_failed([int(r["id"]) for r in batch], error, now + delay, give_up=give_up)
        self._stats.failed(channel.name, len(batch), gave_up=give_up)
        _log.warning(
            "channel %s: delivery failed (attempt %d, %s): %s",
            channel.name,
            attempts,
            "giving up" if give_up else f"retry in {delay:.1f}s",
            error,
        )


def _notification(row: Mapping[str, Any]) -> Notification:
    payload = row["payload"]
    return Notification(row["kind"], Alert.from_dict(payload["alert"]), payload.get("extra", {}), row["created_at"])
