"""Both alerting state backends (SQLite, DynamoDB on moto) answer the AlertState interface the same way."""
from __future__ import annotations

import pytest

from operations.alerting.config import AlertingConfig
from operations.alerting.backend import open_alert_state
from operations.alerting.state import DuplicateRecord, new_id, wall_now
from operations.alerting.store import AlertStore

CONFIG = AlertingConfig()


@pytest.fixture(params=["sqlite", "dynamodb"])
def state(request, tmp_path):
    if request.param == "sqlite":
        store = open_alert_state(CONFIG, tmp_path)
        assert isinstance(store, AlertStore)
        yield store
        store.close()
        return
    from state_support import dynamodb_state

    with dynamodb_state(CONFIG) as store:
        yield store


def _alert(key, state="open", kind="trend", updated="2026-12-01T00:00:00+00:00", feedback_ids=("f1",)):
    return {"id": new_id("alert"), "dedup_key": key, "state": state, "severity": "error", "kind": kind,
            "dimension": "sku", "value": "S1", "signal": "aspect:packaging", "owner": "fulfilment",
            "evidence": {"count": 3, "examples": [{"feedback_id": i, "text": "t"} for i in feedback_ids],
                         "feedback_ids": list(feedback_ids), "ratio": 0.125},
            "opened_at": updated, "first_seen": updated, "last_finding_at": updated, "created_wall": updated,
            "updated_wall": updated}


def test_alerts_dedup_filters_order_and_updates(state):
    first, second = _alert("k1", updated="2026-12-01T01:00:00+00:00"), _alert("k2", kind="emerging",
                                                                               updated="2026-12-01T02:00:00+00:00")
    state.insert_alert(first)
    state.insert_alert(second)
    with pytest.raises(DuplicateRecord):
        state.insert_alert({**_alert("k1"), "id": new_id("alert")})
    assert state.alert_by_key("k1")["id"] == first["id"] and state.alert_by_key("nope") is None
    assert [a["dedup_key"] for a in state.alerts()] == ["k2", "k1"]
    assert [a["dedup_key"] for a in state.alerts(kind="emerging")] == ["k2"]
    state.update_alert(first["id"], {"state": "acknowledged", "reopen_count": 2, "jira_key": None})
    loaded = state.alert(first["id"])
    assert loaded["state"] == "acknowledged" and loaded["reopen_count"] == 2 and loaded["jira_key"] is None
    assert loaded["evidence"]["ratio"] == 0.125 and loaded["last_notified_count"] is None
    assert [a["id"] for a in state.alerts("acknowledged,open")] == [second["id"], first["id"]]
    assert [a["id"] for a in state.alerts("open")] == [second["id"]]
    state.record_action(first["id"], "key:a", "ack", "n", {"state": "open"}, {"state": "acknowledged"})
    state.record_action(first["id"], "key:a", "resolve")
    assert [a["action"] for a in state.actions(first["id"])] == ["ack", "resolve"]
    assert state.actions(first["id"])[0]["before"] == {"state": "open"}
    assert [e["action"] for e in state.audit_log()] == ["resolve", "ack"]
    assert state.post_incident(first["id"]) is None
    state.put_post_incident(first["id"], {"done": [1]})
    assert state.post_incident(first["id"]) == {"done": [1]}
    state.set_state("last_evaluation_at", "2026-12-01T00:00:00+00:00")
    assert state.get_state("last_evaluation_at") == "2026-12-01T00:00:00+00:00" and state.get_state("x") is None


def test_silences_notifications_and_verdicts(state):
    state.insert_silence({"id": "s1", "matchers": {"dedup_key": "k1"}, "starts_at": "2026-12-01T00:00:00+00:00",
                          "ends_at": "2026-12-01T02:00:00+00:00", "created_by": "key:a", "comment": ""})
    assert [s["id"] for s in state.silences(active_at="2026-12-01T01:00:00+00:00")] == ["s1"]
    assert state.silences(active_at="2026-12-01T03:00:00+00:00") == []
    assert state.silences()[0]["matchers"] == {"dedup_key": "k1"}
    for ids in (["a1"], ["a2", "a1"], ["a2"]):
        state.insert_notification({"at": wall_now(), "event_at": None, "channel": "slack", "kind": "group",
                                   "alert_ids": ids, "owner": "o", "status": "recorded", "code": None,
                                   "attempts": 0, "error": None, "payload": {"text": "x"}})
    assert [n["alert_ids"] for n in state.notifications()] == [["a2"], ["a2", "a1"], ["a1"]]
    assert [n["alert_ids"] for n in state.notifications(alert_id="a1")] == [["a2", "a1"], ["a1"]]
    assert len(state.notifications(limit=1)) == 1
    state.insert_verdict({"alert_id": "a1", "reviewer": "r", "verdict": "true_positive", "at": wall_now(), "note": ""})
    state.insert_verdict({"alert_id": "a1", "reviewer": "r", "verdict": "false_positive", "at": wall_now(), "note": ""})
    assert [v["verdict"] for v in state.verdicts()] == ["true_positive", "false_positive"]


def test_review_queue_and_erasure(state):
    def entry(feedback_id, priority, enqueued):
        return {"feedback_id": feedback_id, "reasons": {"low_confidence": 0.4}, "priority": priority,
                "severity": None, "alert_id": None, "snapshot": {"text": "t"}, "enqueued_wall": enqueued,
                "status": "pending", "reviews_needed": 1}

    assert state.enqueue_review(entry("f1", 14.0, "2026-12-01T00:00:01"))
    assert state.enqueue_review(entry("f2", 120.5, "2026-12-01T00:00:02"))
    assert state.enqueue_review(entry("f3", 14.0, "2026-12-01T00:00:00"))
    assert not state.enqueue_review(entry("f1", 99.0, "2026-12-01T00:00:09"))  # queued once
    assert [e["feedback_id"] for e in state.review_entries("pending")] == ["f2", "f3", "f1"]
    assert state.queued(["f1", "f9", "f3", "f1"] + [f"x{i}" for i in range(600)]) == {"f1", "f3"}
    assert state.queued([]) == set()
    assert state.review_entry("f1")["priority"] == 14.0 and state.review_entry("f1")["reasons"] == {"low_confidence": 0.4}
    state.insert_review({"feedback_id": "f1", "reviewer": "ana", "at": wall_now(), "labels": {"sentiment": "neutral"}})
    state.insert_review({"feedback_id": "f2", "reviewer": "ben", "at": wall_now(), "labels": {"intent": "complaint"}})
    state.set_review_status("f1", "reviewed")
    assert [e["feedback_id"] for e in state.review_entries("reviewed")] == ["f1"]
    assert [r["labels"] for r in state.reviews("f1")] == [{"sentiment": "neutral"}]
    assert [r["reviewer"] for r in state.reviews()] == ["ana", "ben"]
    alert = _alert("k1", feedback_ids=("f1", "f9"))
    state.insert_alert(alert)
    assert state.forget_feedback(["f1"]) == {"review_queue": 1, "alert_examples": 1}
    assert state.review_entry("f1") is None and state.reviews("f1") == [] and len(state.reviews()) == 1
    evidence = state.alert(alert["id"])["evidence"]
    assert [e["feedback_id"] for e in evidence["examples"]] == ["f9"] and evidence["feedback_ids"] == ["f9"]
