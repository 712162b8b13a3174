"""Where alerting keeps its state: the interface the engine, the review queue and the routes use.

Two implementations, one code path above them: `operations.alerting.store.AlertStore` (SQLite, the local
loop, `alerting.state_backend=sqlite`) and `operations.alerting.dynamodb.DynamoAlertState` (the incidents
and review-queue tables on AWS, `alerting.state_backend=dynamodb`); operations.alerting.backend opens the
configured one.

Records are plain dicts with the columns of the SQLite schema (operations.alerting.store); JSON columns
(evidence, playbook, payload, labels, ...) are dicts / lists. Sequential records (actions, notifications,
alert verdicts, reviews, audit entries) get an increasing integer `id`, so both backends answer in the
same order with the same fields.
"""
from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any, Optional

Record = dict[str, Any]
JSON_COLUMNS = ("evidence", "playbook", "validation", "matchers", "payload", "alert_ids", "reasons", "snapshot",
                "labels", "before", "after", "record")
"""Fields holding JSON documents (dicts / lists), in every backend."""


def wall_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


ALERT_DEFAULTS: dict[str, Any] = {
    "suppressed": None, "playbook": None, "acknowledged_wall": None, "mitigating_wall": None, "resolved_wall": None,
    "resolved_at": None, "closed_wall": None, "last_notified_wall": None, "last_notified_severity": None,
    "last_notified_count": None, "jira_key": None, "reopen_count": 0, "validation": None}
"""Fields of an alert record that a new alert may leave out (the SQLite schema's nullable / defaulted columns)."""


class DuplicateRecord(Exception):
    """An insert whose key (alert id, dedup key) is already held."""


class AlertState(ABC):
    """Alerts (one per incident), their actions, silences, the notification log, post-incident records,
    alert verdicts, the review queue with its reviews, the audit log and named state values."""

    lock: threading.RLock
    """Held around read-modify-write sequences of one process (the engine's evaluation, an incident action)."""

    # ------------------------------------------------------------------ named values
    @abstractmethod
    def get_state(self, name: str) -> Optional[str]: ...

    @abstractmethod
    def set_state(self, name: str, value: str) -> None: ...

    # ------------------------------------------------------------------ alerts
    @abstractmethod
    def alert(self, alert_id: str) -> Optional[Record]: ...

    @abstractmethod
    def alert_by_key(self, key: str) -> Optional[Record]: ...

    @abstractmethod
    def alerts(self, state: Optional[str] = None, limit: int = 500, kind: Optional[str] = None) -> list[Record]:
        """Alerts, most recently updated first; `state` a comma-separated list of states."""

    @abstractmethod
    def insert_alert(self, alert: Record) -> None:
        """A new alert; DuplicateRecord when its id or dedup key is held."""

    @abstractmethod
    def update_alert(self, alert_id: str, changes: Record) -> None: ...

    @abstractmethod
    def actions(self, alert_id: str) -> list[Record]: ...

    @abstractmethod
    def insert_action(self, action: Record) -> None: ...

    def record_action(self, alert_id: str, actor: str, action: str, note: str = "", before: Any = None,
                      after: Any = None) -> None:
        self.insert_action({"alert_id": alert_id, "at": wall_now(), "actor": actor, "action": action, "note": note,
                            "before": before, "after": after})
        self.audit(actor, f"alert:{alert_id}", action, before, after)

    @abstractmethod
    def post_incident(self, alert_id: str) -> Optional[Record]:
        """The post-incident record written when the alert was verified (None before)."""

    @abstractmethod
    def put_post_incident(self, alert_id: str, record: Record) -> None: ...

    # ------------------------------------------------------------------ silences and notifications
    @abstractmethod
    def silences(self, active_at: Optional[str] = None) -> list[Record]:
        """Silences, newest start first; only those in force at `active_at` (ISO time) when given."""

    @abstractmethod
    def insert_silence(self, silence: Record) -> None: ...

    @abstractmethod
    def notifications(self, limit: int = 200, alert_id: Optional[str] = None) -> list[Record]:
        """The notification log, newest first."""

    @abstractmethod
    def insert_notification(self, notification: Record) -> None: ...

    # ------------------------------------------------------------------ alert verdicts and the audit log
    @abstractmethod
    def verdicts(self) -> list[Record]:
        """Reviewers' true / false positive verdicts on alerts, oldest first."""

    @abstractmethod
    def insert_verdict(self, verdict: Record) -> None: ...

    @abstractmethod
    def insert_audit(self, entry: Record) -> None: ...

    def audit(self, actor: str, subject: str, action: str, before: Any, after: Any) -> None:
        self.insert_audit({"at": wall_now(), "actor": actor, "subject": subject, "action": action,
                           "before": before, "after": after})

    @abstractmethod
    def audit_log(self, limit: int = 200) -> list[Record]:
        """Audit entries, newest first."""

    # ------------------------------------------------------------------ review queue
    @abstractmethod
    def enqueue_review(self, entry: Record) -> bool:
        """Add a queue entry unless its feedback_id is queued already; True when added."""

    @abstractmethod
    def queued(self, feedback_ids: list[str]) -> set[str]:
        """Those of `feedback_ids` that have a queue entry (of any status)."""

    @abstractmethod
    def review_entry(self, feedback_id: str) -> Optional[Record]: ...

    @abstractmethod
    def review_entries(self, status: Optional[str] = None, limit: Optional[int] = None) -> list[Record]:
        """Queue entries (of `status` when given), highest priority first, then oldest."""

    @abstractmethod
    def set_review_status(self, feedback_id: str, status: str) -> None: ...

    @abstractmethod
    def insert_review(self, review: Record) -> None: ...

    @abstractmethod
    def reviews(self, feedback_id: Optional[str] = None) -> list[Record]:
        """Reviews (of one item when given), oldest first."""

    # ------------------------------------------------------------------ erasure
    @abstractmethod
    def forget_feedback(self, feedback_ids: list[str]) -> dict[str, int]:
        """Erase these items from the review queue and reviews, and their examples from alert evidence
        (notifications already sent keep the masked text they carried)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds (a database connection)."""


def scrub_evidence(alert: Record, ids: set[str]) -> Optional[tuple[Record, int]]:
    """The alert's evidence without these feedback ids' examples and sample ids, with the number of examples
    removed; None when it carried none of them (shared by both backends' forget_feedback)."""
    evidence = alert["evidence"]
    kept = [e for e in evidence.get("examples", []) if e.get("feedback_id") not in ids]
    sampled = [i for i in evidence.get("feedback_ids", []) if i not in ids]
    if len(kept) == len(evidence.get("examples", [])) and len(sampled) == len(evidence.get("feedback_ids", [])):
        return None
    return {**evidence, "examples": kept, "feedback_ids": sampled}, len(evidence.get("examples", [])) - len(kept)
