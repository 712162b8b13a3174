"""Alerts, incidents, the notification log and the review queue through the loop service's routes."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from alerting_support import START, generate, make_loop, post_records, small_scenario

pytestmark = pytest.mark.slow  # each module fixture ingests ~1,800 records through the worker (~10 s)


@pytest.fixture(scope="module")
def incident_loop(tmp_path_factory):
    """8 clean days then a defect spike on the busiest SKU (day 8), scored and in the lake."""
    context, client, keys = make_loop(tmp_path_factory.mktemp("alerting") / "ws")
    scenario = small_scenario(days=9, defect_day=8)
    post_records(client, keys["submit"], generate(scenario))
    context.worker.drain()
    return context, client, keys, scenario


def _get(client, path, key, **params):
    response = client.get(path, headers={"x-api-key": key}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _post(client, path, key, body=None, **params):
    return client.post(path, headers={"x-api-key": key}, params=params, json=body or {})


def test_a_replayed_incident_gives_one_alert_with_owner_playbook_and_a_masked_notification(incident_loop):
    context, client, keys, scenario = incident_loop
    hot = scenario.incidents[0].sku
    at = START + timedelta(days=8, hours=20)
    summary = _post(client, "/detect", keys["admin"], at=at.isoformat()).json()
    assert f"sku={hot}|aspect:product_quality" in summary["keys"]
    alerts = _get(client, "/alerts", keys["read"])["alerts"]
    active = [a for a in alerts if not a["suppressed"]]
    assert [a["dedup_key"] for a in active] == [f"sku={hot}|aspect:product_quality"]
    alert = active[0]
    assert alert["owner"] == "product-quality" and alert["playbook"]["id"] == "product_quality"
    assert alert["state"] == "open" and alert["severity"] in ("warning", "error", "critical")
    assert alert["evidence"]["count"] >= 5 and alert["evidence"]["baseline_rate"] < alert["evidence"]["rate"]
    # broader slices explained by the same items are inhibited, not notified
    inhibited = [a for a in alerts if a["suppressed"]]
    assert all(a["suppressed"] == f"inhibited:{alert['id']}" for a in inhibited)
    log = _get(client, "/notifications", keys["read"])["notifications"]
    assert {n["channel"] for n in log} >= {"slack", "teams", "jira"}
    assert all(n["status"] == "recorded" for n in log)  # no channel configured: recorded only
    assert all(n["alert_ids"] == [alert["id"]] for n in log)
    assert not re.search(r"cust-\d{6}", json.dumps(log))

    # the same incident found again: updated, never a second alert, no repeated notification in the cool-down
    _post(client, "/detect", keys["admin"], at=(at + timedelta(hours=2)).isoformat())
    again = [a for a in _get(client, "/alerts", keys["read"])["alerts"] if a["dedup_key"] == alert["dedup_key"]]
    assert len(again) == 1 and again[0]["id"] == alert["id"]
    assert again[0]["evidence"]["count"] >= alert["evidence"]["count"]
    newer = _get(client, "/notifications", keys["read"])["notifications"][:-len(log)]
    if again[0]["severity"] == alert["severity"]:
        assert newer == []  # grew within the cool-down: no repeat
    else:  # escalated: notified again, still no second Jira issue
        assert newer and "jira" not in {n["channel"] for n in newer}
    later = _get(client, "/alerts", keys["read"])["alerts"]
    assert [a["id"] for a in later if not a["suppressed"]] == [alert["id"]]  # other slices stay inhibited


def test_incident_workflow_scopes_and_verification_on_recovered_data(incident_loop):
    context, client, keys, scenario = incident_loop
    (alert,) = [a for a in _get(client, "/alerts", keys["read"], status="open")["alerts"] if not a["suppressed"]]
    assert _post(client, f"/alerts/{alert['id']}/ack", keys["read"]).status_code == 403
    assert client.post(f"/alerts/{alert['id']}/ack").status_code == 401
    assert _post(client, "/alerts/nope/ack", keys["review"]).status_code == 404
    assert _post(client, f"/alerts/{alert['id']}/ack", keys["review"], {"note": "on it"}).json()["state"] == "acknowledged"
    assert _post(client, f"/alerts/{alert['id']}/ack", keys["review"]).status_code == 409
    assert _post(client, f"/alerts/{alert['id']}/mitigate", keys["review"],
                 {"note": "batch withdrawn"}).json()["state"] == "mitigating"
    assert _post(client, f"/alerts/{alert['id']}/resolve", keys["review"]).json()["state"] == "resolved"
    assert _get(client, "/alerts", keys["read"], status="resolved")["alerts"][0]["id"] == alert["id"]
    # PagerDuty got acknowledge and resolve for the same dedup key (recorded)
    events = [n for n in _get(client, "/notifications", keys["read"], alert_id=alert["id"])["notifications"]
              if n["channel"] == "pagerduty"]
    assert {n["payload"]["event_action"] for n in events} >= {"trigger", "acknowledge", "resolve"}
    assert {n["payload"]["dedup_key"] for n in events} == {alert["dedup_key"]}

    # two recovered days (the spike is over) replayed, then detection: the playbook's check verifies the fix
    recovered = small_scenario(days=11)
    recovered_records = [r for r in generate(recovered) if r["created_at"] >= (START + timedelta(days=9)).isoformat()]
    post_records(client, keys["submit"], ({**r, "feedback_id": "rec-" + r["feedback_id"]} for r in recovered_records))
    context.worker.drain()
    _post(client, "/detect", keys["admin"], at=(START + timedelta(days=11)).isoformat())
    detail = _get(client, f"/alerts/{alert['id']}", keys["read"])
    assert detail["state"] == "verified", detail["validation"]
    assert detail["validation"]["rate_after"] <= 1.25 * detail["evidence"]["baseline_rate"]
    record = detail["post_incident"]
    assert record["triggered"]["count"] == detail["evidence"]["count"]
    assert [a["action"] for a in record["done"]] == ["open", "ack", "mitigate", "resolve", "verified"]
    assert detail["actions"][1]["actor"].startswith("key:")


def test_bad_requests_get_clear_errors(incident_loop):
    _, client, keys, _ = incident_loop
    assert client.get("/alerts", headers={"x-api-key": keys["read"]}, params={"status": "nope"}).status_code == 422
    assert _post(client, "/detect", keys["admin"], at="yesterday").status_code == 422
    assert _post(client, "/detect", keys["review"]).status_code == 403
    assert client.get("/alerts/unknown", headers={"x-api-key": keys["read"]}).status_code == 404


def test_silence_suppresses_and_needs_admin(tmp_path):
    context, client, keys = make_loop(tmp_path / "ws")
    scenario = small_scenario(days=9, defect_day=8)
    post_records(client, keys["submit"], generate(scenario))
    context.worker.drain()
    _post(client, "/detect", keys["admin"], at=(START + timedelta(days=8, hours=20)).isoformat())
    (alert,) = [a for a in _get(client, "/alerts", keys["read"])["alerts"] if not a["suppressed"]]
    assert _post(client, f"/alerts/{alert['id']}/silence", keys["review"], {"hours": 2}).status_code == 403
    assert _post(client, f"/alerts/{alert['id']}/silence", keys["admin"], {"hours": -1}).status_code == 422
    silence = _post(client, f"/alerts/{alert['id']}/silence", keys["admin"], {"hours": 2, "comment": "known"}).json()
    before = len(_get(client, "/notifications", keys["read"])["notifications"])
    _post(client, "/detect", keys["admin"], at=(START + timedelta(days=8, hours=23)).isoformat())
    assert _get(client, f"/alerts/{alert['id']}", keys["read"])["suppressed"] == f"silenced:{silence['id']}"
    assert len(_get(client, "/notifications", keys["read"])["notifications"]) == before
    assert _get(client, "/silences", keys["read"])["silences"][0]["matchers"] == {"dedup_key": alert["dedup_key"]}


def test_review_queue_correction_overrides_insights_feeds_retraining_and_is_audited(incident_loop):
    from typer.testing import CliRunner

    from pipelines.cli import app as fbrain_app

    context, client, keys, scenario = incident_loop
    assert client.get("/review", headers={"x-api-key": keys["read"]}).status_code == 403
    queue = _get(client, "/review", keys["review"])
    items = queue["items"]
    assert items and [i["priority"] for i in items] == sorted((i["priority"] for i in items), reverse=True)
    assert {r for i in items for r in i["reasons"]} >= {"alert", "low_confidence"}
    target = next(i for i in items if i["snapshot"]["sentiment"] == "negative" and i["alert_id"])
    day = target["snapshot"]["created_at"][:10]
    window = {"sku": target["snapshot"]["sku"], "since": f"{day}T00:00:00Z", "until": f"{day}T23:59:59Z"}
    before = _get(client, "/insights", keys["read"], **window)

    answer = _post(client, f"/review/{target['feedback_id']}", keys["review"], {
        "reviewer": "ana", "sentiment": "positive", "intent": "praise", "aspects": [], "flags": [],
        "alert_id": target["alert_id"], "alert_verdict": "true_positive"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["correction"]["location"]

    after = _get(client, "/insights", keys["read"], **window)
    assert after["sentiment"]["positive"]["count"] == before["sentiment"].get("positive", {}).get("count", 0) + 1
    assert after["sentiment"]["negative"]["count"] == before["sentiment"]["negative"]["count"] - 1
    held = _get(client, f"/feedback/{target['feedback_id']}", keys["read"])
    assert held["corrections"]["sentiment"] == "positive"
    # the corrections store that feeds retraining counts it
    triggers = CliRunner().invoke(fbrain_app, ["monitor", "triggers", "check", "--workspace", str(context.lake.workspace)])
    assert triggers.exit_code == 0, triggers.output
    assert json.loads(triggers.output[triggers.output.index("{"):])["new_corrections"] == 1
    audit = client.get("/audit", headers={"x-api-key": keys["admin"]}).json()["entries"]
    correction = next(e for e in audit if e["action"] == "correction")
    assert correction["before"]["sentiment"] == "negative" and correction["after"]["sentiment"] == "positive"
    assert correction["actor"].startswith("key:") and correction["actor"].endswith("/ana")
    assert _get(client, "/review", keys["review"], status="reviewed")["items"][0]["feedback_id"] == target["feedback_id"]
    assert context.alerting.manager.precision()["precision"] == 1.0


def test_review_bad_input(incident_loop):
    _, client, keys, _ = incident_loop
    some = _get(client, "/review", keys["review"])["items"][0]["feedback_id"]
    assert _post(client, f"/review/{some}", keys["review"], {"sentiment": "positive"}).status_code == 422  # reviewer
    bad = _post(client, f"/review/{some}", keys["review"], {"reviewer": "ana", "sentiment": "ecstatic"})
    assert bad.status_code == 422 and bad.json()["detail"]["reason"] == "unknown_label"
    assert _post(client, f"/review/{some}", keys["review"], {"reviewer": "ana", "flags": ["nope"]}).status_code == 422
    assert _post(client, "/review/missing", keys["review"], {"reviewer": "ana", "sentiment": "positive"}).status_code == 404
    assert _post(client, f"/review/{some}", keys["review"], {"reviewer": "ana"}).status_code == 422


def test_a_safety_report_alerts_at_once_and_wants_two_reviewers(incident_loop):
    context, client, keys, scenario = incident_loop
    at = START + timedelta(days=11, hours=3)
    sku = scenario.skus[1]
    report = {"feedback_id": "safety-1", "text": "it overheated and caught fire, my hand got burned",
              "channel": "email", "created_at": (at - timedelta(minutes=20)).isoformat(), "customer_id": "cust-999999",
              **sku}
    post_records(client, keys["submit"], [report])
    context.worker.drain()
    _post(client, "/detect", keys["admin"], at=at.isoformat())
    (alert,) = [a for a in _get(client, "/alerts", keys["read"])["alerts"] if a["signal"] == "flag:safety_concern"]
    assert alert["severity"] == "critical" and alert["owner"] == "product-safety" and alert["playbook"]["id"] == "safety"
    queue = _get(client, "/review", keys["review"])["items"]
    assert queue[0]["feedback_id"] == "safety-1" and "safety" in queue[0]["reasons"] and queue[0]["reviews_needed"] == 2
    for reviewer in ("ana", "ben"):
        answer = _post(client, "/review/safety-1", keys["review"], {"reviewer": reviewer, "flags": ["safety_concern"],
                                                                     "alert_verdict": "true_positive"})
        assert answer.status_code == 200, answer.text
        pending = {i["feedback_id"] for i in _get(client, "/review", keys["review"])["items"]}
        assert ("safety-1" in pending) == (reviewer == "ana")  # done after the second reviewer
    assert _get(client, "/review", keys["review"])["agreement"] == {"double_reviewed": 1, "agreeing": 1,
                                                                     "agreement": 1.0}


def test_forgetting_a_customer_removes_their_items_from_the_review_queue_and_alert_examples(incident_loop):
    context, client, keys, _ = incident_loop
    assert "safety-1" in {i["feedback_id"] for i in _get(client, "/review", keys["review"], status="reviewed")["items"]}
    audit = _post(client, "/admin/forget", keys["admin"], {"customer_id": "cust-999999"})
    assert audit.status_code == 200, audit.text
    assert audit.json()["counts"]["review_queue"] == 1 and audit.json()["counts"]["alert_examples"] >= 1
    for status in ("pending", "reviewed"):
        assert "safety-1" not in {i["feedback_id"] for i in _get(client, "/review", keys["review"], status=status)["items"]}
    alerts = _get(client, "/alerts", keys["read"])["alerts"]
    assert not any(e["feedback_id"] == "safety-1" for a in alerts for e in a["evidence"]["examples"])
