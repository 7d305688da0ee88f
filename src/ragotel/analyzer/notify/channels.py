"""Notification channels: log, webhook (DESIGN.md payload), Slack incoming webhook, SMTP email, Alertmanager v2.

Every ``send`` runs on the channel's outbox thread, blocks at most ``timeout`` and raises DeliveryError on failure.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any, Final

import httpx

from ragotel.analyzer.config.specs import (
    AlertmanagerChannelSpec,
    ChannelSpec,
    EmailChannelSpec,
    LogChannelSpec,
    SlackChannelSpec,
    WebhookChannelSpec,
)
from ragotel.analyzer.notify.outbox import Channel, DeliveryError, Notification
from ragotel.analyzer.vocabulary import iso_time, url_host_only

__all__ = [
    "AlertmanagerChannel",
    "EmailChannel",
    "LogChannel",
    "SlackChannel",
    "WebhookChannel",
    "alertmanager_alerts",
    "build_channel",
    "email_message",
    "slack_message",
    "webhook_payload",
]

_alert_log = logging.getLogger("ragotel.analyzer.alerts")
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_USER_AGENT: Final = "ragotel-analyzer"


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise DeliveryError(f"environment variable {name} ({what}) is not set", permanent=False)
    return value


def _env_headers(headers_env: Mapping[str, str]) -> dict[str, str]:
    return {header: _env(var, f"header {header}") for header, var in headers_env.items()}


def _status(n: Notification) -> str:
    return "resolved" if n.kind == "resolved" else (n.alert.status or "firing")


# -- formats -------------------------------------------------------------------------------------------------------
def webhook_payload(n: Notification) -> dict[str, Any]:
    """The JSON object of DESIGN.md section 4 (plus ``event``, ``fingerprint``, ``labels`` and times)."""
    alert = n.alert.to_dict()
    diagnosis = alert.get("diagnosis") or {}
    payload: dict[str, Any] = {
        "rule": alert["rule"],
        "status": _status(n),
        "event": n.kind,
        "severity": alert["severity"],
        "service": alert.get("service"),
        "stage": alert.get("stage"),
        "component": alert.get("component"),
        "message": alert.get("message", ""),
        "value": alert.get("value"),
        "threshold": alert.get("threshold"),
        "started_at": iso_time(alert.get("started_at")),
        "resolved_at": iso_time(alert.get("resolved_at")),
        "fingerprint": alert["fingerprint"],
        "alert_id": alert.get("id"),
        "labels": alert.get("labels", {}),
        "diagnosis": {
            "primary_cause": diagnosis.get("primary_cause"),
            "possible_causes": diagnosis.get("possible_causes", []),
            "confidence": diagnosis.get("confidence"),
            "recommended_actions": diagnosis.get("recommended_actions", []),
            "summary": diagnosis.get("summary"),
            "attribution": diagnosis.get("attribution", []),
        },
    }
    if diagnosis.get("dependency"):
        payload["diagnosis"]["dependency"] = diagnosis["dependency"]
    if alert.get("deploy"):
        payload["deploy"] = alert["deploy"]
    if n.extra.get("repeat"):
        payload["repeat"] = True
    if n.extra.get("previous_severity"):
        payload["previous_severity"] = n.extra["previous_severity"]
    if n.kind == "escalation":
        payload["escalation"] = dict(n.extra)
    return payload


def _headline(n: Notification) -> str:
    alert = n.alert.to_dict()
    where = "/".join(str(alert[k]) for k in ("stage", "component") if alert.get(k))
    label = "ESCALATION" if n.kind == "escalation" else _status(n).upper()
    scope = f"{alert.get('service') or '-'}" + (f" {where}" if where else "")
    return f"[{label}] {alert['rule']} ({alert['severity']}) {scope}"


def _cause_lines(alert: Mapping[str, Any]) -> list[str]:
    diagnosis = alert.get("diagnosis") or {}
    lines = []
    for cause in diagnosis.get("possible_causes", [])[:4]:
        lines.append(f"{cause.get('confidence', 0) * 100:.0f}%  {cause.get('cause')}: {cause.get('summary')}")
    return lines


def _escalation_text(extra: Mapping[str, Any]) -> str:
    return (
        f"Recovery {extra.get('hook')} ({extra.get('action')}) {extra.get('result')}: "
        f"{extra.get('reason', 'the alert did not resolve')}"
    )


def slack_message(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (notification fallback) and Block Kit ``blocks``."""
    alert = n.alert.to_dict()
    diagnosis = alert.get("diagnosis") or {}
    emoji = {"firing": ":red_circle:", "resolved": ":large_green_circle:", "escalation": ":rotating_light:"}
    headline = f"{emoji.get(n.kind, ':red_circle:')} {_headline(n)}"
    text = f"{headline}: {alert.get('message', '')}"[:3000]
    fields = [
        f"*Service*\n{alert.get('service') or '-'}",
        f"*Stage*\n{alert.get('stage') or '-'}/{alert.get('component') or '-'}",
        f"*Value*\n{alert.get('value')}",
        f"*Threshold*\n{alert.get('threshold')}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _headline(n)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": str(alert.get("message", ""))[:3000] or "-"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if n.kind == "escalation":
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escalation_text(n.extra)[:3000]}})
    if diagnosis and n.kind != "resolved":
        causes = "\n".join(f"• {line}" for line in _cause_lines(alert)) or "-"
        actions = ", ".join(f"`{a}`" for a in diagnosis.get("recommended_actions", [])) or "-"
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*Primary cause:* `{diagnosis.get('primary_cause')}`\n{causes}\n*Actions:* {actions}"[
                        :3000
                    ],
                },
            }
        )
    since = iso_time(alert.get("started_at"))
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"since {since} · {alert['fingerprint']}"}]}
    )
    return {"text": text, "blocks": blocks}


