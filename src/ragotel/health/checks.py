"""Ready-made network checks for ``ragotel.health.register`` (HTTP, Redis, SQL) and what every check may use.

Each factory validates its arguments at once (``ValueError`` naming the argument) and returns a callable with no
arguments that raises on an unhealthy dependency. Checks run on ragotel's health worker threads with
instrumentation suppressed; network calls use the time left in the probe's time box (:func:`time_left`) as their
socket timeout, so a hung server costs one timeout, not a stuck thread. Client libraries are imported lazily: a
check for a library that is not installed fails at creation with the extra to install.
"""

from __future__ import annotations

import base64
import contextvars
import inspect
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CheckError",
    "IndexSizes",
    "http_check",
    "probe_deadline",
    "redact",
    "redis_check",
    "sql_check",
    "time_left",
]

_FALLBACK_TIMEOUT_S: Final = 5.0

# Monotonic deadline of the probe running on this thread (set by the health scheduler's worker).
probe_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("ragotel_probe_deadline", default=None)


class CheckError(Exception):
    """A ready-made check found its dependency unhealthy; the message is the reason (no secrets in it)."""


@dataclass(frozen=True, slots=True)
class IndexSizes:
    """A vector-database check's result: healthy, with document counts per collection (``ragotel.index.documents``)."""

    system: str
    counts: Mapping[str, int] = field(default_factory=dict)


def time_left(default: float = _FALLBACK_TIMEOUT_S) -> float:
    """Seconds left in the current probe's time box (at least 1 ms); ``default`` outside a probe."""
    deadline = probe_deadline.get()
    if deadline is None:
        return default
    return max(0.001, deadline - time.monotonic())


def _timeout(explicit: float | None) -> float:
    return time_left() if explicit is None else min(explicit, time_left(explicit))


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: expected a positive number of seconds or None, got {value!r}")
    return float(value)


