"""Human-labelled corrections: recorded in the object store, counted, and announced when enough exist.

A reviewer's correction is one JSON line under `corrections/` (local object store
`<workspace>/s3/<bucket>/corrections/yyyy/mm/dd/<hour>.jsonl`, or one S3 object per
correction under `s3://<bucket>/corrections/yyyy/mm/dd/`). `corrections/_state/last_training.json`
starts the current training period; when the corrections it does not cover reach
`corrections_threshold`, `record_correction` sends one `feedback-brain.corrections`
`CorrectionsThresholdReached` event to EventBridge (when given an events client), and marks
it, so each training period announces once.

Who writes the marker: the pipeline's `MergeFeatureShards` step, each time it reads the
corrections into the training labels (`processing.feature_engineering --corrections-state-dir`,
uploaded by the step to `<CorrectionsUri>_state/`). It records what the job consumed (a
`Watermark`: the newest `created_at` it read plus the ids read at that instant), so exactly the
corrections it read stop counting; one recorded after SageMaker copied the corrections in, even
if dated before the job's clock, counts towards the next retrain. Markers without a watermark
(older ones, or `mark_training_started`, which starts a period by hand) count by their `at`.

The record contract (`Correction`, its validation, `parse_timestamp`, `CorrectionError`, the
folder reader) and the marker's name and layout (`STATE_DIR`, `LAST_TRAINING_MARKER`,
`training_marker`) live in `processing.corrections`, because the processing job applies
corrections to the training labels and writes the marker, and processing may not import
monitoring; they are re-exported here so callers keep importing them from `monitoring.corrections`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol

from monitoring.config import MonitoringConfig
from processing.corrections import (LAST_TRAINING_MARKER, STATE_DIR, Correction, CorrectionError, Watermark,
                                    correction_from_json, marker_time, parse_timestamp, read_corrections,
                                    training_marker)

__all__ = ["STATE_DIR", "LAST_TRAINING_MARKER", "THRESHOLD_EVENT_MARKER", "Correction", "CorrectionError",
           "parse_timestamp", "Watermark", "CorrectionStore", "LocalCorrectionStore", "S3CorrectionStore",
           "last_training_marker", "last_training_time", "marker_time", "mark_training_started", "count_corrections",
           "count_new_corrections", "count_since_last_training", "CorrectionReceipt", "corrections_event_entry",
           "record_correction"]

logger = logging.getLogger(__name__)

THRESHOLD_EVENT_MARKER = "threshold_event.json"


class CorrectionStore(Protocol):
    def append(self, correction: Correction) -> str: ...

    def iter_corrections(self) -> Iterator[Correction]: ...

    def read_state(self, name: str) -> Optional[dict[str, Any]]: ...

    def write_state(self, name: str, value: dict[str, Any]) -> None: ...


def _partition(correction: Correction) -> str:
    return f"{parse_timestamp(correction.created_at):%Y/%m/%d}"


class LocalCorrectionStore:
    """Corrections as JSON lines in the local object store (`<workspace>/s3/<bucket>/corrections`)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def append(self, correction: Correction) -> str:
        moment = parse_timestamp(correction.created_at)
        path = self.root / _partition(correction) / f"{moment:%H}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(correction)) + "\n")
        return str(path)

    def iter_corrections(self) -> Iterator[Correction]:
        """Stored corrections, as recorded (not re-validated: counting towards a retrain does not depend on
        today's taxonomy). Unreadable ones are logged here; the processing job reports them with reasons."""
        read = read_corrections(self.root, validate=False)
        for item in read.invalid:
            logger.warning("skipping unreadable correction %s/%s (%s: %s)", self.root, item.source, item.reason,
                           item.message)
        yield from read.corrections

    def read_state(self, name: str) -> Optional[dict[str, Any]]:
        path = self.root / STATE_DIR / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_state(self, name: str, value: dict[str, Any]) -> None:
        path = self.root / STATE_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")


