"""Anthropic instrumentation against the real `anthropic` client talking to FakeAnthropic (real wire format, SSE)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import pytest
from anthropic._base_client import BaseClient
from anthropic.resources.messages.messages import Messages
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    assert_extractor_failure_keeps_result,
    assert_framework_step_counts_once,
    assert_silent_without,
    break_and_collect,
    close,
    context_exit,
    dropped,
    exhaust,
    exported_values,
    one_span,
    raise_in_loop,
    span_attributes,
)
from tests.servers.anthropic import FakeAnthropic

from ragotel import semconv as sc
from ragotel.instrumentation._base import Target
from ragotel.instrumentation.anthropic import AnthropicInstrumentor
from ragotel.testing import Capture, capture

pytestmark = pytest.mark.timeout(60)

PROMPT = "zebra-prompt-7731 please"
SYSTEM = "walrus-system-4410 rules"
REPLY = "orchid-reply-5529 comes back in several words"
MESSAGES = [{"role": "user", "content": PROMPT}]
MODEL = "claude-sonnet-4-5"


@pytest.fixture
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(reply=REPLY) as s:
        yield s


@pytest.fixture
def client(server: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    c = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.url, max_retries=0)
    yield c
    c.close()


@pytest.fixture
async def aclient(server: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    c = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=server.url, max_retries=0)
    yield c
    await c.close()


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(AnthropicInstrumentor)


def _tokens(cap: Capture) -> dict[str, tuple[int, float]]:
    return {
        str(p.attributes[sc.GEN_AI_TOKEN_TYPE]): (p.count or 0, p.sum or 0.0)
        for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)
    }


def _create(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, **kwargs)


def test_create_span_attributes_usage_and_metrics(
    cap: Capture, client: anthropic.Anthropic, server: FakeAnthropic
) -> None:
    """A messages call is one CLIENT span `chat {model}`; input tokens include both cache parts, given on their own."""
    server.cache_read_tokens, server.cache_creation_tokens = 5, 7
    sampling = {"temperature": 0.3, "top_p": 0.9, "top_k": 40}  # newer clients send these through extra_body only
    result = _create(client, extra_body=sampling, stop_sequences=["END"], system=SYSTEM)
    span = one_span(cap)
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    attrs = span_attributes(span)
    expected_input = result.usage.input_tokens + 5 + 7
    assert attrs == {
        sc.RAGOTEL_STAGE: "generation",
        sc.RAGOTEL_COMPONENT: "anthropic",
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "anthropic",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 100,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.3,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_REQUEST_TOP_K: 40.0,
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        sc.GEN_AI_RESPONSE_ID: result.id,
        sc.GEN_AI_RESPONSE_MODEL: result.model,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("end_turn",),
        sc.GEN_AI_USAGE_INPUT_TOKENS: expected_input,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: result.usage.output_tokens,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 5,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 7,
    }
    assert _tokens(cap) == {"input": (1, expected_input), "output": (1, result.usage.output_tokens)}
    [duration] = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert duration.attributes[sc.GEN_AI_PROVIDER_NAME] == "anthropic"


def test_parameters_not_sent_are_absent(cap: Capture, client: anthropic.Anthropic) -> None:
    """Only what the caller passed is recorded: no invented temperature, top_p, top_k, stop sequences or stream."""
    _create(client)
    attrs = span_attributes(one_span(cap))
    for name in (sc.GEN_AI_REQUEST_TEMPERATURE, sc.GEN_AI_REQUEST_TOP_P, sc.GEN_AI_REQUEST_TOP_K,
                 sc.GEN_AI_REQUEST_STOP_SEQUENCES, sc.GEN_AI_REQUEST_STREAM, sc.GEN_AI_OUTPUT_TYPE):  # fmt: skip
        assert name not in attrs, name


async def test_async_create(cap: Capture, aclient: anthropic.AsyncAnthropic, server: FakeAnthropic) -> None:
    """An async call is one span lasting as long as the awaited request."""
    server.delay = 0.05
    result = await aclient.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    span = one_span(cap)
    assert span.end_time is not None
    assert span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.05
    assert span_attributes(span)[sc.GEN_AI_RESPONSE_ID] == result.id


def test_error_sets_status_and_error_type(cap: Capture, client: anthropic.Anthropic) -> None:
    """An API error re-raises unchanged; the span is ERROR with `error.type` the public exception class."""
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="error-429", max_tokens=10, messages=MESSAGES)
    span = one_span(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE] == "anthropic.RateLimitError"
    assert cap.metrics(sc.M_GEN_AI_TOKEN_USAGE) == []


async def test_async_error(cap: Capture, aclient: anthropic.AsyncAnthropic) -> None:
    """An async API error gives one ERROR span and reaches the caller."""
    with pytest.raises(anthropic.InternalServerError):
        await aclient.messages.create(model="error-500", max_tokens=10, messages=MESSAGES)
    assert one_span(cap).status.status_code is StatusCode.ERROR


# -- streams --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("consume", "early"),
    [
        (exhaust, False),
        (break_and_collect, True),
        (close, True),
        (context_exit, True),
        (dropped, True),
        (raise_in_loop, True),
    ],
    ids=["exhausted", "break", "close", "context-exit", "dropped", "raise-in-loop"],
)
def test_stream_exit_paths(
    cap: Capture, client: anthropic.Anthropic, consume: Callable[[Any], None], early: bool, server: FakeAnthropic
) -> None:
    """`create(stream=True)` ends its one span on every exit path; usage and stop reason come from the events."""
    server.cache_read_tokens = 3
    consume(_create(client, stream=True))
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs.get(sc.RAGOTEL_STREAM_ENDED_EARLY, False) is early
    if consume is not dropped:  # a stream dropped unread showed no event
        assert attrs[sc.GEN_AI_RESPONSE_ID].startswith("msg_")
        assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == len(PROMPT.split()) + 3
        assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 3
    if not early:
        assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
        assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
        assert cap.metrics(sc.M_GEN_AI_TIME_TO_FIRST_CHUNK)


def test_stream_helper_is_one_span(cap: Capture, client: anthropic.Anthropic) -> None:
    """`messages.stream()` is one span from the request to the end of the stream, with the final usage."""
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs[sc.GEN_AI_RESPONSE_ID] == final.id
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == final.usage.output_tokens
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in attrs


def test_stream_helper_left_early_ends_its_span(cap: Capture, client: anthropic.Anthropic) -> None:
    """Leaving the `messages.stream()` block after one event ends the span, marked as ended early."""
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        next(iter(stream))
    assert span_attributes(one_span(cap))[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


async def test_async_stream_helper_and_stream(cap: Capture, aclient: anthropic.AsyncAnthropic) -> None:
    """The async stream helper and an async `create(stream=True)` are one span each, ended with usage."""
    async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        final = await stream.get_final_message()
    raw = await aclient.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    async for _ in raw:
        pass
    spans = cap.spans()
    assert len(spans) == 2
    assert span_attributes(spans[0])[sc.GEN_AI_RESPONSE_ID] == final.id
    assert all(span_attributes(s)[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split()) for s in spans)


def test_stream_error_midway(cap: Capture, client: anthropic.Anthropic) -> None:
    """An SSE `error` event raises to the caller and ends the span as ERROR."""
    with pytest.raises(anthropic.APIStatusError):
        exhaust(client.messages.create(model="error-midstream", max_tokens=10, messages=MESSAGES, stream=True))
    assert one_span(cap).status.status_code is StatusCode.ERROR


def test_raw_response_keeps_headers_and_parse(cap: Capture, client: anthropic.Anthropic) -> None:
    """`with_raw_response` keeps headers and `parse()`; the call is one span with the parsed message's attributes."""
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert raw.headers.get("content-type") == "application/json"
    message = raw.parse()
    assert span_attributes(one_span(cap))[sc.GEN_AI_RESPONSE_ID] == message.id


