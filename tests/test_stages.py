"""Stage API for custom code: decorators and context managers, spans, metrics, errors, content capture."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode

import ragotel
from ragotel import semconv as sc
from ragotel import telemetry
from ragotel.testing import Capture, capture


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


def _points(cap: Capture, name: str) -> list[Any]:
    return cap.metrics(name)


def test_sync_decorator_span_and_metrics(cap: Capture) -> None:
    """A decorated sync function makes one span with the contract's name, kind, attributes and one stage metric."""

    @ragotel.retrieval("kb", top_k=4)
    def search(q: str) -> list[str]:
        return [q]

    assert search("x") == ["x"]
    span = cap.span("retrieval kb")
    assert span.kind is SpanKind.INTERNAL
    attrs = dict(span.attributes or {})
    assert attrs == {
        sc.RAGOTEL_STAGE: "retrieval",
        sc.RAGOTEL_COMPONENT: "custom",
        sc.GEN_AI_OPERATION_NAME: "retrieval",
        sc.GEN_AI_DATA_SOURCE_ID: "kb",
        sc.GEN_AI_RETRIEVAL_TOP_K: 4,
    }
    assert isinstance(attrs[sc.GEN_AI_RETRIEVAL_TOP_K], int)
    (point,) = _points(cap, sc.M_STAGE_DURATION)
    assert point.unit == "s"
    assert point.attributes == {sc.RAGOTEL_STAGE: "retrieval", sc.RAGOTEL_COMPONENT: "custom"}
    assert point.count == 1
    assert point.explicit_bounds == sc.STAGE_DURATION_BUCKETS


def test_return_value_identity(cap: Capture) -> None:
    """Return values pass through as the very same object."""
    sentinel = object()

    @ragotel.generation("m")
    def gen() -> object:
        return sentinel

    assert gen() is sentinel


def test_generation_context_manager_records_usage_and_model(cap: Capture) -> None:
    """The object a context manager yields records usage and the response model on span and metrics."""
    with ragotel.generation("gpt-4o-mini", provider="openai") as op:
        op.record_usage(input_tokens=12, output_tokens=7)
        op.set_response_model("gpt-4o-mini-2024-07-18")
    span = cap.span("chat gpt-4o-mini")
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    tokens = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p for p in _points(cap, sc.M_GEN_AI_TOKEN_USAGE)}
    assert tokens["input"].sum == 12
    assert tokens["output"].sum == 7
    assert tokens["input"].unit == "{token}"
    assert tokens["input"].attributes == {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        sc.GEN_AI_TOKEN_TYPE: "input",
    }
    assert tokens["input"].explicit_bounds == tuple(float(b) for b in sc.GEN_AI_TOKEN_BUCKETS)
    (duration,) = _points(cap, sc.M_GEN_AI_OPERATION_DURATION)
    assert duration.explicit_bounds == sc.GEN_AI_DURATION_BUCKETS
    assert duration.count == 1


def test_retrieval_documents_count_and_top_score_without_content(cap: Capture) -> None:
    """Documents give count and best score always; ids and scores stay off the span without content capture."""
    with ragotel.retrieval("kb") as op:
        op.add_documents([{"id": "a", "score": 0.2}, ("b", 0.9), "c"])
    attrs = dict(cap.span("retrieval kb").attributes or {})
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3
    assert attrs[sc.RAGOTEL_RETRIEVAL_TOP_SCORE] == 0.9
    assert sc.RAGOTEL_RETRIEVAL_DOCUMENT_IDS not in attrs
    assert sc.RAGOTEL_RETRIEVAL_DOCUMENT_SCORES not in attrs
    (docs,) = _points(cap, sc.M_RETRIEVAL_DOCUMENTS)
    assert docs.sum == 3
    assert docs.unit == "{document}"
    assert docs.attributes == {sc.RAGOTEL_COMPONENT: "custom"}


def test_content_capture_on_truncates() -> None:
    """With content capture on, captured text appears and is cut to the configured length."""
    with capture(capture_content=True, capture_max_length=5) as cap:
        with ragotel.retrieval("kb") as op:
            op.capture(sc.GEN_AI_RETRIEVAL_QUERY_TEXT, "what is ragotel?")
            op.add_documents([("doc-1", 0.5)])
    attrs = dict(cap.span("retrieval kb").attributes or {})
    assert attrs[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == "what …"
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_SCORES] == (0.5,)
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_IDS].startswith('["doc')


