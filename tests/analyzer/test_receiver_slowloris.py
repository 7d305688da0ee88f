"""Slow-loris (issue 10 item 8): half-sent requests are closed within the read timeout; connections are capped."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from tests.analyzer.analyzer_helpers import encoded_spans, stage_row

from ragotel.analyzer.config.model import split_endpoint
from ragotel.analyzer.server import Server

GEN = {"ragotel.stage": "generation", "ragotel.component": "openai"}
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
HALF_HEADERS = b"POST /v1/traces HTTP/1.1\r\nHost: analyzer\r\nContent-Type: application/x-"
HALF_BODY = (
    b"POST /v1/traces HTTP/1.1\r\nHost: analyzer\r\nContent-Type: application/x-protobuf\r\n"
    b"Content-Length: 1000\r\n\r\n" + bytes(10)
)


def _connect(server: Server, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(split_endpoint(server.http_address), timeout=10)
    sock.sendall(first_bytes)
    return sock


def _until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection; TimeoutError if it is still open at ``deadline``."""
    received = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise TimeoutError(f"connection still open; received {received!r}") from None
        if not chunk:
            return received
        received += chunk


def _valid_export(server: Server, service: str) -> int:
    body = encoded_spans(service, [("chat", GEN, 0.1)])
    headers = {"Content-Type": "application/x-protobuf"}
    return httpx.post(f"http://{server.http_address}/v1/traces", content=body, headers=headers, timeout=5).status_code


def test_half_sent_http_requests_are_closed_within_the_read_timeout(make_analyzer: Callable[..., Server]) -> None:
    """50 connections stuck in their headers or body get a 408 and are closed in ~1 s; a valid export gets 200."""
    server = make_analyzer({"receivers": {"http": {"read_timeout": "1s"}}})
    started = time.monotonic()
    stuck = [_connect(server, HALF_HEADERS if i % 2 else HALF_BODY) for i in range(50)]
    try:
        assert _valid_export(server, "loris-ok") == 200
        answers = [_until_closed(sock, started + 3.0) for sock in stuck]
    finally:
        for sock in stuck:
            sock.close()
    assert time.monotonic() - started < 3.0
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:40] for a in answers}
    assert stage_row(server, "loris-ok", "generation")["count"] == 1


def test_connections_past_the_cap_are_closed_at_once(make_analyzer: Callable[..., Server]) -> None:
    """With max_connections 5, a sixth connection is closed on accept; once the five go, exports get 200 again."""
    server = make_analyzer({"receivers": {"http": {"max_connections": 5, "read_timeout": "30s"}}})
    held = [_connect(server, b"") for _ in range(5)]
    time.sleep(0.2)  # let the server accept them
    extra = _connect(server, b"")
    try:
        assert _until_closed(extra, time.monotonic() + 2.0) == b""
    finally:
        extra.close()
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while _valid_export(server, "capped") != 200:  # the server notices the closed sockets asynchronously
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _own_connection(server: Server) -> grpc.Channel:
    """A channel on a connection of its own (channels to one target share their connections by default)."""
    return grpc.insecure_channel(server.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)])


def test_half_sent_grpc_calls_are_closed_after_the_connection_age(make_analyzer: Callable[..., Server]) -> None:
    """10 gRPC calls whose request never arrives end (UNAVAILABLE) after max_connection_age + grace; valid ones pass.

    grpcio reads a unary request on a worker thread, so each stuck call holds one until then: 16 workers here.
    """
    ages = {"max_connection_age": "1s", "max_connection_age_grace": "1s", "workers": 16}
    server = make_analyzer({"receivers": {"grpc": ages}})
    release = threading.Event()

    def never_sent() -> Iterator[bytes]:
        release.wait(30)
        return
        yield b""  # a generator that sends nothing

    channels = [_own_connection(server) for _ in range(10)]
    started = time.monotonic()
    try:
        calls = [channel.stream_unary(TRACES).future(never_sent(), timeout=30) for channel in channels]
        with _own_connection(server) as channel:
            body = encoded_spans("grpc-loris", [("chat", GEN, 0.1)])
            reply = ExportTraceServiceResponse.FromString(channel.unary_unary(TRACES)(body, timeout=5))
        assert not reply.HasField("partial_success")
        codes = [call.exception(timeout=8).code() for call in calls]
    finally:
        release.set()
        for channel in channels:
            channel.close()
    assert time.monotonic() - started < 8
    assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
    assert stage_row(server, "grpc-loris", "generation")["count"] == 1
