"""Real local servers for tests: Redis, PostgreSQL, Alertmanager, SMTP, HTTP receivers and a fake OpenAI API.

Each is a context manager on 127.0.0.1 with a free port, and has `stop()`/`start()` to restart on the same port.
Nothing here imports pytest, so benchmarks and examples can use it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._http import RecordedRequest
from ._process import MissingBinaryError, ServerStartError, free_port
from .alertmanager_server import AlertmanagerServer
from .postgres_server import PostgresServer, PostgresTemplate
from .receiver import CannedResponse, HangingServer, HttpReceiver
from .redis_server import RedisServer
from .smtp_server import ReceivedMessage, SmtpServer
from .tls import SelfSignedCert, self_signed_cert

if TYPE_CHECKING:
    from .openai import FakeOpenAI, InjectedError

__all__ = [
    "AlertmanagerServer",
    "CannedResponse",
    "FakeOpenAI",
    "HangingServer",
    "HttpReceiver",
    "InjectedError",
    "MissingBinaryError",
    "PostgresServer",
    "PostgresTemplate",
    "ReceivedMessage",
    "RecordedRequest",
    "RedisServer",
    "SelfSignedCert",
    "ServerStartError",
    "SmtpServer",
    "free_port",
    "self_signed_cert",
]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m tests.servers.openai` does not find its own module already loaded.
    if name in ("FakeOpenAI", "InjectedError"):
        from . import openai

        return getattr(openai, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