def test_content_capture_off_records_nothing(cap: Capture) -> None:
    """Without content capture, capture() records nothing at all."""
    with ragotel.retrieval("kb") as op:
        op.capture(sc.GEN_AI_RETRIEVAL_QUERY_TEXT, "secret question")
    values = [str(v) for s in cap.spans() for v in (s.attributes or {}).values()]
    assert not any("secret" in v for v in values)


def test_user_exception_identity_and_error_status(cap: Capture) -> None:
    """The caller's exception comes out as the same object with its traceback; the span is ERROR with error.type."""
    boom = KeyError("missing")

    @ragotel.embedding("e5")
    def embed() -> None:
        raise boom

    with pytest.raises(KeyError) as info:
        embed()
    assert info.value is boom
    assert info.tb is not None
    frames = []
    tb = info.tb
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "embed" in frames
    span = cap.span("embeddings e5")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})[sc.ERROR_TYPE] == "KeyError"
    assert [e.name for e in span.events] == ["exception"]
    assert _points(cap, sc.M_STAGE_DURATION) == []  # an embedding's duration is the GenAI histogram's
    (gen_point,) = _points(cap, sc.M_GEN_AI_OPERATION_DURATION)
    assert gen_point.attributes[sc.ERROR_TYPE] == "KeyError"


def test_context_manager_exception_passes_through(cap: Capture) -> None:
    """An exception inside a ``with`` stage propagates unchanged and marks the span."""
    err = RuntimeError("x")
    with pytest.raises(RuntimeError) as info, ragotel.rerank("bge"):
        raise err
    assert info.value is err
    span = cap.span("rerank bge")
    assert span.status.status_code is StatusCode.ERROR


def test_nested_same_stage_counted_once(cap: Capture) -> None:
    """A generation inside a generation is one span and one metric record, with usage summed and the inner model."""

    @ragotel.generation("outer", provider="framework")
    def outer() -> str:
        with ragotel.generation("gpt-4o", provider="openai") as g:
            g.record_usage(10, 2)
        with ragotel.generation("gpt-4o", provider="openai") as g:
            g.record_usage(5, 1)
        return "ok"

    assert outer() == "ok"
    spans = cap.spans()
    assert len(spans) == 1
    span = spans[0]
    assert span.name == "chat gpt-4o"
    attrs = dict(span.attributes or {})
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 15
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert _points(cap, sc.M_STAGE_DURATION) == []
    assert [p.count for p in _points(cap, sc.M_GEN_AI_OPERATION_DURATION)] == [1]
    tokens = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: (p.count, p.sum) for p in _points(cap, sc.M_GEN_AI_TOKEN_USAGE)}
    assert tokens == {"input": (1, 15), "output": (1, 3)}


def test_pipeline_parents_stages(cap: Capture) -> None:
    """Stages inside a pipeline are its children in one trace; user and session ids stay on the span only."""

    @ragotel.pipeline("qa", user_id="u-1", session_id="s-1")
    def answer() -> str:
        with ragotel.retrieval("kb"):
            pass
        with ragotel.generation("m"):
            pass
        return "a"

    answer()
    root = cap.span("pipeline qa")
    assert root.parent is None
    assert (root.attributes or {})[sc.ENDUSER_ID] == "u-1"
    assert (root.attributes or {})[sc.SESSION_ID] == "s-1"
    for name in ("retrieval kb", "chat m"):
        child = cap.span(name)
        assert child.parent is not None
        assert child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    for point in _points(cap, sc.M_STAGE_DURATION):
        assert sc.ENDUSER_ID not in point.attributes
        assert sc.SESSION_ID not in point.attributes


def test_pipeline_name_defaults_to_function(cap: Capture) -> None:
    """An unnamed pipeline decorator takes the function's qualified name."""

    @ragotel.pipeline()
    def handle() -> None:
        return None

    handle()
    assert cap.span("pipeline test_pipeline_name_defaults_to_function.<locals>.handle")


