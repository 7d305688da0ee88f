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

import ragotel
from ragotel import semconv as sc
from ragotel.instrumentation._base import RagotelInstrumentor
from ragotel.testing import Capture, capture


class Instrumented(Protocol):
    """The `instrumented` fixture: install these instrumentors over a fresh Capture until the test ends."""

    def __call__(self, *instrumentors: type[BaseInstrumentor], capture_content: bool = False) -> Capture: ...


def spans_of_stage(cap: Capture, stage: str) -> list[ReadableSpan]:
    """The captured spans of one ragotel stage, in end order."""
    return [s for s in cap.spans() if span_attributes(s).get(sc.RAGOTEL_STAGE) == stage]


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


# -- the provider clients' shared checks ---------------------------------------------------------------------------
def span_attributes(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes as a plain dict."""
    return dict(span.attributes or {})


def one_span(cap: Capture) -> ReadableSpan:
    """The only span recorded (fails listing the names when there are more or none)."""
    spans = cap.spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def output_token_sums(cap: Capture) -> list[float]:
    """The `gen_ai.client.token.usage` output points' sums."""
    points = cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)
    return [p.sum for p in points if p.attributes[sc.GEN_AI_TOKEN_TYPE] == sc.TOKEN_TYPE_OUTPUT]


def outcome(call: Callable[[], Any], keep: Callable[[Any], Any]) -> Any:
    """What a caller gets from `call`: `keep(result)`, or the exception's type and text."""
    try:
        result = call()
    except Exception as exc:  # the very outcome under test
        return type(exc), str(exc)
    return keep(result)


def assert_extractor_failure_keeps_result(
    monkeypatch: pytest.MonkeyPatch, instrumentor: type[RagotelInstrumentor], call: Callable[[], Any]
) -> None:
    """With every response extractor failing, `call` returns the very object the library returned; one span ends."""
    seen = break_response_extractors(monkeypatch, instrumentor, lambda method: True)
    with capture() as cap:
        inst = instrumentor()
        inst.instrument()
        try:
            result = call()
        finally:
            inst.uninstrument()
    assert seen == [result]
    assert len(cap.spans()) == 1


def traced_with_missing_target(
    monkeypatch: pytest.MonkeyPatch, instrumentor: type[RagotelInstrumentor], method: str, call: Callable[[], Any]
) -> tuple[Any, Capture]:
    """`call` under `instrumentor` whose table also names `method`, which this library version lacks."""
    extra = dataclasses.replace(instrumentor.targets[0], method=method)
    monkeypatch.setattr(instrumentor, "targets", (*instrumentor.targets, extra))
    with capture() as cap:
        inst = instrumentor()
        inst.instrument()
        try:
            result = call()
        finally:
            inst.uninstrument()
    return result, cap


def assert_framework_step_counts_once(
    cap: Capture, call: Callable[[], Any], provider: str, output_tokens: Callable[[Any], int]
) -> None:
    """A framework's generation step (`ragotel.generation()`) around a provider call is one span, counted once.

    The provider's usage (`output_tokens(result)`) replaces the usage the framework step reported.
    """
    with ragotel.generation("framework-model") as op:
        op.record_usage(1000, 1000)
        result = call()
    assert span_attributes(one_span(cap))[sc.GEN_AI_PROVIDER_NAME] == provider
    assert output_token_sums(cap) == [output_tokens(result)]


def traced_without(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    instrumentor: type[RagotelInstrumentor],
    missing: tuple[type, str],
    call: Callable[[], Any],
) -> Capture:
    """Run `call` instrumented on a library version without `missing` (class, method): the instrumentor reports the
    absent target at DEBUG (asserted) and instruments the rest; returns the capture of what `call` traced."""

    owner, name = missing
    monkeypatch.delattr(owner, name)
    with capture() as cap, caplog.at_level(logging.DEBUG, logger="ragotel"):
        inst = instrumentor()
        inst.instrument()
        try:
            call()
        finally:
            inst.uninstrument()
    assert any(f"{owner.__name__}.{name}" in r.getMessage() for r in caplog.records)
    return cap
