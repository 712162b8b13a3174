"""The human review queue: items a person should look at, their labels, and alert verdicts.

Items enter at each detection run when the model is unsure (sentiment or intent score under
`alerting.review_min_confidence`), when a second opinion disagrees with it (the rules second stage:
star rating against predicted sentiment, hazard words without the safety flag; an LLM second stage
is not reachable offline), when they are evidence of an alert (for a true / false positive verdict),
or when they carry a flag the taxonomy escalates immediately. Priority: safety, then alert severity,
then disagreement,
then low confidence. Entries of critical severity want two reviewers (agreement is reported).

A review (POST /review/{feedback_id}) records labels: sentiment / intent / aspects go to the
corrections store that feeds retraining (monitoring.corrections, what `fbrain monitor corrections add`
writes and `fbrain monitor triggers check` counts) and override the prediction in silver and gold at
once; flags and an alert verdict (true / false positive -> alert precision) are kept with the review.
Every change is in the audit log (who, when, before, after).
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pandas as pd
import pyarrow as pa
from pyiceberg.expressions import EqualTo

from operations import lake as lake_tables
from operations.alerting.detection import Finding, severity_rank
from operations.alerting.state import wall_now
from processing.taxonomy import load_taxonomy

HAZARD_WORDS = re.compile(r"\b(fire|burn(?:t|ed|s)?|smok(?:e|ing)|chok(?:e|ed|ing)|injur(?:y|ed)|allerg\w*|"
                          r"electric shock|shocked|explod\w*|melt(?:ed|ing)?|rash)\b", re.IGNORECASE)
REASON_WEIGHTS = {"safety": 100.0, "alert": 50.0, "disagreement": 20.0, "low_confidence": 10.0}


class ReviewError(ValueError):
    def __init__(self, message: str, reason: str = "invalid_review"):
        super().__init__(message)
        self.reason = reason


def rules_second_opinion(row: Any) -> list[str]:
    """Where the rules second stage disagrees with the model's prediction (empty when it agrees)."""
    disagreements = []
    stars = getattr(row, "star_rating", None)
    if stars is not None and not pd.isna(stars):
        if stars <= 2 and row.sentiment == "positive":
            disagreements.append(f"{int(stars)}-star rating, predicted positive")
        if stars >= 4 and row.sentiment == "negative":
            disagreements.append(f"{int(stars)}-star rating, predicted negative")
    if HAZARD_WORDS.search(str(row.text or "")) and "safety_concern" not in list(row.flags):
        disagreements.append("hazard words without the safety_concern flag")
    return disagreements


