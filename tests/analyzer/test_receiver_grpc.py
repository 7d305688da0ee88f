"""OTLP/gRPC receiver: the real SDK exporter, status codes for bad input, auth, overload with RetryInfo, and TLS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult
from tests.analyzer.analyzer_helpers import api, emit_spans, encoded_spans, log_request, stage_row
from tests.servers.tls import self_signed_cert

from ragotel.analyzer.server import Server

GEN = {"ragotel.stage": "generation", "ragotel.component": "openai", "gen_ai.response.model": "gpt-4o"}
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


class RecordingExporter(GrpcSpanExporter):
    """The SDK gRPC exporter, remembering each export's result."""

    results: list[SpanExportResult]

    def export(self, spans: Any) -> SpanExportResult:
        result = super().export(spans)
        self.results = [*getattr(self, "results", []), result]
        return result


def _call(server: Server, method: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    with grpc.insecure_channel(server.grpc_address) as channel:
        return channel.unary_unary(method)(body, timeout=10, metadata=metadata)


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip])
def test_sdk_grpc_exporter_spans_are_counted_exactly(analyzer: Server, compression: grpc.Compression | None) -> None:
    """Spans from the SDK's OTLP/gRPC exporter (plain and gzip) give exact counts, error rate and quantiles."""
    durations = [0.01 * i for i in range(1, 101)]
    exporter = GrpcSpanExporter(endpoint=analyzer.grpc_address, insecure=True, compression=compression)
    emit_spans(exporter, "grpc-svc", [("chat", GEN, d) for d in durations], error_indexes=range(0, 100, 4))
    row = stage_row(analyzer, "grpc-svc", "generation", "openai")
    assert (row["count"], row["error_rate"]) == (100, 0.25)
    for key, rank in (("p50", 49), ("p95", 94), ("p99", 98)):
        assert row[key] == pytest.approx(durations[rank], rel=0.01)
    assert row["series"][0]["model"] == "gpt-4o"


def test_bad_grpc_requests_get_their_status_codes(make_analyzer: Callable[..., Server]) -> None:
    """Undecodable bodies are INVALID_ARGUMENT and oversize ones RESOURCE_EXHAUSTED; logs still go through after."""
    server = make_analyzer({"receivers": {"grpc": {"max_message_size": "64KiB"}}})
    with pytest.raises(grpc.RpcError) as bad:
        _call(server, TRACES, b"\xff\xff\xff\xff")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "undecodable protobuf" in bad.value.details()
    with pytest.raises(grpc.RpcError) as big:
        _call(server, TRACES, bytes(100 * 1024))
    assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    answer = ExportLogsServiceResponse.FromString(_call(server, LOGS, log_request("svc", [17, 9])))
    assert not answer.HasField("partial_success")
    assert server.ingest.wait_idle()
    assert api(server, "/api/v1/stats?service=svc").json()["services"][0]["logs"]["errors"] == 1


def test_grpc_bearer_token(make_analyzer: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the token the RPC is UNAUTHENTICATED; the SDK exporter with the header succeeds."""
    monkeypatch.setenv("RAGOTEL_GRPC_TOKEN", "tok")
    server = make_analyzer({"receivers": {"auth": {"token_env": "RAGOTEL_GRPC_TOKEN"}}})
    with pytest.raises(grpc.RpcError) as denied:
        _call(server, TRACES, encoded_spans("a", [("x", GEN, 0.1)]))
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    exporter = RecordingExporter(endpoint=server.grpc_address, insecure=True, headers={"authorization": "Bearer tok"})
    emit_spans(exporter, "a", [("x", GEN, 0.1)])
    assert exporter.results == [SpanExportResult.SUCCESS]
    assert stage_row(server, "a", "generation")["count"] == 1


@pytest.mark.timeout(60)
def test_grpc_overload_is_unavailable_with_retry_info_and_the_exporter_retries(
    make_analyzer: Callable[..., Server],
) -> None:
    """A full queue answers UNAVAILABLE carrying RetryInfo; the SDK gRPC exporter waits that long and succeeds."""
    server = make_analyzer({"limits": {"ingest_queue_size": 1, "retry_after": "1s"}})
    body = encoded_spans("fill", [("a", GEN, 0.1)])
    with server.windows.lock:
        _call(server, TRACES, body)
        _call(server, TRACES, body)
        deadline = time.monotonic() + 5
        while server.ingest.state()[0] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as refused:
            _call(server, TRACES, body)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(refused.value.trailing_metadata())
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info)
        assert info.retry_delay.seconds == 1
        exporter = RecordingExporter(endpoint=server.grpc_address, insecure=True)
        sender = threading.Thread(target=emit_spans, args=(exporter, "retried", [("chat", GEN, 0.5)]))
        sender.start()
        time.sleep(0.3)
    sender.join(30)
    assert exporter.results == [SpanExportResult.SUCCESS]
    assert stage_row(server, "retried", "generation")["count"] == 1


def test_tls_on_both_receivers_and_the_api(
    make_analyzer: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a certificate configured, both SDK exporters and an HTTPS API client verify it and get through."""
    # requests lets these variables override the exporter's certificate_file (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert = self_signed_cert()
    tls = {"cert_file": str(cert.cert_path), "key_file": str(cert.key_path)}
    server = make_analyzer({"receivers": {"tls": tls}, "api": {"tls": tls}})
    grpc_port = server.grpc_address.rsplit(":", 1)[1]
    http_port = server.http_address.rsplit(":", 1)[1]
    credentials = grpc.ssl_channel_credentials(cert.cert_path.read_bytes())
    grpc_exporter = RecordingExporter(endpoint=f"localhost:{grpc_port}", credentials=credentials, insecure=False)
    emit_spans(grpc_exporter, "tls", [("chat", GEN, 0.1)])
    http_exporter = HttpSpanExporter(
        endpoint=f"https://localhost:{http_port}/v1/traces", certificate_file=str(cert.cert_path)
    )
    emit_spans(http_exporter, "tls", [("chat", GEN, 0.2)])
    assert grpc_exporter.results == [SpanExportResult.SUCCESS]
    with pytest.raises(httpx.TransportError):
        httpx.post(f"http://{server.http_address}/v1/traces", content=b"", timeout=5)
    assert server.ingest.wait_idle()
    api_port = server.api_address.rsplit(":", 1)[1]
    stats = httpx.get(
        f"https://localhost:{api_port}/api/v1/stats?service=tls", verify=cert.client_context(), timeout=10
    )
    assert stats.json()["services"][0]["stages"][0]["count"] == 2
