"""OpenAI instrumentation against the real `openai` client talking to the local FakeOpenAI server (real wire format)."""

from __future__ import annotations

import gc
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import openai
import pydantic
import pytest
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.embeddings import Embeddings
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from tests.instrumentation.instrumentation_helpers import (
    Instrumented,
    assert_silent_without,
    break_and_collect,
    close,
    context_exit,
    dropped,
    exhaust,
    exported_values,
    raise_in_loop,
)
from tests.servers import FakeOpenAI

import ragotel
from ragotel import bounds
from ragotel import semconv as sc
from ragotel.config import DEFAULT_CAPTURE_MAX_LENGTH
from ragotel.instrumentation.openai import OpenAIInstrumentor
from ragotel.instrumentation.openai import extract as oai
from ragotel.testing import Capture, capture

pytestmark = pytest.mark.timeout(60)

PROMPT = "zebra-prompt-7731 please"
REPLY = "orchid-reply-5529 comes back in several words"
MESSAGES = [{"role": "user", "content": PROMPT}]
USAGE_OPTIONS = {"include_usage": True}


# -- fixtures and helpers -----------------------------------------------------------------------------------------
@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(OpenAIInstrumentor)


@pytest.fixture
def cap_content(instrumented: Instrumented) -> Capture:
    return instrumented(OpenAIInstrumentor, capture_content=True)


@pytest.fixture
def server(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.reply = REPLY
    return fake_openai


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
    yield c
    c.close()


@pytest.fixture
async def aclient(server: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
    yield c
    await c.close()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _one(cap: Capture) -> ReadableSpan:
    spans = cap.spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def _counts(cap: Capture, metric: str) -> list[int]:
    return [p.count or 0 for p in cap.metrics(metric)]


def _tokens(cap: Capture) -> dict[str, tuple[int, float]]:
    return {
        str(p.attributes[sc.GEN_AI_TOKEN_TYPE]): (p.count or 0, p.sum or 0.0)
        for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE)
    }


def _chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)


# -- chat completions ---------------------------------------------------------------------------------------------
def test_chat_span_attributes_and_metrics(cap: Capture, client: openai.OpenAI, server: FakeOpenAI) -> None:
    """A chat call is one CLIENT span `chat {model}` with exact GenAI attribute names, types and metrics."""
    server.cached_tokens = 1
    server.reasoning_tokens = 2
    result = _chat(client, temperature=0.2, max_tokens=50, top_p=1, seed=7, stop="END", n=2)
    span = _one(cap)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    attrs = _attrs(span)
    assert attrs[sc.RAGOTEL_STAGE] == "generation"
    assert attrs[sc.RAGOTEL_COMPONENT] == "openai"
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[sc.SERVER_PORT] == server.port
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attrs[sc.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert isinstance(attrs[sc.GEN_AI_REQUEST_TOP_P], float)
    assert attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert attrs[sc.GEN_AI_REQUEST_SEED] == 7
    assert attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] == ("END",)
    assert attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] == 2
    assert attrs[sc.GEN_AI_RESPONSE_ID] == result.id
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop", "stop")
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == result.usage.prompt_tokens
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == result.usage.completion_tokens
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1
    assert attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 2
    assert attrs[sc.GEN_AI_OPENAI_RESPONSE_SYSTEM_FINGERPRINT] == "fp_fake0000001"
    assert sc.GEN_AI_INPUT_MESSAGES not in attrs
    duration = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert [p.count for p in duration] == [1]
    assert duration[0].attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert duration[0].attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert _tokens(cap) == {
        "input": (1, result.usage.prompt_tokens),
        "output": (1, result.usage.completion_tokens),
    }
    assert _counts(cap, sc.M_STAGE_DURATION) == []  # generation: counted in gen_ai.client.operation.duration


