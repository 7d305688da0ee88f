"""Bearer-token checks (constant time) and TLS material for the receivers and the API."""

from __future__ import annotations

import hmac
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from ragotel.analyzer.config.loading import ConfigError
from ragotel.analyzer.config.model import AuthConfig, TLSConfig

__all__ = ["TLSFiles", "TokenAuth", "load_tls"]


class TokenAuth:
    """Checks ``Authorization: Bearer <token>``; allows everything when no token is configured."""

    __slots__ = ("_expected",)

    def __init__(self, token: str | None = None) -> None:
        self._expected = token.encode() if token else None

    @classmethod
    def from_config(cls, config: AuthConfig, where: str) -> TokenAuth:
        """Read the token from the configured env variable or file; ConfigError naming ``where`` if unusable."""
        if config.token_env:
            token = os.environ.get(config.token_env, "").strip()
            if not token:
                raise ConfigError(
                    [f"{where}.token_env: expected environment variable {config.token_env} to hold a token"]
                )
            return cls(token)
        if config.token_file:
            try:
                token = Path(config.token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError([f"{where}.token_file: expected a readable file ({exc})"]) from None
            if not token:
                raise ConfigError([f"{where}.token_file: expected a non-empty token in {config.token_file}"])
            return cls(token)
        return cls(None)

    @property
    def enabled(self) -> bool:
        """True when requests must present the token."""
        return self._expected is not None

    def check(self, authorization: str | None) -> bool:
        """True if auth is off or ``authorization`` is ``Bearer <token>`` (scheme case-insensitive)."""
        if self._expected is None:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._expected)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """A server certificate chain and key, already read and checked to load."""

    cert_file: str
    key_file: str
    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        """A TLS 1.2+ server context for this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def load_tls(config: TLSConfig, where: str) -> TLSFiles | None:
    """Read and validate the configured certificate and key; None when TLS is off; ConfigError if unusable."""
    if not config.cert_file or not config.key_file:
        return None
    try:
        files = TLSFiles(
            config.cert_file, config.key_file, Path(config.cert_file).read_bytes(), Path(config.key_file).read_bytes()
        )
        files.server_context()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{where}: expected a readable PEM certificate chain and matching key ({exc})"]) from None
    return files
