"""The loop's worker: micro-batches from the receive log -> bronze, quarantine, silver (scored), gold.

Each micro-batch runs the batch FeatureEngineering step's own per-chunk function
(`processing.feature_engineering.ChunkTransformer`: validate, clean, mask PII, pseudonymise, detect
language, spam rules, dedup keys) and its duplicate resolution (`processing.dedup.resolve_duplicates`),
here against the persistent dedup index of every earlier record, then scores what is kept.

Exactly once. A batch is first *planned* (seq range and time stored in SQLite), so a restart
re-reads the same records and makes the same rows. Each Iceberg write is tagged with the batch id
and skipped when that table already holds it (`Lake.write_once`); gold appends the batch's counts
as silver holds them, so it is right whichever writes happened before a crash. The
SQLite commit (stages, dedup index, watermark, plan cleared) comes last, in one transaction. A
kill -9 between any two writes therefore loses nothing and writes nothing twice
(tests/test_operations_worker.py kills the worker at each point: `FBRAIN_LOOP_CRASH_AFTER`).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
from pyiceberg.expressions import EqualTo

from operations import lake as lake_tables
from operations.config import LoopConfig
from operations.gold import gold_rows
from operations.lake import Lake
from operations.scoring import Scorer
from operations.store import Plan, Store
from processing.config import ProcessingConfig
from processing.dedup import DUPLICATE, KEPT, NEAR_DUPLICATE, resolve_duplicates
from processing.feature_engineering import ChunkTransformer
from processing.readers import RawRecord
from processing.schema import model_input_text

log = logging.getLogger(__name__)

CRASH_ENV = "FBRAIN_LOOP_CRASH_AFTER"
"""Fault injection for the crash test: comma-separated write names (bronze, quarantine, silver, gold,
commit) after which the worker process kills itself with SIGKILL."""
WRITES = ("bronze", "quarantine", "silver", "gold", "commit")
_HISTORY_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_INDEX_COLUMNS = ("feedback_id", "created_at", "exact_key", "text_key", "customer_key", "near_eligible")


def expire_snapshots(lake: Lake, config: LoopConfig) -> dict[str, int]:
    """Expire all but each table's newest `snapshot_keep_last` snapshots (and any older than
    `snapshot_expiry_hours`); snapshots expired per table. Every commit copies the table's snapshot list
    several times (pyiceberg), so a table that kept each micro-batch's snapshot would make every later
    commit slower. The newest snapshot stays, so `Lake.has_batch` still sees the last batch."""
    return {name: lake.expire_snapshots(name, keep_last=config.snapshot_keep_last) for name in lake_tables.SCHEMAS}


def maintain_table(lake: Lake, config: LoopConfig, name: str) -> dict[str, int]:
    """Compact one table (gold summed to a row per key) and expire its snapshots beyond `snapshot_keep_last`;
    for bronze, first purge raw text past its retention (bronze and quarantine)."""
    from operations.privacy import purge_raw_text

    report = {}
    if name == lake_tables.BRONZE:
        report["raw_text_purged"] = purge_raw_text(lake, config.bronze_raw_retention_days)
    report["rows_compacted"] = lake.compact(name)
    report["snapshots_expired"] = lake.expire_snapshots(name, keep_last=config.snapshot_keep_last)
    return report


def maintain_lake(lake: Lake, config: LoopConfig) -> dict[str, Any]:
    """Every table's maintenance (`maintain_table`), as `fbrain loop maintain` runs it."""
    reports = {name: maintain_table(lake, config, name) for name in lake_tables.SCHEMAS}
    return {"raw_text_purged": reports[lake_tables.BRONZE]["raw_text_purged"],
            "rows_compacted": {name: r["rows_compacted"] for name, r in reports.items()},
            "snapshots_expired": {name: r["snapshots_expired"] for name, r in reports.items()}}


