"""Proves each shared test server works with the real client library that ragotel's tests will point at it."""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx
import openai
import psycopg
import pytest
import redis
from tests.servers import (
    AlertmanagerServer,
    FakeOpenAI,
    HangingServer,
    HttpReceiver,
    MissingBinaryError,
    PostgresServer,
    RedisServer,
    SmtpServer,
    free_port,
)
from tests.servers._process import find_binary

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


# -- process plumbing ------------------------------------------------------------------------------------------------
def test_missing_binary_error_names_the_apt_package() -> None:
    """A missing server binary raises an error that names the Debian package to install."""
    with pytest.raises(MissingBinaryError, match="apt-get install -y some-apt-package"):
        find_binary(["no-such-binary-ragotel", "/usr/lib/nothing/*/bin/nope"], "some-apt-package")


# -- Redis -----------------------------------------------------------------------------------------------------------
def test_redis_ping_and_restart_on_same_port(redis_server: RedisServer) -> None:
    """redis-py can PING the server, loses the connection on stop(), and reconnects after start() on the same port."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        assert client.ping() is True
        client.set("k", "v")
        port = redis_server.port
        redis_server.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
        redis_server.start()
        assert redis_server.port == port
        assert client.ping() is True
        assert client.get("k") is None  # no persistence: a restart starts empty
    finally:
        client.close()


def test_redis_server_cleans_up_process_and_tmpdir() -> None:
    """Closing a RedisServer kills its process and deletes its temp dir."""
    server = RedisServer()
    with server:
        pid = server._process.pid if server._process else None
        assert pid is not None
        tmp = server.tmp_path
        assert tmp.exists()
    assert not tmp.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- PostgreSQL ------------------------------------------------------------------------------------------------------
def test_postgres_select_one_and_survives_kill(postgres_server: PostgresServer) -> None:
    """psycopg runs SELECT 1 over TCP; after a SIGKILL and start() the same port serves the same data again."""
    with psycopg.connect(postgres_server.url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("CREATE TABLE seen (x int)")
        conn.execute("INSERT INTO seen VALUES (42)")
        conn.commit()
    postgres_server.kill()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_server.dsn, connect_timeout=2)
    postgres_server.start()
    with psycopg.connect(postgres_server.dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT x FROM seen").fetchone() == (42,)


# -- Alertmanager ----------------------------------------------------------------------------------------------------
def test_alertmanager_delivers_posted_alert_to_webhook(
    alertmanager_factory: Callable[..., AlertmanagerServer], http_receiver: HttpReceiver
) -> None:
    """An alert POSTed to Alertmanager's v2 API reaches the configured webhook, grouped by alertname+service."""
    am = alertmanager_factory(f"{http_receiver.url}/am")
    response = httpx.post(
        f"{am.url}/api/v2/alerts",
        json=[
            {
                "labels": {"alertname": "HighErrorRate", "service": "rag-api", "severity": "critical"},
                "annotations": {"summary": "errors"},
            }
        ],
        timeout=5,
    )
    assert response.status_code == 200
    [delivery] = http_receiver.wait_for(1, timeout=15, path="/am")
    payload = delivery.json
    assert payload["status"] == "firing"
    assert payload["groupLabels"] == {"alertname": "HighErrorRate", "service": "rag-api"}
    assert payload["alerts"][0]["labels"]["severity"] == "critical"


# -- SMTP ------------------------------------------------------------------------------------------------------------
def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "ragotel@example.test"
    msg["To"] = "ops@example.test"
    msg["Subject"] = "[critical] high_response_time"
    msg.set_content("p95 above threshold")
    return msg


def test_smtp_starttls_login_delivers(smtp_server: SmtpServer) -> None:
    """smtplib with STARTTLS (verifying the self-signed cert) and AUTH LOGIN delivers a message the server keeps."""
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.starttls(context=smtp_server.client_context())
        client.login("ragotel", "secret")
        client.send_message(_message())
    [received] = smtp_server.wait_for(1)
    assert received.subject == "[critical] high_response_time"
    assert received.text.strip() == "p95 above threshold"
    assert received.rcpt_tos == ("ops@example.test",)
    assert received.login == "ragotel"
    assert received.tls is True