async def test_async_decorator_times_the_await(cap: Capture) -> None:
    """An async stage covers the awaited work and parents spans made inside it."""

    @ragotel.retrieval("kb")
    async def fetch() -> int:
        await asyncio.sleep(0.05)
        with ragotel.rerank("r"):
            pass
        return 3

    assert await fetch() == 3
    span = cap.span("retrieval kb")
    assert span.end_time is not None
    assert span.start_time is not None
    assert (span.end_time - span.start_time) >= 45_000_000
    child = cap.span("rerank r")
    assert child.parent is not None
    assert child.parent.span_id == span.context.span_id


async def test_async_context_manager(cap: Capture) -> None:
    """``async with`` works like ``with``."""
    async with ragotel.embedding("e") as op:
        op.record_usage(input_tokens=3)
    assert (cap.span("embeddings e").attributes or {})[sc.GEN_AI_USAGE_INPUT_TOKENS] == 3


def test_generator_span_lasts_until_exhausted(cap: Capture) -> None:
    """A decorated generator's span ends once it is exhausted, with spans made inside as children."""

    @ragotel.generation("stream-model")
    def tokens() -> Iterator[str]:
        with ragotel.retrieval("inner"):
            pass
        yield "a"
        yield "b"

    gen = tokens()
    assert cap.spans() == []
    assert next(gen) == "a"
    assert cap.spans("chat stream-model") == []
    assert list(gen) == ["b"]
    span = cap.span("chat stream-model")
    assert not (span.attributes or {}).get(sc.RAGOTEL_STREAM_ENDED_EARLY)
    inner = cap.span("retrieval inner")
    assert inner.parent is not None
    assert inner.parent.span_id == span.context.span_id


def test_generator_does_not_leak_context_between_steps(cap: Capture) -> None:
    """Between steps the caller's context is its own: a span made in the loop body is not the generator's child."""

    @ragotel.generation("g")
    def tokens() -> Iterator[int]:
        yield 1
        yield 2

    for _ in tokens():
        with ragotel.retrieval("caller"):
            pass
    for span in cap.spans("retrieval caller"):
        assert span.parent is None