class S3CorrectionStore:
    """Corrections as one S3 object each under s3://bucket/prefix/yyyy/mm/dd/ (no read-modify-write races)."""

    def __init__(self, s3_client: Any, bucket: str, prefix: str):
        self.s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def append(self, correction: Correction) -> str:
        key = f"{self.prefix}/{_partition(correction)}/{correction.correction_id}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(asdict(correction)).encode("utf-8"),
                           ContentType="application/json")
        return f"s3://{self.bucket}/{key}"

    def iter_corrections(self) -> Iterator[Correction]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/"):
            for item in page.get("Contents", []):
                if f"/{STATE_DIR}/" in item["Key"]:
                    continue
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                try:
                    yield correction_from_json(body)
                except CorrectionError as error:
                    logger.warning("skipping unreadable correction s3://%s/%s (%s)", self.bucket, item["Key"], error)

    def read_state(self, name: str) -> Optional[dict[str, Any]]:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{STATE_DIR}/{name}")["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def write_state(self, name: str, value: dict[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{STATE_DIR}/{name}", Body=json.dumps(value).encode("utf-8"))


def last_training_marker(store: CorrectionStore) -> Optional[dict[str, Any]]:
    """The training marker of the store (None before the first training that read corrections)."""
    return store.read_state(LAST_TRAINING_MARKER)


def last_training_time(store: CorrectionStore) -> Optional[datetime]:
    """When the current period started (the marker's `at`): names the period; counting uses the watermark."""
    return marker_time(last_training_marker(store))


def mark_training_started(store: CorrectionStore, when: Optional[datetime] = None) -> datetime:
    """Start a new counting period: corrections before `when` no longer count towards a retrain.

    The pipeline does this itself (MergeFeatureShards writes the marker); this is for doing it by hand."""
    moment = when or datetime.now(timezone.utc)
    store.write_state(LAST_TRAINING_MARKER, training_marker(moment, written_by="monitoring.corrections"))
    return moment


def count_corrections(store: CorrectionStore, since: Optional[datetime] = None) -> int:
    """Stored corrections created after `since` (all of them without it). A clock cut-off: to count what the
    last training did not read, use count_new_corrections."""
    return sum(1 for c in store.iter_corrections() if since is None or parse_timestamp(c.created_at) > since)


def count_new_corrections(store: CorrectionStore, marker: Optional[dict[str, Any]]) -> int:
    """Stored corrections the training marker does not cover (Watermark.from_marker); all without a marker."""
    watermark = Watermark.from_marker(marker)
    return sum(1 for c in store.iter_corrections() if watermark is None or not watermark.covers(c))


def count_since_last_training(store: CorrectionStore) -> int:
    """Corrections recorded since the last training read them: those its marker does not cover."""
    return count_new_corrections(store, last_training_marker(store))


@dataclass
class CorrectionReceipt:
    location: str
    since_last_training: int
    threshold_reached: bool
    event_sent: bool


def corrections_event_entry(count: int, config: MonitoringConfig, since: Optional[datetime]) -> dict[str, Any]:
    """The PutEvents entry announcing that enough corrections exist to retrain."""
    return {
        "Source": config.corrections_event_source,
        "DetailType": config.corrections_event_detail_type,
        "Detail": json.dumps({
            "corrections_since_last_training": count,
            "threshold": config.corrections_threshold,
            "last_training": since.isoformat() if since else None,
        }),
        "EventBusName": config.event_bus_name,
    }


def record_correction(
    store: CorrectionStore, correction: Correction, config: MonitoringConfig, events_client: Any = None
) -> CorrectionReceipt:
    """Validate and store a correction; announce the threshold once per training period."""
    location = store.append(correction.validate())
    marker = last_training_marker(store)
    since = marker_time(marker)
    count = count_new_corrections(store, marker)
    reached = count >= config.corrections_threshold
    sent = False
    if reached and events_client is not None:
        period = since.isoformat() if since else None
        already = store.read_state(THRESHOLD_EVENT_MARKER)
        if not already or already.get("period") != period:
            response = events_client.put_events(Entries=[corrections_event_entry(count, config, since)])
            if response.get("FailedEntryCount", 0):
                raise RuntimeError(f"EventBridge refused the corrections event: {response['Entries']}")
            store.write_state(THRESHOLD_EVENT_MARKER, {"period": period, "count": count})
            sent = True
            logger.info("%d corrections since the last training: retraining event sent", count)
    return CorrectionReceipt(location, count, reached, sent)
