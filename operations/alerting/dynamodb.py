"""DynamoDB state of alerting on AWS (`alerting.state_backend=dynamodb`): the AlertState of
operations.alerting.state in two tables the infrastructure app creates, each with a string hash key and
no sort key or index.

- incidents table (`alerting.incidents_table`, hash key INCIDENTS_KEY = `incident_id`): alerts
  (`alert#<id>`), the dedup pointer of each incident (`dedup#<dedup key>` -> alert id, written in the same
  transaction as the alert, so two detection runs cannot open one incident twice), actions
  (`action#<alert id>#<n>`), post-incident records (`post_incident#<alert id>`), silences
  (`silence#<id>`), the notification log (`notification#<n>`), alert verdicts (`verdict#<n>`), named
  state such as the cool-down clock (`state#<name>`) and the counters numbering sequential records
  (`counter#<kind>`).
- review-queue table (`alerting.review_queue_table`, hash key REVIEW_QUEUE_KEY = `item_id`): queue
  entries (`review#<feedback id>`), reviews (`reviewed#<feedback id>#<n>`), the audit log (`audit#<n>`)
  and its counters.

Each record field is its own attribute (strings S, numbers N, None NULL, the JSON columns of the SQLite
schema as JSON strings), so an update sets only the fields it changes: an acknowledgement through the API
and a detection run updating the same alert do not overwrite each other. Lookups are GetItem; listings
are Scans filtered by key prefix (incident volumes: hundreds to thousands of items), read consistently.
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any, Iterator, Optional

from operations.alerting.state import (ALERT_DEFAULTS, JSON_COLUMNS, AlertState, DuplicateRecord, Record, scrub_evidence,
                                       wall_now)

INCIDENTS_KEY = "incident_id"
"""Hash key (S) of the incidents table."""
REVIEW_QUEUE_KEY = "item_id"
"""Hash key (S) of the review-queue table."""
ALERT_PREFIX = "alert#"
DEDUP_PREFIX = "dedup#"
ACTION_PREFIX = "action#"
POST_INCIDENT_PREFIX = "post_incident#"
SILENCE_PREFIX = "silence#"
NOTIFICATION_PREFIX = "notification#"
VERDICT_PREFIX = "verdict#"
STATE_PREFIX = "state#"
COUNTER_PREFIX = "counter#"
REVIEW_PREFIX = "review#"
REVIEWED_PREFIX = "reviewed#"
AUDIT_PREFIX = "audit#"
RECORD_TYPE = "record_type"
"""Attribute naming what an item is (alert, dedup, action, ...), for people reading the table."""
_INTEGER = re.compile(r"-?\d+")


def encode(name: str, value: Any) -> dict[str, Any]:
    """One field as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if name in JSON_COLUMNS or isinstance(value, (dict, list)):
        return {"S": json.dumps(value, ensure_ascii=False, default=str)}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    return {"S": str(value)}


def decode(name: str, attribute: dict[str, Any]) -> Any:
    (kind, value), = attribute.items()
    if kind == "NULL":
        return None
    if kind == "N":
        return int(value) if _INTEGER.fullmatch(value) else float(value)
    if kind == "S" and name in JSON_COLUMNS:
        return json.loads(value)
    return value


def _sequence(number: int) -> str:
    return f"{number:012d}"