def _crash_point(name: str) -> None:
    if name in os.environ.get(CRASH_ENV, "").split(","):
        log.warning("fault injection: SIGKILL after %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class BatchResult:
    batch_id: int
    records: int
    scored: int = 0
    spam: int = 0
    duplicates: int = 0
    quarantined: int = 0
    writes: list = field(default_factory=list)


class Worker:
    def __init__(self, config: LoopConfig, processing: ProcessingConfig, store: Store, lake: Lake, scorer: Scorer):
        self.config, self.processing, self.lake, self.scorer = config, processing, lake, scorer
        # Its own connection: the service's threads then never read the worker's half-done transaction.
        self.store = Store(store.path)
        lake.single_writer = True
        self.stop_event = threading.Event()
        self.batch_lock = threading.Lock()
        """Held while a micro-batch runs; an erasure request takes it to run between batches."""
        self.batches_since_maintenance = 0
        self.batches_since_expiry = 0
        self.next_maintained = 0
        """Index (in lake_tables.SCHEMAS) of the table the next maintenance step compacts."""
        self.last_error: Optional[str] = None
        self.batch_listeners: list[Callable[[list[dict[str, Any]]], Any]] = []
        """Called with a micro-batch's silver rows once it is committed (e.g. Alerting.escalate_immediate); a
        listener that fails is logged and does not fail the batch."""

    # ------------------------------------------------------------------ loop
    def run_once(self) -> Optional[BatchResult]:
        """Process the pending or next micro-batch; None when nothing waits."""
        with self.batch_lock:
            plan = self.store.plan(self.config.micro_batch_max_records)
            if plan is None:
                return None
            result = self.process(plan)
            self.batches_since_maintenance += 1
            self.batches_since_expiry += 1
            # One table per step, the steps spread over compact_every_batches: a stream stalls for one table's
            # compaction (~1 s on the 2-core machine) rather than four at once.
            step = max(1, self.config.compact_every_batches // len(lake_tables.SCHEMAS))
            if self.config.compact_every_batches and self.batches_since_maintenance >= step:
                self.batches_since_maintenance = 0
                self.maintain_next_table()
            elif self.config.expire_every_batches and self.batches_since_expiry >= self.config.expire_every_batches:
                self.batches_since_expiry = 0
                self.expire_snapshots()
            return result

    def maintain_next_table(self) -> dict[str, int]:
        """Between batches: the next table's maintenance (`maintain_table`), in turn."""
        names = list(lake_tables.SCHEMAS)
        name = names[self.next_maintained % len(names)]
        self.next_maintained += 1
        return maintain_table(self.lake, self.config, name)

    def expire_snapshots(self) -> dict[str, int]:
        """Between batches: expire all but each table's newest `snapshot_keep_last` snapshots."""
        return expire_snapshots(self.lake, self.config)

    def drain(self) -> int:
        """Process micro-batches until the receive log is caught up; returns the number of batches."""
        batches = 0
        while self.run_once() is not None:
            batches += 1
        return batches

    def run_forever(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.run_once() is None:
                    self.stop_event.wait(self.config.micro_batch_interval_s)
                self.last_error = None
            except Exception as exc:  # keep serving; the plan stays pending and is retried
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("worker: micro-batch failed; retrying")
                self.lake.refresh_all()  # e.g. a commit refused because another process wrote the table
                self.stop_event.wait(max(self.config.micro_batch_interval_s, 1.0))

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="fbrain-loop-worker", daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ one batch
    def process(self, plan: Plan) -> BatchResult:
        rows = self.store.received_range(plan.first_seq, plan.last_seq)
        now = plan.at
        result = BatchResult(plan.batch_id, len(rows))

        # bronze: everything as received
        bronze = pa.Table.from_pylist([bronze_row(r, plan.batch_id) for r in rows],
                                      schema=lake_tables.SCHEMAS[lake_tables.BRONZE])
        if self.lake.write_once(lake_tables.BRONZE, bronze, plan.batch_id):
            result.writes.append("bronze")
        _crash_point("bronze")

        # the batch FeatureEngineering step's per-chunk function, on the records accepted at the edge
        accepted = [r for r in rows if r["rejection"] is None]
        by_seq = {r["seq"]: r for r in rows}
        items = [RawRecord(json.loads(r["payload"]), r["payload"], "api", r["seq"]) for r in accepted]
        transformer = ChunkTransformer(self.processing, 0, now)
        output = transformer(plan.batch_id, items)

        quarantine = []
        for r in rows:
            if r["rejection"] is not None:
                reason = json.loads(r["rejection"])
                quarantine.append(quarantine_row(r, reason, now, plan.batch_id))
        for q in output.quarantined:
            quarantine.append(quarantine_row(by_seq[q["line_no"]], q, now, plan.batch_id))
        staged = output.staged.to_pandas() if output.staged is not None else pd.DataFrame()
        spam_rows, stages = [], []
        for _feedback_id, position, kind, row in output.candidates:
            seq = items[position].line_no
            if kind == "quarantine":
                quarantine.append(quarantine_row(by_seq[seq], row, now, plan.batch_id))
                stages.append(self._stage(by_seq[seq], "quarantined", quarantined_at=now, reason=row["reason"]))
            elif kind == "spam":
                spam_rows.append(row)
        if quarantine:
            self.lake.write_once(lake_tables.QUARANTINE, pa.Table.from_pylist(
                quarantine, schema=lake_tables.SCHEMAS[lake_tables.QUARANTINE]), plan.batch_id)
            result.writes.append("quarantine")
        _crash_point("quarantine")
        result.quarantined = len(quarantine)

        outcome, duplicate_of = self._dedup(staged)
        staged_rows = output.staged.to_pylist() if output.staged is not None else []
        kept = [row for row, out in zip(staged_rows, outcome) if out == KEPT]
        for row, out, dup in zip(staged_rows, outcome, duplicate_of):
            if out in (DUPLICATE, NEAR_DUPLICATE):
                stages.append(self._stage(by_seq[int(row["line_no"])], "enriched", enriched_at=now,
                                          duplicate_of=dup, reason=out))
        result.duplicates = int(np.isin(outcome, [DUPLICATE, NEAR_DUPLICATE]).sum())

        predictions = self.scorer.predict([model_input_text(row["text"], row["title"]) for row in kept])
        scored_at = datetime.now(timezone.utc)
        silver = []
        for row, prediction in zip(kept, predictions):
            silver.append(silver_row(row, by_seq, now, plan.batch_id, prediction, scored_at))
            stages.append(self._stage(by_seq[int(row["line_no"])], "scored", enriched_at=now, scored_at=scored_at))
        for row in spam_rows:
            silver.append(silver_row(row, by_seq, now, plan.batch_id, None, None))
            stages.append(self._stage(by_seq[int(row["line_no"])], "enriched", enriched_at=now,
                                      reason=f"spam:{row['spam_rule']}"))
        result.scored, result.spam = len(predictions), len(spam_rows)
        silver_written = False
        if silver:
            silver_written = self.lake.write_once(lake_tables.SILVER, pa.Table.from_pylist(
                silver, schema=lake_tables.SCHEMAS[lake_tables.SILVER]), plan.batch_id)
            result.writes.append("silver")
        _crash_point("silver")

        if kept:
            self._update_gold(plan.batch_id, silver, silver_written, now)
            result.writes.append("gold")
        _crash_point("gold")

        bands = self._band_columns(staged)
        dedup_rows, dedup_keys = [], []
        for row in kept:
            entry = {name: row[name] for name in list(_INDEX_COLUMNS) + bands}
            entry["created_at"] = row["created_at"].isoformat()
            dedup_rows.append((row["feedback_id"], by_seq[int(row["line_no"])]["customer_id"], entry))
            dedup_keys.extend((int(row[key]), row["feedback_id"]) for key in ["exact_key", "text_key"] + bands)
        self.store.commit_batch(plan, stages, dedup_rows, dedup_keys)
        _crash_point("commit")
        for listener in self.batch_listeners:
            try:
                listener(silver)
            except Exception:  # the batch is committed; the next full detection run sees its items anyway
                log.exception("worker: batch listener %r failed", listener)
        log.info("worker: batch %d: %d records, %d scored, %d spam, %d duplicates, %d quarantined",
                 plan.batch_id, result.records, result.scored, result.spam, result.duplicates, result.quarantined)
        return result

    # ------------------------------------------------------------------ parts
    @staticmethod
    def _band_columns(frame: pd.DataFrame) -> list[str]:
        return [c for c in frame.columns if c.startswith("band_")]

    def _dedup(self, staged: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Outcome and duplicate_of of each staged row against the batch and every earlier kept record."""
        if staged.empty:
            return np.array([], dtype=object), np.array([], dtype=object)
        bands = self._band_columns(staged)
        keys = np.concatenate([staged[c].to_numpy(dtype=np.int64) for c in ["exact_key", "text_key"] + bands])
        history = pd.DataFrame(self.store.history_rows(keys.tolist()))
        index = staged[list(_INDEX_COLUMNS) + bands]
        if not history.empty:
            # Earlier records are published already: they win every tie, whatever their created_at.
            history = history.assign(created_at=_HISTORY_EPOCH)[list(_INDEX_COLUMNS) + bands]
            index = pd.concat([index.assign(created_at=pd.to_datetime(index["created_at"], utc=True)), history],
                              ignore_index=True)
        resolved = resolve_duplicates(index.reset_index(drop=True), self.processing).iloc[:len(staged)]
        return resolved["outcome"].to_numpy(), resolved["duplicate_of"].to_numpy()

    def _update_gold(self, batch_id: int, silver: list[dict[str, Any]], silver_written: bool, now: datetime) -> None:
        """Append this batch's counts to gold (gold counts are additive, operations.gold).

        Gold is written after silver and tagged with the batch; the counts come from the batch's rows as
        silver holds them: the rows just written, or, when an earlier attempt wrote silver before a crash,
        that attempt's rows read back (the champion may have changed since)."""
        if self.lake.has_batch(lake_tables.GOLD, batch_id):
            return
        if not silver_written:
            silver = self.lake.scan(lake_tables.SILVER, EqualTo("batch_id", batch_id)).to_pylist()
        counts = gold_rows(pd.DataFrame(silver, columns=lake_tables.SCHEMAS[lake_tables.SILVER].names),
                           self.config.gold_window, now)
        self.lake.write_once(lake_tables.GOLD, counts, batch_id)

    @staticmethod
    def _stage(received: dict, stage: str, enriched_at=None, scored_at=None, quarantined_at=None,
               duplicate_of=None, reason=None) -> dict[str, Any]:
        iso = lambda t: t.isoformat() if t is not None else None  # noqa: E731
        return {"feedback_id": received["feedback_id"], "seq": received["seq"], "stage": stage,
                "created_at": received["created_at"], "received_at": received["received_at"],
                "enriched_at": iso(enriched_at), "scored_at": iso(scored_at), "quarantined_at": iso(quarantined_at),
                "duplicate_of": duplicate_of, "reason": reason}


def bronze_row(received: dict, batch_id: int) -> dict[str, Any]:
    """The bronze row of a received record (the receive log's shape): everything as it arrived. The Kinesis
    consumer builds the same rows."""
    received_at = datetime.fromisoformat(received["received_at"])
    return {"seq": received["seq"], "feedback_id": received["feedback_id"] or received["raw_id"],
            "customer_id": received["customer_id"], "payload": received["payload"],
            "channel": received["channel"] or "unknown", "ingest_date": received_at.date().isoformat(),
            "received_at": received_at, "batch_id": batch_id}


def quarantine_row(received: dict, reason: dict, now: datetime, batch_id: int) -> dict[str, Any]:
    """The quarantine row of a received record (the receive log's shape) and the reason it was refused."""
    return {"seq": received["seq"], "feedback_id": received["feedback_id"] or received["raw_id"],
            "customer_id": received["customer_id"], "payload": received["payload"],
            "reason": reason.get("reason"), "message": reason.get("message"), "field": reason.get("field"),
            "received_at": datetime.fromisoformat(received["received_at"]), "quarantined_at": now,
            "batch_id": batch_id}


def silver_row(row: dict[str, Any], by_seq: dict, now: datetime, batch_id: int, prediction: Optional[dict],
                scored_at: Optional[datetime]) -> dict[str, Any]:
    """The silver row of a transformed record: the cleaned fields, the prediction (None: spam, not scored) and a
    time per stage. `by_seq` maps the row's line_no to its received record. The Kinesis consumer builds the same rows."""
    received = by_seq[int(row["line_no"])]
    value = row.get
    silver = {name: value(name) for name in (
        "feedback_id", "text", "title", "channel", "source", "customer_id", "order_id", "sku", "product_category",
        "region", "language", "language_detected", "star_rating", "spam_rule")}
    silver["star_rating"] = int(silver["star_rating"]) if silver["star_rating"] is not None else None
    silver["pii_masked"] = list(value("pii_masked") or [])
    silver["label_sentiment"], silver["label_intent"] = value("sentiment"), value("intent")
    silver["label_aspects"] = list(value("aspects")) if value("aspects") is not None else None
    silver["labeled_tasks"] = list(value("labeled_tasks") or [])
    silver.update({"seq": received["seq"], "created_at": row["created_at"],
                   "received_at": datetime.fromisoformat(received["received_at"]), "enriched_at": now,
                   "scored_at": scored_at, "batch_id": batch_id})
    if prediction is not None:
        silver.update({
            "sentiment": prediction["sentiment"]["label"], "sentiment_score": prediction["sentiment"]["score"],
            "intent": prediction["intent"]["label"], "intent_score": prediction["intent"]["score"],
            "aspects": list(prediction["aspects"]["labels"]),
            "flags": sorted(name for name, hit in (prediction.get("flags") or {}).items() if hit),
            "model_name": prediction["model"]["name"], "model_version": str(prediction["model"]["version"]),
        })
    return silver