def test_parameters_not_sent_are_absent(cap: Capture, client: openai.OpenAI) -> None:
    """Only what the caller passed is recorded: no invented temperature, max_tokens, seed, stream or n."""
    _chat(client)
    attrs = _attrs(_one(cap))
    for name in (
        sc.GEN_AI_REQUEST_TEMPERATURE,
        sc.GEN_AI_REQUEST_MAX_TOKENS,
        sc.GEN_AI_REQUEST_TOP_P,
        sc.GEN_AI_REQUEST_SEED,
        sc.GEN_AI_REQUEST_STOP_SEQUENCES,
        sc.GEN_AI_REQUEST_CHOICE_COUNT,
        sc.GEN_AI_REQUEST_STREAM,
        sc.GEN_AI_REQUEST_FREQUENCY_PENALTY,
        sc.GEN_AI_REQUEST_PRESENCE_PENALTY,
        sc.GEN_AI_OPENAI_REQUEST_SERVICE_TIER,
        sc.GEN_AI_OUTPUT_TYPE,
    ):
        assert name not in attrs, name


def test_client_placeholders_are_not_recorded() -> None:
    """The client's `omit` / `NOT_GIVEN` sentinels (passed explicitly by wrappers) count as not sent."""
    attrs = oai.chat_request(
        None, (), {"model": "m", "temperature": openai.omit, "max_tokens": openai.NOT_GIVEN, "stop": None}
    )
    assert sc.GEN_AI_REQUEST_TEMPERATURE not in attrs
    assert sc.GEN_AI_REQUEST_MAX_TOKENS not in attrs
    assert sc.GEN_AI_REQUEST_STOP_SEQUENCES not in attrs
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "m"


async def test_async_chat_span_covers_the_await(cap: Capture, aclient: openai.AsyncOpenAI, server: FakeOpenAI) -> None:
    """An async call gets one span that lasts as long as the awaited request (not the coroutine creation)."""
    server.delay = 0.05
    result = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    span = _one(cap)
    assert span.name == "chat gpt-4o"
    assert span.end_time is not None
    assert span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.05
    assert _attrs(span)[sc.GEN_AI_RESPONSE_ID] == result.id


def test_error_sets_status_and_error_type(cap: Capture, client: openai.OpenAI) -> None:
    """An API error re-raises unchanged; the span is ERROR with `error.type` = the public exception class."""
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="error-429", messages=MESSAGES)
    span = _one(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)[sc.ERROR_TYPE] == "openai.RateLimitError"
    [point] = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == "openai.RateLimitError"
    assert cap.metrics(sc.M_GEN_AI_TOKEN_USAGE) == []


async def test_async_error(cap: Capture, aclient: openai.AsyncOpenAI) -> None:
    """Async errors are recorded the same way."""
    with pytest.raises(openai.InternalServerError):
        await aclient.chat.completions.create(model="error-500", messages=MESSAGES)
    assert _attrs(_one(cap))[sc.ERROR_TYPE] == "openai.InternalServerError"


def test_azure_client_provider(cap: Capture, server: FakeOpenAI) -> None:
    """An Azure client is reported as provider `azure.ai.openai` (the stand-in answers 404 to Azure paths)."""
    client = openai.AzureOpenAI(api_key="k", api_version="2024-06-01", azure_endpoint=server.url, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.close()
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "azure.ai.openai"
    assert attrs[sc.ERROR_TYPE] == "openai.NotFoundError"


def test_structured_parse_is_one_span(cap: Capture, client: openai.OpenAI, server: FakeOpenAI) -> None:
    """`chat.completions.parse(response_format=Model)` is one span with `gen_ai.output.type=json`."""

    class Answer(pydantic.BaseModel):
        answer: str

    server.reply = '{"answer": "42"}'
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Answer)
    assert parsed.choices[0].message.parsed == Answer(answer="42")
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_OUTPUT_TYPE] == "json"
    assert attrs[sc.GEN_AI_RESPONSE_ID] == parsed.id


# -- streams: every exit path ends the span exactly once ----------------------------------------------------------
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
    ids=["exhausted", "break-gc", "close", "context-exit", "dropped", "exception-in-loop"],
)
def test_stream_exit_paths(cap: Capture, client: openai.OpenAI, consume: Callable[[Any], None], early: bool) -> None:
    """However a stream ends, its span ends once; an early end is marked; a full stream records its usage chunk."""
    stream = _chat(client, stream=True, stream_options=USAGE_OPTIONS)
    assert cap.spans() == []  # open while the stream is
    consume(stream)
    del stream
    span = _one(cap)
    attrs = _attrs(span)
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs.get(sc.RAGOTEL_STREAM_ENDED_EARLY, False) is early
    assert _counts(cap, sc.M_STAGE_DURATION) == []
    assert _counts(cap, sc.M_GEN_AI_OPERATION_DURATION) == [1]
    if not early:
        assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
        assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
        assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
        assert _tokens(cap)["output"] == (1, len(REPLY.split()))


