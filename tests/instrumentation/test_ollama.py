"""Ollama instrumentation against the real `ollama` client talking to FakeOllama (REST, NDJSON streams)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import ollama
import pytest
from ollama._client import Client
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    assert_extractor_failure_keeps_result,
    assert_framework_step_counts_once,
    assert_silent_without,
    break_and_collect,
    close,
    dropped,
    exhaust,
    exported_values,
    one_span,
    outcome,
    raise_in_loop,
    span_attributes,
    traced_with_missing_target,
)
from tests.servers.ollama import FakeOllama

from ragotel import semconv as sc
from ragotel.instrumentation.ollama import OllamaInstrumentor
from ragotel.testing import Capture, capture

pytestmark = pytest.mark.timeout(60)

PROMPT = "zebra-prompt-7731 please"
SYSTEM = "walrus-system-4410 rules"
REPLY = "orchid-reply-5529 comes back in several words"
MODEL = "llama3.2"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(reply=REPLY) as s:
        yield s


@pytest.fixture
def client(server: FakeOllama) -> Client:
    return ollama.Client(host=server.url)


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(OllamaInstrumentor)


def _chat(client: Client, **kwargs: Any) -> Any:
    return client.chat(model=MODEL, messages=MESSAGES, **kwargs)


def test_chat_span_attributes_usage_and_metrics(cap: Capture, client: Client, server: FakeOllama) -> None:
    """chat is one CLIENT span `chat {model}` with the options set, done reason and Ollama's token counts."""
    options = {"temperature": 0.2, "top_p": 0.9, "top_k": 30, "num_predict": 64, "stop": ["END"], "seed": 7}
    result = _chat(client, options=options, format="json")
    span = one_span(cap)
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert span_attributes(span) == {
        sc.RAGOTEL_STAGE: "generation",
        sc.RAGOTEL_COMPONENT: "ollama",
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "ollama",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_REQUEST_TOP_K: 30.0,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 64,
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        sc.GEN_AI_REQUEST_SEED: 7,
        sc.GEN_AI_OUTPUT_TYPE: "json",
        sc.GEN_AI_RESPONSE_MODEL: MODEL,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        sc.GEN_AI_USAGE_INPUT_TOKENS: result.prompt_eval_count,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: result.eval_count,
    }
    tokens = {str(p.attributes[sc.GEN_AI_TOKEN_TYPE]): p.sum for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)}
    assert tokens == {"input": result.prompt_eval_count, "output": result.eval_count}


def test_options_model_and_absent_parameters(cap: Capture, client: Client) -> None:
    """`Options` objects are read like dicts; parameters not set are not recorded."""
    _chat(client, options=ollama.Options(temperature=0.5))
    _chat(client)
    with_options, plain = (span_attributes(s) for s in cap.spans())
    assert with_options[sc.GEN_AI_REQUEST_TEMPERATURE] == 0.5
    assert sc.GEN_AI_REQUEST_MAX_TOKENS not in with_options
    for name in (sc.GEN_AI_REQUEST_TEMPERATURE, sc.GEN_AI_REQUEST_STREAM, sc.GEN_AI_OUTPUT_TYPE):
        assert name not in plain, name


