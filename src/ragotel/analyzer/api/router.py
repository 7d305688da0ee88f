"""The JSON/Prometheus HTTP API: small Request/Response types, a router, and the built-in endpoints.

Handlers are plain callables ``(Request) -> Response``, run on the API server's own thread (never on the
receivers'), so a slow handler cannot stall ingest. Part 2 (alerts, recoveries) registers its endpoints through
``Server.add_route`` with the same types.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from ragotel.analyzer.api.metrics import exposition
from ragotel.analyzer.api.query import BadQuery, choice_param, int_param
from ragotel.analyzer.receive.auth import TokenAuth
from ragotel.analyzer.vocabulary import SIGNALS
from ragotel.analyzer.windows import Windows

__all__ = ["Handler", "Request", "Response", "Router", "add_builtin_routes"]

_log = logging.getLogger("ragotel.analyzer.api")
_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """An API request: ``query`` keeps the last value of each parameter, ``headers`` have lower-case names."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """An API response: ``text`` (sent as is) wins over ``body`` (sent as JSON)."""

    status: int = 200
    body: Any = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None

    @classmethod
    def error(cls, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        """A JSON error ``{"error": message, "status": status}``."""
        return cls(status, {"error": message, "status": status}, headers=headers or {})

    def encode(self) -> tuple[bytes, str]:
        """The body bytes and their content type."""
        if self.text is not None:
            return self.text.encode(), self.content_type or "text/plain; charset=utf-8"
        return json.dumps(self.body, separators=(",", ":"), allow_nan=False).encode(), (
            self.content_type or "application/json"
        )


Handler = Callable[[Request], Response]


class Router:
    """Exact-path routing with 404/405 answers, bearer auth (except ``open_paths``), 400 for a ``BadQuery``
    (``api/query.py``) a handler raises, and JSON 500s."""

    def __init__(self, auth: TokenAuth, open_paths: frozenset[str] = frozenset({"/healthz", "/readyz"})) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}
        self._auth = auth
        self._open = set(open_paths)

    def add(self, method: str, path: str, handler: Handler, *, public: bool = False) -> None:
        """Route ``method path`` to ``handler``; ValueError if that route exists already.

        ``public`` serves it without the bearer token: only for what holds no data (health probes, the page's
        static shell, which fetches every datum through the API with the token).
        """
        methods = self._routes.setdefault(path, {})
        if method.upper() in methods:
            raise ValueError(f"route {method.upper()} {path} is already registered")
        methods[method.upper()] = handler
        if public:
            self._open.add(path)

    def dispatch(self, request: Request) -> Response:
        """Answer one request; never raises."""
        methods = self._routes.get(request.path)
        if methods is None:
            return Response.error(404, f"no such endpoint: {request.path}")
        if request.path not in self._open and not self._auth.check(request.headers.get("authorization")):
            return Response.error(
                401, "missing or invalid bearer token", {"www-authenticate": 'Bearer realm="ragotel"'}
            )
        handler = methods.get(request.method) or (methods.get("GET") if request.method == "HEAD" else None)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return Response.error(405, f"{request.method} not allowed on {request.path}", {"allow": allowed})
        try:
            return handler(request)
        except BadQuery as exc:
            return Response.error(400, str(exc))
        except Exception:  # noqa: BLE001  a failing handler answers 500; the API keeps serving the rest
            _log.exception("API handler for %s %s failed", request.method, request.path)
            return Response.error(500, "internal error; see the analyzer log")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > _MAX_BODY:
                response = Response.error(413, f"request body exceeds {_MAX_BODY} bytes")
                break
        else:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            request = Request(scope["method"], scope["path"], query, headers, body)
            response = self.dispatch(request)
        payload, content_type = response.encode()
        out_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())]
        out_headers += [(k.encode(), v.encode()) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})


def add_builtin_routes(
    router: Router,
    windows: Windows,
    registry: CollectorRegistry,
    readiness: Callable[[], str | None],
) -> None:
    """Register /api/v1/stats, /api/v1/health, /api/v1/series, /api/v1/signals, /metrics, /healthz, /readyz.

    ``readiness`` returns None when ready, else the reason /readyz reports with 503.
    """

    def stats(request: Request) -> Response:
        return Response(200, windows.stats(service=request.query.get("service"), stage=request.query.get("stage")))

    def health(request: Request) -> Response:
        return Response(200, windows.health())

    def series(request: Request) -> Response:
        limit = int_param(request.query, "limit", 1000)
        found = windows.metric_series(service=request.query.get("service"), name=request.query.get("name"), limit=limit)
        return Response(200, {"series": found})

    def signals(request: Request) -> Response:
        name = str(choice_param(request.query, "signal", sorted(SIGNALS), required=True))
        match = {k: v for k, v in request.query.items() if k != "signal"}
        values = windows.signal(name, match)
        return Response(200, {"signal": name, "values": [{"labels": v.labels, "value": v.value} for v in values]})

    def metrics(request: Request) -> Response:
        return Response(200, text=exposition(registry), content_type=CONTENT_TYPE_LATEST)

    def healthz(request: Request) -> Response:
        return Response(200, {"status": "ok"})

    def readyz(request: Request) -> Response:
        reason = readiness()
        if reason is None:
            return Response(200, {"status": "ready"})
        return Response(503, {"status": "not ready", "reason": reason})

    for path, handler in (
        ("/api/v1/stats", stats),
        ("/api/v1/health", health),
        ("/api/v1/series", series),
        ("/api/v1/signals", signals),
        ("/metrics", metrics),
        ("/healthz", healthz),
        ("/readyz", readyz),
    ):
        router.add("GET", path, handler)