def test_stream_time_to_first_chunk(cap: Capture, client: openai.OpenAI, server: FakeOpenAI) -> None:
    """Time to first chunk is measured when the first chunk arrives (after the server's first-chunk delay)."""
    server.first_chunk_delay = 0.05
    exhaust(_chat(client, stream=True))
    ttfc = _attrs(_one(cap))[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert isinstance(ttfc, float)
    assert ttfc >= 0.05
    [point] = cap.metrics(sc.M_GEN_AI_TIME_TO_FIRST_CHUNK)
    assert point.count == 1


def test_stream_without_usage_option_records_no_usage(cap: Capture, client: openai.OpenAI) -> None:
    """Without `include_usage` there is no usage to report, and none is guessed."""
    exhaust(_chat(client, stream=True))
    attrs = _attrs(_one(cap))
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in attrs
    assert cap.metrics(sc.M_GEN_AI_TOKEN_USAGE) == []


def test_stream_error_midway(cap: Capture, client: openai.OpenAI) -> None:
    """An error event in the middle of a stream raises to the caller and marks the span ERROR."""
    stream = client.chat.completions.create(model="error-midstream", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        exhaust(stream)
    span = _one(cap)
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)[sc.ERROR_TYPE] == "openai.APIError"


def test_stream_exception_inside_context_manager(cap: Capture, client: openai.OpenAI) -> None:
    """An exception leaving `with stream:` ends the span once, with that exception's type."""
    stream = _chat(client, stream=True)

    def consume() -> None:
        with stream:
            next(stream)
            raise KeyError("caller")

    with pytest.raises(KeyError):
        consume()
    assert _attrs(_one(cap))[sc.ERROR_TYPE] == "KeyError"


async def test_async_stream_exit_paths(cap: Capture, aclient: openai.AsyncOpenAI) -> None:
    """Async streams: exhausted (with usage), `async with` exit, close() and drop each end their own span once."""
    stream = await aclient.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options=USAGE_OPTIONS
    )
    async for _ in stream:
        pass
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    async with stream:
        await stream.__anext__()
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    await stream.__anext__()
    await stream.close()
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    del stream
    gc.collect()
    spans = cap.spans()
    assert len(spans) == 4
    first, *rest = (_attrs(s) for s in spans)
    assert first[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in first
    assert all(a[sc.RAGOTEL_STREAM_ENDED_EARLY] is True for a in rest)
    assert sum(_counts(cap, sc.M_GEN_AI_OPERATION_DURATION)) == 4


def test_stream_helper_is_one_span_and_ends_on_exit(cap: Capture, client: openai.OpenAI) -> None:
    """`chat.completions.stream()` goes through `create` once; leaving its block early ends the span right away."""
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, stream_options=USAGE_OPTIONS) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == REPLY
    assert _attrs(_one(cap))[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
    cap.clear()
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as s:
        for _ in s:
            break
    assert _attrs(_one(cap))[sc.RAGOTEL_STREAM_ENDED_EARLY] is True  # s is still referenced: ended by the exit


# -- raw and streaming responses (PITFALLS: crashes on .parse()/.headers) -----------------------------------------
def test_raw_response_keeps_headers_and_parse(cap: Capture, client: openai.OpenAI) -> None:
    """`with_raw_response.create` returns the raw response (headers, parse() cached) and one complete span."""
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    assert raw.parse() is completion
    assert completion.choices[0].message.content == REPLY
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_RESPONSE_ID] == completion.id
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == completion.usage.completion_tokens


