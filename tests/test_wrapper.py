"""The one wrapper of instrumentation/_base.py: sync, async, streams, isolation, instrument/uninstrument."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import StatusCode

from ragotel import semconv as sc
from ragotel.instrumentation._base import RagotelInstrumentor, Target
from ragotel.telemetry import Operation, current
from ragotel.testing import Capture, capture


class Store:
    """A stand-in library class defined here so the wrapper is tested apart from any real library."""

    def query(self, collection: str, n: int = 1) -> dict[str, Any]:
        return {"ids": list(range(n)), "collection": collection}

    async def aquery(self, collection: str, delay: float = 0.0) -> list[int]:
        await asyncio.sleep(delay)
        return [1, 2]

    def stream(self, n: int, fail_at: int | None = None) -> Iterator[int]:
        for i in range(n):
            if i == fail_at:
                raise OSError("connection reset")
            yield i

    async def astream(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    def explode(self) -> None:
        raise ConnectionError("down")


class SubStore(Store):
    """Inherits query: wrapping must happen once, where it is defined."""


def _request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    collection = kwargs.get("collection", args[0] if args else "none")
    return {sc.DB_SYSTEM_NAME: "fake", sc.DB_OPERATION_NAME: "query", sc.DB_COLLECTION_NAME: collection}


def _response(instance: Any, result: Any) -> dict[str, Any]:
    return {sc.DB_RESPONSE_RETURNED_ROWS: len(result["ids"])}


class _Reader:
    def __init__(self) -> None:
        self.chunks = 0

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        self.chunks += 1

    def on_end(self, op: Operation) -> None:
        op.set_attribute(sc.RAGOTEL_STREAM_CHUNKS, self.chunks)


def _stream_reader(instance: Any, args: Any, kwargs: Any, result: Any) -> _Reader:
    return _Reader()


def _stream_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "fake-model"}


class FakeInstrumentor(RagotelInstrumentor):
    library = "fake"
    targets: ClassVar[tuple[Target, ...]] = (
        Target(__name__, "Store.query", sc.STAGE_VECTOR_DB, "fake", request=_request, response=_response),
        Target(__name__, "SubStore.query", sc.STAGE_VECTOR_DB, "fake", request=_request, response=_response),
        Target(__name__, "Store.aquery", sc.STAGE_VECTOR_DB, "fake", request=_request),
        Target(__name__, "Store.explode", sc.STAGE_VECTOR_DB, "fake", request=_request),
        Target(__name__, "Store.stream", sc.STAGE_GENERATION, "fake", request=_stream_request, stream=_stream_reader),
        Target(__name__, "Store.astream", sc.STAGE_GENERATION, "fake", request=_stream_request, stream=_stream_reader),
        Target(__name__, "Store.not_there", sc.STAGE_VECTOR_DB, "fake"),
    )


ORIGINAL_QUERY = Store.__dict__["query"]


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        inst = FakeInstrumentor()
        inst.instrument()
        try:
            yield c
        finally:
            inst.uninstrument()


def test_sync_call_span_and_identity(cap: Capture) -> None:
    """A wrapped sync method returns the very same object and makes one CLIENT span with extracted attributes."""
    result = Store().query("docs", n=3)
    assert result["ids"] == [0, 1, 2]
    span = cap.span("query docs")
    attrs = dict(span.attributes or {})
    assert attrs[sc.DB_RESPONSE_RETURNED_ROWS] == 3
    assert attrs[sc.RAGOTEL_STAGE] == "vector_db"
    assert attrs[sc.RAGOTEL_COMPONENT] == "fake"


def test_subclass_wrapped_once(cap: Capture) -> None:
    """A method inherited by a subclass listed separately is wrapped once where defined: one span per call."""
    SubStore().query("c")
    assert len(cap.spans()) == 1


def test_instrument_twice_no_double_spans(cap: Capture) -> None:
    """Instrumenting again is a no-op: still one span per call."""
    FakeInstrumentor().instrument()
    Store().query("c")
    assert len(cap.spans()) == 1


def test_uninstrument_restores_original() -> None:
    """Uninstrument puts back the original function object and no span is made afterwards."""
    with capture() as c:
        inst = FakeInstrumentor()
        inst.instrument()
        assert Store.__dict__["query"] is not ORIGINAL_QUERY
        inst.uninstrument()
        assert Store.__dict__["query"] is ORIGINAL_QUERY
        Store().query("c")
        assert c.spans() == []


def test_error_passes_through(cap: Capture) -> None:
    """The library's exception reaches the caller unchanged; the span is ERROR with error.type."""
    with pytest.raises(ConnectionError, match="down"):
        Store().explode()
    span = cap.span("query none")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})[sc.ERROR_TYPE] == "ConnectionError"


