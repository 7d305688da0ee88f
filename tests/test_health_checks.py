"""Ready-made checks against real servers: Redis, PostgreSQL, HTTP(S), a hanging socket, an OpenAI-style API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import psycopg
import pytest
import redis
import sqlalchemy
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from tests.health_support import metric_points
from tests.servers import FakeOpenAI, HangingServer, HttpReceiver, PostgresServer, RedisServer, self_signed_cert

from ragotel import semconv as sc
from ragotel.health import (
    HealthRegistry,
    chroma_check,
    http_check,
    openai_check,
    qdrant_check,
    redis_check,
    sql_check,
)
from ragotel.health import checks as checks_module

pytestmark = pytest.mark.timeout(90)

INTERVAL = 0.2
TIMEOUT = 1.0
GRACE = 1.0  # scheduling slack on a shared 2-core machine


def health_value(rd: InMemoryMetricReader, name: str) -> float | None:
    """The ragotel.dependency.health value for dependency ``name`` (None: no point)."""
    for attrs, value in metric_points(rd, sc.M_DEPENDENCY_HEALTH):
        if attrs.get(sc.RAGOTEL_DEPENDENCY_NAME) == name:
            return float(value)
    return None


def wait_value(rd: InMemoryMetricReader, name: str, value: float, within: float) -> float:
    """Wait until the gauge of ``name`` reads ``value``; return the seconds it took (fails after ``within``)."""
    start = time.monotonic()
    while health_value(rd, name) != value:
        elapsed = time.monotonic() - start
        assert elapsed < within, f"{name}: gauge still {health_value(rd, name)} after {elapsed:.2f}s, want {value}"
        time.sleep(0.02)
    return time.monotonic() - start


def kill_and_restart(
    rd: InMemoryMetricReader, name: str, stop: Callable[[], None], start: Callable[[], None], restart_budget: float
) -> None:
    """The gauge goes 1 → 0 within interval + timeout of the kill, and back to 1 within the same after restart."""
    wait_value(rd, name, 1, 10)
    stop()
    wait_value(rd, name, 0, INTERVAL + TIMEOUT + GRACE)
    start()
    wait_value(rd, name, 1, INTERVAL + TIMEOUT + GRACE + restart_budget)


# --- Redis -----------------------------------------------------------------------------------------------------------


def test_redis_url_check_follows_a_killed_and_restarted_server(
    redis_server: RedisServer, reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """redis_check(url): PING healthy; server killed → 0 within interval + timeout; restarted → 1 again."""
    reg.register("cache", redis_check(redis_server.url), kind="cache", interval=INTERVAL, timeout=TIMEOUT)
    kill_and_restart(reader, "cache", redis_server.kill, redis_server.start, 0)
    dep = reg.status().dependency("cache")
    assert dep is not None
    assert dep.consecutive_failures == 0


def test_redis_client_check_reconnects(
    redis_server: RedisServer, reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """redis_check(client) uses the app's client; its pool reconnects after the server comes back."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        reg.register("cache-client", redis_check(client), kind="cache", interval=INTERVAL, timeout=TIMEOUT)
        kill_and_restart(reader, "cache-client", redis_server.stop, redis_server.start, 0)
    finally:
        client.close()


# --- PostgreSQL ------------------------------------------------------------------------------------------------------


