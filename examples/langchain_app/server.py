"""The app's small HTTP API on 127.0.0.1: ``POST /ask``, ``GET /healthz``, ``GET|POST /faults``, ``GET /``."""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .app import QuestionError, RagApp
from .faults import FaultError, LLMFaultError, StoreUnavailableError

__all__ = ["ApiServer"]

_log = logging.getLogger("examples.langchain_app.server")
MAX_BODY = 64 * 1024


def _health_report() -> dict[str, Any]:
    """``ragotel.health.status()`` as JSON: overall ``status`` and each dependency's state, reason and timing."""
    from ragotel import health

    report: dict[str, Any] = health.status().to_dict()
    return report


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, indent=None).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, {"error": message, "status": status.value})

    def _json_body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise QuestionError("a JSON body with a Content-Length header is required")
        length = int(length_text)
        if length > MAX_BODY:
            self.rfile.read(min(length, MAX_BODY))  # drain what is reasonable, then refuse
            raise QuestionError(f"request body is {length} bytes; expected at most {MAX_BODY}")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise QuestionError(f"request body is not valid JSON ({exc})") from None

    def do_GET(self) -> None:
        app = self.server.app
        if self.path == "/healthz":
            report = _health_report()
            healthy = report.get("status") == "healthy"
            self._send(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE, report)
        elif self.path == "/faults":
            self._send(HTTPStatus.OK, app.faults.snapshot())
        elif self.path == "/":
            self._send(HTTPStatus.OK, app.describe())
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}; try POST /ask, GET /healthz, GET /faults")

    def do_POST(self) -> None:
        app = self.server.app
        if self.path not in ("/ask", "/faults"):
            self._error(HTTPStatus.NOT_FOUND, f"no route POST {self.path}; try POST /ask or POST /faults")
            return
        try:
            body = self._json_body()
            if self.path == "/faults":
                if not isinstance(body, dict):
                    raise FaultError('expected a JSON object such as {"slow-retrieval": 2.0}')
                self._send(HTTPStatus.OK, app.faults.update(body))
                return
            if not isinstance(body, dict) or "question" not in body:
                raise QuestionError('expected a JSON object with a "question" string')
            answer = app.ask(body["question"])
        except (QuestionError, FaultError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except StoreUnavailableError as exc:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"vector store unavailable: {exc}")
        except LLMFaultError as exc:
            self._error(HTTPStatus.BAD_GATEWAY, f"LLM call failed: {exc}")
        except Exception as exc:  # noqa: BLE001  an HTTP API answers 500 for any failure of the chain it serves
            _log.exception("ask failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        else:
            self._send(HTTPStatus.OK, answer.to_json())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: RagApp) -> None:
        super().__init__(address, _Handler)
        self.app = app


class ApiServer:
    """The HTTP API of one :class:`RagApp`; ``start()`` serves from a thread, ``serve_forever()`` blocks."""

    def __init__(self, app: RagApp, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.app = app
        self._server = _Server((host, port), app)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` actually bound."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ApiServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="ragapp-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until ``stop()`` (or KeyboardInterrupt)."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
