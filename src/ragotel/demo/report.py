"""What the demo prints: steps, per-stage latency tables, alerts with their diagnosis, recovery records."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

__all__ = ["Out", "print_alert", "print_recovery", "stage_table", "wait"]

STAGE_ORDER: Final = ("pipeline", "retrieval", "embedding", "vector_db", "rerank", "generation")


class Out:
    """Progress and results on stdout: dots while waiting on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, number: int, total: int, text: str) -> None:
        self.line(f"[{number}/{total}] {text}")

    def tick(self) -> None:
        if self.tty:
            self.stream.write(".")
            self.stream.flush()

    def end_ticks(self) -> None:
        if self.tty:
            self.stream.write("\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def ms(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.0095 else f"{seconds * 1000:.1f} ms"


def stage_table(stats: Mapping[str, Any], service: str) -> list[str]:
    rows: list[dict[str, Any]] = next(
        (s.get("stages", []) for s in stats.get("services", []) if s.get("service") == service), []
    )
    rank = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    rows = sorted(rows, key=lambda r: (rank.get(str(r.get("stage")), 99), str(r.get("component"))))
    lines = [f"{'stage':<11} {'component':<11} {'count':>6} {'p50':>9} {'p95':>9} {'errors':>7}"]
    for r in rows:
        errors = r.get("error_rate")
        error_text = f"{errors * 100:.0f}%" if isinstance(errors, int | float) else "-"
        lines.append(
            f"{r.get('stage')!s:<11} {r.get('component')!s:<11} {r.get('count', 0):>6} "
            f"{ms(r.get('p50')):>9} {ms(r.get('p95')):>9} {error_text:>7}"
        )
    return lines


def wait(predicate: Callable[[], Any], timeout: float, out: Out, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while True:
        value = predicate()
        if value:
            out.end_ticks()
            return value
        if time.monotonic() >= deadline:
            out.end_ticks()
            return None
        if time.monotonic() - last_tick >= 1.0:
            out.tick()
            last_tick = time.monotonic()
        time.sleep(interval)


def print_alert(out: Out, alert: Mapping[str, Any]) -> None:
    """An alert as it reached the API: rule, severity, labels, message, and its diagnosis."""
    labels = alert.get("labels") or {}
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    out.line(f"      ALERT {alert.get('rule')} [{alert.get('severity')}] {where}")
    out.line(f"        {alert.get('message')}")
    diagnosis = alert.get("diagnosis") or {}
    if diagnosis:
        causes = diagnosis.get("possible_causes") or []
        top = causes[0] if causes else {}
        confidence = top.get("confidence", diagnosis.get("confidence"))
        confidence_text = f" (confidence {confidence:.2f})" if isinstance(confidence, int | float) else ""
        out.line(f"        diagnosis: primary cause {diagnosis.get('primary_cause')}{confidence_text}")
        if diagnosis.get("summary"):
            out.line(f"          {diagnosis['summary']}")
        others = [f"{c.get('cause')} {c.get('confidence', 0):.2f}" for c in causes[1:4] if isinstance(c, dict)]
        if others:
            out.line(f"          other possible causes: {', '.join(others)}")
        actions = diagnosis.get("recommended_actions") or []
        if actions:
            out.line(f"          recommended actions: {', '.join(actions)}")


def print_recovery(out: Out, record: Mapping[str, Any] | None) -> None:
    """A recovery record: hook, action, what it ran (or would have, in a dry run), why."""
    if record is None:
        out.line("      no recovery record yet (see /api/v1/recoveries)")
        return
    command = record.get("command") or {}
    argv = command.get("argv") if isinstance(command, dict) else None
    pattern = command.get("pattern") if isinstance(command, dict) else None
    if argv:
        what = " ".join(argv)
    elif pattern:
        what = f"delete keys {pattern} at {command.get('url')}"
    else:
        what = str(record.get("action"))
    mode = "DRY RUN, nothing executed" if record.get("dry_run") else "executed"
    status = record.get("status")
    out.line(f"      hook {record.get('hook')!r} ({record.get('action')}): {what}  [{mode}; status {status}]")
    out.line(f"        why: {record.get('reason')}")
