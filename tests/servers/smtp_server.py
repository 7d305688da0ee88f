"""SmtpServer: an aiosmtpd server on 127.0.0.1 that keeps what it receives, with optional STARTTLS and AUTH."""

from __future__ import annotations

import email
import email.policy
import logging
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ._process import StartStop, free_port
from .tls import SelfSignedCert, self_signed_cert

__all__ = ["ReceivedMessage", "SmtpServer"]


class _DropLoginDataNotice(logging.Filter):
    # aiosmtpd 1.4 logs this itself on every successful AUTH, even when nothing reads the legacy field.
    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_DropLoginDataNotice())


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One delivered message: the SMTP envelope, the raw bytes, the parsed message and how the session went."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage
    login: str | None
    tls: bool

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The plain-text body (the text/plain part of a multipart message)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return "" if part is None else str(part.get_content())


def _transport_is_tls(server: Any) -> bool:
    transport = getattr(server, "transport", None)
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data if session.authenticated else None
        login = auth.decode() if isinstance(auth, bytes) else None
        received = ReceivedMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message=message,
            login=login,
            tls=session.ssl is not None or _transport_is_tls(server),
        )
        self.owner._add(received)
        return "250 Message accepted for delivery"


class SmtpServer(StartStop):
    """aiosmtpd on a free port storing every message in `.messages`.

    STARTTLS is offered with a self-signed certificate (`.cert`, made with `cryptography`; `client_context()` trusts
    it); `implicit_tls=True` serves SMTPS instead (TLS from the first byte, for `smtplib.SMTP_SSL`). With
    `username`/`password`, AUTH LOGIN and PLAIN are offered and required (on SMTPS: offered, not required), only
    after STARTTLS unless `auth_require_tls=False`. `stop()`/`start()` restart on the same port (messages are kept).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        auth_require_tls: bool = True,
    ) -> None:
        self.port = port if port else free_port(self.host)
        self.username = username
        self.password = password
        self.implicit_tls = implicit_tls
        self.starttls = starttls and not implicit_tls
        self.require_starttls = require_starttls
        self.auth_require_tls = auth_require_tls and (starttls or implicit_tls)
        self.cert: SelfSignedCert = self_signed_cert()
        self._messages: list[ReceivedMessage] = []
        self._cond = threading.Condition()
        self._controller: Controller | None = None
        self.auth_failures = 0

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def client_context(self) -> Any:
        """An `ssl.SSLContext` for smtplib's `starttls(context=...)` that trusts this server's certificate."""
        return self.cert.client_context()

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        ):
            return AuthResult(success=True, auth_data=auth_data.login)
        self.auth_failures += 1
        return AuthResult(success=False, handled=False)

    def start(self) -> None:
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "server_hostname": "localhost"}
        if self.starttls:
            kwargs["tls_context"] = self.cert.server_context()
            kwargs["require_starttls"] = self.require_starttls
        if self.implicit_tls:
            kwargs["ssl_context"] = self.cert.server_context()
        if self.username is not None:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd only counts STARTTLS as TLS for AUTH; on SMTPS the channel is encrypted anyway, and requiring
            # AUTH without "requiring TLS" would make aiosmtpd warn on every connection, so AUTH is optional there.
            kwargs["auth_required"] = not self.implicit_tls
            kwargs["auth_require_tls"] = self.auth_require_tls and not self.implicit_tls
        else:
            kwargs["auth_require_tls"] = self.auth_require_tls
        controller = Controller(_Handler(self), **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def _add(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the messages received so far, oldest first."""
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until `n` messages arrived; return them all. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = len(self._messages)
                    raise AssertionError(f"SmtpServer: expected {n} message(s) within {timeout}s, got {got}")
                self._cond.wait(remaining)
            return list(self._messages)
