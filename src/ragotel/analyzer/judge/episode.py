"""One episode of one alert series as the engine holds it (mutable), its stable fingerprint, and its stored row."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ragotel.analyzer.judge.records import Alert, Diagnosis
from ragotel.analyzer.judge.rules import LabelKey

__all__ = ["AlertEpisode", "fingerprint"]


def fingerprint(rule: str, labels: LabelKey | Mapping[str, str]) -> str:
    """Stable id of one alert series: the same on every replica and across restarts."""
    items = sorted(labels.items()) if isinstance(labels, Mapping) else sorted(labels)
    text = "\x00".join([rule, *(f"{k}={v}" for k, v in items)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class AlertEpisode:
    """One episode of one alert series; owned and mutated by the engine only (others get ``snapshot()``).

    ``diagnosis`` is kept as the state file stores it; ``snapshot()`` gives the typed record.
    """

    fingerprint: str
    rule: str
    labels: dict[str, str]
    severity: str
    state: str
    active_since: float
    last_true: float
    last_seen: float
    value: float
    threshold: float
    id: int | None = None
    started_at: float | None = None
    resolved_at: float | None = None
    message: str = ""
    diagnosis: dict[str, Any] | None = None
    symptoms: dict[str, Any] | None = None
    notified: bool = False
    last_notified_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> Alert:
        """The alert as a frozen record, for the outbox, channels, listeners and the API."""
        return Alert(
            id=self.id,
            fingerprint=self.fingerprint,
            rule=self.rule,
            status=self.state,
            severity=self.severity,
            labels=dict(self.labels),
            message=self.message,
            value=self.value,
            threshold=self.threshold,
            active_since=self.active_since,
            started_at=self.started_at,
            resolved_at=self.resolved_at,
            diagnosis=Diagnosis.from_dict(self.diagnosis) if self.diagnosis else None,
        )

    def row(self, now: float) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "state": self.state,
            "severity": self.severity,
            "labels": self.labels,
            "service": self.labels.get("service"),
            "active_since": self.active_since,
            "started_at": self.started_at,
            "resolved_at": self.resolved_at,
            "last_true": self.last_true,
            "value": self.value if math.isfinite(self.value) else None,
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "message": self.message,
            "diagnosis": self.diagnosis,
            "symptoms": self.symptoms,
            "notified": int(self.notified),
            "last_notified_at": self.last_notified_at,
            "updated_at": now,
        }
