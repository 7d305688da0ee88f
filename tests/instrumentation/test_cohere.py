"""Cohere v2 instrumentation: the real `cohere` client against FakeCohere, a loopback server of its wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import cohere
import pytest
from cohere.v2.raw_client import RawV2Client
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    break_and_collect,
    break_response_extractors,
    close,
    dropped,
    exhaust,
    exported_values,
    traced_without,
)
from tests.servers.cohere import FakeCohere

import ragotel
from ragotel import semconv as sc
from ragotel.instrumentation.cohere import CohereInstrumentor
from ragotel.testing import Capture, capture

CHAT_MODEL = "command-a-03-2025"
EMBED_MODEL = "embed-v4.0"
RERANK_MODEL = "rerank-v3.5"
REPLY = "secret-reply the answer is forty two"
MESSAGES = [{"role": "system", "content": "secret-system be brief"}, {"role": "user", "content": "secret-prompt hi"}]
DOCS = ["secret-doc a dog barks", "secret-doc the cat sat on the mat", "secret-doc birds fly"]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCohere]:
    with FakeCohere(reply=REPLY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _reset(server: FakeCohere) -> None:
    server.reshape = None


@pytest.fixture
def cap_content(instrumented: Instrumented) -> Capture:
    return instrumented(CohereInstrumentor, capture_content=True)


@pytest.fixture
def client(server: FakeCohere) -> Iterator[cohere.ClientV2]:
    with cohere.ClientV2(api_key="k", base_url=server.url) as c:
        yield c


@pytest.fixture
async def aclient(server: FakeCohere) -> AsyncIterator[cohere.AsyncClientV2]:
    async with cohere.AsyncClientV2(api_key="k", base_url=server.url) as c:
        yield c


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(CohereInstrumentor)


def _attrs(cap: Capture, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


def _server_attrs(server: FakeCohere) -> dict[str, Any]:
    return {sc.SERVER_ADDRESS: "127.0.0.1", sc.SERVER_PORT: server.port}


# -- chat ---------------------------------------------------------------------------------------------------------
def test_chat_span_has_request_response_and_usage(cap: Capture, client: cohere.ClientV2, server: FakeCohere) -> None:
    """chat() is one CLIENT generation span with the parameters passed, id, mapped finish reason and int usage."""
    response = client.chat(model=CHAT_MODEL, messages=MESSAGES, temperature=0.2, p=0.9, k=5, max_tokens=50, seed=7)
    assert len(cap.spans()) == 1
    span = cap.span(f"chat {CHAT_MODEL}")
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    expected = {
        sc.RAGOTEL_STAGE: "generation",
        sc.RAGOTEL_COMPONENT: "cohere",
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "cohere",
        sc.GEN_AI_REQUEST_MODEL: CHAT_MODEL,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_REQUEST_TOP_K: 5.0,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 50,
        sc.GEN_AI_REQUEST_SEED: 7,
        sc.GEN_AI_RESPONSE_ID: response.id,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        sc.GEN_AI_USAGE_INPUT_TOKENS: 5,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 6,
        **_server_attrs(server),
    }
    assert attrs == expected
    assert type(attrs[sc.GEN_AI_USAGE_INPUT_TOKENS]) is int
    assert sc.GEN_AI_REQUEST_STREAM not in attrs
    tokens = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)}
    assert tokens == {"input": 5, "output": 6}


def test_chat_error_sets_error_type(cap: Capture, client: cohere.ClientV2) -> None:
    """A 400 answer re-raises cohere's BadRequestError and the span is ERROR with its public class as error.type."""
    with pytest.raises(cohere.BadRequestError):
        client.chat(model="error-400", messages=MESSAGES)
    span = cap.span("chat error-400")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "cohere.BadRequestError"


