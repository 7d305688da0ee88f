"""The records judging hands on: rule samples, an alert and its diagnosis (causes, stage attribution), frozen and typed.

Notifying, recovering and the API take these; each turns them into JSON only at its own edge (``to_dict()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Alert", "Cause", "Diagnosis", "LabelKey", "Sample", "StageShare"]

LabelKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One evaluated series of a rule: ``active`` says whether the condition (and every guard) holds right now."""

    labels: LabelKey
    value: float
    threshold: float
    severity: str
    active: bool
    details: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Cause:
    """One possible cause; ``cause`` is a stable id (documented in docs/analyzer.md)."""

    cause: str
    summary: str
    confidence: float
    actions: tuple[str, ...]
    stage: str | None = None
    component: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "summary": self.summary,
            "confidence": round(self.confidence, 3),
            "actions": list(self.actions),
            "stage": self.stage,
            "component": self.component,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Cause:
        """The record of ``to_dict()``'s JSON."""
        return cls(
            doc["cause"],
            doc["summary"],
            doc["confidence"],
            tuple(doc["actions"]),
            doc.get("stage"),
            doc.get("component"),
        )


@dataclass(frozen=True, slots=True)
class StageShare:
    """Where a service's time and errors went, per stage and component, over the current window."""

    stage: str
    component: str
    time_share: float
    p95: float
    error_rate: float
    count: float
    usual_p95: float | None
    status: str  # normal | slow | failing

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "component": self.component,
            "time_share": round(self.time_share, 4),
            "p95": self.p95,
            "error_rate": self.error_rate,
            "count": self.count,
            "usual_p95": self.usual_p95,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> StageShare:
        """The record of ``to_dict()``'s JSON."""
        return cls(**{name: doc[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The ranked causes of one alert; ``primary_cause`` is the id of the first."""

    primary_cause: str
    confidence: float
    possible_causes: tuple[Cause, ...]
    recommended_actions: tuple[str, ...]
    summary: str
    attribution: tuple[StageShare, ...] = ()
    deploy: Mapping[str, Any] | None = None  # previous_version, version, changed_at of a deploy-aware diagnosis
    # The down node of the dependency graph named as the cause: id, name, type, health, health_checks, upstream.
    dependency: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "primary_cause": self.primary_cause,
            "confidence": round(self.confidence, 3),
            "possible_causes": [c.to_dict() for c in self.possible_causes],
            "recommended_actions": list(self.recommended_actions),
            "summary": self.summary,
            "attribution": [s.to_dict() for s in self.attribution],
        }
        if self.deploy is not None:
            doc["deploy"] = dict(self.deploy)
        if self.dependency is not None:
            doc["dependency"] = dict(self.dependency)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Diagnosis:
        """The record of ``to_dict()``'s JSON (as the state file and the outbox keep it)."""
        return cls(
            doc["primary_cause"],
            doc["confidence"],
            tuple(Cause.from_dict(c) for c in doc["possible_causes"]),
            tuple(doc["recommended_actions"]),
            doc["summary"],
            tuple(StageShare.from_dict(s) for s in doc.get("attribution", ())),
            doc.get("deploy"),
            doc.get("dependency"),
        )

    @classmethod
    def failed(cls, error: BaseException) -> Diagnosis:
        """What an alert carries when its diagnosis raised."""
        return cls("unknown", 0.0, (), (), f"diagnosis failed: {type(error).__name__}")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert episode as the engine last saw it: what the outbox, the channels, recovery and the API receive.

    ``status`` is pending, firing or resolved; times are epoch seconds.
    """

    id: int | None
    fingerprint: str
    rule: str
    status: str
    severity: str
    labels: Mapping[str, str]
    message: str
    value: float
    threshold: float
    active_since: float
    started_at: float | None
    resolved_at: float | None
    diagnosis: Diagnosis | None = None

    @property
    def service(self) -> str | None:
        return self.labels.get("service")

    @property
    def stage(self) -> str | None:
        return self.labels.get("stage")

    @property
    def component(self) -> str | None:
        return self.labels.get("component")

    def to_dict(self) -> dict[str, Any]:
        """Plain data of the alert (times as epoch seconds): the outbox payload and what recovery actions get."""
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "status": self.status,
            "severity": self.severity,
            "labels": dict(self.labels),
            "service": self.service,
            "stage": self.stage,
            "component": self.component,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "active_since": self.active_since,
            "started_at": self.started_at,
            "resolved_at": self.resolved_at,
            "diagnosis": self.diagnosis.to_dict() if self.diagnosis is not None else None,
            "deploy": dict(self.diagnosis.deploy) if self.diagnosis is not None and self.diagnosis.deploy else None,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Alert:
        """The record of ``to_dict()``'s JSON."""
        diagnosis = doc.get("diagnosis")
        return cls(
            id=doc.get("id"),
            fingerprint=doc["fingerprint"],
            rule=doc["rule"],
            status=doc["status"],
            severity=doc["severity"],
            labels=dict(doc.get("labels") or {}),
            message=doc.get("message", ""),
            value=doc["value"],
            threshold=doc["threshold"],
            active_since=doc["active_since"],
            started_at=doc.get("started_at"),
            resolved_at=doc.get("resolved_at"),
            diagnosis=Diagnosis.from_dict(diagnosis) if diagnosis else None,
        )
