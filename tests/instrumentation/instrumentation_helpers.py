"""Helpers shared by the instrumentation tests: every exported value as one string, ways to end a stream, and the
JSON a console exporter printed in a child process."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import ReadableSpan

from ragotel import semconv as sc
from ragotel.instrumentation._base import RagotelInstrumentor
from ragotel.testing import Capture


class Instrumented(Protocol):
    """The `instrumented` fixture: install these instrumentors over a fresh Capture until the test ends."""

    def __call__(self, *instrumentors: type[BaseInstrumentor], capture_content: bool = False) -> Capture: ...


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes as a plain dict."""
    return dict(span.attributes or {})


def spans_of_stage(cap: Capture, stage: str) -> list[ReadableSpan]:
    """The captured spans of one ragotel stage, in end order."""
    return [s for s in cap.spans() if attrs_of(s).get(sc.RAGOTEL_STAGE) == stage]


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of a span's parent, None for a root."""
    return span.parent.span_id if span.parent else None


def exported_values(cap: Capture) -> str:
    """Every span's name, attributes and event attributes as one string, to search for leaked content."""
    return repr([(s.name, dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events]) for s in cap.spans()])


# -- ways a caller ends a stream ----------------------------------------------------------------------------------
def exhaust(stream: Any) -> None:
    for _ in stream:
        pass


def break_and_collect(stream: Any) -> None:
    for _ in stream:
        break
    del stream
    gc.collect()


def close(stream: Any) -> None:
    next(stream)
    stream.close()


def context_exit(stream: Any) -> None:
    with stream:
        next(stream)


def dropped(stream: Any) -> None:
    del stream
    gc.collect()


def _loop_that_raises(stream: Any) -> None:
    for _ in stream:
        raise KeyError("in the caller's loop")


def raise_in_loop(stream: Any) -> None:
    with pytest.raises(KeyError):
        _loop_that_raises(stream)
    del stream
    gc.collect()


def assert_silent_without(
    package: str,
    instrumentor: type[BaseInstrumentor],
    patched: tuple[type, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With `package` unimportable, instrumenting logs no warning and leaves `patched` (class, attribute) as it was."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError
    owner, attr = patched
    before = inspect.getattr_static(owner, attr)
    inst = instrumentor()
    with caplog.at_level(logging.WARNING, logger="ragotel"):
        inst.instrument()
        inst.uninstrument()
    assert caplog.records == []
    assert inspect.getattr_static(owner, attr) is before


def break_response_extractors(
    monkeypatch: pytest.MonkeyPatch, instrumentor: type[RagotelInstrumentor], which: Callable[[str], bool]
) -> list[Any]:
    """Make the response extractor of each target whose method `which` accepts record its result, then raise."""
    seen: list[Any] = []

    def broken(instance: Any, result: Any) -> dict[str, Any]:
        seen.append(result)
        raise RuntimeError("extractor bug")

    targets = tuple(dataclasses.replace(t, response=broken) if which(t.method) else t for t in instrumentor.targets)
    monkeypatch.setattr(instrumentor, "targets", targets)
    return seen


def console_objects(stdout: str) -> Iterator[Any]:
    """The JSON objects a console exporter printed, in order (other output skipped)."""
    decoder = json.JSONDecoder()
    i = 0
    while (start := stdout.find("{", i)) != -1:
        try:
            obj, i = decoder.raw_decode(stdout, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        yield obj