class DynamoAlertState(AlertState):
    def __init__(self, incidents_table: str, review_queue_table: str, client: Any = None):
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.client = client
        self.incidents, self.review_queue = incidents_table, review_queue_table
        self.lock = threading.RLock()

    def close(self) -> None:
        """Nothing to release: the client holds no connection of its own to close."""

    # ------------------------------------------------------------------ item helpers
    def _key_name(self, table: str) -> str:
        return INCIDENTS_KEY if table == self.incidents else REVIEW_QUEUE_KEY

    def _item(self, table: str, key: str, record_type: str, record: Record) -> dict[str, Any]:
        item = {name: encode(name, value) for name, value in record.items()}
        item[self._key_name(table)] = {"S": key}
        item[RECORD_TYPE] = {"S": record_type}
        return item

    def _record(self, table: str, item: dict[str, Any]) -> Record:
        skip = (self._key_name(table), RECORD_TYPE)
        return {name: decode(name, value) for name, value in item.items() if name not in skip}

    def _get(self, table: str, key: str) -> Optional[Record]:
        item = self.client.get_item(TableName=table, Key={self._key_name(table): {"S": key}},
                                    ConsistentRead=True).get("Item")
        return self._record(table, item) if item else None

    def _put(self, table: str, key: str, record_type: str, record: Record, only_new: bool = False) -> bool:
        """Put an item; with `only_new`, only when the key is free (False when it is held)."""
        kwargs: dict[str, Any] = {}
        if only_new:
            kwargs = {"ConditionExpression": "attribute_not_exists(#k)",
                      "ExpressionAttributeNames": {"#k": self._key_name(table)}}
        try:
            self.client.put_item(TableName=table, Item=self._item(table, key, record_type, record), **kwargs)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _update(self, table: str, key: str, changes: Record) -> None:
        if not changes:
            return
        names = {f"#f{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": encode(name, value) for i, (name, value) in enumerate(changes.items())}
        names["#k"] = self._key_name(table)
        self.client.update_item(TableName=table, Key={self._key_name(table): {"S": key}},
                                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(changes))),
                                ConditionExpression="attribute_exists(#k)",
                                ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def _delete(self, table: str, key: str) -> bool:
        answer = self.client.delete_item(TableName=table, Key={self._key_name(table): {"S": key}},
                                         ReturnValues="ALL_OLD")
        return bool(answer.get("Attributes"))

    def _scan(self, table: str, prefix: str, where: str = "", names: Optional[dict[str, str]] = None,
              values: Optional[dict[str, Any]] = None) -> Iterator[Record]:
        """Items whose key starts with `prefix` (and satisfy `where`), consistently read, all pages."""
        expression = "begins_with(#k, :prefix)" + (f" AND ({where})" if where else "")
        kwargs = {"TableName": table, "FilterExpression": expression, "ConsistentRead": True,
                  "ExpressionAttributeNames": {"#k": self._key_name(table), **(names or {})},
                  "ExpressionAttributeValues": {":prefix": {"S": prefix}, **(values or {})}}
        for page in self.client.get_paginator("scan").paginate(**kwargs):
            for item in page.get("Items", []):
                yield self._record(table, item)

    def _next(self, table: str, counter: str) -> int:
        """The next number of a sequence (atomic counter): ids in insertion order, as SQLite's AUTOINCREMENT."""
        answer = self.client.update_item(
            TableName=table, Key={self._key_name(table): {"S": COUNTER_PREFIX + counter}},
            UpdateExpression="ADD #n :one SET #t = :type", ExpressionAttributeNames={"#n": "n", "#t": RECORD_TYPE},
            ExpressionAttributeValues={":one": {"N": "1"}, ":type": {"S": "counter"}}, ReturnValues="UPDATED_NEW")
        return int(answer["Attributes"]["n"]["N"])

    def _append(self, table: str, prefix: str, counter: str, record: Record, key_part: str = "") -> int:
        number = self._next(table, counter)
        self._put(table, f"{prefix}{key_part}{_sequence(number)}", counter, {"id": number, **record})
        return number

    # ------------------------------------------------------------------ named values
    def get_state(self, name: str) -> Optional[str]:
        record = self._get(self.incidents, STATE_PREFIX + name)
        return record["value"] if record else None

    def set_state(self, name: str, value: str) -> None:
        self._put(self.incidents, STATE_PREFIX + name, "state", {"name": name, "value": value})

    # ------------------------------------------------------------------ alerts
    def alert(self, alert_id: str) -> Optional[Record]:
        return self._get(self.incidents, ALERT_PREFIX + alert_id)

    def alert_by_key(self, key: str) -> Optional[Record]:
        pointer = self._get(self.incidents, DEDUP_PREFIX + key)
        return self.alert(pointer["alert_id"]) if pointer else None

    def alerts(self, state: Optional[str] = None, limit: int = 500, kind: Optional[str] = None) -> list[Record]:
        conditions, names, values = [], {}, {}
        if state:
            states = [s.strip() for s in state.split(",") if s.strip()]
            names["#state"] = "state"
            values.update({f":s{i}": {"S": s} for i, s in enumerate(states)})
            conditions.append(f"#state IN ({', '.join(f':s{i}' for i in range(len(states)))})")
        if kind:
            names["#kind"], values[":kind"] = "kind", {"S": kind}
            conditions.append("#kind = :kind")
        rows = list(self._scan(self.incidents, ALERT_PREFIX, " AND ".join(conditions), names, values))
        rows.sort(key=lambda r: r["updated_wall"], reverse=True)
        return rows[:limit]

    def insert_alert(self, alert: Record) -> None:
        alert = {**ALERT_DEFAULTS, **alert}
        key_name = {"#k": INCIDENTS_KEY}
        try:
            self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.incidents, "ConditionExpression": "attribute_not_exists(#k)",
                         "ExpressionAttributeNames": key_name,
                         "Item": self._item(self.incidents, DEDUP_PREFIX + alert["dedup_key"], "dedup",
                                            {"alert_id": alert["id"]})}},
                {"Put": {"TableName": self.incidents, "ConditionExpression": "attribute_not_exists(#k)",
                         "ExpressionAttributeNames": key_name,
                         "Item": self._item(self.incidents, ALERT_PREFIX + alert["id"], "alert", alert)}}])
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" not in reasons:
                raise  # a conflicting transaction or throttling, not a held key: the caller's run fails and retries
            raise DuplicateRecord(alert["dedup_key"]) from exc

    def update_alert(self, alert_id: str, changes: Record) -> None:
        self._update(self.incidents, ALERT_PREFIX + alert_id, changes)

    def actions(self, alert_id: str) -> list[Record]:
        rows = self._scan(self.incidents, f"{ACTION_PREFIX}{alert_id}#")
        return sorted(rows, key=lambda r: r["id"])

    def insert_action(self, action: Record) -> None:
        self._append(self.incidents, ACTION_PREFIX, "action", action, f"{action['alert_id']}#")

    def post_incident(self, alert_id: str) -> Optional[Record]:
        record = self._get(self.incidents, POST_INCIDENT_PREFIX + alert_id)
        return record["record"] if record else None

    def put_post_incident(self, alert_id: str, record: Record) -> None:
        self._put(self.incidents, POST_INCIDENT_PREFIX + alert_id, "post_incident",
                  {"alert_id": alert_id, "written_wall": wall_now(), "record": record})

    # ------------------------------------------------------------------ silences and notifications
    def silences(self, active_at: Optional[str] = None) -> list[Record]:
        if active_at:
            rows = self._scan(self.incidents, SILENCE_PREFIX, "#starts <= :now AND #ends > :now",
                              {"#starts": "starts_at", "#ends": "ends_at"}, {":now": {"S": active_at}})
        else:
            rows = self._scan(self.incidents, SILENCE_PREFIX)
        return sorted(rows, key=lambda r: r["starts_at"], reverse=True)

    def insert_silence(self, silence: Record) -> None:
        self._put(self.incidents, SILENCE_PREFIX + silence["id"], "silence", silence)

    def notifications(self, limit: int = 200, alert_id: Optional[str] = None) -> list[Record]:
        if alert_id:
            rows = self._scan(self.incidents, NOTIFICATION_PREFIX, "contains(#ids, :id)", {"#ids": "alert_ids"},
                              {":id": {"S": json.dumps(alert_id)}})
        else:
            rows = self._scan(self.incidents, NOTIFICATION_PREFIX)
        return sorted(rows, key=lambda r: r["id"], reverse=True)[:limit]

    def insert_notification(self, notification: Record) -> None:
        self._append(self.incidents, NOTIFICATION_PREFIX, "notification", notification)

    # ------------------------------------------------------------------ verdicts and audit
    def verdicts(self) -> list[Record]:
        return sorted(self._scan(self.incidents, VERDICT_PREFIX), key=lambda r: r["id"])

    def insert_verdict(self, verdict: Record) -> None:
        self._append(self.incidents, VERDICT_PREFIX, "verdict", verdict)

    def insert_audit(self, entry: Record) -> None:
        self._append(self.review_queue, AUDIT_PREFIX, "audit", entry)

    def audit_log(self, limit: int = 200) -> list[Record]:
        return sorted(self._scan(self.review_queue, AUDIT_PREFIX), key=lambda r: r["id"], reverse=True)[:limit]

    # ------------------------------------------------------------------ review queue
    def enqueue_review(self, entry: Record) -> bool:
        return self._put(self.review_queue, REVIEW_PREFIX + entry["feedback_id"], "review_entry", entry, only_new=True)

    def queued(self, feedback_ids: list[str]) -> set[str]:
        """BatchGetItem of the keys only, 100 per call, unprocessed keys asked again."""
        found: set[str] = set()
        keys = [{REVIEW_QUEUE_KEY: {"S": REVIEW_PREFIX + i}} for i in dict.fromkeys(feedback_ids)]
        for start in range(0, len(keys), 100):
            request = {self.review_queue: {"Keys": keys[start:start + 100], "ProjectionExpression": "#k",
                                           "ExpressionAttributeNames": {"#k": REVIEW_QUEUE_KEY},
                                           "ConsistentRead": True}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.review_queue, []):
                    found.add(item[REVIEW_QUEUE_KEY]["S"][len(REVIEW_PREFIX):])
                request = answer.get("UnprocessedKeys") or None
        return found

    def review_entry(self, feedback_id: str) -> Optional[Record]:
        return self._get(self.review_queue, REVIEW_PREFIX + feedback_id)

    def review_entries(self, status: Optional[str] = None, limit: Optional[int] = None) -> list[Record]:
        if status:
            rows = self._scan(self.review_queue, REVIEW_PREFIX, "#status = :status", {"#status": "status"},
                              {":status": {"S": status}})
        else:
            rows = self._scan(self.review_queue, REVIEW_PREFIX)
        ordered = sorted(rows, key=lambda r: (-r["priority"], r["enqueued_wall"]))
        return ordered if limit is None else ordered[:limit]

    def set_review_status(self, feedback_id: str, status: str) -> None:
        self._update(self.review_queue, REVIEW_PREFIX + feedback_id, {"status": status})

    def insert_review(self, review: Record) -> None:
        self._append(self.review_queue, REVIEWED_PREFIX, "review", review, f"{review['feedback_id']}#")

    def reviews(self, feedback_id: Optional[str] = None) -> list[Record]:
        if feedback_id is not None:
            rows = self._scan(self.review_queue, REVIEWED_PREFIX, "#fid = :fid", {"#fid": "feedback_id"},
                              {":fid": {"S": feedback_id}})
        else:
            rows = self._scan(self.review_queue, REVIEWED_PREFIX)
        return sorted(rows, key=lambda r: r["id"])

    # ------------------------------------------------------------------ erasure
    def forget_feedback(self, feedback_ids: list[str]) -> dict[str, int]:
        if not feedback_ids:
            return {"review_queue": 0, "alert_examples": 0}
        ids = set(feedback_ids)
        with self.lock:
            queued = sum(self._delete(self.review_queue, REVIEW_PREFIX + i) for i in ids)
            for review in self.reviews():
                if review["feedback_id"] in ids:
                    self._delete(self.review_queue, f"{REVIEWED_PREFIX}{review['feedback_id']}#{_sequence(review['id'])}")
            examples = 0
            for alert in self._scan(self.incidents, ALERT_PREFIX):
                scrubbed = scrub_evidence(alert, ids)
                if scrubbed:
                    self.update_alert(alert["id"], {"evidence": scrubbed[0]})
                    examples += scrubbed[1]
        return {"review_queue": queued, "alert_examples": examples}