def email_message(n: Notification, spec: EmailChannelSpec) -> EmailMessage:
    """A plain-text email with the alert, its diagnosis and the machine-readable payload."""
    alert = n.alert.to_dict()
    diagnosis = alert.get("diagnosis") or {}
    msg = EmailMessage()
    msg["Subject"] = f"{spec.subject_prefix} {_headline(n)}".strip()
    msg["From"] = spec.from_
    msg["To"] = ", ".join(spec.to)
    lines = [
        _headline(n),
        "",
        str(alert.get("message", "")),
        "",
        f"service:    {alert.get('service') or '-'}",
        f"stage:      {alert.get('stage') or '-'}/{alert.get('component') or '-'}",
        f"value:      {alert.get('value')} (threshold {alert.get('threshold')})",
        f"started at: {iso_time(alert.get('started_at'))}",
    ]
    if alert.get("resolved_at"):
        lines.append(f"resolved at: {iso_time(alert.get('resolved_at'))}")
    if n.kind == "escalation":
        lines += ["", _escalation_text(n.extra)]
    if diagnosis:
        lines += ["", f"Primary cause: {diagnosis.get('primary_cause')} ({diagnosis.get('confidence')})"]
        lines += [f"  {line}" for line in _cause_lines(alert)]
        lines += ["Recommended actions: " + ", ".join(diagnosis.get("recommended_actions", []))]
    lines += ["", "-- ", json.dumps(webhook_payload(n), indent=2, sort_keys=True)]
    msg.set_content("\n".join(lines))
    return msg


def alertmanager_alerts(
    n: Notification, now: float, resend_interval: float, generator_url: str
) -> list[dict[str, Any]]:
    """Alertmanager v2 ``postableAlert`` objects for one notification.

    Labels are the rule name, severity and the series labels only (no replica or instance), so every analyzer
    replica sends the same label set and Alertmanager deduplicates. Firing alerts end ``4 x resend_interval`` from
    now, like Prometheus, so an analyzer that stops refreshing lets them resolve on their own.
    """
    alert = n.alert.to_dict()
    labels = {"alertname": str(alert["rule"]), "severity": str(alert["severity"])}
    labels.update({k: str(v) for k, v in (alert.get("labels") or {}).items()})
    diagnosis = alert.get("diagnosis") or {}
    annotations = {"summary": str(alert.get("message", ""))}
    if diagnosis:
        annotations["description"] = str(diagnosis.get("summary") or "")
        annotations["primary_cause"] = str(diagnosis.get("primary_cause"))
        annotations["recommended_actions"] = ", ".join(diagnosis.get("recommended_actions", []))
    annotations["value"] = str(alert.get("value"))
    annotations["threshold"] = str(alert.get("threshold"))
    starts = alert.get("started_at") or alert.get("active_since") or now
    if n.kind == "escalation":
        labels.update(alertname="RecoveryIneffective", rule=str(alert["rule"]), severity="critical")
        labels["recovery"] = str(n.extra.get("hook"))
        annotations = {"summary": _escalation_text(n.extra), "alert": str(alert.get("message", ""))}
        starts, ends = now, now + 4 * resend_interval
    elif n.kind == "resolved":
        ends = alert.get("resolved_at") or now
    else:
        ends = now + 4 * resend_interval
    out: list[dict[str, Any]] = [
        {"labels": labels, "annotations": annotations, "startsAt": iso_time(starts), "endsAt": iso_time(ends)}
    ]
    previous = n.extra.get("previous_severity")
    if n.kind == "firing" and previous and previous != alert["severity"]:
        # The severity is a label: the old series ends now, the new one carries on.
        out.append({**out[0], "labels": {**labels, "severity": str(previous)}, "endsAt": iso_time(now)})
    if generator_url:
        for item in out:
            item["generatorURL"] = generator_url
    return out


