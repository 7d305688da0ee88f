"""Test support for the alerting side: OTLP requests (SDK-made spans), fed through the analyzer's own decoder into
real Windows on a simulated clock, and an engine wired the way ``alerting.attach`` wires it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.analyzer.analyzer_helpers import encoded_spans, gauge_request

from ragotel.analyzer.config.hooks import RecoverySpec
from ragotel.analyzer.config.specs import RuleSpec, WebhookChannelSpec
from ragotel.analyzer.judge.alert_state import AlertEngine
from ragotel.analyzer.judge.diagnosis import Diagnoser
from ragotel.analyzer.judge.rules import build_rule
from ragotel.analyzer.notify.channels import build_channel
from ragotel.analyzer.notify.outbox import Channel, Outbox
from ragotel.analyzer.receive.extract import extract_metrics, extract_traces
from ragotel.analyzer.receive.payload import PROTOBUF, decode
from ragotel.analyzer.recover.manager import RecoveryManager
from ragotel.analyzer.state import StateStore
from ragotel.analyzer.windows import Windows

T0 = 1_800_000_000.0
DB_RULE = {
    "name": "database_connection",
    "signal": "error_rate",
    "match": {"stage": "vector_db"},
    "threshold": 0.1,
    "severity": "critical",
    "cooldown": "0s",
}
"""Vector DB client errors, firing at once (``for: 0s``), no cooldown."""


def feed(windows: Windows, signal: str, body: bytes, now: float) -> None:
    """What the receivers do with a body: decode, extract, merge into the windows at arrival time ``now``."""
    decoded = decode(signal, body, PROTOBUF)  # type: ignore[arg-type]
    if signal == "traces":
        windows.add_traces(extract_traces(decoded.message), now)
    else:
        windows.add_metrics(extract_metrics(decoded.message), now)


class Harness:
    """Windows + engine + outbox + recovery on one SQLite file, driven by a simulated clock (``now``)."""

    def __init__(
        self,
        tmp_path: Path,
        rules: Sequence[Mapping[str, Any]],
        *,
        channels: Sequence[Channel] | None = None,
        hooks: Sequence[Mapping[str, Any]] = (),
        window: float = 10.0,
        db: str = "state.db",
        start: float = T0,
        realtime: bool = False,
    ) -> None:
        self.realtime = realtime
        self.now = time.time() if realtime else start
        self.window = window
        self.windows = Windows(window, clock=lambda: self.now)
        self.store = StateStore(tmp_path / db)
        if channels is None:  # a channel to queue for; delivery threads are only started by tests that deliver
            channels = [build_channel(WebhookChannelSpec(name="hook", type="webhook", url="http://127.0.0.1:9/"))]
        self.outbox = Outbox(self.store, channels)
        self.recovery = RecoveryManager([RecoverySpec.model_validate(h) for h in hooks], self.store, self.outbox)
        self.specs = [RuleSpec.model_validate(r) for r in rules]
        self.diagnoser = Diagnoser(self.windows, window=window)
        self.engine = AlertEngine(
            [build_rule(s, window=window) for s in self.specs],
            self.windows,
            self.diagnoser,
            self.store,
            self.outbox,
            absent_grace=window,
            listeners=[self.recovery],
        )
        self.engine.restore(self.now)

    def spans(self, service: str, stage: str, component: str, durations: Sequence[float], *, errors: int = 0) -> None:
        """Spans of one stage arriving now; the first ``errors`` of them failed."""
        attributes = {"ragotel.stage": stage, "ragotel.component": component}
        body = encoded_spans(
            service, [(f"{stage} {component}", attributes, d) for d in durations], error_indexes=range(errors)
        )
        feed(self.windows, "traces", body, self.now)

    def gauge(self, service: str, name: str, value: float, **attributes: Any) -> None:
        """One gauge point arriving now, stamped now."""
        feed(self.windows, "metrics", gauge_request(service, [(name, value, attributes, self.now)]), self.now)

    def tick(self, advance: float = 0.0) -> None:
        """Advance the clock (never behind the wall clock when ``realtime``) and evaluate once."""
        self.now = max(self.now + advance, time.time()) if self.realtime else self.now + advance
        self.windows.expire(self.now)
        self.engine.tick(self.now)
        firing = [a.snapshot() for a in self.engine.firing()]
        self.outbox.refresh(self.now, firing)
        self.recovery.tick(self.now, firing)

    def states(self) -> dict[str, str]:
        """rule -> state of the active alerts."""
        return {a.rule: a.state for a in self.engine.active()}

    def queued(self, channel: str | None = None) -> list[tuple[str, str, str]]:
        """(channel, kind, rule) of every outbox row, oldest first."""
        rows = reversed(self.store.notifications(limit=10000))
        out = []
        for row in rows:
            if channel is None or row["channel"] == channel:
                alert = self.store.alert(int(row["alert_id"])) if row["alert_id"] is not None else None
                out.append((row["channel"], row["kind"], alert["rule"] if alert else "?"))
        return out

    def close(self) -> None:
        self.recovery.close()
        self.outbox.stop()
        self.store.close()
