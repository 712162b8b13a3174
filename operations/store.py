"""The loop's SQLite state: the receive log, API keys, the worker's watermark and plan, the dedup index and
each record's stage.

The receive log is the durable buffer between POST /feedback and the worker (Kinesis plays this part
on AWS): an item is `accepted` only once its row is committed, and `seq` orders the stream. Rows keep
the raw payload until the worker has landed it in bronze; then only its hash stays (for duplicate / 409
checks). Everything the worker commits for a micro-batch (watermark, stages, dedup keys) is one SQLite
transaction, after its Iceberg writes (see operations.worker).
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

SCOPES = ("submit", "read", "review", "admin")
KEY_PREFIX = "fbk"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    feedback_id TEXT UNIQUE,            -- NULL for rejected items (many may lack an id)
    raw_id TEXT,                        -- the id a rejected item carried, if any
    payload_sha TEXT NOT NULL,
    payload TEXT,                       -- NULL once landed in bronze
    channel TEXT,
    customer_id TEXT,
    created_at TEXT,
    received_at TEXT NOT NULL,
    rejection TEXT                      -- JSON {reason, field, message} when rejected at the edge
);
CREATE TABLE IF NOT EXISTS stages (
    feedback_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    stage TEXT NOT NULL,
    created_at TEXT, received_at TEXT, enriched_at TEXT, scored_at TEXT, quarantined_at TEXT,
    duplicate_of TEXT, reason TEXT
);
CREATE TABLE IF NOT EXISTS worker_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dedup_rows (feedback_id TEXT PRIMARY KEY, customer_id TEXT, row TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dedup_keys (key INTEGER NOT NULL, feedback_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS received_raw_id ON received (raw_id);
CREATE INDEX IF NOT EXISTS dedup_keys_key ON dedup_keys (key);
CREATE INDEX IF NOT EXISTS dedup_keys_id ON dedup_keys (feedback_id);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, key_sha TEXT NOT NULL, scopes TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS forget_audit (
    request_id TEXT PRIMARY KEY, requested_at TEXT NOT NULL, counts TEXT NOT NULL  -- the request, not the data
);
"""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def payload_hash(record: dict[str, Any]) -> str:
    """Content hash of a record, key order and whitespace ignored (same content -> same hash)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


@dataclass
class Plan:
    """A micro-batch the worker has committed to: the receive log rows first_seq..last_seq, planned at `at`."""

    batch_id: int
    first_seq: int
    last_seq: int
    at: datetime


@dataclass
class Admission:
    status: str
    """accepted | duplicate | conflict"""
    seq: Optional[int] = None


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA secure_delete=ON")  # erased customers' rows are overwritten, not left in free pages
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ receive log
    def admit(self, items: Iterable[tuple[Optional[dict], dict[str, Any], Optional[dict]]]) -> list[Admission]:
        """Record items in one transaction: (validated record dict or None, raw item, rejection or None).

        Returns per item accepted | duplicate (same id, same content) | conflict (same id, other content) |
        rejected (stored for the quarantine)."""
        now = utc_now().isoformat()
        results: list[Admission] = []
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for record, raw, rejection in items:
                    sha = payload_hash(raw if isinstance(raw, dict) else {"raw": raw})
                    payload = json.dumps(raw, ensure_ascii=False, default=str)
                    if rejection is not None:
                        raw_id = raw.get("feedback_id") if isinstance(raw, dict) else None
                        cursor = self.db.execute(
                            "INSERT INTO received (feedback_id, raw_id, payload_sha, payload, channel, customer_id,"
                            " received_at, rejection) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                            (str(raw_id) if raw_id is not None else None, sha, payload,
                             _str_or_none(raw.get("channel")) if isinstance(raw, dict) else None,
                             _str_or_none(raw.get("customer_id")) if isinstance(raw, dict) else None,
                             now, json.dumps(rejection)))
                        results.append(Admission("rejected", cursor.lastrowid))
                        continue
                    existing = self.db.execute("SELECT seq, payload_sha FROM received WHERE feedback_id = ?",
                                               (record["feedback_id"],)).fetchone()
                    if existing:
                        results.append(Admission("duplicate" if existing[1] == sha else "conflict", existing[0]))
                        continue
                    cursor = self.db.execute(
                        "INSERT INTO received (feedback_id, payload_sha, payload, channel, customer_id, created_at,"
                        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (record["feedback_id"], sha, payload, record.get("channel"), record.get("customer_id"),
                         record.get("created_at"), now))
                    results.append(Admission("accepted", cursor.lastrowid))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return results

    def received_range(self, first_seq: int, last_seq: int) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT seq, feedback_id, raw_id, payload, channel, customer_id, created_at, received_at, rejection"
            " FROM received WHERE seq BETWEEN ? AND ? ORDER BY seq", (first_seq, last_seq))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def received_row(self, feedback_id: str) -> Optional[dict[str, Any]]:
        cursor = self.db.execute("SELECT seq, feedback_id, created_at, received_at FROM received WHERE feedback_id = ?",
                                 (feedback_id,))
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row)) if row else None

    def rejected_row(self, raw_id: str) -> Optional[dict[str, Any]]:
        """The latest item rejected at the edge that carried `raw_id` as its feedback_id."""
        cursor = self.db.execute("SELECT seq, raw_id, received_at, rejection FROM received WHERE raw_id = ? "
                                 "ORDER BY seq DESC LIMIT 1", (raw_id,))
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row)) if row else None

    def last_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM received").fetchone()[0]

    # ------------------------------------------------------------------ worker state
    def get_state(self, name: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM worker_state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else default

    def watermark(self) -> int:
        return int(self.get_state("watermark", "0"))

    def plan(self, max_records: int) -> Optional[Plan]:
        """The pending micro-batch (after a crash), else a new one over what arrived since the watermark."""
        pending = self.get_state("plan")
        if pending:
            data = json.loads(pending)
            return Plan(data["batch_id"], data["first_seq"], data["last_seq"], datetime.fromisoformat(data["at"]))
        watermark = self.watermark()
        row = self.db.execute("SELECT MAX(seq) FROM (SELECT seq FROM received WHERE seq > ? ORDER BY seq LIMIT ?)",
                              (watermark, max_records)).fetchone()
        if row[0] is None:
            return None
        plan = Plan(int(self.get_state("batches", "0")) + 1, watermark + 1, int(row[0]), utc_now())
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO worker_state VALUES ('plan', ?)", (json.dumps(
                {"batch_id": plan.batch_id, "first_seq": plan.first_seq, "last_seq": plan.last_seq,
                 "at": plan.at.isoformat()}),))
        return plan

    def commit_batch(self, plan: Plan, stages: list[dict[str, Any]], dedup_rows: list[tuple[str, Optional[str], dict]],
                     dedup_keys: list[tuple[int, str]]) -> None:
        """One transaction: stages, dedup history, raw payloads dropped, watermark moved, plan cleared."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT OR REPLACE INTO stages (feedback_id, seq, stage, created_at, received_at, enriched_at,"
                    " scored_at, quarantined_at, duplicate_of, reason) VALUES (:feedback_id, :seq, :stage,"
                    " :created_at, :received_at, :enriched_at, :scored_at, :quarantined_at, :duplicate_of, :reason)",
                    stages)
                self.db.executemany("INSERT OR REPLACE INTO dedup_rows VALUES (?, ?, ?)",
                                    [(fid, customer, json.dumps(row)) for fid, customer, row in dedup_rows])
                self.db.executemany("INSERT INTO dedup_keys VALUES (?, ?)", dedup_keys)
                self.db.execute("UPDATE received SET payload = NULL WHERE seq BETWEEN ? AND ?",
                                (plan.first_seq, plan.last_seq))
                self.db.execute("INSERT OR REPLACE INTO worker_state VALUES ('watermark', ?)", (str(plan.last_seq),))
                self.db.execute("INSERT OR REPLACE INTO worker_state VALUES ('batches', ?)", (str(plan.batch_id),))
                self.db.execute("DELETE FROM worker_state WHERE name = 'plan'")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def history_rows(self, keys: Iterable[int]) -> list[dict[str, Any]]:
        """Dedup index rows of earlier records sharing any of `keys` (exact, text or LSH band keys)."""
        keys = list({int(k) for k in keys})
        ids: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            ids.update(r[0] for r in self.db.execute(
                f"SELECT DISTINCT feedback_id FROM dedup_keys WHERE key IN ({','.join('?' * len(chunk))})", chunk))
        rows = []
        ids_list = sorted(ids)
        for start in range(0, len(ids_list), 500):
            chunk = ids_list[start:start + 500]
            rows.extend(json.loads(r[0]) for r in self.db.execute(
                f"SELECT row FROM dedup_rows WHERE feedback_id IN ({','.join('?' * len(chunk))})", chunk))
        return rows

    # ------------------------------------------------------------------ stages
    def stage(self, feedback_id: str) -> Optional[dict[str, Any]]:
        cursor = self.db.execute("SELECT * FROM stages WHERE feedback_id = ?", (feedback_id,))
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row)) if row else None

    def funnel(self) -> dict[str, Any]:
        received = self.db.execute("SELECT COUNT(*) FROM received WHERE feedback_id IS NOT NULL").fetchone()[0]
        rejected = self.db.execute("SELECT COUNT(*) FROM received WHERE feedback_id IS NULL").fetchone()[0]
        by_stage = dict(self.db.execute("SELECT stage, COUNT(*) FROM stages GROUP BY stage").fetchall())
        return {"received": received, "rejected_at_edge": rejected, "pending": received - sum(by_stage.values()),
                "stages": by_stage, "watermark": self.watermark(), "last_seq": self.last_seq()}

    def stage_lags(self, limit: int = 10_000) -> dict[str, list[float]]:
        """Seconds between consecutive stages of the latest `limit` processed records."""
        rows = self.db.execute(
            "SELECT created_at, received_at, enriched_at, scored_at FROM stages ORDER BY seq DESC LIMIT ?",
            (limit,)).fetchall()
        lags: dict[str, list[float]] = {"created_to_received": [], "received_to_enriched": [],
                                        "enriched_to_scored": [], "created_to_scored": []}
        for created, received, enriched, scored in rows:
            times = [datetime.fromisoformat(t) if t else None for t in (created, received, enriched, scored)]
            for name, (a, b) in zip(lags, ((0, 1), (1, 2), (2, 3), (0, 3))):
                if times[a] and times[b]:
                    lags[name].append((times[b] - times[a]).total_seconds())
        return lags

    # ------------------------------------------------------------------ API keys
    def create_key(self, scopes: list[str]) -> str:
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise ValueError(f"scopes must be a non-empty subset of {list(SCOPES)}, got {scopes}")
        key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"
        with self._lock:
            self.db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?)",
                            (key_id, hashlib.sha256(key.encode()).hexdigest(), ",".join(scopes), utc_now().isoformat()))
        return key

    def key_scopes(self, key: str) -> Optional[set[str]]:
        """Scopes of a presented key, or None when it is unknown (only the key's SHA-256 is stored)."""
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != KEY_PREFIX:
            return None
        row = self.db.execute("SELECT key_sha, scopes FROM api_keys WHERE key_id = ?", (parts[1],)).fetchone()
        if not row or not secrets.compare_digest(row[0], hashlib.sha256(key.encode()).hexdigest()):
            return None
        return set(row[1].split(","))


def _str_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None
