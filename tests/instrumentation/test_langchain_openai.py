"""LangChain over the instrumented OpenAI client (ChatOpenAI, OpenAIEmbeddings → FakeOpenAI): each call counted once."""

from __future__ import annotations

import gc
from typing import Any

import openai
import pydantic
import pytest
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from tests.instrumentation.instrumentation_helpers import Instrumented
from tests.servers import FakeOpenAI

import ragotel
from ragotel import semconv as sc
from ragotel.instrumentation.langchain import LangChainInstrumentor
from ragotel.instrumentation.openai import OpenAIInstrumentor
from ragotel.testing import Capture

pytestmark = pytest.mark.timeout(60)

QUESTION = "narwhal-question-3391"
REPLY = "papaya-reply-6620 in seven plain words here"
REPLY_TOKENS = len(REPLY.split())
DOCS = [f"lychee-doc-{i} on subject {i}" for i in range(4)]


@pytest.fixture
def server(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.reply = REPLY
    return fake_openai


@pytest.fixture
def cap(instrumented: Instrumented) -> Capture:
    return instrumented(OpenAIInstrumentor, LangChainInstrumentor)


@pytest.fixture
def chat(server: FakeOpenAI, cap: Capture) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini", base_url=server.base_url, api_key="sk-test", max_retries=0, stream_usage=True
    )


def _embeddings(server: FakeOpenAI) -> OpenAIEmbeddings:
    # check_embedding_ctx_length=False: the default tokenises with tiktoken, which downloads its tables.
    return OpenAIEmbeddings(
        model="text-embedding-3-small",
        base_url=server.base_url,
        api_key="sk-test",
        max_retries=0,
        check_embedding_ctx_length=False,
    )


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _prompt_tokens(server: FakeOpenAI) -> list[int]:
    """What the server billed as input for each chat request (its tokenizer: whitespace words)."""
    out = []
    for body in server.json_bodies("/v1/chat/completions"):
        out.append(sum(len(str(m.get("content", "")).split()) for m in body["messages"]))
    return out


def _assert_counted_once(
    cap: Capture, calls: int, input_tokens: int, output_tokens: int, component: str = "langchain"
) -> None:
    """`calls` generation spans (all the outer step's, none left over from OpenAI), each call once in every metric."""
    spans = [s for s in cap.spans() if _attrs(s)[sc.RAGOTEL_STAGE] == "generation"]
    assert len(spans) == calls, [s.name for s in cap.spans()]
    assert {_attrs(s)[sc.RAGOTEL_COMPONENT] for s in spans} == {component}
    assert [p for p in cap.metrics(sc.M_STAGE_DURATION) if p.attributes[sc.RAGOTEL_STAGE] == "generation"] == []
    duration = [
        p for p in cap.metrics(sc.M_GEN_AI_OPERATION_DURATION) if p.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    ]
    assert sum(p.count or 0 for p in duration) == calls
    tokens = {}
    for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE):
        if p.attributes[sc.GEN_AI_OPERATION_NAME] == "chat":
            kind = p.attributes[sc.GEN_AI_TOKEN_TYPE]
            count, total = tokens.get(kind, (0, 0.0))
            tokens[kind] = (count + (p.count or 0), total + (p.sum or 0.0))
    assert tokens == {"input": (calls, input_tokens), "output": (calls, output_tokens)}