class ReviewQueue:
    def __init__(self, alerting: Any, context: Any, corrections: Any = None, monitoring: Any = None,
                 events_client: Any = None):
        """`context` has the lake (`.lake`), the loop config (`.config`) and optionally the worker (`.worker`).
        `corrections`: the corrections store (monitoring.corrections; default the local object store, an
        S3CorrectionStore on AWS); `monitoring`: its MonitoringConfig; `events_client`: EventBridge, to
        announce the retraining threshold (None locally)."""
        self.alerting, self.context = alerting, context
        self.store, self.config = alerting.store, alerting.config
        self.corrections, self.events_client = corrections, events_client
        self.monitoring = monitoring
        self.taxonomy = load_taxonomy()

    # ------------------------------------------------------------------ entering the queue
    def enqueue_from(self, items: pd.DataFrame, findings: list[Finding], at: datetime) -> int:
        if items.empty:
            return 0
        since = at - timedelta(hours=max(self.config.windows_hours))
        recent = items[items["created_at"] >= since]
        severity_of: dict[str, tuple[str, str]] = {}
        for finding in findings:
            alert = self.store.alert_by_key(self.alerting.manager.key_of(finding.key))
            for feedback_id in finding.feedback_ids:
                known = severity_of.get(feedback_id)
                if known is None or severity_rank(finding.severity) > severity_rank(known[0]):
                    severity_of[feedback_id] = (finding.severity, alert["id"] if alert else None)
        candidates = []
        for row in recent.itertuples():
            reasons: dict[str, Any] = {}
            scores = [s for s in (row.sentiment_score, row.intent_score) if s is not None and not pd.isna(s)]
            if scores and min(scores) < self.config.review_min_confidence:
                reasons["low_confidence"] = round(float(min(scores)), 3)
            disagreements = rules_second_opinion(row)
            if disagreements:
                reasons["disagreement"] = disagreements
            if set(row.flags) & set(self.taxonomy.immediate_flags):
                reasons["safety"] = sorted(set(row.flags) & set(self.taxonomy.immediate_flags))
            severity, alert_id = severity_of.get(row.feedback_id, (None, None))
            if severity:
                reasons["alert"] = severity
            if reasons:
                candidates.append((row, reasons, severity, alert_id))
        # Items stay queued once entered: only new ones are masked and written (each run sees the whole window).
        queued = self.store.queued([row.feedback_id for row, *_ in candidates])
        added = 0
        for row, reasons, severity, alert_id in candidates:
            if row.feedback_id in queued:
                continue
            priority = sum(REASON_WEIGHTS[r] for r in reasons)
            if "alert" in reasons:
                priority += 10 * severity_rank(severity)
            if "low_confidence" in reasons:
                priority += 10 * (1 - reasons["low_confidence"])
            level = "critical" if "safety" in reasons else severity
            mask = self.alerting.manager.mask
            snapshot = {"text": mask(row.text), "sentiment": row.sentiment,
                        "sentiment_score": _num(row.sentiment_score), "intent": row.intent,
                        "intent_score": _num(row.intent_score), "aspects": list(row.aspects), "flags": list(row.flags),
                        "sku": mask(row.sku), "region": mask(row.region), "channel": row.channel,
                        "created_at": row.created_at.isoformat()}
            added += self.store.enqueue_review({
                "feedback_id": row.feedback_id, "reasons": reasons, "priority": round(priority, 2), "severity": level,
                "alert_id": alert_id, "snapshot": snapshot, "enqueued_wall": wall_now(), "status": "pending",
                "reviews_needed": 2 if level in self.config.review_double_severity else 1})
        return added

    def pending(self, limit: int = 100, status: str = "pending") -> list[dict[str, Any]]:
        rows = self.store.review_entries(status, limit)
        shown = {row["feedback_id"] for row in rows}
        reviews: dict[str, list[dict[str, Any]]] = {}
        for review in self.store.reviews():  # one read for the page (a Scan on DynamoDB), not one per entry
            if review["feedback_id"] in shown:
                reviews.setdefault(review["feedback_id"], []).append(
                    {k: review[k] for k in ("reviewer", "at", "labels")})
        for row in rows:
            row["reviews"] = reviews.get(row["feedback_id"], [])
        return rows

    # ------------------------------------------------------------------ a review
    def submit(self, feedback_id: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
        from monitoring.corrections import Correction, CorrectionError, record_correction

        reviewer = str(body.get("reviewer") or "").strip()
        if not reviewer:
            raise ReviewError("reviewer (who made the review) is required", "missing_reviewer")
        labels = {k: body[k] for k in ("sentiment", "intent", "aspects") if body.get(k) is not None}
        flags = body.get("flags")
        if flags is not None and (not isinstance(flags, list) or any(f not in self.taxonomy.flags for f in flags)):
            raise ReviewError(f"flags must be a list of {list(self.taxonomy.flags)}", "unknown_label")
        verdict, alert_id = body.get("alert_verdict"), body.get("alert_id")
        if not labels and flags is None and not verdict:
            raise ReviewError("nothing to record: give sentiment, intent, aspects, flags or alert_verdict", "no_labels")
        row = self._silver_row(feedback_id)
        if row is None:
            raise KeyError(feedback_id)
        receipt = None
        if labels:
            correction = Correction(feedback_id=feedback_id, reviewer=reviewer, labels=labels,
                                    note=self.alerting.manager.mask(str(body.get("note", ""))[:1000]))
            try:
                correction.validate()
            except CorrectionError as exc:
                raise ReviewError(str(exc), exc.reason) from None
            receipt = record_correction(self.corrections or self.corrections_store(), correction,
                                        self._monitoring_config(), self.events_client)
            before, after = self.apply_override(row, labels)
            self.store.audit(f"{actor}/{reviewer}", f"feedback:{feedback_id}", "correction", before, after)
        if flags is not None:
            self.store.audit(f"{actor}/{reviewer}", f"feedback:{feedback_id}", "flags",
                             {"flags": list(row["flags"] or [])}, {"flags": flags})
        if verdict:
            if not alert_id:
                queued = self.store.review_entry(feedback_id)
                alert_id = queued["alert_id"] if queued else None
            if not alert_id:
                raise ReviewError("alert_verdict needs alert_id (this item is not evidence of an alert)", "missing_alert")
            try:
                self.alerting.manager.feedback(alert_id, reviewer, verdict)
            except KeyError:
                raise ReviewError(f"no alert {alert_id!r}", "not_found") from None
            except ValueError as exc:
                raise ReviewError(str(exc), "invalid_verdict") from None
        recorded = {**labels, **({"flags": flags} if flags is not None else {}),
                    **({"alert_verdict": verdict, "alert_id": alert_id} if verdict else {})}
        self.store.insert_review({"feedback_id": feedback_id, "reviewer": reviewer, "at": wall_now(), "labels": recorded})
        queued = self.store.review_entry(feedback_id)
        if queued:
            done = len({r["reviewer"] for r in self.store.reviews(feedback_id)})
            if done >= queued["reviews_needed"]:
                self.store.set_review_status(feedback_id, "reviewed")
        return {"feedback_id": feedback_id, "recorded": recorded,
                "correction": dataclasses.asdict(receipt) if receipt else None}

    def _silver_row(self, feedback_id: str) -> Optional[dict[str, Any]]:
        rows = self.context.lake.scan(lake_tables.SILVER, EqualTo("feedback_id", feedback_id)).to_pylist()
        return rows[-1] if rows else None

    def apply_override(self, row: dict[str, Any], labels: dict[str, Any]) -> tuple[dict, dict]:
        """Write the correction into the silver row and recompute gold for its window, between micro-batches."""
        from operations.gold import recompute_gold

        lake = self.context.lake
        before = {k: row.get(f"corrected_{k}") if row.get(f"corrected_{k}") is not None else row.get(k)
                  for k in ("sentiment", "intent", "aspects")}
        updated = dict(row)
        for key, value in labels.items():
            updated[f"corrected_{key}"] = value
        worker = getattr(self.context, "worker", None)
        lock = worker.batch_lock if worker is not None else _NoLock()
        now = datetime.now(timezone.utc)
        with lock:
            lake.write(lake_tables.SILVER, pa.Table.from_pylist([updated], schema=lake_tables.SCHEMAS[lake_tables.SILVER]),
                       {"fbrain.correction": row["feedback_id"]}, overwrite_filter=EqualTo("feedback_id", row["feedback_id"]))
            gold, window_filter = recompute_gold(lake, [row["created_at"]], self.context.config.gold_window, now)
            lake.write(lake_tables.GOLD, gold, {"fbrain.correction": row["feedback_id"]}, overwrite_filter=window_filter)
        after = {**before, **labels}
        return before, after

    # ------------------------------------------------------------------ stores and figures
    def corrections_store(self):
        """Where `fbrain monitor corrections add` writes: <workspace>/s3/<bucket>/<corrections_prefix>."""
        from monitoring.cli import DEFAULT_BUCKET
        from monitoring.corrections import LocalCorrectionStore

        bucket = self.alerting.corrections_bucket or DEFAULT_BUCKET
        return LocalCorrectionStore(self.context.lake.workspace / "s3" / bucket / self._monitoring_config().corrections_prefix)

    def _monitoring_config(self):
        from monitoring.config import MonitoringConfig

        return self.monitoring or MonitoringConfig()

    def agreement(self) -> dict[str, Any]:
        """Share of double-reviewed items whose first two reviewers gave the same labels."""
        rows = self.store.reviews()
        by_item: dict[str, list[dict]] = {}
        for r in rows:
            by_item.setdefault(r["feedback_id"], []).append(r)
        pairs = [v[:2] for v in by_item.values() if len({r["reviewer"] for r in v}) >= 2]
        agree = sum(1 for a, b in pairs if _labels_only(a["labels"]) == _labels_only(b["labels"]))
        return {"double_reviewed": len(pairs), "agreeing": agree,
                "agreement": round(agree / len(pairs), 4) if pairs else None}

    def counts(self) -> dict[str, int]:
        return dict(Counter(r["status"] for r in self.store.review_entries()))


def _labels_only(labels: dict[str, Any]) -> dict[str, Any]:
    return {k: (sorted(v) if isinstance(v, list) else v) for k, v in labels.items()
            if k in ("sentiment", "intent", "aspects", "flags")}


def _num(value: Any) -> Optional[float]:
    return None if value is None or pd.isna(value) else round(float(value), 3)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