async def test_async_chat_embed_rerank(cap: Capture, aclient: cohere.AsyncClientV2) -> None:
    """The async client's chat, embed and rerank are awaited inside one span each, with their results read."""
    await aclient.chat(model=CHAT_MODEL, messages=MESSAGES)
    await aclient.embed(model=EMBED_MODEL, texts=DOCS, input_type="search_document", embedding_types=["float"])
    await aclient.rerank(model=RERANK_MODEL, query="cat mat", documents=DOCS, top_n=2)
    assert _attrs(cap, f"chat {CHAT_MODEL}")[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
    assert _attrs(cap, f"embeddings {EMBED_MODEL}")[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 32
    assert _attrs(cap, f"rerank {RERANK_MODEL}")[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2
    for span in cap.spans():
        assert span.end_time is not None
        assert span.end_time - span.start_time > 0


async def test_async_chat_error(cap: Capture, aclient: cohere.AsyncClientV2) -> None:
    """An async 404 re-raises NotFoundError and the span is ERROR."""
    with pytest.raises(cohere.NotFoundError):
        await aclient.chat(model="error-404", messages=MESSAGES)
    assert _attrs(cap, "chat error-404")[sc.ERROR_TYPE] == "cohere.NotFoundError"


# -- chat streams -------------------------------------------------------------------------------------------------
def test_chat_stream_exhausted_has_usage_and_finish(cap: Capture, client: cohere.ClientV2) -> None:
    """A chat_stream read to its end is one span with stream=true, the message id, finish reason and usage."""
    events = list(client.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
    assert events[-1].type == "message-end"
    attrs = _attrs(cap, f"chat {CHAT_MODEL}")
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs[sc.GEN_AI_RESPONSE_ID] == events[0].id
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 5
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
    assert sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in attrs
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in attrs


@pytest.mark.parametrize("end", [break_and_collect, close], ids=["break", "close"])
def test_chat_stream_ends_once_on_early_exit(cap: Capture, client: cohere.ClientV2, end: Callable[[Any], None]) -> None:
    """A chat_stream left by break, close() or dropped unread ends its one span, marked ended early."""
    end(client.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
    spans = cap.spans(f"chat {CHAT_MODEL}")
    assert len(spans) == 1
    assert dict(spans[0].attributes or {})[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_chat_stream_dropped_unread_sends_nothing(cap: Capture, client: cohere.ClientV2, server: FakeCohere) -> None:
    """A chat_stream dropped before its first event made no request (cohere's generator never ran): no span."""
    server.clear()
    dropped(client.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
    assert server.requests == []
    assert cap.spans() == []


def test_chat_stream_of_a_client_made_before_instrumenting(server: FakeCohere) -> None:
    """chat_stream of a ClientV2 made before instrument() (cohere binds it on the instance) is traced all the same."""
    with cohere.ClientV2(api_key="k", base_url=server.url) as early, capture() as cap:
        inst = CohereInstrumentor()
        inst.instrument()
        try:
            exhaust(early.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
        finally:
            inst.uninstrument()
        exhaust(early.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
    spans = cap.spans(f"chat {CHAT_MODEL}")
    assert len(spans) == 1
    assert dict(spans[0].attributes or {})[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 6


def test_raw_chat_stream_is_followed(cap: Capture, client: cohere.ClientV2) -> None:
    """with_raw_response.chat_stream's context manager: the entered response keeps its attributes, its data is
    followed to the end, and the span ends once."""
    with client.with_raw_response.chat_stream(model=CHAT_MODEL, messages=MESSAGES) as raw:
        assert raw.headers["content-type"] == "text/event-stream"
        events = list(raw.data)
    assert events[-1].type == "message-end"
    spans = cap.spans(f"chat {CHAT_MODEL}")
    assert len(spans) == 1
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in dict(spans[0].attributes or {})


def test_chat_stream_error(cap: Capture, client: cohere.ClientV2) -> None:
    """A chat_stream whose request fails raises the client's error out of the loop and ends the span ERROR."""
    with pytest.raises(cohere.BadRequestError):
        exhaust(client.chat_stream(model="error-400", messages=MESSAGES))
    assert cap.span("chat error-400").status.status_code is StatusCode.ERROR


async def test_async_chat_stream_exhausted_and_closed(cap: Capture, aclient: cohere.AsyncClientV2) -> None:
    """The async chat_stream: read to its end records usage; aclose() after one event ends early, once."""
    async for _ in aclient.chat_stream(model=CHAT_MODEL, messages=MESSAGES):
        pass
    stream = aclient.chat_stream(model=CHAT_MODEL, messages=MESSAGES)
    await stream.__anext__()
    await stream.aclose()
    full, closed = (dict(s.attributes or {}) for s in cap.spans(f"chat {CHAT_MODEL}"))
    assert full[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
    assert closed[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


# -- embed and rerank -----------------------------------------------------------------------------------------------
def test_embed_span(cap: Capture, client: cohere.ClientV2, server: FakeCohere) -> None:
    """embed() is one embedding span with batch size, formats asked, the returned dimension and input tokens."""
    client.embed(model=EMBED_MODEL, texts=DOCS, input_type="search_document", embedding_types=["float"])
    attrs = _attrs(cap, f"embeddings {EMBED_MODEL}")
    assert attrs == {
        sc.RAGOTEL_STAGE: "embedding",
        sc.RAGOTEL_COMPONENT: "cohere",
        sc.GEN_AI_OPERATION_NAME: "embeddings",
        sc.GEN_AI_PROVIDER_NAME: "cohere",
        sc.GEN_AI_REQUEST_MODEL: EMBED_MODEL,
        sc.RAGOTEL_EMBEDDING_BATCH_SIZE: 3,
        sc.GEN_AI_REQUEST_ENCODING_FORMATS: ("float",),
        sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: 32,
        sc.GEN_AI_USAGE_INPUT_TOKENS: 14,
        **_server_attrs(server),
    }


def test_rerank_span_follows_the_rerank_contract(cap: Capture, client: cohere.ClientV2, server: FakeCohere) -> None:
    """rerank() is one rerank span: model, top_n, documents given and returned, best relevance score, server."""
    response = client.rerank(model=RERANK_MODEL, query="cat mat", documents=DOCS, top_n=2)
    span = cap.span(f"rerank {RERANK_MODEL}")
    assert dict(span.attributes or {}) == {
        sc.RAGOTEL_STAGE: "rerank",
        sc.RAGOTEL_COMPONENT: "cohere",
        sc.GEN_AI_PROVIDER_NAME: "cohere",
        sc.RAGOTEL_RERANK_MODEL: RERANK_MODEL,
        sc.GEN_AI_RETRIEVAL_TOP_K: 2,
        sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT: 3,
        sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: 2,
        sc.RAGOTEL_RETRIEVAL_TOP_SCORE: response.results[0].relevance_score,
        **_server_attrs(server),
    }
    assert [p.attributes for p in cap.metrics(sc.M_STAGE_DURATION)] == [
        {sc.RAGOTEL_STAGE: "rerank", sc.RAGOTEL_COMPONENT: "cohere"}
    ]


def test_with_raw_response_is_one_span(cap: Capture, client: cohere.ClientV2) -> None:
    """with_raw_response.rerank goes through the same hook: one span, the raw response returned as it was."""
    raw = client.with_raw_response.rerank(model=RERANK_MODEL, query="cat", documents=DOCS)
    assert raw.data.results
    assert _attrs(cap, f"rerank {RERANK_MODEL}")[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3


def test_client_created_before_instrumenting_is_traced(server: FakeCohere) -> None:
    """A ClientV2 made before instrument() (cohere binds chat at construction) still gives chat spans."""
    with cohere.ClientV2(api_key="k", base_url=server.url) as early, capture() as cap:
        inst = CohereInstrumentor()
        inst.instrument()
        try:
            early.chat(model=CHAT_MODEL, messages=MESSAGES)
        finally:
            inst.uninstrument()
    assert len(cap.spans(f"chat {CHAT_MODEL}")) == 1


# -- the conventions checklist ----------------------------------------------------------------------------------
def test_suppressed_instrumentation_makes_no_spans(cap: Capture, client: cohere.ClientV2) -> None:
    """Inside suppress_instrumentation() every call works and no span is made."""
    with suppress_instrumentation():
        client.chat(model=CHAT_MODEL, messages=MESSAGES)
        list(client.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
        client.rerank(model=RERANK_MODEL, query="cat", documents=DOCS)
    assert cap.spans() == []


def test_uninstrument_and_instrument_twice(client: cohere.ClientV2) -> None:
    """A second instrument() adds no second span; after uninstrument() the raw client is original and silent."""
    original = RawV2Client.__dict__["rerank"]
    with capture() as cap:
        inst = CohereInstrumentor()
        inst.instrument()
        CohereInstrumentor().instrument()
        client.rerank(model=RERANK_MODEL, query="cat", documents=DOCS)
        assert len(cap.spans()) == 1
        inst.uninstrument()
        assert RawV2Client.__dict__["rerank"] is original
        client.rerank(model=RERANK_MODEL, query="cat", documents=DOCS)
        client.chat(model=CHAT_MODEL, messages=MESSAGES)
        assert len(cap.spans()) == 1


def test_failing_extractor_returns_the_same_object(monkeypatch: pytest.MonkeyPatch, client: cohere.ClientV2) -> None:
    """A rerank response extractor that raises never reaches the caller: the raw response is the one it read."""
    seen = break_response_extractors(monkeypatch, CohereInstrumentor, lambda m: m == "RawV2Client.rerank")
    with capture() as cap:
        inst = CohereInstrumentor()
        inst.instrument()
        try:
            raw = client.with_raw_response.rerank(model=RERANK_MODEL, query="cat", documents=DOCS)
        finally:
            inst.uninstrument()
    assert raw is seen[0]
    assert cap.span(f"rerank {RERANK_MODEL}").end_time is not None


_CALLS: list[Callable[[cohere.ClientV2], Any]] = [
    lambda c: c.chat(model=CHAT_MODEL, messages=MESSAGES),
    lambda c: c.rerank(model=RERANK_MODEL, query="q", documents=DOCS),
]


def _outcome(call: Callable[[cohere.ClientV2], Any], client: cohere.ClientV2) -> tuple[str, Any]:
    """What the caller sees: the answer's type and fields (its random id aside), or the exception's type."""
    try:
        result = call(client)
    except Exception as exc:
        return ("raised", type(exc))
    return (type(result).__name__, result.model_dump(exclude={"id"}, warnings=False))


@pytest.mark.parametrize(
    "reshape",
    [lambda body: {"unexpected": True}, lambda body: {**body, "usage": "n/a", "finish_reason": 3}, lambda body: []],
    ids=["missing-fields", "wrong-types", "not-an-object"],
)
def test_malformed_answer_changes_nothing(
    cap: Capture, client: cohere.ClientV2, server: FakeCohere, reshape: Callable[[Any], Any]
) -> None:
    """A malformed chat or rerank answer gives the caller exactly what (or raises what) it does without ragotel."""
    server.reshape = reshape
    with suppress_instrumentation():
        plain = [_outcome(call, client) for call in _CALLS]
    traced = [_outcome(call, client) for call in _CALLS]
    assert traced == plain
    assert len(cap.spans()) == 2
    assert all(s.end_time is not None for s in cap.spans())


def test_unknown_version_missing_a_method_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, client: cohere.ClientV2
) -> None:
    """A client version without embed (one we do not know) is reported at DEBUG; chat and rerank are still traced."""

    def calls() -> None:
        client.chat(model=CHAT_MODEL, messages=MESSAGES)
        client.rerank(model=RERANK_MODEL, query="cat", documents=DOCS)

    cap = traced_without(monkeypatch, caplog, CohereInstrumentor, (RawV2Client, "embed"), calls)
    assert len(cap.spans()) == 2


def test_content_off_scans_every_exported_value(cap: Capture, client: cohere.ClientV2) -> None:
    """With content capture off no prompt, reply, text, query or document reaches any exported value."""
    client.chat(model=CHAT_MODEL, messages=MESSAGES)
    list(client.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
    client.embed(model=EMBED_MODEL, texts=DOCS, input_type="search_query", embedding_types=["float"])
    client.rerank(model=RERANK_MODEL, query="secret-query cat", documents=DOCS)
    assert len(cap.spans()) == 4
    assert "secret-" not in exported_values(cap)


def test_content_on_records_messages_texts_and_ranking(cap_content: Capture, client: cohere.ClientV2) -> None:
    """With content capture on: input/output messages (also streamed), embed texts, rerank query and ranking."""
    cap = cap_content
    client.chat(model=CHAT_MODEL, messages=MESSAGES)
    list(client.chat_stream(model=CHAT_MODEL, messages=MESSAGES))
    client.embed(model=EMBED_MODEL, texts=DOCS, input_type="search_query", embedding_types=["float"])
    client.rerank(model=RERANK_MODEL, query="secret-query cat", documents=DOCS, top_n=1)
    plain, streamed = (dict(s.attributes or {}) for s in cap.spans(f"chat {CHAT_MODEL}"))
    for attrs in (plain, streamed):
        assert "secret-system be brief" in attrs[sc.GEN_AI_INPUT_MESSAGES]
        assert REPLY in attrs[sc.GEN_AI_OUTPUT_MESSAGES]
        assert '"finish_reason": "stop"' in attrs[sc.GEN_AI_OUTPUT_MESSAGES]
    assert "secret-doc birds fly" in _attrs(cap, f"embeddings {EMBED_MODEL}")[sc.RAGOTEL_INPUT]
    rerank = _attrs(cap, f"rerank {RERANK_MODEL}")
    assert rerank[sc.GEN_AI_RETRIEVAL_QUERY_TEXT] == "secret-query cat"
    assert '"index": 1' in rerank[sc.GEN_AI_RETRIEVAL_DOCUMENTS]


def test_rerank_inside_a_framework_rerank_step_is_one_span(cap: Capture, client: cohere.ClientV2) -> None:
    """A Cohere rerank inside an enclosing rerank step (a framework's reranker) merges into it: one span, renamed
    after the model, with the client's counts and score."""
    with ragotel.rerank(component="framework"):
        client.rerank(model=RERANK_MODEL, query="cat mat", documents=DOCS, top_n=2)
    spans = cap.spans()
    assert [s.name for s in spans] == [f"rerank {RERANK_MODEL}"]
    attrs = dict(spans[0].attributes or {})
    assert attrs[sc.RAGOTEL_COMPONENT] == "framework"
    assert attrs[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT] == 3
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 2


# -- the v1 client (cohere.Client) ----------------------------------------------------------------------------------
def test_v1_client_chat_embed_rerank(cap: Capture, server: FakeCohere) -> None:
    """The legacy v1 Client's chat, embed (plain float vectors) and rerank give the same spans as v2, no content."""
    with cohere.Client(api_key="k", base_url=server.url) as client:
        reply = client.chat(message="secret-prompt hello there", model=CHAT_MODEL, preamble="secret-system brief")
        client.embed(texts=DOCS, model=EMBED_MODEL, input_type="search_document")
        client.rerank(query="secret-query cat", documents=DOCS, model=RERANK_MODEL, top_n=1)
    chat = _attrs(cap, f"chat {CHAT_MODEL}")
    assert chat[sc.GEN_AI_RESPONSE_ID] == reply.response_id
    assert chat[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert (chat[sc.GEN_AI_USAGE_INPUT_TOKENS], chat[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == (5, 6)
    embed = _attrs(cap, f"embeddings {EMBED_MODEL}")
    assert (embed[sc.RAGOTEL_EMBEDDING_BATCH_SIZE], embed[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT]) == (3, 32)
    rerank = _attrs(cap, f"rerank {RERANK_MODEL}")
    assert rerank[sc.GEN_AI_RETRIEVAL_TOP_K] == 1
    assert (rerank[sc.RAGOTEL_RERANK_INPUT_DOCUMENT_COUNT], rerank[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT]) == (3, 1)
    assert "secret-" not in exported_values(cap)


async def test_v1_async_client_rerank_and_content(cap_content: Capture, server: FakeCohere) -> None:
    """The v1 AsyncClient's rerank is awaited in its span; with content on, v1 chat records message and preamble."""
    async with cohere.AsyncClient(api_key="k", base_url=server.url) as client:
        await client.rerank(query="cat", documents=DOCS, model=RERANK_MODEL)
        await client.chat(message="secret-prompt hi", model=CHAT_MODEL, preamble="secret-system brief")
    assert _attrs(cap_content, f"rerank {RERANK_MODEL}")[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 3
    chat = _attrs(cap_content, f"chat {CHAT_MODEL}")
    assert "secret-prompt hi" in chat[sc.GEN_AI_INPUT_MESSAGES]
    assert "secret-system brief" in chat[sc.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert REPLY in chat[sc.GEN_AI_OUTPUT_MESSAGES]