def test_smtp_refuses_bad_password_and_plaintext_auth(smtp_server: SmtpServer) -> None:
    """A wrong password gets 535 and AUTH is not offered before STARTTLS, so nothing is delivered."""
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.starttls(context=smtp_server.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("ragotel", "wrong")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.login("ragotel", "secret")
    assert smtp_server.messages == []


def test_smtp_plain_server_and_restart() -> None:
    """An SmtpServer without TLS or AUTH accepts plain mail and again after stop()/start() on the same port."""
    with SmtpServer(starttls=False) as server:
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.send_message(_message())
        server.stop()
        with pytest.raises(OSError):
            smtplib.SMTP(server.host, server.port, timeout=2)
        server.start()
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.send_message(_message())
        assert [m.tls for m in server.wait_for(2)] == [False, False]


# -- HTTP receiver / hanging server ----------------------------------------------------------------------------------
def test_http_receiver_records_and_fails_on_demand(http_receiver: HttpReceiver) -> None:
    """The receiver answers a queued 500 once, then its standing answer, and records method, path, headers and JSON."""
    http_receiver.fail_next(1, status=500, path="/hook")
    http_receiver.respond("/health", status=503, body={"status": "down"})
    with httpx.Client(base_url=http_receiver.url, timeout=5) as client:
        assert client.post("/hook", json={"n": 1}).status_code == 500
        assert client.post("/hook?x=1", json={"n": 2}, headers={"X-Token": "t"}).status_code == 200
        health = client.get("/health")
        assert (health.status_code, health.json()) == (503, {"status": "down"})
    first, second = http_receiver.wait_for(2, path="/hook")
    assert (first.method, first.json, second.json) == ("POST", {"n": 1}, {"n": 2})
    assert second.query == {"x": ["1"]}
    assert second.headers["x-token"] == "t"


def test_http_receiver_stop_refuses_connections_then_restarts(http_receiver: HttpReceiver) -> None:
    """stop() closes the port (even for a kept-alive client) and start() serves again on the same port."""
    with httpx.Client(base_url=http_receiver.url, timeout=2) as client:
        assert client.get("/a").status_code == 200
        http_receiver.stop()
        with pytest.raises(httpx.TransportError):
            client.get("/b")
        http_receiver.start()
        assert client.get("/c").status_code == 200
    assert [r.path for r in http_receiver.requests] == ["/a", "/c"]


def test_hanging_server_makes_clients_time_out(hanging_server: HangingServer) -> None:
    """A client talking to HangingServer connects but gets a read timeout."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(hanging_server.url, timeout=httpx.Timeout(0.3, connect=2))
    assert hanging_server.accepted == 1


# -- FakeOpenAI ------------------------------------------------------------------------------------------------------
def _client(server: FakeOpenAI, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **kwargs)  # type: ignore[arg-type]


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is rag"}]


def test_fake_openai_chat_sync_and_recorded_params(fake_openai: FakeOpenAI) -> None:
    """The real sync client gets a full chat.completion (dated model, usage details) and the server records the call."""
    with _client(fake_openai) as client:
        result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2, max_tokens=50)
    assert result.object == "chat.completion"
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.choices[0].message.content == fake_openai.reply
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 10)
    assert result.usage.total_tokens == 15
    assert result.usage.prompt_tokens_details
    assert result.usage.prompt_tokens_details.cached_tokens == 0
    assert result.usage.completion_tokens_details
    assert result.usage.completion_tokens_details.reasoning_tokens == 0
    assert result.system_fingerprint
    assert result.service_tier == "default"
    [sent] = fake_openai.wait_for(1, path="/v1/chat/completions")
    assert sent.json == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2, "max_tokens": 50}
    assert sent.headers["authorization"] == "Bearer sk-test"


def test_fake_openai_max_tokens_truncates_with_length(fake_openai: FakeOpenAI) -> None:
    """max_tokens below the reply length truncates the reply to that many words with finish_reason `length`."""
    with _client(fake_openai) as client:
        result = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=3, n=2)
    assert [c.finish_reason for c in result.choices] == ["length", "length"]
    assert result.choices[1].message.content == " ".join(fake_openai.reply.split()[:3])  # type: ignore[union-attr]
    assert result.usage
    assert result.usage.completion_tokens == 6


async def test_fake_openai_async_concurrent_and_streaming(fake_openai: FakeOpenAI) -> None:
    """The real async client runs concurrent calls over keep-alive and streams chunks ending with a usage chunk."""
    fake_openai.delay = 0.2
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0)
    try:
        results = await asyncio.gather(
            *[client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES) for _ in range(8)]
        )
        assert {r.choices[0].message.content for r in results} == {fake_openai.reply}
        assert fake_openai.max_in_flight >= 2  # served concurrently, not one by one
        fake_openai.delay = 0.0
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    finally:
        await client.close()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake_openai.reply
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 15


def test_fake_openai_stream_shape_timing_and_close(fake_openai: FakeOpenAI) -> None:
    """A sync stream has role, N content and finish chunks (no usage unless asked); close() aborts the HTTP stream."""
    fake_openai.chunks = 3
    fake_openai.first_chunk_delay = 0.15
    with _client(fake_openai) as client:
        started = time.monotonic()
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        first = next(iter(stream))
        assert time.monotonic() - started >= 0.15
        rest = list(stream)
        assert first.object == "chat.completion.chunk"
        assert len(rest) == 3 + 1
        assert all(c.usage is None for c in rest)
        # The server counts the stream after its last write, which can come just after the client read [DONE].
        deadline = time.monotonic() + 5
        while fake_openai.streams_completed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake_openai.streams_completed == 1
        fake_openai.first_chunk_delay = 0.0
        fake_openai.chunk_delay = 0.05
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        next(iter(stream))
        stream.close()
    deadline = time.monotonic() + 5
    while fake_openai.streams_aborted < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_openai.streams_aborted == 1


def test_fake_openai_embeddings_base64_default_and_float(fake_openai: FakeOpenAI) -> None:
    """The client's default base64 embeddings decode to the same deterministic vectors as encoding_format=float."""
    with _client(fake_openai) as client:
        default = client.embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
        floats = client.embeddings.create(model="text-embedding-3-small", input="alpha beta", encoding_format="float")
        small = client.embeddings.create(model="text-embedding-3-small", input="x", dimensions=8)
    sent = fake_openai.json_bodies("/v1/embeddings")
    assert sent[0]["encoding_format"] == "base64"
    assert sent[1]["encoding_format"] == "float"
    assert [d.index for d in default.data] == [0, 1]
    assert default.data[0].embedding == floats.data[0].embedding == fake_openai.embedding_for("alpha beta")
    assert len(default.data[1].embedding) == fake_openai.embedding_dim
    assert abs(sum(v * v for v in default.data[1].embedding) - 1.0) < 1e-5
    assert len(small.data[0].embedding) == 8
    assert default.usage.prompt_tokens == 3
    assert default.model == "text-embedding-3-small"
    # The raw base64 payload is little-endian float32, as the real API sends it.
    raw = httpx.post(
        f"{fake_openai.base_url}/embeddings", json={"model": "m", "input": "q", "encoding_format": "base64"}
    )
    blob = base64.b64decode(raw.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(blob) // 4}f", blob)) == fake_openai.embedding_for("q")


def test_fake_openai_responses_plain_and_streamed(fake_openai: FakeOpenAI) -> None:
    """The Responses API returns output_text and usage, and streams typed events ending in response.completed."""
    with _client(fake_openai) as client:
        result = client.responses.create(model="gpt-4o-mini", input="what is rag", instructions="be brief")
        assert result.output_text == fake_openai.reply
        assert result.usage is not None
        assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 10)
        assert result.model == "gpt-4o-mini-2024-07-18"
        assert result.status == "completed"
        events = list(client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "hi"}],
                                              stream=True))  # fmt: skip
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == fake_openai.reply
    assert len(deltas) == fake_openai.chunks
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None
    assert final.response.usage.input_tokens == 1


