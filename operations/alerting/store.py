"""SQLite state of alerting: alerts (one per incident), their actions, silences, the notification log,
post-incident records, alert feedback, the review queue and its audit log. The local backend
(`alerting.state_backend=sqlite`) of the interface in operations.alerting.state.

One file (`alerting.state_db`), separate from the receive log so the two never contend for a write lock.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Optional

from operations.alerting.state import (JSON_COLUMNS, AlertState, DuplicateRecord, Record, new_id, scrub_evidence,
                                       wall_now)

__all__ = ["AlertStore", "new_id", "wall_now"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, dedup_key TEXT UNIQUE NOT NULL, state TEXT NOT NULL, suppressed TEXT,
    severity TEXT NOT NULL, kind TEXT NOT NULL, dimension TEXT NOT NULL, value TEXT NOT NULL, signal TEXT NOT NULL,
    owner TEXT NOT NULL, playbook TEXT, evidence TEXT NOT NULL,
    opened_at TEXT NOT NULL,        -- event time of the evaluation that opened it
    first_seen TEXT NOT NULL,       -- event time of the earliest evidence item
    last_finding_at TEXT NOT NULL,  -- event time of the latest evaluation that found it
    created_wall TEXT NOT NULL, updated_wall TEXT NOT NULL,
    acknowledged_wall TEXT, mitigating_wall TEXT, resolved_wall TEXT, resolved_at TEXT, closed_wall TEXT,
    last_notified_wall TEXT, last_notified_severity TEXT, last_notified_count INTEGER, jira_key TEXT,
    reopen_count INTEGER NOT NULL DEFAULT 0, validation TEXT
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE TABLE IF NOT EXISTS alert_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, note TEXT, before TEXT, after TEXT
);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at TEXT NOT NULL, ends_at TEXT NOT NULL,
    created_by TEXT NOT NULL, comment TEXT
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event_at TEXT, channel TEXT NOT NULL,
    kind TEXT NOT NULL, alert_ids TEXT NOT NULL, owner TEXT, status TEXT NOT NULL, code INTEGER, attempts INTEGER,
    error TEXT, payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS post_incidents (alert_id TEXT PRIMARY KEY, written_wall TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, reviewer TEXT NOT NULL, verdict TEXT NOT NULL,
    at TEXT NOT NULL, note TEXT
);
CREATE TABLE IF NOT EXISTS review_queue (
    feedback_id TEXT PRIMARY KEY, reasons TEXT NOT NULL, priority REAL NOT NULL, severity TEXT, alert_id TEXT,
    snapshot TEXT NOT NULL, enqueued_wall TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    reviews_needed INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS review_queue_status ON review_queue (status, priority);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT, feedback_id TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL,
    labels TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, subject TEXT NOT NULL,
    action TEXT NOT NULL, before TEXT, after TEXT
);
CREATE TABLE IF NOT EXISTS alerting_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

def _row(cursor: sqlite3.Cursor, values: Optional[tuple]) -> Optional[dict[str, Any]]:
    if values is None:
        return None
    out = dict(zip([d[0] for d in cursor.description], values))
    for key in JSON_COLUMNS:
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


class AlertStore(AlertState):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA secure_delete=ON")  # an erased customer's rows are overwritten, not left in free pages
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ SQL helpers
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, tuple(params))
        return [_row(cursor, values) for values in cursor.fetchall()]  # type: ignore[misc]

    def one(self, sql: str, params: Iterable[Any] = ()) -> Optional[dict[str, Any]]:
        cursor = self.db.execute(sql, tuple(params))
        return _row(cursor, cursor.fetchone())

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, tuple(_encode(v) for v in params))

    def insert(self, table: str, values: dict[str, Any]) -> int:
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        return self.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values.values()).lastrowid

    def update(self, table: str, key: str, key_value: Any, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*values.values(), key_value])

    # ------------------------------------------------------------------ named values
    def get_state(self, name: str) -> Optional[str]:
        row = self.one("SELECT value FROM alerting_state WHERE name = ?", (name,))
        return row["value"] if row else None

    def set_state(self, name: str, value: str) -> None:
        self.execute("INSERT INTO alerting_state (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                     (name, value, value))

    # ------------------------------------------------------------------ alerts
    def alert(self, alert_id: str) -> Optional[Record]:
        return self.one("SELECT * FROM alerts WHERE id = ?", (alert_id,))

    def alert_by_key(self, key: str) -> Optional[Record]:
        return self.one("SELECT * FROM alerts WHERE dedup_key = ?", (key,))

    def alerts(self, state: Optional[str] = None, limit: int = 500, kind: Optional[str] = None) -> list[Record]:
        where, params = [], []
        if state:
            states = [s.strip() for s in state.split(",") if s.strip()]
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params += states
        if kind:
            where.append("kind = ?")
            params.append(kind)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return self.query(f"SELECT * FROM alerts {clause}ORDER BY updated_wall DESC LIMIT ?", [*params, limit])

    def insert_alert(self, alert: Record) -> None:
        try:
            self.insert("alerts", alert)
        except sqlite3.IntegrityError as exc:
            raise DuplicateRecord(alert["dedup_key"]) from exc

    def update_alert(self, alert_id: str, changes: Record) -> None:
        self.update("alerts", "id", alert_id, changes)

    def actions(self, alert_id: str) -> list[Record]:
        return self.query("SELECT * FROM alert_actions WHERE alert_id = ? ORDER BY id", (alert_id,))

    def insert_action(self, action: Record) -> None:
        self.insert("alert_actions", action)

    def post_incident(self, alert_id: str) -> Optional[Record]:
        row = self.one("SELECT record FROM post_incidents WHERE alert_id = ?", (alert_id,))
        return row["record"] if row else None

    def put_post_incident(self, alert_id: str, record: Record) -> None:
        self.execute("INSERT OR REPLACE INTO post_incidents (alert_id, written_wall, record) VALUES (?, ?, ?)",
                     (alert_id, wall_now(), record))

    # ------------------------------------------------------------------ silences and notifications
    def silences(self, active_at: Optional[str] = None) -> list[Record]:
        if active_at:
            return self.query("SELECT * FROM silences WHERE starts_at <= ? AND ends_at > ? ORDER BY starts_at DESC",
                              (active_at, active_at))
        return self.query("SELECT * FROM silences ORDER BY starts_at DESC")

    def insert_silence(self, silence: Record) -> None:
        self.insert("silences", silence)

    def notifications(self, limit: int = 200, alert_id: Optional[str] = None) -> list[Record]:
        if alert_id:
            return self.query("SELECT * FROM notifications WHERE alert_ids LIKE ? ORDER BY id DESC LIMIT ?",
                              (f'%"{alert_id}"%', limit))
        return self.query("SELECT * FROM notifications ORDER BY id DESC LIMIT ?", (limit,))

    def insert_notification(self, notification: Record) -> None:
        self.insert("notifications", notification)

    # ------------------------------------------------------------------ verdicts and audit
    def verdicts(self) -> list[Record]:
        return self.query("SELECT * FROM alert_feedback ORDER BY id")

    def insert_verdict(self, verdict: Record) -> None:
        self.insert("alert_feedback", verdict)

    def insert_audit(self, entry: Record) -> None:
        self.insert("audit_log", entry)

    def audit_log(self, limit: int = 200) -> list[Record]:
        return self.query("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))

    # ------------------------------------------------------------------ review queue
    def enqueue_review(self, entry: Record) -> bool:
        columns = ", ".join(entry)
        marks = ", ".join("?" for _ in entry)
        return self.execute(f"INSERT OR IGNORE INTO review_queue ({columns}) VALUES ({marks})",
                            entry.values()).rowcount > 0

    def queued(self, feedback_ids: list[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(feedback_ids))
        for start in range(0, len(ids), 500):  # SQLite allows 999 parameters per statement by default
            chunk = ids[start:start + 500]
            found.update(r["feedback_id"] for r in self.query(
                f"SELECT feedback_id FROM review_queue WHERE feedback_id IN ({', '.join('?' for _ in chunk)})", chunk))
        return found

    def review_entry(self, feedback_id: str) -> Optional[Record]:
        return self.one("SELECT * FROM review_queue WHERE feedback_id = ?", (feedback_id,))

    def review_entries(self, status: Optional[str] = None, limit: Optional[int] = None) -> list[Record]:
        where, params = ("WHERE status = ? ", [status]) if status else ("", [])
        return self.query(f"SELECT * FROM review_queue {where}ORDER BY priority DESC, enqueued_wall LIMIT ?",
                          [*params, -1 if limit is None else limit])

    def set_review_status(self, feedback_id: str, status: str) -> None:
        self.execute("UPDATE review_queue SET status = ? WHERE feedback_id = ?", (status, feedback_id))

    def insert_review(self, review: Record) -> None:
        self.insert("reviews", review)

    def reviews(self, feedback_id: Optional[str] = None) -> list[Record]:
        if feedback_id is not None:
            return self.query("SELECT * FROM reviews WHERE feedback_id = ? ORDER BY id", (feedback_id,))
        return self.query("SELECT * FROM reviews ORDER BY id")

    # ------------------------------------------------------------------ erasure
    def forget_feedback(self, feedback_ids: list[str]) -> dict[str, int]:
        if not feedback_ids:
            return {"review_queue": 0, "alert_examples": 0}
        ids = set(feedback_ids)
        marks = ", ".join("?" for _ in ids)
        with self.lock:
            queued = self.execute(f"DELETE FROM review_queue WHERE feedback_id IN ({marks})", list(ids)).rowcount
            self.execute(f"DELETE FROM reviews WHERE feedback_id IN ({marks})", list(ids))
            examples = 0
            for alert in self.query("SELECT id, evidence FROM alerts"):
                scrubbed = scrub_evidence(alert, ids)
                if scrubbed:
                    self.update("alerts", "id", alert["id"], {"evidence": scrubbed[0]})
                    examples += scrubbed[1]
            self.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"review_queue": queued, "alert_examples": examples}


def _encode(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value
