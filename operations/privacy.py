"""Privacy obligations of the loop (GDPR / CCPA): a data subject's erasure request, and the retention
period of raw text in bronze.

`forget_customer` removes every record of one customer from the receive log, bronze, quarantine,
silver, the dedup index and the stages, recomputes gold for the windows those records were in, and
expires the tables' older snapshots so time travel cannot bring the data back. The batch pipeline's
Feature Store and the endpoint's data capture are reached through its `erasers`
(operations.erasure.pipeline_erasers). The audit record keeps the request (id, time, counts), never the
customer id.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import EqualTo, LessThan

from operations import lake as lake_tables
from operations.erasure import DataSubject, SubjectEraser
from operations.lake import Lake
from operations.store import Store
from processing.config import ProcessingConfig
from processing.pii import pseudonym_salt, pseudonymise
from processing.schema import model_input_text


def forget_customer(store: Store, lake: Lake, processing: ProcessingConfig, customer_id: str,
                    gold_window: str = "day", now: Optional[datetime] = None,
                    erasers: Sequence[SubjectEraser] = ()) -> dict[str, Any]:
    """Erase one customer's feedback everywhere the loop keeps it; returns the audit record.
    `erasers` get the DataSubject (pseudonym, feedback ids, the texts a model read) and erase it outside the
    loop's tables: alerting's review queue and alert examples, the pipeline's Feature Store and the endpoint's
    data capture (operations.erasure)."""
    now = now or datetime.now(timezone.utc)
    if store.get_state("plan"):
        raise RuntimeError("the worker has an unfinished micro-batch: run `fbrain loop work --drain` first")
    pseudonym = pseudonymise(customer_id, pseudonym_salt(processing), processing.pseudonym_hex_chars)
    counts: dict[str, int] = {}
    ids = [r[0] for r in store.db.execute(
        "SELECT feedback_id FROM received WHERE customer_id = ? AND feedback_id IS NOT NULL", (customer_id,))]
    silver = lake.scan(lake_tables.SILVER, EqualTo("customer_id", pseudonym), ("feedback_id", "created_at", "text", "title"))
    ids = sorted(set(ids) | set(silver.column("feedback_id").to_pylist()))
    subject = DataSubject(pseudonym, frozenset(ids), frozenset(_model_texts(lake, store, customer_id, silver)))
    for name, value in ((lake_tables.BRONZE, customer_id), (lake_tables.QUARANTINE, customer_id),
                        (lake_tables.SILVER, pseudonym)):
        table = lake.table(name)
        matching = lake.scan(name, EqualTo("customer_id", value), ("customer_id",)).num_rows
        counts[name] = matching
        if matching:
            table.delete(EqualTo("customer_id", value), snapshot_properties={"fbrain.forget": "1"})
    if silver.num_rows:
        from operations.gold import recompute_gold

        gold, windows = recompute_gold(lake, [t.as_py() for t in silver.column("created_at")], gold_window, now)
        lake.write(lake_tables.GOLD, gold, {"fbrain.forget": "1"}, windows)
    for erase in erasers:
        counts.update(erase(subject))
    with store._lock:
        store.db.execute("BEGIN IMMEDIATE")
        try:
            counts["receive_log"] = store.db.execute("DELETE FROM received WHERE customer_id = ?",
                                                     (customer_id,)).rowcount
            marks = ",".join("?" * len(ids))
            counts["stages"] = store.db.execute(f"DELETE FROM stages WHERE feedback_id IN ({marks})", ids).rowcount if ids else 0
            counts["dedup_index"] = store.db.execute("DELETE FROM dedup_rows WHERE customer_id = ?",
                                                     (customer_id,)).rowcount
            if ids:
                store.db.execute(f"DELETE FROM dedup_keys WHERE feedback_id IN ({marks})", ids)
            audit = {"request_id": uuid.uuid4().hex, "requested_at": now.isoformat(), "counts": counts}
            store.db.execute("INSERT INTO forget_audit VALUES (?, ?, ?)",
                             (audit["request_id"], audit["requested_at"], json.dumps(counts)))
            store.db.execute("COMMIT")
        except BaseException:
            store.db.execute("ROLLBACK")
            raise
    for name in lake_tables.SCHEMAS:  # older snapshots, and their files, still hold the deleted rows
        lake.expire_snapshots(name, older_than=datetime.now(timezone.utc) + timedelta(seconds=1))
        lake.remove_orphan_files(name)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # secure_delete zeroed the rows; the WAL held copies
    return audit


def _model_texts(lake: Lake, store: Store, customer_id: str, silver: pa.Table) -> set[str]:
    """What a model may have read for the customer: the masked silver text (what the worker scores) and the raw
    text as submitted (bronze, quarantine, the receive log), each as model_input_text makes it."""
    texts = {model_input_text(text, title) for text, title in
             zip(silver.column("text").to_pylist(), silver.column("title").to_pylist()) if text}
    payloads = [p for name in (lake_tables.BRONZE, lake_tables.QUARANTINE)
                for p in lake.scan(name, EqualTo("customer_id", customer_id), ("payload",)).column("payload").to_pylist()]
    payloads += [r[0] for r in store.db.execute("SELECT payload FROM received WHERE customer_id = ?", (customer_id,))]
    for payload in payloads:
        try:
            raw = json.loads(payload) if payload else None
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(raw, dict) and isinstance(raw.get("text"), str) and raw["text"].strip():
            title = raw.get("title") if isinstance(raw.get("title"), str) else None
            texts.add(model_input_text(raw["text"], title))
    return texts


def purge_raw_text(lake: Lake, retention_days: int, now: Optional[datetime] = None) -> int:
    """Drop the raw payload of bronze and quarantine rows received more than `retention_days` ago
    (masked silver stays); returns the rows purged."""
    now = now or datetime.now(timezone.utc)
    cutoff = (now - timedelta(days=retention_days)).isoformat()
    purged = 0
    for name in (lake_tables.BRONZE, lake_tables.QUARANTINE):
        expired = lake.scan(name, LessThan("received_at", cutoff))
        if not expired.num_rows:
            continue
        still_raw = pc.invert(pc.is_null(expired.column("payload"))).to_numpy(zero_copy_only=False)
        if not still_raw.any():
            continue
        rows = expired.set_column(expired.schema.get_field_index("payload"), "payload",
                                  pa.nulls(expired.num_rows, pa.string()))
        lake.table(name).overwrite(rows, overwrite_filter=LessThan("received_at", cutoff),
                                   snapshot_properties={"fbrain.retention": "1"})
        purged += int(still_raw.sum())
    return purged