def test_generate_and_embed(cap: Capture, client: Client, server: FakeOllama) -> None:
    """generate is a `text_completion` span; embed an embedding span with batch size and dimension."""
    answer = client.generate(model=MODEL, prompt=PROMPT)
    vectors = client.embed(model="nomic-embed-text", input=["a", "b", "c"])
    generated, embedded = cap.spans()
    assert generated.name == f"text_completion {MODEL}"
    assert span_attributes(generated)[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == answer.eval_count
    assert embedded.name == "embeddings nomic-embed-text"
    attrs = span_attributes(embedded)
    assert attrs[sc.RAGOTEL_STAGE] == "embedding"
    assert attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 3
    assert attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == len(vectors.embeddings[0]) == server.dimensions
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 3


def test_legacy_embeddings(cap: Capture, client: Client, server: FakeOllama) -> None:
    """The deprecated single-prompt `embeddings` is an embedding span too, with the vector's dimension."""
    result = client.embeddings(model="nomic-embed-text", prompt=PROMPT)
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 1
    assert attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == len(result.embedding) == server.dimensions


def test_module_level_functions_are_traced(cap: Capture, server: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ollama.chat(...)` (the module's default client) goes through the same hook."""
    monkeypatch.setattr(ollama, "chat", ollama.Client(host=server.url).chat)
    ollama.chat(model=MODEL, messages=MESSAGES)
    assert one_span(cap).name == f"chat {MODEL}"


def test_error_sets_status_and_error_type(cap: Capture, client: Client) -> None:
    """A 404 re-raises `ollama.ResponseError` unchanged; the span is ERROR with that class."""
    with pytest.raises(ollama.ResponseError):
        client.chat(model="missing", messages=MESSAGES)
    span = one_span(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE] == "ollama.ResponseError"


async def test_async_client(cap: Capture, server: FakeOllama) -> None:
    """The async client: one span per call, its stream ended with the final chunk's counts."""
    aclient = ollama.AsyncClient(host=server.url)
    await aclient.chat(model=MODEL, messages=MESSAGES)
    text = "".join([c.message.content async for c in await aclient.chat(model=MODEL, messages=MESSAGES, stream=True)])
    await aclient.generate(model=MODEL, prompt=PROMPT)
    await aclient.embed(model="nomic-embed-text", input="a")
    assert text == REPLY
    spans = cap.spans()
    assert [s.name for s in spans] == [
        f"chat {MODEL}",
        f"chat {MODEL}",
        f"text_completion {MODEL}",
        "embeddings nomic-embed-text",
    ]
    assert span_attributes(spans[1])[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())


# -- streams --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("consume", "early"),
    [(exhaust, False), (break_and_collect, True), (close, True), (dropped, True), (raise_in_loop, True)],
    ids=["exhausted", "break", "close", "dropped", "raise-in-loop"],
)
def test_stream_exit_paths(cap: Capture, client: Client, consume: Callable[[Any], None], early: bool) -> None:
    """A streamed chat ends its one span on every exit path; reason and counts come from the final chunk."""
    consume(_chat(client, stream=True))
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs.get(sc.RAGOTEL_STREAM_ENDED_EARLY, False) is early
    if not early:
        assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
        assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
        assert cap.metrics(sc.M_GEN_AI_TIME_TO_FIRST_CHUNK)


def test_generate_stream(cap: Capture, client: Client) -> None:
    """A streamed generate is one span with the final chunk's counts."""
    assert "".join(c.response for c in client.generate(model=MODEL, prompt=PROMPT, stream=True)) == REPLY
    assert span_attributes(one_span(cap))[sc.GEN_AI_USAGE_INPUT_TOKENS] == len(PROMPT.split())


def test_stream_error_midway(cap: Capture, client: Client) -> None:
    """An `{"error": ...}` line mid-stream raises to the caller and ends the span as ERROR."""
    with pytest.raises(ollama.ResponseError):
        exhaust(client.chat(model="error-midstream", messages=MESSAGES, stream=True))
    assert one_span(cap).status.status_code is StatusCode.ERROR


# -- content --------------------------------------------------------------------------------------------------------
def test_content_capture_off_records_no_text(cap: Capture, client: Client) -> None:
    """With content capture off no prompt, system message, reply or embedded text is in any exported value."""
    _chat(client)
    exhaust(_chat(client, stream=True))
    client.generate(model=MODEL, prompt=PROMPT, system=SYSTEM)
    client.embed(model="nomic-embed-text", input=[PROMPT])
    exported = exported_values(cap)
    assert len(cap.spans()) == 4
    for secret in ("zebra-prompt", "walrus-system", "orchid-reply"):
        assert secret not in exported


def test_content_capture_on(instrumented: Instrumented, client: Client) -> None:
    """With content capture on: messages and reply (plain, streamed), generate's system and prompt, embedded texts."""
    cap = instrumented(OllamaInstrumentor, capture_content=True)
    _chat(client)
    exhaust(_chat(client, stream=True))
    client.generate(model=MODEL, prompt=PROMPT, system=SYSTEM)
    client.embed(model="nomic-embed-text", input=PROMPT)
    plain, streamed, generated, embedded = (span_attributes(s) for s in cap.spans())
    assert SYSTEM in plain[sc.GEN_AI_INPUT_MESSAGES]
    assert PROMPT in plain[sc.GEN_AI_INPUT_MESSAGES]
    for attrs in (plain, streamed, generated):
        assert REPLY in attrs[sc.GEN_AI_OUTPUT_MESSAGES]
    assert SYSTEM in generated[sc.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert embedded[sc.RAGOTEL_INPUT] == PROMPT


# -- contract -------------------------------------------------------------------------------------------------------
def test_suppressed_makes_no_spans(cap: Capture, client: Client) -> None:
    """Inside `suppress_instrumentation()` the client works and nothing is recorded."""
    with suppress_instrumentation():
        _chat(client)
        exhaust(_chat(client, stream=True))
    assert cap.spans() == []


def test_uninstrument_restores_originals(client: Client) -> None:
    """Uninstrument puts the original methods back and stops recording."""
    originals = [inspect.getattr_static(Client, n) for n in ("chat", "generate", "embed")]
    with capture() as cap:
        inst = OllamaInstrumentor()
        inst.instrument()
        assert inspect.getattr_static(Client, "chat") is not originals[0]
        inst.uninstrument()
        assert [inspect.getattr_static(Client, n) for n in ("chat", "generate", "embed")] == originals
        _chat(client)
        assert cap.spans() == []


def test_instrument_twice_no_double_spans(cap: Capture, client: Client) -> None:
    """A second instrument() does not double the spans."""
    OllamaInstrumentor().instrument()
    _chat(client)
    assert len(cap.spans()) == 1


def test_extractor_failure_keeps_the_result(monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
    """A failing response extractor leaves the caller's result the very same object, and the span still ends."""
    assert_extractor_failure_keeps_result(monkeypatch, OllamaInstrumentor, lambda: _chat(client))


def _outcome(client: Client) -> Any:
    return outcome(lambda: _chat(client), lambda r: r.model_dump())


@pytest.mark.parametrize(
    "reshape",
    [
        lambda a: {**a, "prompt_eval_count": "many", "eval_count": None, "done_reason": 7},
        lambda a: {"model": MODEL, "message": {"role": "assistant", "content": None}},
        lambda a: {**a, "message": "not a message"},
    ],
    ids=["wrong-counts", "nearly-empty", "odd-message"],
)
def test_malformed_answer_changes_nothing_for_the_caller(
    instrumented: Instrumented, client: Client, server: FakeOllama, reshape: Any
) -> None:
    """A malformed answer gives the caller exactly what it gives without instrumentation; the span always ends."""
    server.reshape = reshape
    plain = _outcome(client)
    cap = instrumented(OllamaInstrumentor, capture_content=True)
    assert _outcome(client) == plain
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in span_attributes(one_span(cap))


def test_unknown_library_version_still_runs(monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
    """A method this version lacks is skipped; the others are still traced and the client works."""
    result, cap = traced_with_missing_target(monkeypatch, OllamaInstrumentor, "Client.chat_v9", lambda: _chat(client))
    assert result is not None
    assert len(cap.spans()) == 1


def test_stage_api_around_ollama_counts_once(cap: Capture, client: Client) -> None:
    """A framework's generation step (here `ragotel.generation()`) around an Ollama call is one span, counted once."""
    assert_framework_step_counts_once(cap, lambda: _chat(client), "ollama", lambda result: result.eval_count)


def test_missing_library_is_silent(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With ollama not importable, instrumenting logs no warning and patches nothing."""
    assert_silent_without("ollama", OllamaInstrumentor, (Client, "chat"), monkeypatch, caplog)


def test_tool_messages_captured_as_tool_parts(instrumented: Instrumented, client: Client) -> None:
    """With content capture on, assistant `tool_calls` and `tool` messages become tool_call / response parts."""
    cap = instrumented(OllamaInstrumentor, capture_content=True)
    call = {"function": {"name": "lookup", "arguments": {"q": "otel"}}}
    messages = [
        MESSAGES[1],
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "found"},
    ]
    _ = client.chat(model=MODEL, messages=messages)
    sent = json.loads(span_attributes(one_span(cap))[sc.GEN_AI_INPUT_MESSAGES])
    assert sent[1]["parts"] == [{"type": "tool_call", "id": None, "name": "lookup", "arguments": {"q": "otel"}}]
    assert sent[2] == {"role": "tool", "parts": [{"type": "tool_call_response", "id": None, "response": "found"}]}
