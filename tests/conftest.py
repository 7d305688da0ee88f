"""Shared pytest fixtures: real local servers from tests/servers (a missing binary fails the test, never skips)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.servers import (
    AlertmanagerServer,
    FakeOpenAI,
    HangingServer,
    HttpReceiver,
    MissingBinaryError,
    PostgresServer,
    PostgresTemplate,
    RedisServer,
    SmtpServer,
)

pytest_plugins = ("tests.health_support",)  # the health tests' `reg` and `reader` fixtures


def _fail_if_missing(factory: Callable[[], Any]) -> Any:
    try:
        return factory()
    except MissingBinaryError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free port; `.url`, `.stop()`, `.start()` (same port)."""
    with _fail_if_missing(RedisServer) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    """One initdb per session (the same one PostgresServer() uses by default); every postgres_server copies it."""
    template: PostgresTemplate = _fail_if_missing(PostgresTemplate.shared)
    yield template
    template.close()


@pytest.fixture
def postgres_server(postgres_template: PostgresTemplate) -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster on a free port, trust auth; `.url`, `.dsn`, `.stop()`, `.start()`."""
    with _fail_if_missing(lambda: PostgresServer(template=postgres_template)) as server:
        yield server


@pytest.fixture
def alertmanager_factory() -> Iterator[Callable[..., AlertmanagerServer]]:
    """Call with a webhook URL (and AlertmanagerServer keyword arguments) to get a started Alertmanager."""
    started: list[AlertmanagerServer] = []

    def make(webhook_url: str | None = None, **kwargs: Any) -> AlertmanagerServer:
        server = _fail_if_missing(lambda: AlertmanagerServer(webhook_url, **kwargs))
        started.append(server)
        server.start()
        return server

    yield make
    for server in reversed(started):
        server.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS and required AUTH for user `ragotel` / password `secret`; `.messages`, `.wait_for()`."""
    with SmtpServer(username="ragotel", password="secret") as server:
        yield server


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """An HTTP server recording every request and answering 200 `ok` (see `.respond()`, `.fail_next()`)."""
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    """Accepts TCP connections and never answers."""
    with HangingServer() as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A local OpenAI API stand-in; point the real client at `base_url=fake_openai.base_url` with `max_retries=0`."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_chroma_systems() -> Iterator[None]:
    """Chroma caches one system per path/ephemeral identity and refuses other settings for it: start each test clean."""
    yield
    try:
        from chromadb.api.shared_system_client import SharedSystemClient
    except ImportError:  # chromadb is part of the test extra; without it the Chroma tests fail on their own
        return
    SharedSystemClient.clear_system_cache()
