"""The page's files: served from the package without the token (they hold no data), with a strict CSP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.analyzer.analyzer_helpers import api

from ragotel.analyzer.api.page import static_files
from ragotel.analyzer.server import Server


@pytest.fixture
def guarded(make_analyzer: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> Server:
    """An analyzer whose API needs a bearer token."""
    monkeypatch.setenv("RAGOTEL_TEST_API_TOKEN", "t0ken")
    return make_analyzer({"api": {"auth": {"token_env": "RAGOTEL_TEST_API_TOKEN"}}})


def test_every_page_file_is_served_without_the_token_with_its_type_and_csp(guarded: Server) -> None:
    """/ and every /static file answer 200 without a token, with their content type, nosniff and a CSP that
    allows only this origin's scripts and styles."""
    files = static_files()
    assert {"/", "/static/app.js", "/static/app.css", "/static/vendor/uPlot.iife.min.js"} <= set(files)
    for path, (text, content_type) in files.items():
        response = api(guarded, path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == content_type
        assert response.text == text
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self';" in csp
        assert "unsafe-inline" not in csp


def test_data_still_needs_the_token(guarded: Server) -> None:
    """The page's data endpoints answer 401 without the token and 200 with it; a file that is not the page's is 404."""
    for path in ("/api/v1/history", "/api/v1/stats", "/api/v1/alerts"):
        assert api(guarded, path).status_code == 401
        assert api(guarded, path, headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert api(guarded, "/static/secret.py").status_code == 404
