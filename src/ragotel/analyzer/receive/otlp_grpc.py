"""OTLP/gRPC receiver: the trace, metrics and logs Export services on grpcio, with raw-bytes handlers.

Requests arrive as bytes (grpcio has already undone gzip and enforced ``max_message_size`` after
decompression, answering RESOURCE_EXHAUSTED), so decoding goes through the same lean path as OTLP/HTTP.
Overload answers UNAVAILABLE with a RetryInfo, which OTLP exporters honour before retrying.
"""

from __future__ import annotations

import math
from concurrent import futures
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from ragotel.analyzer.config.model import GrpcReceiverConfig
from ragotel.analyzer.receive.auth import TLSFiles, TokenAuth
from ragotel.analyzer.receive.export import GRPC_CODES, ExportHandler
from ragotel.analyzer.receive.ingest import Refused
from ragotel.analyzer.receive.payload import PROTOBUF, PayloadError

__all__ = ["OtlpGrpcServer"]

_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


class OtlpGrpcServer:
    """The gRPC receiver; ``address`` is the bound ``HOST:PORT`` once started."""

    def __init__(
        self, handler: ExportHandler, auth: TokenAuth, config: GrpcReceiverConfig, tls: TLSFiles | None = None
    ) -> None:
        self._handler = handler
        self._auth = auth
        self._config = config
        self._tls = tls
        self._server: Any = None
        self.address = config.endpoint

    def start(self) -> None:
        """Bind and serve; OSError if the endpoint cannot be bound."""
        config = self._config
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="ragotel-analyzer-grpc"),
            options=[
                ("grpc.max_receive_message_length", config.max_message_size),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                # Slow-loris: grpcio reads a unary request on a worker thread, with no read deadline of its own, so
                # a half-sent RPC holds a worker until its connection is closed at max age + grace.
                ("grpc.max_concurrent_streams", config.max_concurrent_streams),
                ("grpc.server_handshake_timeout_ms", _ms(config.handshake_timeout)),
                ("grpc.max_connection_age_ms", _ms(config.max_connection_age)),
                ("grpc.max_connection_age_grace_ms", _ms(config.max_connection_age_grace)),
            ],
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        handlers = [
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(self._method(signal))}
            )
            for signal, service in _SERVICES.items()
        ]
        server.add_generic_rpc_handlers(handlers)
        host, _, _ = self._config.endpoint.rpartition(":")
        if self._tls is not None:
            credentials = grpc.ssl_server_credentials([(self._tls.key_pem, self._tls.cert_pem)])
            port = server.add_secure_port(self._config.endpoint, credentials)
        else:
            port = server.add_insecure_port(self._config.endpoint)
        if not port:
            raise OSError(f"could not bind the OTLP/gRPC receiver to {self._config.endpoint}")
        self.address = f"{host}:{port}"
        server.start()
        self._server = server

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new RPCs and wait up to ``grace`` seconds for in-flight ones to finish."""
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)

    def _method(self, signal: str) -> Any:
        handler = self._handler

        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = dict(context.invocation_metadata())
            if not self._auth.check(metadata.get("authorization")):
                self._fail(context, signal, PayloadError(401, "UNAUTHENTICATED", "missing or invalid bearer token"))
            refused = handler.ingest.check()
            if refused is not None:
                handler.metrics.requests.labels("grpc", signal, "error_503").inc()
                _abort_unavailable(context, refused)
            try:
                result = handler.export(signal, request, PROTOBUF)
            except PayloadError as exc:
                self._fail(context, signal, exc)
            if isinstance(result, Refused):
                handler.metrics.requests.labels("grpc", signal, "error_503").inc()
                _abort_unavailable(context, result)
            handler.metrics.requests.labels("grpc", signal, "accepted").inc()
            return result.response(PROTOBUF)

        return export

    def _fail(self, context: grpc.ServicerContext, signal: str, error: PayloadError) -> NoReturn:
        self._handler.bad_request("grpc", signal, error, context.peer())
        context.abort(getattr(grpc.StatusCode, error.grpc_code), error.reason)
        raise AssertionError("unreachable: abort raises")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _abort_unavailable(context: grpc.ServicerContext, refused: Refused) -> NoReturn:
    delay = duration_pb2.Duration(seconds=max(1, math.ceil(refused.retry_after)))
    retry = error_details_pb2.RetryInfo(retry_delay=delay)
    message = f"analyzer overloaded ({refused.reason}); retry later"
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=GRPC_CODES["UNAVAILABLE"], message=message, details=[detail])
    context.set_trailing_metadata(
        (
            ("grpc-status-details-bin", status.SerializeToString()),
            # What the OTel Python and Go exporters read to pace their retry.
            ("google.rpc.retryinfo-bin", retry.SerializeToString()),
        )
    )
    context.abort(grpc.StatusCode.UNAVAILABLE, message)
    raise AssertionError("unreachable: abort raises")