def test_invoke_is_one_span_counted_once(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """`ChatOpenAI.invoke` → one generation span with the provider's model, server and usage; counted once."""
    message = chat.invoke(QUESTION)
    assert message.content == REPLY
    [span] = cap.spans()
    assert span.name == "chat gpt-4o-mini"
    attrs = _attrs(span)
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[sc.GEN_AI_RESPONSE_ID] == message.response_metadata["id"]
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == REPLY_TOKENS
    _assert_counted_once(cap, 1, sum(_prompt_tokens(server)), REPLY_TOKENS)


def test_stream_is_one_span_counted_once(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """`ChatOpenAI.stream` → one span that carries the include_usage chunk's usage once, and one first-chunk time."""
    assert "".join(str(c.content) for c in chat.stream(QUESTION)) == REPLY
    [span] = cap.spans()
    attrs = _attrs(span)
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert sc.RAGOTEL_STREAM_ENDED_EARLY not in attrs
    assert isinstance(attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK], float)
    assert [p.count for p in cap.metrics(sc.M_GEN_AI_TIME_TO_FIRST_CHUNK)] == [1]
    _assert_counted_once(cap, 1, sum(_prompt_tokens(server)), REPLY_TOKENS)


def test_stream_abandoned_ends_both_levels_once(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """Breaking out of a LangChain stream ends the one span (marked early) and closes the OpenAI stream under it."""
    stream = chat.stream(QUESTION)
    for _ in stream:
        break
    del stream
    gc.collect()
    [span] = cap.spans()
    assert _attrs(span)[sc.RAGOTEL_STREAM_ENDED_EARLY] is True
    assert [p.count for p in cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)] == [1]


async def test_async_invoke_and_stream(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """`ainvoke` and `astream` are one span each, counted once."""
    await chat.ainvoke(QUESTION)
    chunks = [c.content async for c in chat.astream(QUESTION)]
    assert "".join(str(c) for c in chunks) == REPLY
    assert [s.name for s in cap.spans()] == ["chat gpt-4o-mini", "chat gpt-4o-mini"]
    _assert_counted_once(cap, 2, sum(_prompt_tokens(server)), 2 * REPLY_TOKENS)


def test_batch_in_threads_counted_once(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """`batch` runs calls in a thread pool: context follows, so each is still one merged span."""
    chat.batch([QUESTION, QUESTION + " again", QUESTION + " and again"])
    _assert_counted_once(cap, 3, sum(_prompt_tokens(server)), 3 * REPLY_TOKENS)


def test_error_is_one_failed_span(cap: Capture, server: FakeOpenAI) -> None:
    """A provider error surfaces through LangChain unchanged; one ERROR span with the provider's error type."""
    model = ChatOpenAI(model="error-429", base_url=server.base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        model.invoke(QUESTION)
    raised = type(info.value)  # langchain-openai re-raises the client's error as its own subclass
    expected = f"{raised.__module__}.{raised.__qualname__}"
    [span] = cap.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)[sc.ERROR_TYPE] == expected
    [point] = cap.metrics(sc.M_GEN_AI_OPERATION_DURATION)
    assert (point.count, point.attributes[sc.ERROR_TYPE]) == (1, expected)


def test_structured_output_is_one_span(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """`with_structured_output` (the client's `parse` under a raw response) is one span."""

    class Answer(pydantic.BaseModel):
        answer: str

    server.reply = '{"answer": "42"}'
    assert chat.with_structured_output(Answer, method="json_schema").invoke(QUESTION) == Answer(answer="42")
    generations = [s for s in cap.spans() if _attrs(s)[sc.RAGOTEL_STAGE] == "generation"]
    assert len(generations) == 1
    assert _attrs(generations[0])[sc.GEN_AI_OUTPUT_TYPE] == "json"


def test_rag_chain_over_openai(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """A full chain (OpenAI embeddings, in-memory store, ChatOpenAI): one span per step, each counted once."""
    store = InMemoryVectorStore(embedding=_embeddings(server))
    store.add_documents([Document(id=f"d{i}", page_content=t) for i, t in enumerate(DOCS)])
    cap.clear()
    server.reset()
    prompt = ChatPromptTemplate.from_messages([("system", "Context: {context}"), ("human", "{question}")])
    retriever = store.as_retriever(search_kwargs={"k": 2})
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | chat | StrOutputParser()
    assert chain.invoke(QUESTION) == REPLY
    names = sorted(s.name for s in cap.spans())
    assert names == sorted(
        [
            "pipeline RunnableSequence",
            "retrieval InMemoryVectorStore",
            "embeddings text-embedding-3-small",
            "query InMemoryVectorStore",
            "chat gpt-4o-mini",
        ]
    )
    embedding = _attrs(cap.span("embeddings text-embedding-3-small"))
    assert embedding[sc.RAGOTEL_COMPONENT] == "langchain"
    assert embedding[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert embedding[sc.GEN_AI_USAGE_INPUT_TOKENS] == len(QUESTION.split())
    _assert_counted_once(cap, 1, sum(_prompt_tokens(server)), REPLY_TOKENS)
    embed_tokens = [
        p for p in cap.metrics(sc.M_GEN_AI_TOKEN_USAGE) if p.attributes[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    ]
    indexed = sum(len(t.split()) for t in DOCS)  # add_documents before cap.clear(); metrics are cumulative
    assert [(p.count, p.sum) for p in embed_tokens] == [(2, indexed + len(QUESTION.split()))]


def test_stage_api_langchain_openai_three_levels(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """Custom stage → LangChain → OpenAI is one span; only the provider's (innermost) usage counts."""
    with ragotel.generation("wrapper") as op:
        op.record_usage(500, 500)
        chat.invoke(QUESTION)
    _assert_counted_once(cap, 1, sum(_prompt_tokens(server)), REPLY_TOKENS, component="custom")


def test_content_off_nothing_leaks(cap: Capture, chat: ChatOpenAI, server: FakeOpenAI) -> None:
    """With capture off, neither the question, the documents nor the reply appear in any exported span."""
    store = InMemoryVectorStore(embedding=_embeddings(server))
    store.add_texts(DOCS)
    chain = (
        {"context": store.as_retriever(), "question": RunnablePassthrough()}
        | ChatPromptTemplate.from_messages([("human", "{context} {question}")])
        | chat
    )
    chain.invoke(QUESTION)
    for _ in chat.stream(QUESTION):
        pass
    dump = repr([(s.name, _attrs(s), [dict(e.attributes or {}) for e in s.events]) for s in cap.spans()])
    for text in ("narwhal-question", "lychee-doc", "papaya-reply"):
        assert text not in dump
