"""SQLite state of the alerting side: alert episodes, cooldowns, the notification outbox, the recovery audit trail.

One connection in WAL mode guarded by a re-entrant lock, so any thread may call; each public method is one
transaction, and ``transaction()`` groups several (an alert transition and its outbox rows commit together, so
a crash can neither lose a notification nor send one for a transition that did not persist). Committed WAL
transactions survive ``kill -9``. The schema is versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragotel.analyzer.state.schema import ALERT_COLUMNS, JSON_COLUMNS, SCHEMA, SCHEMA_VERSION

__all__ = ["StateError", "StateStore"]


class StateError(RuntimeError):
    """The state file cannot be used (unreadable, or written by a newer ragotel)."""


def _encode(column: str, value: Any) -> Any:
    return json.dumps(value, separators=(",", ":"), sort_keys=True) if column in JSON_COLUMNS else value


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out = {}
    for key in row.keys():  # noqa: SIM118  sqlite3.Row is not iterable by key
        value = row[key]
        out[key] = json.loads(value) if key in JSON_COLUMNS and isinstance(value, str) else value
    return out


class StateStore:
    """The analyzer's durable alerting state. Thread-safe; every call blocks for one short SQLite transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a process crash loses nothing committed; only power loss may drop the last commits.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state file {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {version}, newer than this ragotel ({SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            self._conn.executescript(f"BEGIN;{SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group calls into one atomic transaction (re-entrant; the outermost commits or rolls back)."""
        with self._lock:
            if self._depth == 0:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        with self.transaction():
            return self._conn.execute(sql, params)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_decode(row) for row in self._conn.execute(sql, params).fetchall()]

    def _newest(self, select: str, filters: Sequence[tuple[str, Any]], limit: int) -> list[dict[str, Any]]:
        """``select`` with the filters whose value is given (None, "" and [] skip one), newest id first.

        A filter is a constant SQL condition with ``?`` (or ``{}`` for a list, expanded to one ``?`` per item).
        """
        where, params = ["1 = 1"], []
        for condition, value in filters:
            if value is None or value == "" or (isinstance(value, list) and not value):
                continue
            if isinstance(value, list):
                where.append(condition.format(", ".join("?" for _ in value)))
                params.extend(value)
            else:
                where.append(condition)
                params.append(value)
        sql = f"{select} WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        return self._query(sql, [*params, limit])

    # -- alerts ------------------------------------------------------------------------------------------------
    def save_alert(self, alert_id: int | None, fields: Mapping[str, Any]) -> int:
        """Insert an episode (``alert_id`` None) or update one; returns its id."""
        row = {c: _encode(c, fields[c]) for c in ALERT_COLUMNS if c in fields}
        if alert_id is None:
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            cur = self._execute(f"INSERT INTO alerts ({cols}) VALUES ({marks})", list(row.values()))  # noqa: S608  column names are constants
            assert cur.lastrowid is not None
            return int(cur.lastrowid)
        sets = ", ".join(f"{c} = ?" for c in row)
        self._execute(f"UPDATE alerts SET {sets} WHERE id = ?", [*row.values(), alert_id])  # noqa: S608  column names are constants
        return alert_id

    def delete_alert(self, alert_id: int) -> None:
        self._execute("DELETE FROM alerts WHERE id = ?", (alert_id,))

    def active_alerts(self) -> list[dict[str, Any]]:
        """Episodes still pending or firing (what a restart must restore)."""
        return self._query("SELECT * FROM alerts WHERE state IN ('pending', 'firing') ORDER BY id")

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        return rows[0] if rows else None

    def query_alerts(
        self,
        *,
        since: float | None = None,
        states: Sequence[str] = (),
        rule: str | None = None,
        service: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Episodes active now or updated since ``since``, newest first."""
        return self._newest(
            "SELECT * FROM alerts",
            [
                ("(state IN ('pending', 'firing') OR updated_at >= ?)", since),
                ("state IN ({})", list(states)),
                ("rule = ?", rule),
                ("service = ?", service),
            ],
            limit,
        )

    # -- cooldowns -----------------------------------------------------------------------------------------------
    def set_cooldown(self, fingerprint: str, notified_at: float) -> None:
        self._execute(
            "INSERT INTO cooldowns (fingerprint, last_notified_at) VALUES (?, ?) "
            "ON CONFLICT(fingerprint) DO UPDATE SET last_notified_at = excluded.last_notified_at",
            (fingerprint, notified_at),
        )

    def cooldowns(self) -> dict[str, float]:
        with self._lock:
            rows = self._conn.execute("SELECT fingerprint, last_notified_at FROM cooldowns").fetchall()
        return {str(r[0]): float(r[1]) for r in rows}

    # -- outbox --------------------------------------------------------------------------------------------------
    def enqueue(
        self,
        channel: str,
        fingerprint: str,
        alert_id: int | None,
        kind: str,
        payload: Mapping[str, Any],
        *,
        now: float,
        coalesce: bool = False,
    ) -> None:
        """Queue a notification. With ``coalesce`` a pending one for the same channel and alert is replaced."""
        # Due at once (0), whatever the clock of the caller: delivery compares with its own clock.
        params = (channel, fingerprint, alert_id, kind, int(coalesce), _encode("payload", payload), now, 0.0)
        sql = (
            "INSERT INTO outbox (channel, fingerprint, alert_id, kind, coalesce_key, payload, created_at, "
            "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if coalesce:
            sql += (
                " ON CONFLICT(channel, fingerprint) WHERE status = 'pending' AND coalesce_key = 1 DO UPDATE SET"
                " kind = excluded.kind, payload = excluded.payload, alert_id = excluded.alert_id,"
                " revision = revision + 1"
            )
        self._execute(sql, params)

    def due(self, channel: str, now: float, limit: int) -> list[dict[str, Any]]:
        """Pending rows whose time has come, oldest first, never one queued behind an undelivered row of its alert."""
        return self._query(
            "SELECT * FROM outbox o WHERE channel = ? AND status = 'pending' AND next_attempt_at <= ? AND NOT EXISTS "
            "(SELECT 1 FROM outbox p WHERE p.channel = o.channel AND p.fingerprint = o.fingerprint "
            "AND p.status = 'pending' AND p.id < o.id) ORDER BY id LIMIT ?",
            (channel, now, limit),
        )

    def next_due(self, channel: str) -> float | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE channel = ? AND status = 'pending'", (channel,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def mark_delivered(self, rows: Sequence[tuple[int, int]], now: float) -> None:
        """Mark (id, revision) rows delivered; a coalesced row updated meanwhile stays pending with its new state."""
        with self.transaction():
            self._conn.executemany(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1, last_error = NULL "
                "WHERE id = ? AND revision = ?",
                [(now, i, rev) for i, rev in rows],
            )

    def mark_failed(self, ids: Sequence[int], error: str, next_attempt_at: float, *, give_up: bool) -> None:
        status = "failed" if give_up else "pending"
        with self.transaction():
            self._conn.executemany(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE id = ?",
                [(status, error[:1000], next_attempt_at, i) for i in ids],
            )

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        """Rows per (channel, status)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status"
            ).fetchall()
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def notifications(
        self, *, alert_ids: Sequence[int] = (), status: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Outbox rows without payload, newest first, for the API."""
        select = (
            "SELECT id, channel, fingerprint, alert_id, kind, status, attempts, created_at, next_attempt_at, "
            "last_error, delivered_at FROM outbox"
        )
        return self._newest(select, [("alert_id IN ({})", list(alert_ids)), ("status = ?", status)], limit)

    # -- recoveries ----------------------------------------------------------------------------------------------
    def insert_recovery(self, fields: Mapping[str, Any]) -> int:
        row = {k: _encode(k, v) for k, v in fields.items()}
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = self._execute(f"INSERT INTO recoveries ({cols}) VALUES ({marks})", list(row.values()))  # noqa: S608  keys are ours
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def update_recovery(self, recovery_id: int, fields: Mapping[str, Any]) -> None:
        row = {k: _encode(k, v) for k, v in fields.items()}
        sets = ", ".join(f"{c} = ?" for c in row)
        self._execute(f"UPDATE recoveries SET {sets} WHERE id = ?", [*row.values(), recovery_id])  # noqa: S608  keys are ours

    def recoveries(
        self, *, since: float | None = None, hook: str | None = None, service: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Audit records started since ``since``, newest first."""
        filters = [("started_at >= ?", since), ("hook = ?", hook), ("service = ?", service)]
        return self._newest("SELECT * FROM recoveries", filters, limit)

    def runs(self, hook: str, target: str, since: float) -> list[dict[str, Any]]:
        """Executed (not dry-run) attempts of a hook on a target since a time, oldest first."""
        return self._query(
            "SELECT * FROM recoveries WHERE hook = ? AND target = ? AND started_at >= ? AND dry_run = 0 "
            "AND status NOT IN ('skipped') ORDER BY started_at",
            (hook, target, since),
        )

    def last_run(self, hook: str, target: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT * FROM recoveries WHERE hook = ? AND target = ? AND status NOT IN ('skipped') "
            "ORDER BY started_at DESC LIMIT 1",
            (hook, target),
        )
        return rows[0] if rows else None

    def pending_verifications(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM recoveries WHERE verification = 'pending' ORDER BY verify_at")

    # -- housekeeping --------------------------------------------------------------------------------------------
    def save_baselines(self, rows: Sequence[tuple[tuple[str, str, str], Any]], now: float, *, keep: int = 5000) -> None:
        """Upsert per-series baseline buckets (JSON), keeping the ``keep`` most recently updated series."""
        with self.transaction():
            for (service, stage, component), buckets in rows:
                self._conn.execute(
                    "INSERT INTO baselines (service, stage, component, buckets, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (service, stage, component) DO UPDATE SET buckets = excluded.buckets, "
                    "updated_at = excluded.updated_at",
                    (service, stage, component, json.dumps(buckets, separators=(",", ":")), now),
                )
            if rows:
                self._conn.execute(
                    "DELETE FROM baselines WHERE rowid NOT IN "
                    "(SELECT rowid FROM baselines ORDER BY updated_at DESC LIMIT ?)",
                    (keep,),
                )

    def baselines(self) -> list[tuple[tuple[str, str, str], Any]]:
        """Every stored series with its baseline buckets."""
        with self._lock:
            rows = self._conn.execute("SELECT service, stage, component, buckets FROM baselines").fetchall()
        return [((r[0], r[1], r[2]), json.loads(r[3])) for r in rows]

    # -- burn-rate history ----------------------------------------------------------------------------------------
    def save_burn_history(
        self, rule: str, history: Mapping[tuple[tuple[str, str], ...], Sequence[tuple[float, float, float]]], now: float
    ) -> None:
        """Replace the stored burn-rate buckets of ``rule``: per label set, (start, requests, errors)."""
        rows = [
            (rule, json.dumps([list(p) for p in key]), json.dumps([list(b) for b in buckets]), now)
            for key, buckets in history.items()
        ]
        with self.transaction():
            self._conn.execute("DELETE FROM burn_history WHERE rule = ?", (rule,))
            self._conn.executemany("INSERT INTO burn_history VALUES (?, ?, ?, ?)", rows)

    def burn_history(self, rule: str) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float, float]]]:
        """What ``save_burn_history`` stored for ``rule``."""
        with self._lock:
            rows = self._conn.execute("SELECT series, buckets FROM burn_history WHERE rule = ?", (rule,)).fetchall()
        return {
            tuple((str(k), str(v)) for k, v in json.loads(series)): [(b[0], b[1], b[2]) for b in json.loads(buckets)]
            for series, buckets in rows
        }

    # -- chart history ----------------------------------------------------------------------------------------------
    def save_history(
        self, rows: Sequence[tuple[tuple[str, str], float, Sequence[float]]], *, older_than: Mapping[float, float]
    ) -> None:
        """Upsert history points ((service, stage), resolution, (start, count, errors, empty, p50, p95)) and drop
        the points of each resolution that started before its ``older_than`` time."""
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(service, stage, resolution, *point) for (service, stage), resolution, point in rows],
            )
            self._conn.executemany("DELETE FROM history WHERE resolution = ? AND start < ?", list(older_than.items()))

    def history(self) -> list[tuple[tuple[str, str], float, tuple[float, ...]]]:
        """Every stored history point, as ``save_history`` takes them."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT service, stage, resolution, start, count, errors, empty, p50, p95 FROM history ORDER BY start"
            ).fetchall()
        return [((r[0], r[1]), float(r[2]), tuple(r[3:])) for r in rows]

    def prune(self, older_than: float) -> int:
        """Drop resolved episodes, delivered/failed outbox rows, audit records and cooldowns older than a time."""
        with self.transaction():
            n = self._conn.execute(
                "DELETE FROM alerts WHERE state = 'resolved' AND updated_at < ?", (older_than,)
            ).rowcount
            n += self._conn.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND created_at < ?", (older_than,)
            ).rowcount
            n += self._conn.execute(
                "DELETE FROM recoveries WHERE started_at < ? AND verification IS NOT 'pending'", (older_than,)
            ).rowcount
            n += self._conn.execute("DELETE FROM cooldowns WHERE last_notified_at < ?", (older_than,)).rowcount
        return n
