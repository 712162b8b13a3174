"""Training reads the lake: a silver snapshot as FeedbackRecord JSON lines for the pipeline's InputDataUri.

`fbrain loop export` writes `silver-snapshot-<id>/feedback.jsonl` (by default into the local object
store, so `fbrain pipeline run --local --param InputDataUri=s3://<bucket>/lake-exports/silver-snapshot-<id>/`
trains on it and the execution's parameters record the snapshot it read). Labels are a reviewer's
correction where there is one, else the label submitted with the record; model predictions are never
exported as labels. Spam is left out; texts and ids are already masked and pseudonymised.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from operations import lake as lake_tables
from operations.lake import Lake

EXPORT_FILE = "feedback.jsonl"
EXPORT_PREFIX = "lake-exports"
"""Key prefix of exported snapshots in the pipeline's bucket (local object store or S3)."""
_FIELDS = ("feedback_id", "text", "title", "channel", "source", "customer_id", "order_id", "sku", "product_category",
           "region", "language", "star_rating")


def training_record(row: dict[str, Any]) -> dict[str, Any]:
    """One silver row as a FeedbackRecord dict with its labels (corrections first)."""
    record = {name: row[name] for name in _FIELDS if row.get(name) is not None}
    record["created_at"] = row["created_at"].isoformat()
    tasks = set(row.get("labeled_tasks") or [])
    for task in ("sentiment", "intent", "aspects"):
        corrected = row.get(f"corrected_{task}")
        value = corrected if corrected is not None else row.get(f"label_{task}")
        if corrected is not None:
            tasks.add(task)
        if task in tasks and value is not None:
            record[task] = list(value) if task == "aspects" else value
    record["labeled_tasks"] = sorted(t for t in tasks if t in record)
    return record


def export_silver(lake: Lake, out_root: Path, snapshot_id: Optional[int] = None) -> tuple[Path, int, int]:
    """Write the silver snapshot (default: current) to `out_root/silver-snapshot-<id>/feedback.jsonl`;
    returns (folder, snapshot id, records written)."""
    snapshot_id = snapshot_id or lake.snapshot_id(lake_tables.SILVER)
    if snapshot_id is None:
        raise ValueError("silver is empty: nothing has been scored yet")
    rows = lake.scan(lake_tables.SILVER, snapshot_id=snapshot_id).to_pylist()
    folder = Path(out_root) / f"silver-snapshot-{snapshot_id}"
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(folder / EXPORT_FILE, "w", encoding="utf-8") as handle:
        # receive-log order locally; rows the Kinesis consumer wrote (AWS) have no seq: by creation time
        for row in sorted(rows, key=lambda r: (r["seq"] is None, r["seq"] or 0, r["created_at"])):
            if row["spam_rule"]:
                continue
            handle.write(json.dumps(training_record(row), ensure_ascii=False) + "\n")
            written += 1
    return folder, snapshot_id, written


def export_to_bucket(lake: Lake, bucket: str, snapshot_id: Optional[int] = None, local_store: Optional[Path] = None,
                     s3: Any = None) -> dict[str, Any]:
    """Export a silver snapshot under `s3://<bucket>/lake-exports/silver-snapshot-<id>/` and return its
    InputDataUri with the snapshot id and record count: into the local object store (`local_store`, what a
    local pipeline run reads as s3://) or, with `s3`, uploaded to S3 for a SageMaker execution."""
    import tempfile

    if local_store is not None:
        folder, snapshot, written = export_silver(lake, Path(local_store) / bucket / EXPORT_PREFIX, snapshot_id)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            folder, snapshot, written = export_silver(lake, Path(scratch), snapshot_id)
            s3.upload_file(str(folder / EXPORT_FILE), bucket, f"{EXPORT_PREFIX}/{folder.name}/{EXPORT_FILE}")
    return {"snapshot_id": snapshot, "records": written, "folder": str(folder),
            "input_data_uri": f"s3://{bucket}/{EXPORT_PREFIX}/{folder.name}/"}