# -- content --------------------------------------------------------------------------------------------------------
def test_content_capture_off_records_no_text(cap: Capture, client: anthropic.Anthropic) -> None:
    """With content capture off no prompt, system prompt or reply text is in any exported value (plain and stream)."""
    _create(client, system=SYSTEM)
    exhaust(_create(client, system=SYSTEM, stream=True))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES, system=SYSTEM) as stream:
        stream.get_final_message()
    exported = exported_values(cap)
    assert len(cap.spans()) == 3
    for secret in ("zebra-prompt", "walrus-system", "orchid-reply"):
        assert secret not in exported


def test_content_capture_on(instrumented: Instrumented, client: anthropic.Anthropic) -> None:
    """With content capture on: system instructions, input messages and the reply, plain and streamed."""
    cap = instrumented(AnthropicInstrumentor, capture_content=True)
    _create(client, system=SYSTEM)
    exhaust(_create(client, stream=True))
    plain, streamed = (span_attributes(s) for s in cap.spans())
    assert '"walrus-system-4410 rules"' in plain[sc.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert PROMPT in plain[sc.GEN_AI_INPUT_MESSAGES]
    for attrs in (plain, streamed):
        assert REPLY in attrs[sc.GEN_AI_OUTPUT_MESSAGES]
        assert '"finish_reason": "end_turn"' in attrs[sc.GEN_AI_OUTPUT_MESSAGES]


# -- contract -------------------------------------------------------------------------------------------------------
def test_suppressed_makes_no_spans(cap: Capture, client: anthropic.Anthropic) -> None:
    """Inside `suppress_instrumentation()` the client works and nothing is recorded."""
    with suppress_instrumentation():
        _create(client)
        exhaust(_create(client, stream=True))
        with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            stream.get_final_message()
    assert cap.spans() == []


def test_uninstrument_restores_originals(client: anthropic.Anthropic) -> None:
    """Uninstrument puts the original callables back (stream helper too) and stops recording."""
    originals = [inspect.getattr_static(Messages, name) for name in ("create", "stream")]
    tracer = inspect.getattr_static(BaseClient, "_tracer")
    with capture() as cap:
        inst = AnthropicInstrumentor()
        inst.instrument()
        assert inspect.getattr_static(Messages, "create") is not originals[0]
        inst.uninstrument()
        assert [inspect.getattr_static(Messages, name) for name in ("create", "stream")] == originals
        assert inspect.getattr_static(BaseClient, "_tracer") is tracer
        _create(client)
        assert cap.spans() == []


def test_instrument_twice_no_double_spans(cap: Capture, client: anthropic.Anthropic) -> None:
    """A second instrument() does not double the spans (plain and stream helper)."""
    AnthropicInstrumentor().instrument()
    _create(client)
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        stream.get_final_message()
    assert len(cap.spans()) == 2


def test_extractor_failure_keeps_the_result(monkeypatch: pytest.MonkeyPatch, client: anthropic.Anthropic) -> None:
    """A failing response extractor leaves the caller's result the very same object, and the span still ends."""
    assert_extractor_failure_keeps_result(monkeypatch, AnthropicInstrumentor, lambda: _create(client))


@pytest.mark.parametrize(
    "reshape",
    [
        lambda m: {**m, "usage": "not a mapping", "content": "not a list", "stop_reason": 7, "id": "msg_1"},
        lambda m: {**m, "usage": {"input_tokens": "many", "cache_read_input_tokens": None}, "id": None},
        lambda m: {"type": "message"},
    ],
    ids=["wrong-types", "wrong-usage", "nearly-empty"],
)
def test_malformed_answer_changes_nothing_for_the_caller(
    instrumented: Instrumented, client: anthropic.Anthropic, server: FakeAnthropic, reshape: Any
) -> None:
    """A malformed answer reaches the caller exactly as without instrumentation; the span ends without bad values."""
    server.reshape = reshape
    plain = repr(_create(client))
    cap = instrumented(AnthropicInstrumentor, capture_content=True)
    assert repr(_create(client)) == plain
    attrs = span_attributes(one_span(cap))
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in attrs


def test_unknown_library_version_still_runs(
    monkeypatch: pytest.MonkeyPatch, client: anthropic.Anthropic, server: FakeAnthropic
) -> None:
    """Targets this version lacks are skipped and a stream manager of another shape is left alone: calls still work."""
    extra = dataclasses.replace(AnthropicInstrumentor.targets[0], method="Messages.create_v9")
    monkeypatch.setattr(AnthropicInstrumentor, "targets", (*AnthropicInstrumentor.targets, extra))
    manager = anthropic.lib.streaming._messages.MessageStreamManager
    monkeypatch.setattr(manager, "__init__", _manager_of_another_shape(manager.__init__))
    monkeypatch.setattr(manager, "__enter__", _enter_another_shape)
    with capture() as cap:
        inst = AnthropicInstrumentor()
        inst.instrument()
        try:
            assert _create(client).content[0].text == REPLY
            with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
                assert stream.get_final_message().content[0].text == REPLY
        finally:
            inst.uninstrument()
    assert [s.name for s in cap.spans()] == [f"chat {MODEL}"]  # the helper went untraced, and unbroken


def _manager_of_another_shape(init: Any) -> Any:
    def patched(self: Any, api_request: Any, **kwargs: Any) -> None:
        init(self, api_request, **kwargs)
        self.request_later = vars(self).pop("_MessageStreamManager__api_request")  # kept under another name

    return patched


def _enter_another_shape(self: Any) -> Any:
    output_format = self._MessageStreamManager__output_format
    return anthropic.lib.streaming._messages.MessageStream(self.request_later(), output_format=output_format)


def test_stage_api_around_anthropic_counts_once(cap: Capture, client: anthropic.Anthropic) -> None:
    """A framework's generation step (here `ragotel.generation()`) around a messages call is one span, counted once."""
    assert_framework_step_counts_once(
        cap, lambda: _create(client), "anthropic", lambda result: result.usage.output_tokens
    )


def test_client_own_span_is_not_a_second_span(cap: Capture, server: FakeAnthropic) -> None:
    """A client that makes its own call spans adds none under ragotel's: one span per call; alone, it makes its own."""
    client = anthropic.Anthropic(
        api_key="k", base_url=server.url, max_retries=0, open_telemetry={"tracer_provider": cap.tracer_provider}
    )
    _create(client)
    exhaust(_create(client, stream=True))
    assert [s.instrumentation_scope.name for s in cap.spans() if s.instrumentation_scope] == ["ragotel", "ragotel"]
    with suppress_instrumentation():
        _create(client)
    assert len(cap.spans()) == 3  # ragotel suppressed: the client's own span is back
    client.close()


def test_missing_library_is_silent(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With anthropic not importable, instrumenting logs no warning and patches nothing."""
    assert_silent_without("anthropic", AnthropicInstrumentor, (Messages, "create"), monkeypatch, caplog)


def test_targets_are_a_table() -> None:
    """Every target is a generation row of the anthropic component (one table, no hand-written wrappers)."""
    assert all(isinstance(t, Target) and t.stage == "generation" for t in AnthropicInstrumentor.targets)


def test_tool_blocks_captured_as_tool_parts(instrumented: Instrumented, client: anthropic.Anthropic) -> None:
    """With content capture on, `tool_use` / `tool_result` blocks become tool_call / tool_call_response parts."""
    cap = instrumented(AnthropicInstrumentor, capture_content=True)
    use = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "otel"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"}
    messages = [MESSAGES[0], {"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}]
    client.messages.create(model=MODEL, max_tokens=100, messages=messages)
    sent = json.loads(span_attributes(one_span(cap))[sc.GEN_AI_INPUT_MESSAGES])
    assert sent[1]["parts"] == [{"type": "tool_call", "id": "toolu_1", "name": "lookup", "arguments": {"q": "otel"}}]
    assert sent[2]["parts"] == [{"type": "tool_call_response", "id": "toolu_1", "response": "found"}]


def test_bedrock_client_provider(cap: Capture, server: FakeAnthropic) -> None:
    """Claude through the `AnthropicBedrock` client is `aws.bedrock` (the stand-in refuses Bedrock's path: an error)."""
    client = anthropic.AnthropicBedrock(
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="secret",
        aws_region="us-east-1",
        base_url=server.url,
        max_retries=0,
    )
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "aws.bedrock"
    assert attrs[sc.ERROR_TYPE] == "anthropic.NotFoundError"
