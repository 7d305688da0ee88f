"""Fixtures for analyzer tests: in-process analyzers on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.analyzer.analyzer_helpers import free_ports_config

from ragotel.analyzer.config.loading import deep_merge, load_config
from ragotel.analyzer.server import Server


@pytest.fixture
def make_analyzer(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Call with config overrides (a nested mapping) to get a started in-process analyzer; stopped at teardown."""
    started: list[Server] = []

    def make(overrides: Mapping[str, Any] | None = None) -> Server:
        config = load_config([], deep_merge(free_ports_config(tmp_path), overrides or {}))
        server = Server(config)
        server.start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def analyzer(make_analyzer: Callable[..., Server]) -> Server:
    """An analyzer with the default configuration on free ports."""
    return make_analyzer()
