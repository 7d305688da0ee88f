"""Bedrock instrumentation against a real boto3 `bedrock-runtime` client and FakeBedrock (REST + event streams)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.client
import botocore.exceptions
import pytest
from botocore.config import Config
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
from tests.servers.bedrock import FakeBedrock

from ragotel import semconv as sc
from ragotel.instrumentation.bedrock import BedrockInstrumentor
from ragotel.testing import Capture, capture

pytestmark = pytest.mark.timeout(60)

PROMPT = "zebra-prompt-7731 please"
SYSTEM = "walrus-system-4410 rules"
REPLY = "orchid-reply-5529 comes back in several words"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]
INVOKE_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "temperature": 0.5,
                          "system": SYSTEM, "messages": [{"role": "user", "content": PROMPT}]})  # fmt: skip


@pytest.fixture
def server() -> Iterator[FakeBedrock]:
    with FakeBedrock(reply=REPLY) as s:
        yield s


@pytest.fixture
def client(server: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in (("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "secret"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = Config(retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("bedrock-runtime", endpoint_url=server.url, region_name="us-east-1", config=config)


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(BedrockInstrumentor)


def _converse(client: Any, **kwargs: Any) -> Any:
    return client.converse(modelId=MODEL, messages=MESSAGES, **kwargs)


def test_converse_span_attributes_usage_and_metrics(cap: Capture, client: Any, server: FakeBedrock) -> None:
    """Converse is one CLIENT span `chat {modelId}` with inference parameters, stop reason and cache-aware usage."""
    server.cache_read_tokens, server.cache_write_tokens = 4, 6
    inference = {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    result = _converse(client, inferenceConfig=inference, additionalModelRequestFields={"top_k": 40})
    span = one_span(cap)
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    usage = result["usage"]
    assert span_attributes(span) == {
        sc.RAGOTEL_STAGE: "generation",
        sc.RAGOTEL_COMPONENT: "bedrock",
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "aws.bedrock",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: server.port,
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 50,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_REQUEST_TOP_K: 40.0,
        sc.GEN_AI_REQUEST_STOP_SEQUENCES: ("END",),
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("end_turn",),
        sc.GEN_AI_USAGE_INPUT_TOKENS: usage["inputTokens"] + 4 + 6,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: usage["outputTokens"],
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 4,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 6,
    }
    tokens = {str(p.attributes[sc.GEN_AI_TOKEN_TYPE]): p.sum for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)}
    assert tokens == {"input": usage["totalTokens"] - usage["outputTokens"], "output": usage["outputTokens"]}


def test_parameters_not_sent_are_absent(cap: Capture, client: Any) -> None:
    """Only what the caller passed is recorded."""
    _converse(client)
    attrs = span_attributes(one_span(cap))
    for name in (sc.GEN_AI_REQUEST_MAX_TOKENS, sc.GEN_AI_REQUEST_TEMPERATURE, sc.GEN_AI_REQUEST_TOP_P,
                 sc.GEN_AI_REQUEST_TOP_K, sc.GEN_AI_REQUEST_STOP_SEQUENCES, sc.GEN_AI_REQUEST_STREAM):  # fmt: skip
        assert name not in attrs, name


def test_error_sets_status_and_error_type(cap: Capture, client: Any) -> None:
    """A throttled call re-raises botocore's exception unchanged; the span is ERROR with its class as error.type."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.converse(modelId="error-throttle", messages=MESSAGES)
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    span = one_span(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert span_attributes(span)[sc.ERROR_TYPE] == "botocore.errorfactory.ThrottlingException"


def test_other_services_and_operations_are_not_traced(cap: Capture, client: Any, server: FakeBedrock) -> None:
    """Calls of other AWS services through the same hook go through untraced and unchanged."""
    s3 = boto3.client(
        "s3", endpoint_url=server.url, region_name="us-east-1", config=Config(retries={"max_attempts": 1})
    )
    with pytest.raises(botocore.exceptions.ClientError):
        s3.list_buckets()
    assert cap.spans() == []


# -- streams --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("consume", "early"),
    [(exhaust, False), (break_and_collect, True), (close, True), (dropped, True), (raise_in_loop, True)],
    ids=["exhausted", "break", "close", "dropped", "raise-in-loop"],
)
def test_converse_stream_exit_paths(cap: Capture, client: Any, consume: Callable[[Any], None], early: bool) -> None:
    """ConverseStream's event stream ends its one span on every exit path; the response dict stays the caller's."""
    consume(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs.get(sc.RAGOTEL_STREAM_ENDED_EARLY, False) is early
    if not early:
        assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
        assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
        assert cap.metrics(sc.M_GEN_AI_TIME_TO_FIRST_CHUNK)


def test_converse_stream_events_unchanged(cap: Capture, client: Any) -> None:
    """The caller sees every event botocore parsed, as without instrumentation."""
    response = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    assert isinstance(response, dict)
    events = list(response["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == REPLY
    assert [next(iter(e)) for e in events][-2:] == ["messageStop", "metadata"]


def test_stream_error_midway(cap: Capture, client: Any) -> None:
    """An event-stream exception raises to the caller and ends the span as ERROR."""
    with pytest.raises(botocore.exceptions.EventStreamError):
        exhaust(client.converse_stream(modelId="error-midstream", messages=MESSAGES)["stream"])
    assert one_span(cap).status.status_code is StatusCode.ERROR


def test_invoke_model_usage_from_headers_body_unread(cap: Capture, client: Any) -> None:
    """InvokeModel: parameters from the caller's body, usage from Bedrock's headers; the body is left for the caller."""
    response = client.invoke_model(modelId=MODEL, body=INVOKE_BODY)
    answer = json.loads(response["body"].read())
    attrs = span_attributes(one_span(cap))
    assert answer["content"][0]["text"] == REPLY
    assert attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert attrs[sc.GEN_AI_REQUEST_TEMPERATURE] == 0.5
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == answer["usage"]["input_tokens"]
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == answer["usage"]["output_tokens"]


def test_invoke_model_with_response_stream(cap: Capture, client: Any) -> None:
    """InvokeModelWithResponseStream: one span ended with the stream, usage from the invocation metrics chunk."""
    response = client.invoke_model_with_response_stream(modelId=MODEL, body=INVOKE_BODY)
    chunks = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
    assert chunks[-1]["type"] == "message_stop"
    attrs = span_attributes(one_span(cap))
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())


def test_embedding_models_are_not_generation_spans(cap: Capture, client: Any) -> None:
    """An InvokeModel of an embedding model is not recorded as a generation step."""
    client.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": PROMPT}))
    assert cap.spans() == []


# -- content --------------------------------------------------------------------------------------------------------
def test_content_capture_off_records_no_text(cap: Capture, client: Any) -> None:
    """With content capture off no prompt, system prompt or reply is in any exported value."""
    _converse(client, system=[{"text": SYSTEM}])
    exhaust(client.converse_stream(modelId=MODEL, messages=MESSAGES, system=[{"text": SYSTEM}])["stream"])
    client.invoke_model(modelId=MODEL, body=INVOKE_BODY)["body"].read()
    exhaust(client.invoke_model_with_response_stream(modelId=MODEL, body=INVOKE_BODY)["body"])
    exported = exported_values(cap)
    assert len(cap.spans()) == 4
    for secret in ("zebra-prompt", "walrus-system", "orchid-reply"):
        assert secret not in exported


def test_content_capture_on(instrumented: Instrumented, client: Any) -> None:
    """With content capture on: system, messages and reply for Converse (plain, streamed) and InvokeModel prompts."""
    cap = instrumented(BedrockInstrumentor, capture_content=True)
    _converse(client, system=[{"text": SYSTEM}])
    exhaust(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    client.invoke_model(modelId=MODEL, body=INVOKE_BODY)
    plain, streamed, invoked = (span_attributes(s) for s in cap.spans())
    assert SYSTEM in plain[sc.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert PROMPT in plain[sc.GEN_AI_INPUT_MESSAGES]
    assert REPLY in plain[sc.GEN_AI_OUTPUT_MESSAGES]
    assert REPLY in streamed[sc.GEN_AI_OUTPUT_MESSAGES]
    assert PROMPT in invoked[sc.GEN_AI_INPUT_MESSAGES]
    assert SYSTEM in invoked[sc.GEN_AI_SYSTEM_INSTRUCTIONS]


# -- contract -------------------------------------------------------------------------------------------------------
def test_suppressed_makes_no_spans(cap: Capture, client: Any) -> None:
    """Inside `suppress_instrumentation()` the client works and nothing is recorded."""
    with suppress_instrumentation():
        _converse(client)
        exhaust(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    assert cap.spans() == []


def test_uninstrument_restores_originals(client: Any) -> None:
    """Uninstrument puts botocore's `_make_api_call` back and stops recording."""
    original = inspect.getattr_static(botocore.client.BaseClient, "_make_api_call")
    with capture() as cap:
        inst = BedrockInstrumentor()
        inst.instrument()
        assert inspect.getattr_static(botocore.client.BaseClient, "_make_api_call") is not original
        inst.uninstrument()
        assert inspect.getattr_static(botocore.client.BaseClient, "_make_api_call") is original
        _converse(client)
        assert cap.spans() == []


def test_instrument_twice_no_double_spans(cap: Capture, client: Any) -> None:
    """A second instrument() does not double the spans."""
    BedrockInstrumentor().instrument()
    _converse(client)
    assert len(cap.spans()) == 1


def test_extractor_failure_keeps_the_result(monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
    """A failing response extractor leaves the caller's result the very same object, and the span still ends."""
    assert_extractor_failure_keeps_result(monkeypatch, BedrockInstrumentor, lambda: _converse(client))


def _outcome(client: Any) -> Any:
    """What the caller gets: the answer without its (per-request) metadata, or the exception's type and text."""
    return outcome(lambda: _converse(client), lambda r: {k: v for k, v in r.items() if k != "ResponseMetadata"})


@pytest.mark.parametrize(
    "reshape",
    [
        lambda a: {k: v for k, v in a.items() if k not in ("usage", "stopReason")},
        lambda a: {**a, "usage": {"outputTokens": 3}, "output": {"message": {"role": "assistant", "content": []}}},
        lambda a: {**a, "usage": "not a mapping", "stopReason": 7},  # botocore itself refuses this one
        lambda a: {**a, "usage": {"inputTokens": "many"}},
    ],
    ids=["no-usage", "partial-usage", "wrong-types", "wrong-usage"],
)
def test_malformed_answer_changes_nothing_for_the_caller(
    instrumented: Instrumented, client: Any, server: FakeBedrock, reshape: Any
) -> None:
    """A malformed answer gives the caller exactly what it gives without instrumentation; the span always ends."""
    server.reshape = reshape
    plain = _outcome(client)
    cap = instrumented(BedrockInstrumentor, capture_content=True)
    assert _outcome(client) == plain
    attrs = span_attributes(one_span(cap))
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in attrs


def test_unknown_library_version_still_runs(monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
    """A hook this botocore lacks is skipped and an event stream of another shape is left to the caller as it is."""
    result, cap = traced_with_missing_target(
        monkeypatch, BedrockInstrumentor, "BaseClient._make_api_call_v9", lambda: _converse(client)
    )
    assert result is not None
    assert len(cap.spans()) == 1


def test_stage_api_around_bedrock_counts_once(cap: Capture, client: Any) -> None:
    """A framework's generation step (here `ragotel.generation()`) around a Converse call is one span, counted once."""
    assert_framework_step_counts_once(
        cap, lambda: _converse(client), "aws.bedrock", lambda result: result["usage"]["outputTokens"]
    )


def test_missing_library_is_silent(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With botocore not importable, instrumenting logs no warning and patches nothing."""
    assert_silent_without(
        "botocore", BedrockInstrumentor, (botocore.client.BaseClient, "_make_api_call"), monkeypatch, caplog
    )


def test_tool_blocks_captured_as_tool_parts(instrumented: Instrumented, client: Any) -> None:
    """With content capture on, Converse `toolUse` / `toolResult` blocks become tool_call / tool_call_response parts."""
    cap = instrumented(BedrockInstrumentor, capture_content=True)
    use = {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "otel"}}}
    result = {"toolResult": {"toolUseId": "t1", "content": [{"text": "found"}]}}
    messages = [*MESSAGES, {"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}]
    client.converse(modelId=MODEL, messages=messages)
    sent = json.loads(span_attributes(one_span(cap))[sc.GEN_AI_INPUT_MESSAGES])
    assert sent[1]["parts"] == [{"type": "tool_call", "id": "t1", "name": "lookup", "arguments": {"q": "otel"}}]
    assert sent[2]["parts"] == [{"type": "tool_call_response", "id": "t1", "response": [{"text": "found"}]}]