def test_fake_openai_legacy_completions_and_models(fake_openai: FakeOpenAI) -> None:
    """Legacy text completions work plain and streamed (with a usage chunk), and the models endpoints answer."""
    with _client(fake_openai) as client:
        plain = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi")
        assert plain.object == "text_completion"
        assert plain.choices[0].text == fake_openai.reply
        assert plain.usage
        assert plain.usage.prompt_tokens == 2
        chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi", stream=True,
                                                stream_options={"include_usage": True}))  # fmt: skip
        assert "".join(c.choices[0].text for c in chunks if c.choices) == fake_openai.reply
        assert chunks[-1].usage
        assert chunks[-1].usage.completion_tokens == 10
        assert "gpt-4o-mini" in [m.id for m in client.models.list()]
        assert client.models.retrieve("gpt-4o").id == "gpt-4o"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("nope")


@pytest.mark.parametrize(
    ("status", "exc_type", "code"),
    [
        (400, openai.BadRequestError, None),
        (401, openai.AuthenticationError, "invalid_api_key"),
        (404, openai.NotFoundError, "model_not_found"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, None),
    ],
)
def test_fake_openai_error_statuses_raise_the_right_exception(
    fake_openai: FakeOpenAI, status: int, exc_type: type[openai.APIStatusError], code: str | None
) -> None:
    """Both fail_next() and the magic `error-<status>` model surface as the openai exception class for that status."""
    fake_openai.fail_next(status)
    with _client(fake_openai) as client:
        for model in ("gpt-4o-mini", f"error-{status}"):
            with pytest.raises(exc_type) as info:
                client.chat.completions.create(model=model, messages=MESSAGES)
            assert info.value.status_code == status
            assert info.value.code == code
            assert info.value.request_id
            assert info.value.request_id.startswith("req_")
            assert isinstance(info.value.body, dict)
            assert set(info.value.body) == {"message", "type", "param", "code"}
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices


def test_fake_openai_retries_auth_and_broken_streams(fake_openai: FakeOpenAI) -> None:
    """Client retries consume fail_next() errors; a wrong key gets 401; broken streams raise the client's errors."""
    fake_openai.fail_next(503, times=2, retry_after_ms=1, path="/v1/chat/completions")
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=2) as client:
        assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).model == "gpt-4o-2024-08-06"
    assert len(fake_openai.requests) == 3
    with _client(fake_openai) as client:
        with pytest.raises(openai.APIError, match="server had an error"):
            list(client.chat.completions.create(model="error-midstream", messages=MESSAGES, stream=True))
        with pytest.raises(openai.APIConnectionError):
            list(client.chat.completions.create(model="error-disconnect", messages=MESSAGES, stream=True))
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="error-disconnect", messages=MESSAGES)
        with pytest.raises(openai.BadRequestError, match="messages"):
            client.chat.completions.create(model="gpt-4o", messages=[])
    fake_openai.api_key = "sk-right"
    with _client(fake_openai) as client:
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_fake_openai_runs_standalone_as_module() -> None:
    """`python -m tests.servers.openai --port N` serves the API until terminated."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.openai", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert f"http://127.0.0.1:{port}/v1" in line
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as client:
            assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_alertmanager_cluster_deduplicates_notifications(http_receiver: HttpReceiver) -> None:
    """Two clustered Alertmanagers given the same alert deliver one notification (what analyzer replicas rely on)."""
    with AlertmanagerServer(f"{http_receiver.url}/am", cluster=True) as first:
        assert first.cluster_address is not None
        with AlertmanagerServer(f"{http_receiver.url}/am", peers=[first.cluster_address]) as second:
            first.wait_for_cluster(2)
            alert = [{"labels": {"alertname": "HighErrorRate", "service": "rag-api"}}]
            assert first.post_alerts(alert) == 200
            assert second.post_alerts(alert) == 200
            http_receiver.wait_for(1, timeout=15, path="/am")
            time.sleep(2.0)  # the second peer would notify about one peer_timeout (1s) later if gossip failed
    assert len(http_receiver.requests) == 1


def test_servers_die_with_the_process_that_started_them() -> None:
    """A server started by a process that is SIGKILLed does not outlive it (no orphans holding ports or CPU)."""
    code = (
        "import time\nfrom tests.servers import RedisServer\n"
        "s = RedisServer(); s.start(); print(s._process.pid, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with proc.stdout:
        redis_pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{redis_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{redis_pid}").exists()


def test_fake_openai_keep_alive_survives_a_stream(fake_openai: FakeOpenAI) -> None:
    """After a fully read SSE stream the next request reuses the same HTTP connection (chunked framing is correct)."""
    with _client(fake_openai) as client:
        # The Responses stream has no [DONE] sentinel, so the client reads it to the chunked terminator.
        list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with httpx.Client(base_url=fake_openai.base_url, timeout=5) as raw:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        with raw.stream("POST", "/chat/completions", json=body) as response:
            events = [line for line in response.iter_lines() if line]
        assert events[-1] == "data: [DONE]"
        assert raw.get("/models").status_code == 200
    peers = [r.peer for r in fake_openai.requests]
    assert len(set(peers[:3])) == 1
    assert peers[3] == peers[4] != peers[0]


def test_fake_openai_tool_calls_plain_and_streamed(fake_openai: FakeOpenAI) -> None:
    """With function tools the reply is one tool call with schema-valid arguments, then text after the tool result."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "k": {"type": "integer"}},
                    "required": ["q", "k"],
                },
            },
        }
    ]
    with _client(fake_openai) as client:
        first = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=tools)  # type: ignore[arg-type]
        assert first.choices[0].finish_reason == "tool_calls"
        [call] = first.choices[0].message.tool_calls or []
        assert call.type == "function"
        assert (call.function.name, call.function.arguments) == ("search", '{"q": "example", "k": 1}')
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=tools, stream=True))  # type: ignore[arg-type]
        arguments = "".join(
            (c.choices[0].delta.tool_calls or [])[0].function.arguments or ""  # type: ignore[union-attr]
            for c in chunks
            if c.choices and c.choices[0].delta.tool_calls
        )
        assert arguments == call.function.arguments
        follow_up = [*MESSAGES, first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "found"}]  # fmt: skip
        final = client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=tools)  # type: ignore[arg-type]
        assert final.choices[0].message.content == fake_openai.reply


