"""Instrumentation test fixtures: a capture with ragotel instrumentors installed for the length of one test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from tests.instrumentation.instrumentation_helpers import Instrumented

from ragotel.testing import Capture, capture


@pytest.fixture
def instrumented() -> Iterator[Instrumented]:
    """Call with instrumentor classes (and `capture_content=`) to get the Capture they record into; undone after."""
    with ExitStack() as stack:

        def make(*instrumentors: type[BaseInstrumentor], capture_content: bool = False) -> Capture:
            cap = stack.enter_context(capture(capture_content=capture_content))
            installed = [cls() for cls in instrumentors]
            for inst in installed:
                inst.instrument()

            def uninstrument() -> None:
                for inst in installed:
                    inst.uninstrument()

            stack.callback(uninstrument)
            return cap

        yield make