def test_generator_closed_early(cap: Capture) -> None:
    """Closing a decorated generator early ends its span once, marked as ended early."""

    @ragotel.generation("g")
    def tokens() -> Iterator[int]:
        yield 1
        yield 2

    gen = tokens()
    next(gen)
    gen.close()
    gen.close()
    span = cap.span("chat g")
    assert (span.attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_generator_dropped_is_ended_at_collection(cap: Capture) -> None:
    """A decorated generator abandoned after ``break`` ends its span when collected."""

    @ragotel.generation("g")
    def tokens() -> Iterator[int]:
        yield from range(10)

    for item in tokens():
        if item == 2:
            break
    gc.collect()
    span = cap.span("chat g")
    assert (span.attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_generator_error_inside(cap: Capture) -> None:
    """An exception raised by the generator marks the span and reaches the caller unchanged."""
    err = ValueError("bad chunk")

    @ragotel.generation("g")
    def tokens() -> Iterator[int]:
        yield 1
        raise err

    with pytest.raises(ValueError) as info:
        list(tokens())
    assert info.value is err
    assert cap.span("chat g").status.status_code is StatusCode.ERROR


def test_generator_send_is_forwarded(cap: Capture) -> None:
    """``send`` reaches the wrapped generator."""

    @ragotel.pipeline("echo")
    def echo() -> Iterator[int]:
        received = yield 0
        while True:
            received = yield received * 2

    gen = echo()
    assert next(gen) == 0
    assert gen.send(5) == 10
    gen.close()
    assert cap.span("pipeline echo")


async def test_async_generator_exhausted_and_closed(cap: Capture) -> None:
    """Decorated async generators end their span on exhaustion and on aclose()."""

    @ragotel.generation("ag")
    async def tokens() -> AsyncIterator[int]:
        for i in range(3):
            await asyncio.sleep(0)
            yield i

    assert [i async for i in tokens()] == [0, 1, 2]
    agen = tokens()
    assert await agen.__anext__() == 0
    await agen.aclose()
    spans = cap.spans("chat ag")
    assert len(spans) == 2
    assert not (spans[0].attributes or {}).get(sc.RAGOTEL_STREAM_ENDED_EARLY)
    assert (spans[1].attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_suppressed_makes_no_spans(cap: Capture) -> None:
    """Under suppress_instrumentation no span or metric is made, and the call still runs."""

    @ragotel.retrieval("kb")
    def f() -> int:
        return 1

    with suppress_instrumentation():
        assert f() == 1
        with ragotel.generation("m") as op:
            op.record_usage(1, 1)
    assert cap.spans() == []
    assert cap.metrics(sc.M_STAGE_DURATION) == []


def test_injected_metric_failure_leaves_result_identical(cap: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A metric record that raises inside ragotel never reaches the caller; the span still ends."""
    tel = telemetry.current()

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("metric backend exploded")

    monkeypatch.setattr(tel.stage_duration, "record", broken)
    result = object()

    @ragotel.generation("m")
    def gen() -> object:
        return result

    assert gen() is result
    assert cap.span("chat m")


def test_injected_span_failure_leaves_result_identical(cap: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracer that raises on start gives a no-op operation; the user's function still runs and returns."""
    tel = telemetry.current()

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(tel.tracer, "start_span", broken)
    result = object()

    @ragotel.retrieval("kb")
    def f() -> object:
        return result

    assert f() is result
    with ragotel.retrieval("kb") as op:
        op.add_documents(["a"])
        op.record_usage(1, 2)
    assert not op.recording


def test_end_is_idempotent(cap: Capture) -> None:
    """Ending an operation twice records it once."""
    tel = telemetry.current()
    op = tel.start(sc.STAGE_VECTOR_DB, "chromadb", {sc.DB_OPERATION_NAME: "query", sc.DB_COLLECTION_NAME: "c"})
    op.end()
    op.end(RuntimeError("late"))
    span = cap.span("query c")
    assert span.status.status_code is StatusCode.UNSET
    (point,) = cap.metrics(sc.M_DB_OPERATION_DURATION)
    assert point.count == 1
    assert point.explicit_bounds == sc.DB_DURATION_BUCKETS
    assert point.attributes == {sc.DB_OPERATION_NAME: "query", sc.DB_COLLECTION_NAME: "c"}


def test_capture_restores_previous_telemetry() -> None:
    """capture() touches no global: after the block, ragotel reports where it did before."""
    before = telemetry.current()
    with capture():
        assert telemetry.current() is not before
    assert telemetry.current() is before
    assert "opentelemetry.sdk" not in type(before.tracer_provider).__module__ if before.tracer_provider else True


def test_stability_modes_parse() -> None:
    """The opt-in variable is parsed per domain; unknown tokens are ignored."""
    assert sc.stability_modes("") == {"gen_ai": "new", "database": "new"}
    assert sc.stability_modes("http,gen_ai/dup, database/old ,x/y") == {"gen_ai": "dup", "database": "old"}


def test_stability_aliases_on_spans() -> None:
    """With gen_ai/dup both provider names appear; with database/old only the old db name does."""
    with capture() as cap:
        tel = telemetry.Telemetry(
            cap.tracer_provider, cap.meter_provider, stability=sc.stability_modes("gen_ai/dup,database/old")
        )
        tel.start(sc.STAGE_GENERATION, "custom", {sc.GEN_AI_PROVIDER_NAME: "openai"}).end()
        tel.start(sc.STAGE_VECTOR_DB, "chromadb", {sc.DB_SYSTEM_NAME: "chroma"}).end()
        gen_attrs = dict(cap.spans()[0].attributes or {})
        db_attrs = dict(cap.spans()[1].attributes or {})
    assert gen_attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert gen_attrs["gen_ai.system"] == "openai"
    assert db_attrs["db.system"] == "chroma"
    assert sc.DB_SYSTEM_NAME not in db_attrs


def test_time_to_first_chunk_only_for_generation(cap: Capture) -> None:
    """A streamed generation records time to first chunk; a retrieval generator does not (it is a GenAI measure)."""

    @ragotel.generation("g")
    def tokens() -> Iterator[int]:
        yield 1

    @ragotel.retrieval("kb")
    def docs() -> Iterator[int]:
        yield 1

    list(tokens())
    list(docs())
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in (cap.span("chat g").attributes or {})
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in (cap.span("retrieval kb").attributes or {})
    assert [p.count for p in cap.metrics(sc.M_GEN_AI_TIME_TO_FIRST_CHUNK)] == [1]