# -- channels ------------------------------------------------------------------------------------------------------
class _Base:
    stateful = False
    max_batch = 1
    resend_interval: float | None = None

    def __init__(self, spec: ChannelSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.severities: frozenset[str] = frozenset(spec.severities)
        self.send_resolved = spec.send_resolved
        self.retry = spec.retry

    def close(self) -> None:
        pass


class _HttpChannel(_Base):
    def __init__(self, spec: ChannelSpec) -> None:
        super().__init__(spec)
        self._client = httpx.Client(timeout=spec.timeout, headers={"User-Agent": _USER_AGENT})

    def close(self) -> None:
        self._client.close()

    def _post(self, url: str, body: Any, headers: Mapping[str, str] | None = None) -> None:
        try:
            resp = self._client.post(url, json=body, headers=dict(headers or {}))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"POST {url_host_only(url)}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 300:
            # 4xx other than 408/429 will not get better by retrying the same body.
            permanent = 400 <= resp.status_code < 500 and resp.status_code not in (408, 429)
            raise DeliveryError(
                f"POST {url_host_only(url)}: HTTP {resp.status_code}: {resp.text[:200]}", permanent=permanent
            )


class LogChannel(_Base):
    """Writes each notification as one log record (JSON payload in the message) on ``ragotel.analyzer.alerts``."""

    def __init__(self, spec: LogChannelSpec) -> None:
        super().__init__(spec)
        self._level = _LEVELS[spec.level]

    def send(self, batch: Sequence[Notification], now: float) -> None:
        for n in batch:
            level = logging.INFO if n.kind == "resolved" and self._level > logging.INFO else self._level
            _alert_log.log(level, "%s %s", _headline(n), json.dumps(webhook_payload(n), sort_keys=True))


class WebhookChannel(_HttpChannel):
    """POSTs ``webhook_payload`` to the configured URL; any 2xx is delivered."""

    def __init__(self, spec: WebhookChannelSpec) -> None:
        super().__init__(spec)
        self._url = spec.url
        self._headers = dict(spec.headers)
        self._headers_env = dict(spec.headers_env)

    def send(self, batch: Sequence[Notification], now: float) -> None:
        headers = {**self._headers, **_env_headers(self._headers_env)}
        for n in batch:
            self._post(self._url, webhook_payload(n), headers)


class SlackChannel(_HttpChannel):
    """POSTs ``slack_message`` to a Slack incoming webhook."""

    def __init__(self, spec: SlackChannelSpec) -> None:
        super().__init__(spec)
        self._url = spec.url
        self._url_env = spec.url_env

    def send(self, batch: Sequence[Notification], now: float) -> None:
        url = self._url or _env(str(self._url_env), "Slack webhook URL")
        for n in batch:
            self._post(url, slack_message(n))


class EmailChannel(_Base):
    """Sends ``email_message`` over SMTP: STARTTLS (or implicit TLS) with certificate checks, then LOGIN."""

    def __init__(self, spec: EmailChannelSpec) -> None:
        super().__init__(spec)
        self._spec = spec

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._spec.ca_file)

    def send(self, batch: Sequence[Notification], now: float) -> None:
        spec = self._spec
        username = _env(spec.username_env, "SMTP username") if spec.username_env else None
        password = _env(spec.password_env, "SMTP password") if spec.password_env else None
        try:
            smtp: smtplib.SMTP
            if spec.tls == "ssl":
                smtp = smtplib.SMTP_SSL(spec.host, spec.port, timeout=spec.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(spec.host, spec.port, timeout=spec.timeout)
            with smtp:
                smtp.ehlo()
                if spec.tls == "starttls":
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if username is not None:
                    smtp.login(username, password or "")
                for n in batch:
                    smtp.send_message(email_message(n, spec))
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600 and exc.smtp_code != 535  # 535: bad credentials may be fixed
            raise DeliveryError(
                f"SMTP {spec.host}:{spec.port}: {exc.smtp_code} {exc.smtp_error!r}", permanent=permanent
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {spec.host}:{spec.port}: {type(exc).__name__}: {exc}") from exc


class AlertmanagerChannel(_HttpChannel):
    """POSTs alert states to ``/api/v2/alerts``, in batches, refreshing firing alerts every ``resend_interval``."""

    stateful = True
    max_batch = 64

    def __init__(self, spec: AlertmanagerChannelSpec) -> None:
        super().__init__(spec)
        self._url = spec.url.rstrip("/") + "/api/v2/alerts"
        self.resend_interval = spec.resend_interval
        self._generator = spec.generator_url or ""
        self._headers_env = dict(spec.headers_env)

    def send(self, batch: Sequence[Notification], now: float) -> None:
        body = [
            a for n in batch for a in alertmanager_alerts(n, now, float(self.resend_interval or 60), self._generator)
        ]
        self._post(self._url, body, _env_headers(self._headers_env))


def build_channel(spec: ChannelSpec) -> Channel:
    """The channel for a validated spec."""
    if isinstance(spec, LogChannelSpec):
        return LogChannel(spec)
    if isinstance(spec, WebhookChannelSpec):
        return WebhookChannel(spec)
    if isinstance(spec, SlackChannelSpec):
        return SlackChannel(spec)
    if isinstance(spec, EmailChannelSpec):
        return EmailChannel(spec)
    return AlertmanagerChannel(spec)