def test_extractor_failure_is_isolated(cap: Capture) -> None:
    """A response extractor that raises leaves the result identical and the span still ends."""
    target = FakeInstrumentor.targets[0]

    def broken(instance: Any, result: Any) -> dict[str, Any]:
        raise IndexError("unexpected shape")

    object.__setattr__(target, "response", broken)  # Target is frozen; restored in finally
    try:
        store = Store()
        expected = ORIGINAL_QUERY(store, "c")
        got = store.query("c")
        assert got == expected
        assert cap.span("query c")
    finally:
        object.__setattr__(target, "response", _response)


class _BrokenHistogram:
    """A histogram whose every record raises (a metrics SDK failing inside ``Operation.end``)."""

    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("metrics pipeline down")


def test_metric_record_failure_is_isolated(cap: Capture) -> None:
    """A histogram record that raises while the step ends leaves the result identical and the span exported."""
    tel = current()
    saved = tel.db_duration
    tel.db_duration = _BrokenHistogram()  # type: ignore[assignment]  # a stand-in that fails
    try:
        store = Store()
        got = store.query("broken-metrics", n=3)
    finally:
        tel.db_duration = saved
    assert got == ORIGINAL_QUERY(store, "broken-metrics", n=3)
    span = cap.span("query broken-metrics")
    assert (span.attributes or {})[sc.DB_RESPONSE_RETURNED_ROWS] == 3
    assert cap.metrics(sc.M_DB_OPERATION_DURATION) == []


def test_request_extractor_failure_calls_through(cap: Capture) -> None:
    """A request extractor that raises means no span, but the call runs exactly once and returns its result."""
    target = FakeInstrumentor.targets[0]
    calls: list[int] = []

    def broken(instance: Any, args: Any, kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        raise KeyError("no such field")

    object.__setattr__(target, "request", broken)
    try:
        assert Store().query("c", n=2)["ids"] == [0, 1]
    finally:
        object.__setattr__(target, "request", _request)
    assert calls == [1]
    assert cap.spans() == []


def test_suppressed_calls_through(cap: Capture) -> None:
    """Suppressed instrumentation: the call runs, no span."""
    with suppress_instrumentation():
        Store().query("c")
    assert cap.spans() == []


async def test_async_span_covers_the_await(cap: Capture) -> None:
    """An async method's span lasts as long as the awaited call (not the coroutine's creation)."""
    assert await Store().aquery("c", delay=0.05) == [1, 2]
    span = cap.span("query c")
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time - span.start_time >= 45_000_000


def _chunks_attr(cap: Capture) -> Any:
    return (cap.span("chat fake-model").attributes or {}).get(sc.RAGOTEL_STREAM_CHUNKS)


def test_stream_exhausted(cap: Capture) -> None:
    """A stream read to the end ends its span once, normally, with what the reader saw."""
    assert list(Store().stream(3)) == [0, 1, 2]
    span = cap.span("chat fake-model")
    assert _chunks_attr(cap) == 3
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in (span.attributes or {})
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in (span.attributes or {})


def test_stream_break_then_collected(cap: Capture) -> None:
    """Breaking out of the loop and dropping the stream ends the span at collection, marked early."""
    for i in Store().stream(10):
        if i == 1:
            break
    gc.collect()
    assert (cap.span("chat fake-model").attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_stream_close(cap: Capture) -> None:
    """close() ends the span immediately, once."""
    s = Store().stream(10)
    next(s)
    s.close()
    s.close()
    assert (cap.span("chat fake-model").attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_stream_error_inside(cap: Capture) -> None:
    """An exception from the stream marks the span ERROR and reaches the caller."""
    with pytest.raises(OSError, match="reset"):
        list(Store().stream(5, fail_at=2))
    span = cap.span("chat fake-model")
    assert span.status.status_code is StatusCode.ERROR
    assert _chunks_attr(cap) == 2


def test_stream_exception_in_loop_body(cap: Capture) -> None:
    """The caller's own exception inside the loop: the span ends when the stream is collected."""
    with pytest.raises(ZeroDivisionError):  # noqa: PT012 - the raise must happen inside the loop
        for i in Store().stream(5):
            if i == 1:
                _ = 1 / 0
    gc.collect()
    assert (cap.span("chat fake-model").attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_stream_context_manager_exit(cap: Capture) -> None:
    """Leaving a ``with`` block around the stream ends the span."""
    with Store().stream(5) as s:
        next(s)
    assert (cap.span("chat fake-model").attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


async def test_async_stream_paths(cap: Capture) -> None:
    """Async streams end once when exhausted and when closed early."""
    assert [i async for i in Store().astream(3)] == [0, 1, 2]
    s = Store().astream(3)
    await s.__anext__()
    await s.aclose()
    spans = cap.spans("chat fake-model")
    assert len(spans) == 2
    assert (spans[1].attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_stream_proxy_forwards_attributes(cap: Capture) -> None:
    """The proxy forwards the stream's own attributes (gi_frame here; .response/.headers on SDK streams)."""
    s = Store().stream(2)
    assert s.gi_frame is not None
    assert s.__name__ == "stream"
    assert list(s) == [0, 1]
