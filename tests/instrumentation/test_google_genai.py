"""Google Gen AI instrumentation against the real `google-genai` client talking to FakeGemini (REST + SSE)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from google.genai.models import Models
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
from tests.servers.gemini import FakeGemini

from ragotel import semconv as sc
from ragotel.instrumentation.google_genai import GoogleGenAIInstrumentor
from ragotel.testing import Capture, capture

pytestmark = pytest.mark.timeout(60)

PROMPT = "zebra-prompt-7731 please"
SYSTEM = "walrus-system-4410 rules"
REPLY = "orchid-reply-5529 comes back in several words"
MODEL = "gemini-2.5-flash"


@pytest.fixture
def server() -> Iterator[FakeGemini]:
    with FakeGemini(reply=REPLY) as s:
        yield s


@pytest.fixture
def client(server: FakeGemini) -> genai.Client:
    options = types.HttpOptions(base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key="test-key", http_options=options)


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(GoogleGenAIInstrumentor)


def _generate(client: genai.Client, **config: Any) -> Any:
    return client.models.generate_content(model=MODEL, contents=PROMPT, config=config or None)


def test_generate_content_span_attributes_usage_and_metrics(
    cap: Capture, client: genai.Client, server: FakeGemini
) -> None:
    """generate_content is one CLIENT span `generate_content {model}` with config parameters, reasons and usage."""
    server.cached_tokens, server.thoughts_tokens = 3, 4
    result = _generate(client, temperature=0.2, top_p=0.9, top_k=20, max_output_tokens=64, stop_sequences=["END"],
                       seed=7, candidate_count=2, response_mime_type="application/json")  # fmt: skip
    span = one_span(cap)
    assert span.name == f"generate_content {MODEL}"
    assert span.kind is SpanKind.CLIENT
    usage = result.usage_metadata
    assert span_attributes(span) == {
        sc.RAGOTEL_STAGE: "generation",
        sc.RAGOTEL_COMPONENT: "google_genai",
        sc.GEN_AI_OPERATION_NAME: "generate_content",
        sc.GEN_AI_PROVIDER_NAME: "gcp.gemini",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_REQUEST_TOP_K: 20.0,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 64,
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        sc.GEN_AI_REQUEST_SEED: 7,
        sc.GEN_AI_REQUEST_CHOICE_COUNT: 2,
        sc.GEN_AI_OUTPUT_TYPE: "json",
        sc.GEN_AI_RESPONSE_ID: result.response_id,
        sc.GEN_AI_RESPONSE_MODEL: f"{MODEL}-001",
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        sc.GEN_AI_USAGE_INPUT_TOKENS: usage.prompt_token_count,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: usage.candidates_token_count + 4,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 3,
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 4,
    }
    [duration] = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert duration.attributes[sc.GEN_AI_PROVIDER_NAME] == "gcp.gemini"


def test_parameters_not_sent_are_absent(cap: Capture, client: genai.Client) -> None:
    """Only what the caller set in `config` is recorded."""
    _generate(client)
    attrs = span_attributes(one_span(cap))
    for name in (sc.GEN_AI_REQUEST_TEMPERATURE, sc.GEN_AI_REQUEST_MAX_TOKENS, sc.GEN_AI_REQUEST_TOP_K,
                 sc.GEN_AI_REQUEST_SEED, sc.GEN_AI_REQUEST_CHOICE_COUNT, sc.GEN_AI_OUTPUT_TYPE,
                 sc.GEN_AI_REQUEST_STREAM):  # fmt: skip
        assert name not in attrs, name


def test_vertex_client_provider(cap: Capture, server: FakeGemini) -> None:
    """A Vertex AI client is `gcp.vertex_ai`."""
    options = types.HttpOptions(base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1))
    client = genai.Client(vertexai=True, api_key="test-key", http_options=options)
    with pytest.raises(errors.APIError):  # the stand-in speaks the Developer API paths only
        client.models.generate_content(model=MODEL, contents=PROMPT)
    assert span_attributes(one_span(cap))[sc.GEN_AI_PROVIDER_NAME] == "gcp.vertex_ai"


def test_error_sets_status_and_error_type(cap: Capture, client: genai.Client) -> None:
    """An API error re-raises unchanged; the span is ERROR with the client's exception class."""
    with pytest.raises(errors.ClientError):
        client.models.generate_content(model="error-429", contents=PROMPT)
    span = one_span(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE] == "google.genai.errors.ClientError"


