"""Channels against real receivers: webhook and Slack (HTTP), email (aiosmtpd, STARTTLS + login).

Alertmanager with two analyzer replicas is tested end to end in test_e2e_alerting.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.analyzer.alerting_helpers import DB_RULE, Harness
from tests.servers import HangingServer, HttpReceiver, SmtpServer

from ragotel.analyzer.config.specs import ChannelSpec
from ragotel.analyzer.notify.channels import build_channel
from ragotel.analyzer.notify.outbox import Channel

pytestmark = pytest.mark.timeout(60)

FAST_RETRY = {"initial": "50ms", "max": "200ms", "give_up_after": "1h"}


def channel(**spec: Any) -> Channel:
    from pydantic import TypeAdapter

    return build_channel(TypeAdapter(ChannelSpec).validate_python(spec))


def start(tmp_path: Path, channels: list[Channel], db: str = "state.db") -> Harness:
    h = Harness(tmp_path, [DB_RULE], channels=channels, realtime=True, db=db)
    h.outbox.start()
    return h


def fire(h: Harness) -> None:
    h.spans("rag-api", "vector_db", "chroma", [0.02] * 4, errors=4)
    h.spans("rag-api", "pipeline", "custom", [0.5] * 4, errors=4)
    h.tick()


def resolve(h: Harness) -> None:
    h.spans("rag-api", "vector_db", "chroma", [0.02] * 60)  # error rate now under the threshold
    h.tick()


def test_webhook_payload_has_the_design_fields(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """The webhook gets one JSON object per event with every DESIGN.md field, then the resolution."""
    h = start(tmp_path, [channel(name="ops", type="webhook", url=f"{http_receiver.url}/hook", headers={"X-Team": "a"})])
    fire(h)
    (req,) = http_receiver.wait_for(1, path="/hook")
    body = req.json
    assert req.headers["x-team"] == "a"
    assert body["rule"] == "database_connection"
    assert body["status"] == "firing"
    assert body["severity"] == "critical"
    assert body["service"] == "rag-api"
    assert body["stage"] == "vector_db"
    assert body["value"] == pytest.approx(1.0)
    assert body["threshold"] == 0.1
    assert body["started_at"].endswith("Z")
    assert "chroma" in body["message"]
    diagnosis = body["diagnosis"]
    assert set(diagnosis) >= {"primary_cause", "possible_causes", "confidence", "recommended_actions"}
    assert diagnosis["primary_cause"] == "vector_db_errors"
    assert diagnosis["recommended_actions"][0] == "restart_service"
    assert 0 < diagnosis["confidence"] <= 1
    assert diagnosis["possible_causes"][0]["stage"] == "vector_db"
    resolve(h)
    reqs = http_receiver.wait_for(2, path="/hook")
    assert reqs[1].json["status"] == "resolved"
    assert reqs[1].json["resolved_at"] is not None
    assert reqs[1].json["fingerprint"] == body["fingerprint"]
    h.close()


def test_failed_deliveries_are_retried_then_delivered(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """HTTP 500s are retried with backoff until delivered; the attempts and the last error are recorded."""
    http_receiver.fail_next(2, status=503)
    h = start(tmp_path, [channel(name="ops", type="webhook", url=http_receiver.url, retry=FAST_RETRY)])
    fire(h)
    reqs = http_receiver.wait_for(3)
    assert [r.json["status"] for r in reqs] == ["firing"] * 3
    deadline = time.monotonic() + 5
    while h.store.notifications()[0]["status"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.02)
    row = h.store.notifications()[0]
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    h.close()


def test_permanent_rejection_is_given_up_and_visible(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """A 400 answer is not retried: the notification is marked failed with the receiver's error."""
    http_receiver.respond(status=400, body="bad payload")
    h = start(tmp_path, [channel(name="ops", type="webhook", url=http_receiver.url, retry=FAST_RETRY)])
    fire(h)
    http_receiver.wait_for(1)
    deadline = time.monotonic() + 5
    while h.store.notifications()[0]["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    row = h.store.notifications()[0]
    assert row["status"] == "failed"
    assert "HTTP 400" in row["last_error"]
    assert "bad payload" in row["last_error"]
    assert len(http_receiver.requests) == 1
    h.close()


def test_a_hanging_channel_does_not_delay_the_others(
    tmp_path: Path, http_receiver: HttpReceiver, hanging_server: HangingServer
) -> None:
    """A receiver that never answers times out on its own thread; the other channel is served at once."""
    h = start(
        tmp_path,
        [
            channel(name="stuck", type="webhook", url=hanging_server.url, timeout="2s", retry=FAST_RETRY),
            channel(name="ok", type="webhook", url=http_receiver.url),
        ],
    )
    started = time.monotonic()
    fire(h)
    http_receiver.wait_for(1, timeout=1.5)
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 5
    while not any(r["last_error"] for r in h.store.notifications()) and time.monotonic() < deadline:
        time.sleep(0.05)
    stuck = next(r for r in h.store.notifications() if r["channel"] == "stuck")
    assert stuck["status"] == "pending"
    assert "Timeout" in stuck["last_error"]
    h.close()


def test_slack_incoming_webhook_message(
    tmp_path: Path, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack gets an incoming-webhook message (text + blocks) naming rule, service and primary cause."""
    monkeypatch.setenv("TEST_SLACK_URL", f"{http_receiver.url}/services/T000/B000/XXX")
    h = start(tmp_path, [channel(name="slack", type="slack", url_env="TEST_SLACK_URL")])
    fire(h)
    (req,) = http_receiver.wait_for(1, path="/services/T000/B000/XXX")
    body = req.json
    assert set(body) == {"text", "blocks"}
    assert "[FIRING] database_connection (critical) rag-api vector_db/chroma" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert any("vector_db_errors" in str(b) for b in body["blocks"])
    h.close()


def test_email_over_starttls_with_login(
    tmp_path: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Email goes over STARTTLS (verified certificate) with LOGIN credentials read from the environment."""
    monkeypatch.setenv("TEST_SMTP_USER", "ragotel")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "secret")
    email = channel(
        name="mail",
        type="email",
        host="127.0.0.1",
        port=smtp_server.port,
        **{"from": "ragotel@example.org"},
        to=["oncall@example.org"],
        ca_file=str(smtp_server.cert.cert_path),
        username_env="TEST_SMTP_USER",
        password_env="TEST_SMTP_PASSWORD",
        timeout="5s",
    )
    h = start(tmp_path, [email])
    fire(h)
    (msg,) = smtp_server.wait_for(1, timeout=10)
    assert msg.tls
    assert msg.login == "ragotel"
    assert msg.rcpt_tos == ("oncall@example.org",)
    assert msg.subject.strip() == "[ragotel] [FIRING] database_connection (critical) rag-api vector_db/chroma"
    assert "Primary cause: vector_db_errors" in msg.text
    assert '"status": "firing"' in msg.text
    h.close()


def test_email_bad_credentials_are_recorded(
    tmp_path: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused SMTP credentials are a recorded, retried delivery failure, never an exception in the loop."""
    monkeypatch.setenv("TEST_SMTP_USER", "ragotel")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    email = channel(
        name="mail", type="email", host="127.0.0.1", port=smtp_server.port, **{"from": "a@example.org"},
        to=["b@example.org"], ca_file=str(smtp_server.cert.cert_path), username_env="TEST_SMTP_USER",
        password_env="TEST_SMTP_PASSWORD", retry=FAST_RETRY,
    )  # fmt: skip
    h = start(tmp_path, [email])
    fire(h)
    deadline = time.monotonic() + 10
    while not h.store.notifications()[0]["last_error"] and time.monotonic() < deadline:
        time.sleep(0.05)
    row = h.store.notifications()[0]
    assert row["status"] == "pending"
    assert "535" in row["last_error"]
    assert smtp_server.messages == []
    h.close()