def test_raw_response_stream(cap: Capture, client: openai.OpenAI) -> None:
    """A raw streamed response: the span follows the stream parse() returns, and ends when it is exhausted."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=USAGE_OPTIONS
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    stream = raw.parse()
    assert raw.parse() is stream
    assert cap.spans() == []
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == REPLY
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in attrs


def test_raw_stream_never_parsed_ends_when_dropped(cap: Capture, client: openai.OpenAI) -> None:
    """A raw streamed response dropped unparsed still ends its span (marked early)."""
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    raw.http_response.close()
    del raw
    gc.collect()
    assert _attrs(_one(cap))[sc.RAGOTEL_STREAM_ENDED_EARLY] is True


def test_streaming_response(cap: Capture, client: openai.OpenAI) -> None:
    """`with_streaming_response`: parse() inside the block completes the span; an unparsed block ends it on exit."""
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES) as resp:
        assert resp.headers["openai-version"] == "2020-10-01"
        completion = resp.parse()
    assert _attrs(_one(cap))[sc.GEN_AI_RESPONSE_ID] == completion.id
    cap.clear()
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES) as resp:
        assert resp.status_code == 200
    assert _attrs(_one(cap))[sc.RAGOTEL_STREAM_ENDED_EARLY] is True
    cap.clear()
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=USAGE_OPTIONS
    ) as resp:
        exhaust(resp.parse())
    assert _attrs(_one(cap))[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())


async def test_async_raw_and_streaming_responses(cap: Capture, aclient: openai.AsyncOpenAI) -> None:
    """Async raw (plain and streamed) and streaming responses keep parse()/headers working, one span each."""
    raw = await aclient.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.headers["x-request-id"]
    assert raw.parse().choices[0].message.content == REPLY
    raw = await aclient.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options=USAGE_OPTIONS
    )
    async for _ in raw.parse():
        pass
    async with aclient.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as resp:
        completion = await resp.parse()
    spans = [_attrs(s) for s in cap.spans()]
    assert len(spans) == 3
    assert spans[1][sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
    assert spans[2][sc.GEN_AI_RESPONSE_ID] == completion.id
    assert sum(_counts(cap, sc.M_GEN_AI_OPERATION_DURATION)) == 3


# -- other endpoints ----------------------------------------------------------------------------------------------
def test_embeddings(cap: Capture, client: openai.OpenAI, server: FakeOpenAI) -> None:
    """Embeddings: `embeddings {model}` span with batch size, dimension and input tokens; no encoding not sent."""
    result = client.embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
    span = _one(cap)
    assert span.name == "embeddings text-embedding-3-small"
    attrs = _attrs(span)
    assert attrs[sc.RAGOTEL_STAGE] == "embedding"
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 2
    assert attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == server.embedding_dim
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == result.usage.prompt_tokens == 3
    assert sc.GEN_AI_REQUEST_ENCODING_FORMATS not in attrs  # the client sends base64 by itself: not the caller's
    assert _tokens(cap) == {"input": (1, 3)}
    cap.clear()
    client.embeddings.create(model="text-embedding-3-small", input="one", dimensions=16, encoding_format="float")
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] == ("float",)
    assert attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 16
    assert attrs[sc.RAGOTEL_EMBEDDING_BATCH_SIZE] == 1


async def test_async_embeddings(cap: Capture, aclient: openai.AsyncOpenAI) -> None:
    """Async embeddings are one span too."""
    await aclient.embeddings.create(model="text-embedding-3-small", input=["x"])
    assert _one(cap).name == "embeddings text-embedding-3-small"


def test_legacy_completions(cap: Capture, client: openai.OpenAI) -> None:
    """Legacy completions are `text_completion {model}`, plain and streamed."""
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, max_tokens=3)
    attrs = _attrs(cap.span("text_completion gpt-3.5-turbo-instruct"))
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "text_completion"
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    cap.clear()
    exhaust(
        client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt=PROMPT, stream=True, stream_options=USAGE_OPTIONS
        )
    )
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())


def test_responses_api(cap: Capture, client: openai.OpenAI, server: FakeOpenAI) -> None:
    """The Responses API: plain and streamed calls, with usage incl. cached and reasoning tokens."""
    server.cached_tokens = 1
    server.reasoning_tokens = 4
    response = client.responses.create(model="gpt-4o-mini", input=PROMPT, instructions="be brief", max_output_tokens=50)
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_RESPONSE_ID] == response.id
    assert attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == response.usage.input_tokens
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1
    assert attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 4
    assert sc.GEN_AI_SYSTEM_INSTRUCTIONS not in attrs
    cap.clear()
    exhaust(client.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True))
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"


async def test_async_responses_stream_helper(cap: Capture, aclient: openai.AsyncOpenAI) -> None:
    """`responses.stream()` (async) is one span carrying the final usage."""
    async with aclient.responses.stream(model="gpt-4o", input=PROMPT) as stream:
        final = await stream.get_final_response()
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_RESPONSE_ID] == final.id
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == len(REPLY.split())


# -- content ------------------------------------------------------------------------------------------------------
def test_content_capture_off_records_no_text(cap: Capture, client: openai.OpenAI) -> None:
    """With capture off, no prompt, completion or embedding input appears anywhere in the exported spans."""
    _chat(client)
    exhaust(_chat(client, stream=True))
    client.embeddings.create(model="text-embedding-3-small", input=[PROMPT])
    client.responses.create(model="gpt-4o-mini", input=PROMPT, instructions="secret-instructions-9")
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT)
    dump = exported_values(cap)
    assert len(cap.spans()) == 5
    for text in ("zebra-prompt", "orchid-reply", "secret-instructions"):
        assert text not in dump


def test_content_capture_on(cap_content: Capture, client: openai.OpenAI) -> None:
    """With capture on, messages are recorded as GenAI semconv JSON (input, output with finish reason)."""
    _chat(client)
    attrs = _attrs(_one(cap_content))
    assert json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}
    ]
    cap_content.clear()
    exhaust(_chat(client, stream=True))
    output = json.loads(_attrs(_one(cap_content))[sc.GEN_AI_OUTPUT_MESSAGES])
    assert output == [{"role": "assistant", "parts": [{"type": "text", "content": REPLY}], "finish_reason": "stop"}]


def test_generator_messages_are_not_consumed(cap_content: Capture, client: openai.OpenAI, server: FakeOpenAI) -> None:
    """A generator of messages reaches the API intact even with content capture on (ragotel never iterates it)."""
    client.chat.completions.create(model="gpt-4o-mini", messages=(m for m in MESSAGES))
    assert server.json_bodies("/v1/chat/completions")[-1]["messages"] == MESSAGES
    assert sc.GEN_AI_INPUT_MESSAGES not in _attrs(_one(cap_content))


# -- the conventions checklist ------------------------------------------------------------------------------------
def test_suppressed_makes_no_spans(cap: Capture, client: openai.OpenAI) -> None:
    """Inside `suppress_instrumentation()` the client works and nothing is recorded."""
    with suppress_instrumentation():
        _chat(client)
        exhaust(_chat(client, stream=True))
    assert cap.spans() == []


def test_uninstrument_restores_originals(client: openai.OpenAI) -> None:
    """Uninstrument puts the original callables back and stops recording."""
    originals = [inspect.getattr_static(c, "create") for c in (Completions, AsyncCompletions, Embeddings)]
    with capture() as cap:
        inst = OpenAIInstrumentor()
        inst.instrument()
        assert inspect.getattr_static(Completions, "create") is not originals[0]
        inst.uninstrument()
        assert [inspect.getattr_static(c, "create") for c in (Completions, AsyncCompletions, Embeddings)] == originals
        _chat(client)
        assert cap.spans() == []


def test_instrument_twice_no_double_spans(cap: Capture, client: openai.OpenAI) -> None:
    """A second instrument() (same instrumentor, or through ragotel's registry) does not double the spans."""
    OpenAIInstrumentor().instrument()
    _chat(client)
    assert len(cap.spans()) == 1


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record what the real `Completions.create` returns or raises, under the instrumentation."""
    seen: dict[str, Any] = {}
    original = Completions.create

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            seen["result"] = original(self, *args, **kwargs)
        except BaseException as exc:
            seen["error"] = exc
            raise
        return seen["result"]

    monkeypatch.setattr(Completions, "create", spy)
    return seen


def test_extractor_failure_keeps_the_result(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAI) -> None:
    """A failing response extractor leaves the call's result the very same object, and the span still ends."""
    seen = _spy(monkeypatch)

    def broken(usage: Any) -> dict[str, Any]:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(oai, "usage_attributes", broken)
    client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
    with capture() as cap:
        inst = OpenAIInstrumentor()
        inst.instrument()
        try:
            result = _chat(client)
            first = seen["result"]
            request_broken = pytest.MonkeyPatch()
            request_broken.setattr(oai, "client_attributes", broken)
            second = _chat(client)
            request_broken.undo()
        finally:
            inst.uninstrument()
    client.close()
    assert result is first
    assert second is seen["result"]
    assert len(cap.spans()) == 1  # the first call's span ended; the second call went through untraced
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in _attrs(cap.spans()[0])


def test_caller_exception_is_the_same_object(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAI) -> None:
    """The exception the client raised reaches the caller as the same object (bare re-raise)."""
    seen = _spy(monkeypatch)
    client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
    with capture():
        inst = OpenAIInstrumentor()
        inst.instrument()
        try:
            with pytest.raises(openai.RateLimitError) as info:
                client.chat.completions.create(model="error-429", messages=MESSAGES)
        finally:
            inst.uninstrument()
    client.close()
    assert info.value is seen["error"]


def test_stage_api_around_openai_counts_once(cap: Capture, client: openai.OpenAI) -> None:
    """A custom `ragotel.generation()` around an OpenAI call is one span; the provider's usage replaces the stage's."""
    with ragotel.generation("my-model") as op:
        op.record_usage(1000, 1000)
        result = _chat(client)
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == result.usage.prompt_tokens
    assert _tokens(cap)["output"] == (1, result.usage.completion_tokens)


def test_missing_library_is_silent(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With openai not importable (as under `opentelemetry-instrument`), instrumenting logs no warning."""
    assert_silent_without("openai", OpenAIInstrumentor, (Completions, "create"), monkeypatch, caplog)


# -- malformed answers: telemetry cost bounded by the limits, not by the answer (issue 10, item 12) --------------
def _median_call_time(client: openai.OpenAI, runs: int = 3) -> tuple[float, Any]:
    times: list[float] = []
    result: Any = None
    for _ in range(runs):
        start = time.perf_counter()
        result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        times.append(time.perf_counter() - start)
    return sorted(times)[runs // 2], result


@pytest.mark.parametrize("capture_content", [False, True], ids=["no-content", "content"])
def test_string_choices_cost_no_more_than_plain(
    instrumented: Instrumented, client: openai.OpenAI, server: FakeOpenAI, capture_content: bool
) -> None:
    """2 MB strings where `choices` and `id` belong cost (nearly) nothing over the plain call; the id is cut."""
    server.reshape = lambda payload: {**payload, "choices": "x" * 2_000_000, "id": "i" * 2_000_000}
    plain, _ = _median_call_time(client)
    cap = instrumented(OpenAIInstrumentor, capture_content=capture_content)
    traced, result = _median_call_time(client)
    assert result.choices == "x" * 2_000_000  # the caller's object, untouched
    assert traced < plain + 0.2, f"instrumented {traced:.3f}s vs plain {plain:.3f}s"
    spans = cap.spans()
    assert len(spans) == 3
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in _attrs(spans[-1])
    assert _attrs(spans[-1])[sc.GEN_AI_RESPONSE_ID] == "i" * bounds.MAX_TEXT + "…"


def test_huge_choices_list_gives_bounded_attributes(
    instrumented: Instrumented, client: openai.OpenAI, server: FakeOpenAI
) -> None:
    """50,000 choices: finish reasons are read from the first bounds.MAX_ITEMS, captured output is cut to the limit."""
    choice = {"index": 0, "message": {"role": "assistant", "content": "long " * 50}, "finish_reason": "stop"}
    server.reshape = lambda payload: {**payload, "choices": [choice] * 50_000}
    cap = instrumented(OpenAIInstrumentor, capture_content=True)
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(result.choices) == 50_000
    attrs = _attrs(_one(cap))
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",) * bounds.MAX_ITEMS
    output = attrs[sc.GEN_AI_OUTPUT_MESSAGES]
    assert isinstance(output, str)
    assert len(output) == DEFAULT_CAPTURE_MAX_LENGTH + 1
    assert output.endswith("…")
    assert output.startswith('[{"role": "assistant", "parts": [{"type": "text", "content": "long long')
