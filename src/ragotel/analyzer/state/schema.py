"""The versioned SQLite schema of the state file, and which columns hold JSON."""

from __future__ import annotations

from typing import Final

__all__ = ["ALERT_COLUMNS", "JSON_COLUMNS", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 4  # 2: baselines; 3: burn_history; 4: history

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL,
    service TEXT,
    active_since REAL NOT NULL,
    started_at REAL,
    resolved_at REAL,
    last_true REAL NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    message TEXT NOT NULL,
    diagnosis TEXT,
    symptoms TEXT,
    notified INTEGER NOT NULL DEFAULT 0,
    last_notified_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE INDEX IF NOT EXISTS alerts_updated ON alerts(updated_at);
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts(fingerprint, id);
CREATE TABLE IF NOT EXISTS cooldowns (
    fingerprint TEXT PRIMARY KEY,
    last_notified_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    alert_id INTEGER,
    kind TEXT NOT NULL,
    coalesce_key INTEGER NOT NULL DEFAULT 0,
    revision INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(channel, status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_alert ON outbox(alert_id);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_coalesce ON outbox(channel, fingerprint)
    WHERE status = 'pending' AND coalesce_key = 1;
CREATE TABLE IF NOT EXISTS recoveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hook TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    alert_id INTEGER,
    fingerprint TEXT,
    rule TEXT,
    service TEXT,
    reason TEXT NOT NULL,
    command TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    verify_at REAL,
    verification TEXT
);
CREATE INDEX IF NOT EXISTS recoveries_key ON recoveries(hook, target, started_at);
CREATE INDEX IF NOT EXISTS recoveries_started ON recoveries(started_at);
CREATE TABLE IF NOT EXISTS baselines (
    service TEXT NOT NULL,
    stage TEXT NOT NULL,
    component TEXT NOT NULL,
    buckets TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (service, stage, component)
);
CREATE TABLE IF NOT EXISTS burn_history (
    rule TEXT NOT NULL,
    series TEXT NOT NULL,
    buckets TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (rule, series)
);
CREATE TABLE IF NOT EXISTS history (
    service TEXT NOT NULL,
    stage TEXT NOT NULL,
    resolution REAL NOT NULL,
    start REAL NOT NULL,
    count INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    empty INTEGER NOT NULL,
    p50 REAL NOT NULL,
    p95 REAL NOT NULL,
    PRIMARY KEY (service, stage, resolution, start)
);
CREATE INDEX IF NOT EXISTS history_start ON history(start);
"""

ALERT_COLUMNS: Final = (
    "fingerprint",
    "rule",
    "state",
    "severity",
    "labels",
    "service",
    "active_since",
    "started_at",
    "resolved_at",
    "last_true",
    "value",
    "threshold",
    "message",
    "diagnosis",
    "symptoms",
    "notified",
    "last_notified_at",
    "updated_at",
)
JSON_COLUMNS: Final = frozenset({"labels", "diagnosis", "symptoms", "payload", "command", "detail"})