async def test_async_generate_stream_and_embed(cap: Capture, client: genai.Client) -> None:
    """The async client gives one span per call, streams ended with their usage."""
    await client.aio.models.generate_content(model=MODEL, contents=PROMPT)
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents=PROMPT)
    text = "".join([chunk.text async for chunk in stream])
    await client.aio.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    assert text == REPLY
    plain, streamed, embedded = (span_attributes(s) for s in cap.spans())
    assert plain[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == streamed[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
    assert streamed[sc.GEN_AI_REQUEST_STREAM] is True
    assert embedded[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 2


# -- streams --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("consume", "early"),
    [(exhaust, False), (break_and_collect, True), (close, True), (dropped, True), (raise_in_loop, True)],
    ids=["exhausted", "break", "close", "dropped", "raise-in-loop"],
)
def test_stream_exit_paths(cap: Capture, client: genai.Client, consume: Callable[[Any], None], early: bool) -> None:
    """generate_content_stream ends its one span on every exit path; usage and finish reason from the chunks."""
    consume(client.models.generate_content_stream(model=MODEL, contents=PROMPT))
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs.get(sc.RAGOTEL_STREAM_ENDED_EARLY, False) is early
    if not early:
        assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
        assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
        assert cap.metrics(sc.M_GEN_AI_TIME_TO_FIRST_CHUNK)


def test_stream_error_midway(cap: Capture, client: genai.Client) -> None:
    """A connection dropped mid-stream raises to the caller and ends the span as ERROR."""
    with pytest.raises(Exception) as info:  # whatever the transport raises must reach the caller
        exhaust(client.models.generate_content_stream(model="error-midstream", contents=PROMPT))
    span = one_span(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE].endswith(type(info.value).__name__)


def test_embed_content(cap: Capture, client: genai.Client, server: FakeGemini) -> None:
    """embed_content is one embedding span with batch size and the vectors' dimension (never the vectors)."""
    result = client.models.embed_content(model="text-embedding-004", contents=["one", "two", "three"])
    span = one_span(cap)
    assert span.name == "embeddings text-embedding-004"
    attrs = span_attributes(span)
    assert attrs[sc.RAGOTEL_STAGE] == "embedding"
    assert attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 3
    assert attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == len(result.embeddings[0].values) == server.dimensions


# -- content --------------------------------------------------------------------------------------------------------
def test_content_capture_off_records_no_text(cap: Capture, client: genai.Client) -> None:
    """With content capture off no prompt, system instruction, reply or embedded text is in any exported value."""
    _generate(client, system_instruction=SYSTEM)
    exhaust(client.models.generate_content_stream(model=MODEL, contents=PROMPT))
    client.models.embed_content(model="text-embedding-004", contents=[PROMPT])
    exported = exported_values(cap)
    assert len(cap.spans()) == 3
    for secret in ("zebra-prompt", "walrus-system", "orchid-reply"):
        assert secret not in exported


def test_content_capture_on(instrumented: Instrumented, client: genai.Client) -> None:
    """With content capture on: system instruction, contents, candidates (plain and streamed), embedded texts."""
    cap = instrumented(GoogleGenAIInstrumentor, capture_content=True)
    _generate(client, system_instruction=SYSTEM)
    exhaust(
        client.models.generate_content_stream(
            model=MODEL, contents=[types.Content(role="user", parts=[types.Part(text=PROMPT)])]
        )
    )
    client.models.embed_content(model="text-embedding-004", contents=[PROMPT])
    plain, streamed, embedded = (span_attributes(s) for s in cap.spans())
    assert SYSTEM in plain[sc.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert PROMPT in plain[sc.GEN_AI_INPUT_MESSAGES]
    assert PROMPT in streamed[sc.GEN_AI_INPUT_MESSAGES]
    for attrs in (plain, streamed):
        assert REPLY in attrs[sc.GEN_AI_OUTPUT_MESSAGES]
        assert '"finish_reason": "stop"' in attrs[sc.GEN_AI_OUTPUT_MESSAGES]
    assert embedded[sc.RAGOTEL_INPUT] == f'["{PROMPT}"]'


# -- contract -------------------------------------------------------------------------------------------------------
def test_suppressed_makes_no_spans(cap: Capture, client: genai.Client) -> None:
    """Inside `suppress_instrumentation()` the client works and nothing is recorded."""
    with suppress_instrumentation():
        _generate(client)
        exhaust(client.models.generate_content_stream(model=MODEL, contents=PROMPT))
    assert cap.spans() == []


def test_uninstrument_restores_originals(client: genai.Client) -> None:
    """Uninstrument puts the original methods back and stops recording."""
    originals = [inspect.getattr_static(Models, n) for n in ("generate_content", "generate_content_stream")]
    with capture() as cap:
        inst = GoogleGenAIInstrumentor()
        inst.instrument()
        assert inspect.getattr_static(Models, "generate_content") is not originals[0]
        inst.uninstrument()
        assert [inspect.getattr_static(Models, n) for n in ("generate_content", "generate_content_stream")] == originals
        _generate(client)
        assert cap.spans() == []


def test_instrument_twice_no_double_spans(cap: Capture, client: genai.Client) -> None:
    """A second instrument() does not double the spans."""
    GoogleGenAIInstrumentor().instrument()
    _generate(client)
    assert len(cap.spans()) == 1


def test_extractor_failure_keeps_the_result(monkeypatch: pytest.MonkeyPatch, client: genai.Client) -> None:
    """A failing response extractor leaves the caller's result the very same object, and the span still ends."""
    assert_extractor_failure_keeps_result(monkeypatch, GoogleGenAIInstrumentor, lambda: _generate(client))


def _outcome(client: genai.Client) -> Any:
    return outcome(lambda: _generate(client), lambda r: r.model_dump(exclude={"sdk_http_response"}))


@pytest.mark.parametrize(
    "reshape",
    [
        lambda a: {"candidates": "not a list", "usageMetadata": {"promptTokenCount": "many"}},
        lambda a: {k: v for k, v in a.items() if k != "usageMetadata"} | {"candidates": [{"finishReason": 7}]},
        lambda a: {},
    ],
    ids=["wrong-types", "odd-candidate", "empty"],
)
def test_malformed_answer_changes_nothing_for_the_caller(
    instrumented: Instrumented, client: genai.Client, server: FakeGemini, reshape: Any
) -> None:
    """A malformed answer gives the caller exactly what it gives without instrumentation; the span always ends."""
    server.reshape = reshape
    plain = _outcome(client)
    cap = instrumented(GoogleGenAIInstrumentor, capture_content=True)
    assert _outcome(client) == plain
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in span_attributes(one_span(cap))


def test_unknown_library_version_still_runs(monkeypatch: pytest.MonkeyPatch, client: genai.Client) -> None:
    """A method this version lacks is skipped; the others are still traced and the client works."""
    result, cap = traced_with_missing_target(
        monkeypatch, GoogleGenAIInstrumentor, "Models.generate_content_v9", lambda: _generate(client)
    )
    assert result is not None
    assert len(cap.spans()) == 1


def test_stage_api_around_gemini_counts_once(cap: Capture, client: genai.Client) -> None:
    """A framework's generation step (here `ragotel.generation()`) around a Gemini call is one span, counted once."""
    assert_framework_step_counts_once(
        cap, lambda: _generate(client), "gcp.gemini", lambda result: result.usage_metadata.candidates_token_count
    )


def test_missing_library_is_silent(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With google-genai not importable, instrumenting logs no warning and patches nothing."""
    assert_silent_without("google.genai", GoogleGenAIInstrumentor, (Models, "generate_content"), monkeypatch, caplog)


def test_function_parts_captured_as_tool_parts(instrumented: Instrumented, client: genai.Client) -> None:
    """With content capture on, function call / response parts become tool_call / tool_call_response parts."""
    cap = instrumented(GoogleGenAIInstrumentor, capture_content=True)
    call = types.Part(function_call=types.FunctionCall(id="c1", name="lookup", args={"q": "otel"}))
    answer = types.Part(function_response=types.FunctionResponse(id="c1", name="lookup", response={"r": "found"}))
    contents = [types.Content(role="user", parts=[types.Part(text=PROMPT)]), types.Content(role="model", parts=[call]),
                types.Content(role="user", parts=[answer])]  # fmt: skip
    client.models.generate_content(model=MODEL, contents=contents)
    sent = json.loads(span_attributes(one_span(cap))[sc.GEN_AI_INPUT_MESSAGES])
    assert sent[1] == {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"q": "otel"}}],
    }
    assert sent[2]["parts"] == [{"type": "tool_call_response", "id": "c1", "response": {"r": "found"}}]