def test_sql_check_with_engine_and_dbapi_factory(
    postgres_server: PostgresServer, reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """SELECT 1 through a SQLAlchemy engine and a psycopg factory: both go 0 when PostgreSQL stops and 1 after."""
    engine = sqlalchemy.create_engine(postgres_server.sqlalchemy_url, connect_args={"connect_timeout": 1})
    dsn = postgres_server.dsn
    try:
        reg.register("pg-engine", sql_check(engine), kind="database", interval=INTERVAL, timeout=TIMEOUT)
        reg.register(
            "pg-dbapi",
            sql_check(lambda: psycopg.connect(dsn, connect_timeout=1)),
            kind="database",
            interval=INTERVAL,
            timeout=TIMEOUT,
        )
        wait_value(reader, "pg-engine", 1, 10)
        wait_value(reader, "pg-dbapi", 1, 10)
        postgres_server.stop()
        wait_value(reader, "pg-engine", 0, INTERVAL + TIMEOUT + GRACE)
        wait_value(reader, "pg-dbapi", 0, INTERVAL + TIMEOUT + GRACE)
        postgres_server.start()
        wait_value(reader, "pg-engine", 1, INTERVAL + TIMEOUT + GRACE)
        wait_value(reader, "pg-dbapi", 1, INTERVAL + TIMEOUT + GRACE)
    finally:
        engine.dispose()


# --- HTTP ------------------------------------------------------------------------------------------------------------


def test_http_check_status_and_restart(
    http_receiver: HttpReceiver, reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """GET must answer the expected status: 503 → unhealthy with the status in the reason; server down and back."""
    reg.register("api", http_check(f"{http_receiver.url}/healthz"), kind="http", interval=INTERVAL, timeout=TIMEOUT)
    wait_value(reader, "api", 1, 10)
    assert http_receiver.requests[0].method == "GET"
    assert http_receiver.requests[0].path == "/healthz"
    http_receiver.respond("/healthz", status=503)
    wait_value(reader, "api", 0, INTERVAL + TIMEOUT + GRACE)
    dep = reg.status().dependency("api")
    assert dep is not None
    assert dep.reason == f"GET {http_receiver.url}/healthz answered 503, expected 200"
    http_receiver.respond("/healthz", status=200)
    kill_and_restart(reader, "api", http_receiver.stop, http_receiver.start, 0)


def test_http_check_several_expected_statuses_and_urllib_fallback(
    http_receiver: HttpReceiver, reg: HealthRegistry, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """expected_status may list codes; without httpx the urllib path gives the same verdicts and no redirects."""
    monkeypatch.setattr(checks_module, "_USE_HTTPX", False)
    http_receiver.respond("/ok", status=204, body=b"")
    http_receiver.respond("/moved", status=302, headers={"Location": "/ok"})
    http_receiver.respond("/teapot", status=418)
    reg.register("ok", http_check(f"{http_receiver.url}/ok", (200, 204)), kind="http", interval=INTERVAL)
    reg.register("moved", http_check(f"{http_receiver.url}/moved"), kind="http", interval=INTERVAL)
    reg.register("teapot", http_check(f"{http_receiver.url}/teapot", 418, method="head"), kind="http")
    wait_value(reader, "ok", 1, 10)
    wait_value(reader, "moved", 0, 10)
    wait_value(reader, "teapot", 1, 10)
    dep = reg.status().dependency("moved")
    assert dep is not None
    assert "answered 302" in str(dep.reason)
    assert {r.method for r in http_receiver.requests if r.path == "/teapot"} == {"HEAD"}


class _TlsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients rejecting our self-signed certificate are this test's point


@pytest.fixture
def https_url() -> Iterator[str]:
    """A tiny HTTPS server with the self-signed test certificate (SAN 127.0.0.1)."""
    server = _TlsServer(("127.0.0.1", 0), _TlsHandler)
    server.socket = self_signed_cert().server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("use_httpx", [True, False])
def test_https_verifies_certificates_by_default(
    https_url: str,
    reg: HealthRegistry,
    reader: InMemoryMetricReader,
    monkeypatch: pytest.MonkeyPatch,
    use_httpx: bool,
) -> None:
    """An untrusted certificate is unhealthy by default; trusting its CA (verify=path) makes the same URL healthy."""
    monkeypatch.setattr(checks_module, "_USE_HTTPX", use_httpx)
    cert = self_signed_cert()
    reg.register("tls-default", http_check(https_url), kind="http", interval=INTERVAL, timeout=TIMEOUT)
    reg.register(
        "tls-trusted",
        http_check(https_url, verify=str(cert.cert_path)),
        kind="http",
        interval=INTERVAL,
        timeout=TIMEOUT,
    )
    reg.register("tls-context", http_check(https_url, verify=cert.client_context()), kind="http", interval=INTERVAL)
    wait_value(reader, "tls-default", 0, 10)
    wait_value(reader, "tls-trusted", 1, 10)
    wait_value(reader, "tls-context", 1, 10)
    dep = reg.status().dependency("tls-default")
    assert dep is not None
    assert "CERTIFICATE_VERIFY_FAILED" in str(dep.reason)


def test_hanging_server_is_cut_at_the_timeout(
    hanging_server: HangingServer, reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """A socket that accepts and never answers is unhealthy after the timeout; the probe thread is not left hung."""
    timeout = 0.5
    reg.register("hang", http_check(hanging_server.url), kind="http", interval=INTERVAL, timeout=timeout)
    took = wait_value(reader, "hang", 0, INTERVAL + timeout + GRACE)
    assert took >= timeout * 0.8
    dep = reg.status().dependency("hang")
    assert dep is not None
    assert dep.duration_s is not None
    assert dep.duration_s <= timeout + 0.2
    assert "timed out" in str(dep.reason).lower() or "timeout" in str(dep.reason).lower()
    time.sleep(3 * (INTERVAL + timeout))
    assert hanging_server.accepted >= 3  # probes kept coming: the scheduler was never stuck
    workers = [t for t in threading.enumerate() if t.name == "ragotel-health-worker"]
    assert len(workers) <= 4


# --- OpenAI-style endpoint -------------------------------------------------------------------------------------------


def test_openai_check_lists_models_and_follows_the_server(
    fake_openai: FakeOpenAI, reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """openai_check GETs /v1/models (no retries): healthy, unhealthy while the API is down, healthy again."""
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=3)
    try:
        reg.register("llm", openai_check(client), kind="llm", interval=INTERVAL, timeout=TIMEOUT)
        kill_and_restart(reader, "llm", fake_openai.stop, fake_openai.start, 0)
        assert {(r.method, r.path) for r in fake_openai.requests} == {("GET", "/v1/models")}
    finally:
        client.close()


# --- validation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: http_check("ftp://example.com"), "url"),
        (lambda: http_check("http://"), "url"),
        (lambda: http_check("http://127.0.0.1/", 700), "expected_status"),
        (lambda: http_check("http://127.0.0.1/", []), "expected_status"),
        (lambda: http_check("http://127.0.0.1/", method="GET /x"), "method"),
        (lambda: http_check("http://127.0.0.1/", timeout=-1), "timeout"),
        (lambda: http_check("http://127.0.0.1/", verify=3), "verify"),
        (lambda: redis_check("http://127.0.0.1:6379"), "target"),
        (lambda: redis_check(object()), "target"),
        (lambda: sql_check(42), "target"),
        (lambda: sql_check(lambda: None, query=""), "query"),
        (lambda: chroma_check(object()), "client"),
        (lambda: qdrant_check(object()), "client"),
        (lambda: openai_check(object()), "client"),
    ],
)
def test_check_factories_reject_bad_arguments(make: Callable[[], Any], argument: str) -> None:
    """Each ready-made check validates at creation: ValueError starting with the bad argument's name."""
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        make()


def test_redacted_credentials_never_reach_reasons(
    http_receiver: HttpReceiver, reg: HealthRegistry, reader: InMemoryMetricReader
) -> None:
    """A URL with user:password is probed with them but reported without them."""
    url = http_receiver.url.replace("http://", "http://user:s3cret@") + "/down"
    http_receiver.respond("/down", status=500)
    check = http_check(url)
    assert "s3cret" not in repr(check)
    reg.register("secret-api", check, kind="http", interval=INTERVAL)
    wait_value(reader, "secret-api", 0, 10)
    dep = reg.status().dependency("secret-api")
    assert dep is not None
    assert "s3cret" not in str(dep.reason)
    assert http_receiver.requests[-1].headers.get("authorization", "").startswith("Basic ")
