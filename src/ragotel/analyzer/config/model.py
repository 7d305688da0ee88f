"""The schema of the analyzer's YAML: typed, frozen models of every section, and the duration/size/endpoint types."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ragotel.analyzer.config.builtin_rules import builtin_rules
from ragotel.analyzer.config.hooks import RecoverySpec, check_references
from ragotel.analyzer.config.specs import ChannelSpec, RuleSpec
from ragotel.analyzer.vocabulary import parse_duration, parse_size

__all__ = [
    "ApiConfig",
    "AuthConfig",
    "BaselineConfig",
    "Config",
    "DetectionConfig",
    "LimitsConfig",
    "LogConfig",
    "PassthroughConfig",
    "ReceiversConfig",
    "TLSConfig",
    "split_endpoint",
]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:PORT`` for IPv6) into host and port; raise ValueError if malformed."""
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from 0 to 65535, got {endpoint!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def _endpoint(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("endpoint", "expected HOST:PORT (port 0 picks a free port)")
    try:
        split_endpoint(value)
    except ValueError:
        raise PydanticCustomError("endpoint", "expected HOST:PORT (port 0 picks a free port)") from None
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Endpoint = Annotated[str, BeforeValidator(_endpoint)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Model):
    """Bearer-token authentication; off while neither source is set."""

    token_env: str | None = None
    token_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AuthConfig:
        if self.token_env and self.token_file:
            raise ValueError("expected only one of token_env or token_file")
        return self

    @property
    def enabled(self) -> bool:
        """True when a token source is configured."""
        return bool(self.token_env or self.token_file)


class TLSConfig(_Model):
    """Server TLS; off while neither file is set."""

    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _both(self) -> TLSConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("expected both cert_file and key_file, or neither")
        return self

    @property
    def enabled(self) -> bool:
        """True when a certificate and key are configured."""
        return bool(self.cert_file)


class GrpcReceiverConfig(_Model):
    """OTLP/gRPC receiver."""

    enabled: bool = True
    endpoint: Endpoint = "127.0.0.1:4317"
    max_message_size: Size = Field(default=4 * 1024**2, gt=0)
    workers: int = Field(default=4, ge=1, le=256)
    max_concurrent_rpcs: int = Field(default=1000, ge=1)
    max_concurrent_streams: int = Field(default=100, ge=1)
    handshake_timeout: Duration = Field(default=10.0, gt=0)
    max_connection_age: Duration = Field(default=60.0, gt=0)
    max_connection_age_grace: Duration = Field(default=10.0, gt=0)


class HttpReceiverConfig(_Model):
    """OTLP/HTTP receiver."""

    enabled: bool = True
    endpoint: Endpoint = "127.0.0.1:4318"
    max_body_size: Size = Field(default=20 * 1024**2, gt=0)
    read_timeout: Duration = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)


class ReceiversConfig(_Model):
    """Both OTLP receivers and what they share."""

    grpc: GrpcReceiverConfig = GrpcReceiverConfig()
    http: HttpReceiverConfig = HttpReceiverConfig()
    auth: AuthConfig = AuthConfig()
    tls: TLSConfig = TLSConfig()


class ApiConfig(_Model):
    """The JSON/Prometheus HTTP API."""

    endpoint: Endpoint = "127.0.0.1:4319"
    auth: AuthConfig = AuthConfig()
    tls: TLSConfig = TLSConfig()


class StateConfig(_Model):
    """Durable state (SQLite)."""

    path: str = "ragotel-analyzer.db"
    retention: Duration = Field(default=7 * 86400.0, gt=0)


class LimitsConfig(_Model):
    """Cardinality and overload protection."""

    max_series: int = Field(default=100_000, ge=1)
    ingest_queue_size: int = Field(default=256, ge=1)
    ingest_queue_bytes: Size = Field(default=256 * 1024**2, gt=0)
    memory_limit: Size = Field(default=1024**3, ge=0)
    retry_after: Duration = Field(default=1.0, gt=0)


class PassthroughConfig(_Model):
    """Optional forwarding of everything accepted to a downstream OTLP endpoint."""

    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: dict[str, str] = {}
    queue_size: int = Field(default=1000, ge=1)
    timeout: Duration = Field(default=10.0, gt=0)
    max_elapsed: Duration = Field(default=60.0, gt=0)
    signals: tuple[Literal["traces", "metrics", "logs"], ...] = Field(
        default=("traces", "metrics", "logs"), min_length=1
    )

    @field_validator("endpoint")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected http://HOST:PORT or https://HOST:PORT")
        return value


class DetectionConfig(_Model):
    """The recent panes adaptive rules read: newest spans until ``min_samples`` of them, at most ``horizon`` back."""

    horizon: Duration = Field(default=30.0, gt=0, le=600)
    min_samples: int = Field(default=10, ge=1)


class BaselineConfig(_Model):
    """The trailing per-stage baselines adaptive rules compare with (10-second buckets, persisted in the state)."""

    horizon: Duration = Field(default=3600.0, ge=30, le=86400)
    min_samples: int = Field(default=30, ge=1)


class LogConfig(_Model):
    """The daemon's own log output (stderr)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Config(_Model):
    """The whole analyzer configuration; ``Config()`` equals the parsed ``DEFAULT_CONFIG_YAML``."""

    window: Duration = Field(default=60.0, gt=0)
    evaluation_interval: Duration = Field(default=1.0, gt=0)
    detection: DetectionConfig = DetectionConfig()
    baseline: BaselineConfig = BaselineConfig()
    memory_fit_window: Duration = Field(default=90.0, gt=0)
    receivers: ReceiversConfig = ReceiversConfig()
    api: ApiConfig = ApiConfig()
    state: StateConfig = StateConfig()
    limits: LimitsConfig = LimitsConfig()
    passthrough: PassthroughConfig = PassthroughConfig()
    log: LogConfig = LogConfig()
    rules: list[RuleSpec] = Field(default_factory=builtin_rules)
    channels: list[ChannelSpec] = []
    recovery: list[RecoverySpec] = []

    @field_validator("recovery")
    @classmethod
    def _references(cls, value: list[RecoverySpec], info: ValidationInfo) -> list[RecoverySpec]:
        if "rules" in info.data and "channels" in info.data:
            check_references(info.data["rules"], info.data["channels"], value)
        return value

    @model_validator(mode="after")
    def _interval_fits(self) -> Config:
        if self.evaluation_interval > self.window:
            raise ValueError("expected evaluation_interval no longer than window")
        return self
