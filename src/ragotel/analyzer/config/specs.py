"""Typed configuration of the alerting side: rules and channels (pydantic, validated at load time).

Recovery hooks are in ``hooks.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ragotel.analyzer.vocabulary import (
    ADAPTIVE_SIGNALS,
    SEVERITIES,
    SIGNALS,
    Severity,
    parse_duration,
)

__all__ = [
    "LABEL_VALUE_RE",
    "SUBSTITUTABLE_LABELS",
    "AlertmanagerChannelSpec",
    "BurnWindowSpec",
    "ChannelSpec",
    "Duration",
    "EmailChannelSpec",
    "GuardSpec",
    "LogChannelSpec",
    "RetrySpec",
    "RuleSpec",
    "SlackChannelSpec",
    "WebhookChannelSpec",
]

# Labels a rule may select on and a recovery command may receive. Only the second set is ever substituted into an
# argv, a Redis pattern or a URL, and only after its whole value matched LABEL_VALUE_RE (``fullmatch``: a ``$``
# would let a trailing newline through) -- telemetry is untrusted input.
MATCH_LABELS: Final = ("service", "stage", "component", "model", "collection", "dependency", "kind")
SUBSTITUTABLE_LABELS: Final = ("service", "stage", "component", "rule", "severity")
LABEL_VALUE_RE: Final = re.compile(r"(?!\.+\Z)[A-Za-z0-9_.:-]{1,128}")  # not only dots: `.`/`..` are paths


def _known_signal(value: str) -> str:
    if value not in SIGNALS and value not in ADAPTIVE_SIGNALS:
        raise ValueError(f"expected one of {', '.join(sorted(SIGNALS))}")
    return value


Signal = Annotated[str, AfterValidator(_known_signal)]
Condition = Literal["greater_than", "less_than", "equals", "not_equals"]

_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"
_PLACEHOLDER_RE: Final = re.compile(r"\{([^{}]*)\}")


def _duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"expected a non-negative duration, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(_duration)]


def _check_selector(value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
    for key, want in value.items():
        if key not in MATCH_LABELS:
            raise ValueError(f"expected labels among {', '.join(MATCH_LABELS)}, got {key!r}")
        if isinstance(want, list) and not want:
            raise ValueError(f"expected a value or a non-empty list of values for label {key!r}")
    return value


Selector = Annotated[dict[str, str | list[str]], AfterValidator(_check_selector)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GuardSpec(_Spec):
    """An extra condition on another signal of the same service (and stage/component when it has them)."""

    signal: Signal
    condition: Condition = "greater_than"
    threshold: float


class BurnWindowSpec(_Spec):
    """One multi-window burn-rate level: both windows must burn faster than ``factor`` times the budget."""

    long: Duration
    short: Duration
    factor: float = Field(gt=0)
    severity: Severity = "critical"

    @model_validator(mode="after")
    def _short_under_long(self) -> BurnWindowSpec:
        if not 0 < self.short < self.long:
            raise ValueError("expected 0 < short < long")
        return self


class RuleSpec(_Spec):
    """One alerting rule; ``type`` picks how the value is computed, the state machine is the same for all."""

    name: str = Field(pattern=_NAME_RE)
    type: Literal["threshold", "burn_rate", "regression", "adaptive"] = "threshold"
    enabled: bool = True
    signal: Signal | None = None
    match: Selector = Field(default_factory=dict)
    condition: Condition = "greater_than"
    threshold: float | None = None
    # Severity levels like the seed's key-metric monitor: "warning" once the value is within this ratio of the
    # threshold (above threshold / ratio for greater_than), ``severity`` once it crosses it.
    warning_ratio: float | None = Field(default=None, gt=1)
    for_: Duration = Field(default=0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Severity = "warning"
    cooldown: Duration = 300.0
    repeat_interval: Duration = 4 * 3600.0
    guard: list[GuardSpec] = Field(default_factory=list)
    # threshold rules on span signals: the condition must also hold over the last ``recent`` seconds ("still
    # happening"; 0s: the window alone decides), with at least ``min_requests`` spans and ``min_errors`` failed
    # spans in the window.
    recent: Duration = 10.0
    min_requests: int = Field(default=0, ge=0)
    min_errors: int = Field(default=0, ge=0)
    summary: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # burn_rate
    objective: float | None = Field(default=None, gt=0, lt=1)
    burn_windows: list[BurnWindowSpec] = Field(default_factory=list)
    min_request_rate: float = Field(default=0.0, ge=0)
    # A firing level stays active only while the last ``resolve_window`` also burns faster than its factor.
    resolve_window: Duration = 30.0
    # regression
    factor: float = Field(default=2.0, gt=1)
    min_delta: float = Field(default=0.0, ge=0)
    baseline: Duration = 3600.0
    min_history: Duration = 600.0
    # adaptive (also factor, min_delta): newest spans judged together; None takes detection.min_samples
    min_samples: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _adaptive_defaults(cls, data: Any) -> Any:
        # An adaptive rule's condition comes and goes with the newest spans: damp flapping unless told otherwise.
        if isinstance(data, dict) and data.get("type") == "adaptive" and "keep_firing_for" not in data:
            data = {**data, "keep_firing_for": 10.0}
        return data

    @model_validator(mode="after")
    def _complete(self) -> RuleSpec:
        if not self.enabled:
            return self
        if self.type != "adaptive" and self.signal is not None and self.signal not in SIGNALS:
            raise ValueError(f"expected type: adaptive for signal {self.signal!r}")
        if self.type == "adaptive":
            if self.signal not in ADAPTIVE_SIGNALS:
                raise ValueError(f"expected 'signal' among {', '.join(ADAPTIVE_SIGNALS)} in an adaptive rule")
        elif self.type == "threshold":
            if self.signal is None:
                raise ValueError("expected 'signal' in a threshold rule")
            if self.threshold is None:
                raise ValueError("expected 'threshold' in a threshold rule")
            if self.warning_ratio is not None and self.condition not in ("greater_than", "less_than"):
                raise ValueError("expected condition greater_than or less_than with 'warning_ratio'")
        elif self.type == "burn_rate":
            if self.objective is None:
                raise ValueError("expected 'objective' (e.g. 0.995) in a burn_rate rule")
            if not self.burn_windows:
                raise ValueError("expected at least one entry in 'burn_windows' of a burn_rate rule")
        elif self.signal is None:
            raise ValueError("expected 'signal' in a regression rule")
        if self.repeat_interval and self.repeat_interval < self.cooldown:
            raise ValueError("expected 'repeat_interval' no shorter than 'cooldown' (or 0s: never repeat)")
        return self


class RetrySpec(_Spec):
    """Delivery retries: exponential backoff from ``initial`` to ``max``; undelivered after ``give_up_after``."""

    initial: Duration = 1.0
    max: Duration = 300.0
    give_up_after: Duration = 86400.0


class _ChannelBase(_Spec):
    name: str = Field(pattern=_NAME_RE)
    severities: list[Severity] = Field(default_factory=lambda: list(SEVERITIES))
    send_resolved: bool = True
    timeout: Duration = 10.0
    retry: RetrySpec = Field(default_factory=RetrySpec)


class LogChannelSpec(_ChannelBase):
    """Notifications as log records of the ``ragotel.analyzer.alerts`` logger."""

    type: Literal["log"]
    level: Literal["debug", "info", "warning", "error"] = "warning"


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("expected an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class WebhookChannelSpec(_ChannelBase):
    """JSON POST of the DESIGN.md payload, one alert per request; header values may come from the environment."""

    type: Literal["webhook"]
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(default_factory=dict)


class SlackChannelSpec(_ChannelBase):
    """Slack incoming webhook (``text`` + ``blocks``); the URL is a secret, so ``url_env`` is preferred."""

    type: Literal["slack"]
    url: HttpUrl | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> SlackChannelSpec:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("expected exactly one of 'url' or 'url_env'")
        return self


class EmailChannelSpec(_ChannelBase):
    """SMTP with STARTTLS (default) or implicit TLS, login with credentials read from the named variables."""

    type: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    ca_file: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    subject_prefix: str = "[ragotel]"


class AlertmanagerChannelSpec(_ChannelBase):
    """Prometheus Alertmanager v2 API; one channel per Alertmanager instance of a cluster, like Prometheus."""

    type: Literal["alertmanager"]
    url: HttpUrl
    resend_interval: Duration = 60.0
    generator_url: str | None = None
    headers_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("resend_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("expected a positive duration")
        return value


ChannelSpec = Annotated[
    LogChannelSpec | WebhookChannelSpec | SlackChannelSpec | EmailChannelSpec | AlertmanagerChannelSpec,
    Field(discriminator="type"),
]
