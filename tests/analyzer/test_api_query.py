"""Malformed query parameters are 400s naming the parameter, on every endpoint that takes one (issue 10, item 4)."""

from __future__ import annotations

import pytest
from tests.analyzer.analyzer_helpers import api

from ragotel.analyzer.server import Server

# %C2%B2 is "²": str.isdigit() says yes, int() says no. Then a full-width digit, a float, a sign, 25 digits.
_BAD_LIMITS = ("%C2%B2", "%EF%BC%91", "1e3", "-1", "9" * 25)


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/recoveries", "/api/v1/notifications", "/api/v1/series"])
@pytest.mark.parametrize("limit", _BAD_LIMITS)
def test_malformed_limit_is_400_naming_it(analyzer: Server, path: str, limit: str) -> None:
    """``limit`` that is not a plain decimal integer in range answers 400 saying what was expected."""
    response = api(analyzer, f"{path}?limit={limit}")
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("query parameter limit: expected ")
    assert "integer" in response.json()["error"]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("/api/v1/alerts?since=%C2%B2", "since"),
        ("/api/v1/recoveries?since=" + "9" * 400 + "d", "since"),  # parses to an infinite duration
        ("/api/v1/alerts?status=firing,%00", "status"),
        ("/api/v1/notifications?status=%C2%B2", "status"),
        ("/api/v1/signals?signal=%C2%B2", "signal"),
        ("/api/v1/signals", "signal"),
    ],
)
def test_other_malformed_parameters_are_400_naming_them(analyzer: Server, query: str, name: str) -> None:
    """Durations, states and signal names that do not parse answer 400 naming the parameter."""
    response = api(analyzer, query)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"query parameter {name}: expected ")


def test_well_formed_limits_still_work(analyzer: Server) -> None:
    """The bounds themselves are accepted."""
    assert api(analyzer, "/api/v1/alerts?limit=10000&since=7d").status_code == 200
    assert api(analyzer, "/api/v1/series?limit=0").json() == {"series": []}
