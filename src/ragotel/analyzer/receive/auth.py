"""Bearer-token checks (constant time) and TLS material for the receivers and the API."""

from __future__ import annotations

import hmac
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ragotel.analyzer.config.loading import ConfigError
from ragotel.analyzer.config.model import AuthConfig, Config, TLSConfig

__all__ = ["Credentials", "TLSFiles", "TokenAuth", "load_credentials", "load_tls"]


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


@dataclass(frozen=True, slots=True)
class Credentials:
    """The tokens and TLS material of the receivers and the API, read and checked."""

    receiver_auth: TokenAuth
    api_auth: TokenAuth
    receiver_tls: TLSFiles | None
    api_tls: TLSFiles | None


_T = TypeVar("_T")


def load_credentials(config: Config) -> Credentials:
    """Read every token source (env, file) and TLS file ``config`` names; ConfigError listing every problem.

    What ``Server`` checks before it holds a resource, and what ``--check-config`` runs on the merged files: a
    configuration that passes the check does not fail here at start-up (unless the environment changed between).
    """
    problems: list[str] = []

    def attempt(load: Callable[[], _T]) -> _T | None:
        try:
            return load()
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None

    receiver_auth = attempt(lambda: TokenAuth.from_config(config.receivers.auth, "receivers.auth"))
    api_auth = attempt(lambda: TokenAuth.from_config(config.api.auth, "api.auth"))
    receiver_tls = attempt(lambda: load_tls(config.receivers.tls, "receivers.tls"))
    api_tls = attempt(lambda: load_tls(config.api.tls, "api.tls"))
    if problems or receiver_auth is None or api_auth is None:
        raise ConfigError(problems)
    return Credentials(receiver_auth, api_auth, receiver_tls, api_tls)
