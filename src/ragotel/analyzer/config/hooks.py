"""Typed configuration of recovery hooks: their actions (argv, webhook, python, redis_flush) and cross-references."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from ragotel.analyzer.config.specs import (
    _NAME_RE,
    _PLACEHOLDER_RE,
    SUBSTITUTABLE_LABELS,
    Duration,
    HttpUrl,
    RuleSpec,
    Selector,
    _Spec,
)
from ragotel.analyzer.vocabulary import ACTION_IDS, CAUSE_IDS

__all__ = [
    "CommandActionSpec",
    "PythonActionSpec",
    "RecoverySpec",
    "RedisFlushActionSpec",
    "WebhookActionSpec",
    "check_references",
]


def _checked_template(value: str) -> str:
    bad = [name for name in _PLACEHOLDER_RE.findall(value) if name not in SUBSTITUTABLE_LABELS]
    if bad:
        allowed = ", ".join(f"{{{n}}}" for n in SUBSTITUTABLE_LABELS)
        raise ValueError(f"expected placeholders among {allowed} only")
    return value


Template = Annotated[str, AfterValidator(_checked_template)]


class CommandActionSpec(_Spec):
    """Run ``argv`` without a shell; ``{service}``-style placeholders take validated alert labels only."""

    type: Literal["command"]
    argv: list[Template] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    inherit_env: list[str] = Field(default_factory=list)


class WebhookActionSpec(_Spec):
    """POST the alert as JSON to ``url``; any 2xx answer is success."""

    type: Literal["webhook"]
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(default_factory=dict)


class PythonActionSpec(_Spec):
    """Call ``module:function`` with one keyword argument ``alert`` (a dict); returning normally is success."""

    type: Literal["python"]
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class RedisFlushActionSpec(_Spec):
    """Delete the keys matching ``pattern`` with SCAN + UNLINK; ``*`` alone needs ``allow_flush_all``."""

    type: Literal["redis_flush"]
    url: str | None = None
    url_env: str | None = None
    pattern: Template
    allow_flush_all: bool = False
    batch: int = Field(default=500, ge=1, le=10000)

    @model_validator(mode="after")
    def _safe(self) -> RedisFlushActionSpec:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("expected exactly one of 'url' or 'url_env'")
        if self.url is not None and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got {self.url!r}")
        if not self.pattern.strip():
            raise ValueError("expected a non-empty key pattern")
        if self.pattern.strip() == "*" and not self.allow_flush_all:
            raise ValueError("expected allow_flush_all: true with pattern '*' (it deletes every key of the database)")
        return self


ActionSpec = Annotated[
    CommandActionSpec | WebhookActionSpec | PythonActionSpec | RedisFlushActionSpec,
    Field(discriminator="type"),
]


class RecoverySpec(_Spec):
    """A recovery hook: when an alert fires whose rule, primary cause or recommended action is in ``on``."""

    name: str = Field(pattern=_NAME_RE)
    on: list[str] = Field(min_length=1)
    match: Selector = Field(default_factory=dict)
    action: ActionSpec
    cooldown: Duration = 300.0
    failure_cooldown: Duration = 60.0
    max_attempts: int = Field(default=3, ge=1)
    attempts_window: Duration = 3600.0
    timeout: Duration = 30.0
    dry_run: bool = False
    verify_within: Duration = 120.0
    escalate_to: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("expected a positive duration")
        return value


def check_references(rules: Sequence[RuleSpec], channels: Sequence[Any], hooks: Sequence[RecoverySpec]) -> None:
    """Cross-checks the three lists: unique names, hooks bound to known rules/causes/actions, known channels.

    Raises one ValueError listing every problem, each naming the entry (``recovery[0].on[1]``) and what was expected.
    """
    problems = []
    for what, items in (("channels", channels), ("recovery", hooks)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                problems.append(f"expected unique names in {what}, {what}[{i}] repeats {item.name!r}")
            seen.add(item.name)
    known = {r.name for r in rules} | set(CAUSE_IDS) | set(ACTION_IDS)
    channel_names = {c.name for c in channels}
    for i, hook in enumerate(hooks):
        problems += [
            f"expected recovery[{i}].on[{j}] to name a rule, a cause or an action ({', '.join(ACTION_IDS)}), "
            f"got {name!r}"
            for j, name in enumerate(hook.on)
            if name not in known
        ]
        problems += [
            f"expected recovery[{i}].escalate_to[{j}] to name a configured channel, got {name!r}"
            for j, name in enumerate(hook.escalate_to or ())
            if name not in channel_names
        ]
    if problems:
        raise ValueError("; ".join(problems))
