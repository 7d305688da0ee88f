"""``GET /api/v1/dependencies[?service=NAME][&limit=N]``: the dependency graph of the windows as JSON."""

from __future__ import annotations

from typing import Final

from ragotel.analyzer.api.query import int_param
from ragotel.analyzer.api.router import Handler, Request, Response
from ragotel.analyzer.windows import Windows
from ragotel.analyzer.windows.graph import DEFAULT_LIMIT

__all__ = ["MAX_LIMIT", "dependencies_handler"]

MAX_LIMIT: Final = 100_000
"""The largest ``limit`` a request may ask for."""


def dependencies_handler(windows: Windows) -> Handler:
    """The handler: ``service`` keeps one service's part of the graph (empty for a service not seen), ``limit``
    (1..100000, default 1000) caps the nodes, folding the least busy into aggregate nodes; a bad ``limit`` is a 400."""

    def dependencies(request: Request) -> Response:
        limit = int_param(request.query, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        return Response(200, windows.dependencies(service=request.query.get("service"), limit=limit))

    return dependencies
