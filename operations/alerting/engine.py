"""One evaluation of the loop's alerting: read the lake, detect, update alerts and incidents, notify,
fill the review queue. Called by `fbrain loop detect`, by POST /detect, on the worker's cadence
(`alerting.detect_every_s`, a thread beside the micro-batch worker) and, on AWS, by the scheduled
detection Lambda (operations.alerting_aws_lambda.detect_handler)."""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from operations.alerting.alerts import AlertManager
from operations.alerting.channels import Channels
from operations.alerting.config import AlertingConfig
from operations.alerting.detection import Detector, items_from_silver, load_items, signal_pairs
from operations.alerting.playbooks import load_playbooks
from operations.alerting.backend import open_alert_state
from operations.alerting.state import AlertState
from operations import lake as lake_tables
from operations.erasure import DataSubject
from operations.lake import Lake

log = logging.getLogger(__name__)


class Alerting:
    def __init__(self, config: AlertingConfig, workspace: Path, lake: Lake, channels: Optional[Channels] = None,
                 store: Optional[AlertState] = None):
        self.config, self.workspace, self.lake = config, Path(workspace), lake
        self.store = store or open_alert_state(config, self.workspace)
        """Alerting state: SQLite in the workspace or the DynamoDB tables (alerting.state_backend)."""
        self.playbooks = load_playbooks(config)
        self.detector = Detector(config)
        self.detector.thresholds = self.playbooks.thresholds(self.detector.default_thresholds())
        self.channels = channels or Channels(config)
        self.manager = AlertManager(config, self.store, self.playbooks, self.channels)
        self.corrections_bucket: Optional[str] = None
        """Bucket of the local object store holding corrections (aws.bucket; monitoring's default when None)."""
        self.review = None
        """The review queue (operations.review.ReviewQueue), attached by the service."""
        self.stop_event = threading.Event()
        self.last_error: Optional[str] = None

    def evaluate(self, at: Optional[datetime] = None) -> dict[str, Any]:
        """Detect at event time `at` (default now) and act on the findings; returns a summary."""
        at = at or datetime.now(timezone.utc)
        started = time.perf_counter()
        items = load_items(self.lake, self.detector.history_start(at), at)
        read_s = time.perf_counter() - started
        findings = self.detector.detect(items, at)
        detect_s = time.perf_counter() - started - read_s
        outcome = self.manager.process(findings, at, items)
        if self.review is not None:
            outcome["review_enqueued"] = self.review.enqueue_from(items, findings, at)
        total = time.perf_counter() - started
        summary = {"at": at.isoformat(), "items": len(items), **outcome,
                   "keys": sorted(f.key for f in findings),
                   "seconds": {"read": round(read_s, 3), "detect": round(detect_s, 3), "total": round(total, 3)}}
        self.store.set_state("last_evaluation", json.dumps(
            {k: v for k, v in summary.items() if k != "validated"}, default=str))
        log.info("detection at %s: %d items, %d findings in %.2f s", at.isoformat(), len(items), len(findings), total)
        return summary

    def escalate_immediate(self, silver_rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Right after a micro-batch: its items with a flag the taxonomy escalates immediately (safety_concern)
        alert now, within the micro-batch, not at the next detection run (`alerting.detect_every_s`, minutes).
        The same finding as the full run's (one alert per SKU and flag, deduplicated with it); event time is the
        newest flagged item's `created_at`, so a replayed stream escalates at its own time."""
        import pyarrow as pa

        immediate = set(self.detector.taxonomy.immediate_flags)
        flagged = {row.get("sku") for row in silver_rows if immediate & set(row.get("flags") or [])}
        if not flagged:
            return {"findings": 0}
        rows = [row for row in silver_rows if row.get("sku") in flagged]
        # through Arrow, as a scan would give them: missing lists are None (a DataFrame of dicts makes them NaN)
        items = items_from_silver(pa.Table.from_pylist(rows, schema=lake_tables.SCHEMAS[lake_tables.SILVER]).to_pandas())
        if items.empty:
            return {"findings": 0}
        at = items["created_at"].max().to_pydatetime()
        findings = self.detector.immediate_findings(items, signal_pairs(items, self.config), at)
        outcome = self.manager.process(findings, at, record_evaluation=False)  # validation waits for the full run
        log.info("micro-batch escalation: %d immediate findings", len(findings))
        return outcome

    def follow(self, worker: Any) -> None:
        """Escalate immediate flags after each of the worker's micro-batches (operations.worker.Worker)."""
        worker.batch_listeners.append(self.escalate_immediate)

    def forget_feedback(self, subject: DataSubject) -> dict[str, int]:
        """A data subject's erasure (an operations.privacy eraser): their items leave the review queue, reviews
        and alert examples."""
        return self.store.forget_feedback(sorted(subject.feedback_ids))

    # ------------------------------------------------------------------ cadence
    def run_forever(self) -> None:
        while not self.stop_event.wait(self.config.detect_every_s):
            try:
                self.evaluate()
                self.last_error = None
            except Exception as exc:  # keep the service up; the next tick retries
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("detection failed; retrying at the next tick")

    def start_thread(self) -> Optional[threading.Thread]:
        if not self.config.detect_every_s:
            return None
        thread = threading.Thread(target=self.run_forever, name="fbrain-alerting", daemon=True)
        thread.start()
        return thread
