"""The web page at ``/``: its static shell (HTML, our JS/CSS, the vendored libraries) and ``/api/v1/history``.

The shell holds no data, so it is served without the bearer token; everything it shows comes from the JSON API,
which it calls with the token the user typed (kept in the tab's sessionStorage). With auth on, a request without
the token therefore gets an empty shell and 401s, never data. Every file is read once from the package at start
and served from memory under a strict Content-Security-Policy (no inline script, nothing from another origin).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

from ragotel.analyzer.alerting import Alerting
from ragotel.analyzer.api.query import BadQuery, duration_param
from ragotel.analyzer.api.router import Handler, Request, Response
from ragotel.analyzer.vocabulary import iso_time
from ragotel.analyzer.windows import Windows
from ragotel.analyzer.windows.history import COARSE_KEEP

__all__ = ["PageApi", "static_files"]

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
_HEADERS: Final = {
    # Only our own files run; the libraries set element styles through the CSSOM, which style-src does not block.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_MAX_SERIES_PER_ANSWER: Final = 200


def _walk(node: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for child in node.iterdir():
        name = f"{prefix}{child.name}"
        if child.is_dir():
            yield from _walk(child, f"{name}/")
        elif not child.name.startswith("."):
            yield name, child


def static_files() -> dict[str, tuple[str, str]]:
    """Every file of the page by URL path (``/`` for index.html, ``/static/...``): (text, content type)."""
    root = resources.files("ragotel.analyzer.api").joinpath("static")
    files: dict[str, tuple[str, str]] = {}
    for name, node in _walk(root, ""):
        suffix = "." + name.rsplit(".", 1)[-1]
        if suffix in _TYPES:
            files[f"/static/{name}"] = (node.read_text(encoding="utf-8"), _TYPES[suffix])
    files["/"] = files.pop("/static/index.html")
    return files


class PageApi:
    """The page's routes: the static shell (public, no data) and the chart history (behind the token)."""

    def __init__(self, windows: Windows, alerting: Alerting) -> None:
        self._windows = windows
        self._alerting = alerting
        self._files = static_files()

    def routes(self) -> Sequence[tuple[str, str, Handler, bool]]:
        """(method, path, handler, public) of every route."""
        out: list[tuple[str, str, Handler, bool]] = [("GET", path, self._serve, True) for path in self._files]
        out.append(("GET", "/api/v1/history", self.api_history, False))
        return out

    def _serve(self, request: Request) -> Response:
        text, content_type = self._files[request.path]
        return Response(200, text=text, content_type=content_type, headers=_HEADERS)

    def api_history(self, request: Request) -> Response:
        """Per (service, stage) the downsampled latency, count, errors and empty retrievals from ``since`` (default
        1h, at most 24h; 10 s points within the last hour, else 5 min), with the alert periods of those services."""
        now = time.time()
        seconds = duration_param(request.query, "since", "1h")
        if not 0 < seconds <= COARSE_KEEP:
            raise BadQuery("since", "a duration from 1s to 24h", request.query.get("since", ""))
        since = now - seconds
        service, stage = request.query.get("service"), request.query.get("stage")
        keys = [k for k in self._windows.history_keys() if service in (None, k[0]) and stage in (None, k[1])][
            :_MAX_SERIES_PER_ANSWER
        ]
        series = [{"service": s, "stage": st, **self._windows.history_points(s, st, since, now)} for s, st in keys]
        return Response(
            200,
            {
                "now": now,
                "since": since,
                "series": series,
                "alerts": self._periods(since, now, service, stage),
            },
        )

    def _periods(self, since: float, now: float, service: str | None, stage: str | None) -> list[dict[str, Any]]:
        """The firing periods of alerts overlapping [since, now] (``end`` None while still firing)."""
        store = self._alerting.store
        if store is None:
            return []
        out = []
        for row in store.query_alerts(since=since, service=service, limit=1000):
            started = row["started_at"]
            labels = row["labels"] or {}
            if started is None or (stage is not None and labels.get("stage") not in (None, stage)):
                continue
            end = row["resolved_at"] if row["state"] == "resolved" else None
            if end is not None and end < since:
                continue
            out.append(
                {
                    "id": row["id"],
                    "rule": row["rule"],
                    "severity": row["severity"],
                    "status": row["state"],
                    "service": labels.get("service"),
                    "stage": labels.get("stage"),
                    "start": started,
                    "end": end,
                    "started_at": iso_time(started),
                }
            )
        return out