def redact(url: str) -> str:
    """The URL without user:password, for reasons and names."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _missing(package: str, extra: str) -> ImportError:
    return ImportError(f"this check needs {package!r}: pip install 'ragotel[{extra}]'")


# --- HTTP ------------------------------------------------------------------------------------------------------------


class _HttpCheck:
    def __init__(
        self,
        url: str,
        expected: frozenset[int],
        method: str,
        headers: dict[str, str],
        verify: bool | str | ssl.SSLContext,
        timeout: float | None,
    ) -> None:
        self.expected = expected
        self.method = method
        self.headers = headers
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None:
            # Credentials in the URL become a Basic header (both clients), so the URL we keep and show has none.
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers = {"Authorization": f"Basic {token}", **headers}
        self.url = redact(url)
        self.verify = verify
        self.timeout = timeout
        self.shown = self.url
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        """The TLS context, built once (loading CA certificates is the slow part of a probe)."""
        if self._context is None:
            if isinstance(self.verify, ssl.SSLContext):
                self._context = self.verify
            elif isinstance(self.verify, str):
                self._context = ssl.create_default_context(cafile=self.verify)
            elif self.verify:
                self._context = ssl.create_default_context()
            else:
                self._context = ssl._create_unverified_context()  # noqa: S323 - only when the caller passed verify=False
        return self._context

    def __repr__(self) -> str:
        return f"http_check({self.shown!r})"

    def __call__(self) -> None:
        timeout = _timeout(self.timeout)
        httpx = _httpx()
        if httpx is not None:
            with httpx.Client(verify=self.context(), timeout=timeout, follow_redirects=False) as client:
                status = client.request(self.method, self.url, headers=self.headers).status_code
        else:
            status = self._urllib(timeout)
        if status not in self.expected:
            want = ", ".join(str(s) for s in sorted(self.expected))
            raise CheckError(f"{self.method} {self.shown} answered {status}, expected {want}")

    def _urllib(self, timeout: float) -> int:
        context = self.context()
        request = urllib.request.Request(self.url, method=self.method, headers=self.headers)  # noqa: S310 - scheme checked
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())
        try:
            with opener.open(request, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as its status (as httpx does with follow_redirects=False)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _httpx() -> Any:
    """The httpx module, or None to use urllib (module-level so tests can force the fallback)."""
    if _USE_HTTPX:
        try:
            import httpx  # noqa: PLC0415 - optional dependency

            return httpx
        except ImportError:
            return None
    return None


_USE_HTTPX = True


def http_check(
    url: str,
    expected_status: int | Iterable[int] = 200,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    verify: bool | str | ssl.SSLContext = True,
    timeout: float | None = None,
) -> Callable[[], None]:
    """HTTP(S) request (default GET) that must answer ``expected_status``; redirects are not followed.

    TLS certificates are verified (``verify`` may name a CA bundle or pass an ``ssl.SSLContext``). ``timeout``
    defaults to the time left in the probe. Uses httpx when installed, else urllib.
    """
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
    if not urllib.parse.urlsplit(url).hostname:
        raise ValueError(f"url: no host in {redact(url)!r}")
    codes = [expected_status] if isinstance(expected_status, int) else list(expected_status)
    if not codes or any(isinstance(c, bool) or not isinstance(c, int) or not 100 <= c <= 599 for c in codes):
        raise ValueError(f"expected_status: expected an HTTP status (100-599) or several, got {expected_status!r}")
    if not isinstance(method, str) or not method.isalpha():
        raise ValueError(f"method: expected an HTTP method such as 'GET', got {method!r}")
    if not isinstance(verify, (bool, str, ssl.SSLContext)):
        raise ValueError(f"verify: expected True/False, a CA bundle path or an ssl.SSLContext, got {verify!r}")
    return _HttpCheck(url, frozenset(codes), method.upper(), dict(headers or {}), verify, _positive("timeout", timeout))


# --- Redis -----------------------------------------------------------------------------------------------------------


class _RedisCheck:
    def __init__(self, url: str | None, client: Any, timeout: float | None) -> None:
        self.url = url
        self.client = client
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"redis_check({redact(self.url) if self.url else self.client!r})"

    def __call__(self) -> None:
        if self.client is not None:
            answer = self.client.ping()
        else:
            import redis  # noqa: PLC0415 - optional dependency, checked at creation

            assert self.url is not None
            timeout = _timeout(self.timeout)
            # A connection per probe: nothing to go stale across a restart, nothing shared across a fork.
            client = redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout)
            try:
                answer = client.ping()
            finally:
                client.close()
        if answer is not True and answer not in (b"PONG", "PONG"):
            raise CheckError(f"PING answered {answer!r}")


def redis_check(target: Any, *, timeout: float | None = None) -> Callable[[], None]:
    """Redis ``PING`` through a URL (``redis://``, ``rediss://``, ``unix://``; one connection per probe) or a client."""
    if isinstance(target, str):
        if urllib.parse.urlsplit(target).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"target: expected a redis://, rediss:// or unix:// URL, got {redact(target)!r}")
        try:
            import redis  # noqa: F401, PLC0415 - fail at creation, not at every probe
        except ImportError:
            raise _missing("redis", "health") from None
        return _RedisCheck(target, None, _positive("timeout", timeout))
    ping = getattr(target, "ping", None)
    if not callable(ping):
        raise ValueError(f"target: expected a Redis URL or a redis client with ping(), got {type(target).__name__}")
    if inspect.iscoroutinefunction(ping):
        raise ValueError("target: an asyncio Redis client cannot be probed from a thread; pass its URL instead")
    return _RedisCheck(None, target, _positive("timeout", timeout))


# --- SQL -------------------------------------------------------------------------------------------------------------


class _SqlCheck:
    def __init__(self, engine: Any, factory: Callable[[], Any] | None, query: str) -> None:
        self.engine = engine
        self.factory = factory
        self.query = query

    def __repr__(self) -> str:
        return f"sql_check({self.engine if self.engine is not None else self.factory!r})"

    def __call__(self) -> None:
        if self.engine is not None:
            with self.engine.connect() as conn:
                row = conn.exec_driver_sql(self.query).first()
        else:
            assert self.factory is not None
            conn = self.factory()
            try:
                cursor = conn.cursor()
                try:
                    cursor.execute(self.query)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                conn.close()
        if row is None:
            raise CheckError(f"{self.query!r} returned no row")


def sql_check(target: Any, *, query: str = "SELECT 1") -> Callable[[], None]:
    """Run ``query`` (default ``SELECT 1``) through a SQLAlchemy ``Engine`` or a DB-API connection factory.

    A factory is a callable with no arguments returning a new DB-API connection, which the check closes; give it a
    connect timeout (e.g. ``lambda: psycopg.connect(dsn, connect_timeout=3)``).
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query: expected a SQL statement, got {query!r}")
    if hasattr(target, "dialect") and hasattr(target, "connect"):
        if type(target).__name__ == "AsyncEngine" or inspect.iscoroutinefunction(getattr(target, "dispose", None)):
            raise ValueError("target: an AsyncEngine cannot be probed from a thread; pass its sync_engine")
        return _SqlCheck(target, None, query)
    if callable(target) and not inspect.iscoroutinefunction(target):
        return _SqlCheck(None, target, query)
    raise ValueError(
        f"target: expected a SQLAlchemy Engine or a callable returning a DB-API connection, got {type(target).__name__}"
    )