def test_fake_openai_responses_stream_error_event(fake_openai: FakeOpenAI) -> None:
    """A Responses stream for `error-midstream` ends with a typed `error` event, as the real API reports failures."""
    with _client(fake_openai) as client:
        events = list(client.responses.create(model="error-midstream", input="hi", stream=True))
    assert events[-1].type == "error"
    assert "server had an error" in events[-1].message  # type: ignore[union-attr]


def test_smtp_implicit_tls_delivers() -> None:
    """An SMTPS server (implicit TLS) accepts smtplib.SMTP_SSL with login and records the message as sent over TLS."""
    with SmtpServer(implicit_tls=True, username="ragotel", password="secret") as server:
        with smtplib.SMTP_SSL(server.host, server.port, context=server.client_context(), timeout=5) as client:
            client.login("ragotel", "secret")
            client.send_message(_message())
        [received] = server.wait_for(1)
    assert (received.tls, received.login) == (True, "ragotel")


def test_fail_next_rejects_swapped_arguments(http_receiver: HttpReceiver, fake_openai: FakeOpenAI) -> None:
    """fail_next() refuses a status passed where a count belongs (the two helpers order them differently)."""
    with pytest.raises(ValueError, match="times"):
        http_receiver.fail_next(500)
    with pytest.raises(ValueError, match="status"):
        fake_openai.fail_next(2, 500)
    bad = httpx.post(f"{fake_openai.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES, "n": "x"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
