"""Alerting on AWS: the detection and operations API Lambdas against moto (DynamoDB, Secrets Manager, S3),
channels faked with httpx.MockTransport, the lake a local SQL catalog in a tmp folder (the Glue catalog is
the same pyiceberg API)."""
from __future__ import annotations

import json
import os
import random
import re
from datetime import datetime, timedelta, timezone

import boto3
import httpx
import pyarrow as pa
import pytest
from moto import mock_aws

from operations import lake as lake_tables
from state_support import create_tables

REGION = "us-east-1"
NOW = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
HOT_SKU = "SKU-HOT"
HOT_KEY = f"sku={HOT_SKU}|aspect:product_quality"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
CORRECTIONS_BUCKET = "fb-corrections"


def _silver_rows() -> list[dict]:
    """8 quiet days on three SKUs (about 4% negative product-quality mentions), then 13 hours in which
    two thirds of HOT_SKU's items are negative about product quality, quoting an e-mail address."""
    rng = random.Random(7)
    rows = []

    def row(n, sku, created, negative, text):
        return {"feedback_id": f"fb-{n:05d}", "seq": n, "text": text, "title": None, "channel": "web",
                "source": "reviews", "customer_id": f"pc-{n % 97}", "order_id": None, "sku": sku,
                "product_category": "kitchen", "region": "EU", "language": "en", "language_detected": True,
                "star_rating": 1 if negative else 5, "sentiment": "negative" if negative else "positive",
                "sentiment_score": 0.95, "intent": "complaint" if negative else "praise", "intent_score": 0.9,
                "aspects": ["product_quality"] if negative else [], "flags": [], "model_name": "m",
                "model_version": "1", "created_at": created, "received_at": created, "enriched_at": created,
                "scored_at": created, "batch_id": 1}

    n = 0
    start = NOW - timedelta(days=8)
    for hour in range(8 * 24 - 12):
        for sku in ("SKU-A", "SKU-B", HOT_SKU):
            created = start + timedelta(hours=hour, minutes=rng.randint(0, 59))
            negative = rng.random() < 0.04
            rows.append(row(n, sku, created, negative, "it broke after a week" if negative else "works great"))
            n += 1
    for i in range(60):  # the spike goes on after NOW: the second evaluation finds it grown
        created = NOW - timedelta(hours=12) + timedelta(minutes=13 * i)
        negative = i % 3 != 0
        text = f"cracked on day one, write to jane.doe{i}@example.com" if negative else "fine"
        rows.append(row(n, HOT_SKU, created, negative, text))
        n += 1
    return rows


class ChannelEndpoints:
    """Slack and PagerDuty as an httpx.MockTransport: records what each was sent."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "events.pagerduty.test":
            return httpx.Response(202, json={"status": "success", "dedup_key": json.loads(request.content)["dedup_key"]})
        return httpx.Response(200, text="ok")

    def sent(self, host: str) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.host == host]


@pytest.fixture
def aws(tmp_path, monkeypatch):
    from operations.alerting.config import AlertingConfig
    from operations.config import LoopConfig
    from operations.lake import Lake

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    workspace = tmp_path / "ws"
    config = AlertingConfig()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_tables(dynamodb, config)
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.create_secret(Name="fbrain/slack", SecretString="https://hooks.slack.test/T0/B0/XYZ")
        secrets.create_secret(Name="fbrain/pagerduty", SecretString=json.dumps({"FBRAIN_PAGERDUTY_ROUTING_KEY": "R" * 32}))
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=CORRECTIONS_BUCKET)
        lake = Lake(LoopConfig(), workspace)
        lake.write(lake_tables.SILVER, pa.Table.from_pylist(_silver_rows(), schema=lake_tables.SCHEMAS[lake_tables.SILVER]),
                   {"fbrain.batch": "1"})
        environ = {
            "FBRAIN_WORKSPACE": str(workspace),
            "FBRAIN__LOOP__CATALOG": "sql",  # the Lambda's default is glue; here the local catalog of the same tables
            "FBRAIN__ALERTING__CHANNELS": '["slack", "pagerduty"]',
            "FBRAIN__ALERTING__SLACK_SECRET_ID": "fbrain/slack",
            "FBRAIN__ALERTING__PAGERDUTY_SECRET_ID": "fbrain/pagerduty",
            "FBRAIN__ALERTING__PAGERDUTY_MIN_SEVERITY": "warning",
            "FBRAIN__ALERTING__CORRECTIONS_BUCKET": CORRECTIONS_BUCKET,
            "FBRAIN_PAGERDUTY_EVENTS_URL": "https://events.pagerduty.test",
        }
        endpoints = ChannelEndpoints()
        yield {"dynamodb": dynamodb, "environ": environ, "endpoints": endpoints, "lake": lake, "config": config}


def _runtime(aws, **environ):
    from operations.alerting_aws_lambda import build_runtime

    return build_runtime({**aws["environ"], **environ}, dynamodb=aws["dynamodb"], transport=aws["endpoints"].transport,
                         for_reviews=True)


def _items(aws, table: str, prefix: str) -> list[dict]:
    key = "incident_id" if "incidents" in table else "item_id"
    items = aws["dynamodb"].scan(TableName=table)["Items"]
    return [i for i in items if i[key]["S"].startswith(prefix)]


def _call(runtime, method, path, scopes="read review admin", body=None, query=None):
    from operations.alerting_aws_lambda import operations_api_handler

    event = {"httpMethod": method, "path": path, "queryStringParameters": query,
             "body": None if body is None else json.dumps(body),
             "requestContext": {"identity": {"apiKeyId": "k1abc"}, "authorizer": {"scopes": scopes}}}
    answer = operations_api_handler(event, None, runtime=runtime)
    return answer["statusCode"], json.loads(answer["body"])


@pytest.mark.slow  # two detection runs / a review's lake rewrite: 5-8 s here
def test_a_replayed_incident_is_one_alert_in_dynamodb_notified_once_without_pii(aws):
    from operations.alerting_aws_lambda import detect_handler

    runtime = _runtime(aws)
    assert runtime.alerting.store.__class__.__name__ == "DynamoAlertState"
    summary = detect_handler({"at": NOW.isoformat()}, None, runtime=runtime)
    assert HOT_KEY in summary["keys"]
    # the run's alert volume reaches CloudWatch (the deployed dashboard's widget)
    cloudwatch = boto3.client("cloudwatch", region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    metrics = cloudwatch.list_metrics(Namespace=runtime.alerting.config.metrics_namespace)["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"Findings", "AlertsTouched", "Notifications", "ItemsRead",
                                                 "DetectionSeconds"}
    incidents = aws["config"].incidents_table
    alerts = [i for i in _items(aws, incidents, "alert#") if i["dedup_key"]["S"] == HOT_KEY]
    assert len(alerts) == 1 and alerts[0]["state"]["S"] == "open" and alerts[0]["owner"]["S"] == "product-quality"
    assert len(_items(aws, incidents, f"dedup#{HOT_KEY}")) == 1
    slack, paged = aws["endpoints"].sent("hooks.slack.test"), aws["endpoints"].sent("events.pagerduty.test")
    assert len(slack) == 1 and HOT_SKU in json.dumps(slack) and [p["event_action"] for p in paged] == ["trigger"]
    status, log = _call(runtime, "GET", "/notifications")
    assert status == 200 and {n["channel"] for n in log["notifications"]} == {"slack", "pagerduty"}
    assert {n["status"] for n in log["notifications"]} == {"sent"}
    sent_text = json.dumps(log) + json.dumps(slack) + json.dumps(paged)
    assert "cracked on day one" in sent_text and not EMAIL.search(sent_text)  # examples travel, masked
    assert "R" * 32 not in json.dumps(log)  # the routing key never enters the log

    # the same incident at a later evaluation: the same alert, updated; no repeat notification in the cool-down
    detect_handler({"at": (NOW + timedelta(hours=1)).isoformat()}, None, runtime=_runtime(aws))
    again = [i for i in _items(aws, incidents, "alert#") if i["dedup_key"]["S"] == HOT_KEY]
    assert [a["id"]["S"] for a in again] == [alerts[0]["id"]["S"]]
    assert again[0]["last_finding_at"]["S"] > alerts[0]["last_finding_at"]["S"]
    assert again[0]["severity"]["S"] == alerts[0]["severity"]["S"] == "critical"
    assert json.loads(again[0]["evidence"]["S"])["count"] > json.loads(alerts[0]["evidence"]["S"])["count"]  # grew
    assert _call(runtime, "GET", "/notifications")[1]["count"] == log["count"]
    assert len(aws["endpoints"].requests) == 2


def test_ack_and_resolve_through_the_operations_api(aws):
    from operations.alerting_aws_lambda import detect_handler

    runtime = _runtime(aws)
    detect_handler({"time": NOW.isoformat()}, None, runtime=runtime)  # an EventBridge schedule's event time
    status, listed = _call(runtime, "GET", "/alerts", query={"status": "open"})
    (alert,) = [a for a in listed["alerts"] if a["dedup_key"] == HOT_KEY]
    path = f"/alerts/{alert['id']}"
    assert _call(runtime, "POST", f"{path}/ack", scopes="fbrain/read")[0] == 403
    assert _call(runtime, "POST", "/alerts/alert-nope/ack")[0] == 404
    status, acked = _call(runtime, "POST", f"{path}/ack", scopes="fbrain/review", body={"note": "on it"})
    assert status == 200 and acked["state"] == "acknowledged"
    assert _call(runtime, "POST", f"{path}/ack")[1]["detail"]["reason"] == "invalid_transition"
    assert _call(runtime, "POST", f"{path}/ack")[0] == 409
    assert _call(runtime, "POST", f"{path}/resolve", scopes="review")[1]["state"] == "resolved"
    stored = [i for i in _items(aws, aws["config"].incidents_table, "alert#") if i["id"]["S"] == alert["id"]][0]
    assert stored["state"]["S"] == "resolved" and stored["resolved_wall"]["S"]
    status, detail = _call(runtime, "GET", path)
    assert status == 200 and [a["action"] for a in detail["actions"]] == ["open", "ack", "resolve"]
    assert {a["actor"] for a in detail["actions"][1:]} == {"key:k1abc"}
    assert [p["event_action"] for p in aws["endpoints"].sent("events.pagerduty.test")] == \
        ["trigger", "acknowledge", "resolve"]
    assert _call(runtime, "GET", "/alerts", query={"status": "nonsense"})[0] == 422
    assert _call(runtime, "GET", "/alerts", query={"limit": "0"})[0] == 422
    assert _call(runtime, "DELETE", path)[0] == 405
    assert _call(runtime, "GET", "/nowhere")[0] == 404
    assert _call(runtime, "POST", f"{path}/resolve", body=None)[0] == 409  # already resolved
    broken = _call(runtime, "POST", f"{path}/silence", scopes="admin", body=None)
    assert broken[0] == 200  # no body: the default 24 h, as on the service
    status, silenced = _call(runtime, "POST", f"{path}/silence", scopes="review", body={"hours": 2})
    assert status == 403  # silencing needs admin, as on the local service
    status, silenced = _call(runtime, "POST", f"{path}/silence", scopes="admin", body={"hours": 2, "comment": "x"})
    assert status == 200 and _call(runtime, "GET", "/silences")[1]["silences"][0]["id"] == silenced["id"]


@pytest.mark.slow  # two detection runs / a review's lake rewrite: 5-8 s here
def test_a_review_changes_the_stored_correction_the_lake_and_the_audit_log(aws):
    from operations.alerting_aws_lambda import detect_handler

    runtime = _runtime(aws)
    detect_handler({"at": NOW.isoformat()}, None, runtime=runtime)
    status, queue = _call(runtime, "GET", "/review", scopes="review")
    assert status == 200 and queue["count"] > 0
    item = next(i for i in queue["items"] if "alert" in i["reasons"])
    assert not EMAIL.search(json.dumps(queue))
    feedback_id = item["feedback_id"]
    assert _call(runtime, "POST", f"/review/{feedback_id}", scopes="read", body={"reviewer": "ana"})[0] == 403
    assert _call(runtime, "POST", f"/review/{feedback_id}", scopes="review", body={"sentiment": "neutral"})[0] == 422
    status, missing = _call(runtime, "POST", "/review/fb%2Fnone", body={"reviewer": "ana", "sentiment": "neutral"})
    assert status == 404 and missing["detail"]["message"] == "no scored feedback 'fb/none'"
    status, receipt = _call(runtime, "POST", f"/review/{feedback_id}", scopes="review",
                            body={"reviewer": "ana", "sentiment": "neutral", "alert_verdict": "true_positive"})
    assert status == 200, receipt
    assert receipt["correction"]["location"].startswith(f"s3://{CORRECTIONS_BUCKET}/corrections/")
    key = receipt["correction"]["location"].split("/", 3)[3]
    stored = json.loads(boto3.client("s3", region_name=REGION).get_object(Bucket=CORRECTIONS_BUCKET, Key=key)["Body"].read())
    assert stored["feedback_id"] == feedback_id and stored["labels"] == {"sentiment": "neutral"}
    from pyiceberg.expressions import EqualTo

    (row,) = aws["lake"].scan(lake_tables.SILVER, EqualTo("feedback_id", feedback_id)).to_pylist()
    assert row["corrected_sentiment"] == "neutral"
    # a critical item wants two reviewers: still pending after one, reviewed after the second, agreement counted
    assert item["reviews_needed"] == 2
    pending = _call(runtime, "GET", "/review", scopes="review")[1]
    assert [r["reviewer"] for r in next(i for i in pending["items"] if i["feedback_id"] == feedback_id)["reviews"]] == ["ana"]
    assert _call(runtime, "POST", f"/review/{feedback_id}", scopes="review",
                 body={"reviewer": "ben", "sentiment": "neutral"})[0] == 200
    reviewed = _call(runtime, "GET", "/review", scopes="review", query={"status": "reviewed"})[1]
    assert [i["feedback_id"] for i in reviewed["items"]] == [feedback_id]
    assert [r["reviewer"] for r in reviewed["items"][0]["reviews"]] == ["ana", "ben"]
    assert reviewed["agreement"] == {"double_reviewed": 1, "agreeing": 1, "agreement": 1.0}
    audit = _call(runtime, "GET", "/audit", scopes="admin")[1]["entries"]
    assert {(e["subject"], e["action"]) for e in audit} >= {(f"feedback:{feedback_id}", "correction")}
    assert runtime.alerting.manager.precision()["true_positive"] == 1
    insights = _call(runtime, "GET", "/insights", query={"sku": item["snapshot"]["sku"], "until": NOW.isoformat()})[1]
    assert insights["sentiment"]["neutral"]["count"] == 1  # the correction overrides the prediction at once


def test_an_unreadable_channel_secret_fails_that_channel_in_the_log_and_the_others_send(aws):
    from operations.alerting_aws_lambda import detect_handler

    runtime = _runtime(aws, FBRAIN__ALERTING__SLACK_SECRET_ID="fbrain/missing")
    detect_handler({"at": NOW.isoformat()}, None, runtime=runtime)
    log = _call(runtime, "GET", "/notifications")[1]["notifications"]
    slack = [n for n in log if n["channel"] == "slack"]
    assert slack and all(n["status"] == "failed" and "fbrain/missing" in n["error"] for n in slack)
    assert {n["status"] for n in log if n["channel"] == "pagerduty"} == {"sent"}


def test_cold_start_builds_from_the_environment_once(aws, monkeypatch):
    from operations import alerting_aws_lambda as aws_lambda

    for name, value in {**aws["environ"], "FBRAIN__ALERTING__CHANNELS": "[]"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(aws_lambda, "_RUNTIMES", {})
    summary = aws_lambda.detect_handler({"at": NOW.isoformat()}, None)
    assert HOT_KEY in summary["keys"]
    first = aws_lambda._RUNTIMES["detect"]
    aws_lambda.detect_handler({"at": NOW.isoformat()}, None)
    assert aws_lambda._RUNTIMES["detect"] is first
    answer = aws_lambda.operations_api_handler({"httpMethod": "GET", "path": "/alerts", "requestContext": {}}, None)
    assert answer["statusCode"] == 403  # no authorizer scopes and alerting.api_key_scopes empty: nothing allowed
    monkeypatch.setenv("FBRAIN__ALERTING__API_KEY_SCOPES", '["read"]')
    monkeypatch.setattr(aws_lambda, "_RUNTIMES", {})
    answer = aws_lambda.operations_api_handler(
        {"version": "2.0", "rawPath": "/alerts", "requestContext": {"http": {"method": "GET"}}}, None)
    assert answer["statusCode"] == 200 and HOT_KEY in answer["body"]


@pytest.mark.parametrize("authorizer, expected", [
    ({"jwt": {"scopes": ["fbrain/read", "fbrain/review"]}}, {"read", "review"}),
    ({"claims": {"scope": "fbrain/admin openid"}}, {"admin"}),
    ({"scopes": "read,review", "principalId": "u1"}, {"read", "review"}),
    ({}, set()),
])
def test_scopes_come_from_the_authorizer_or_the_configured_key_scopes(authorizer, expected):
    from operations.alerting_aws_lambda import request_scopes
    from operations.alerting.config import AlertingConfig

    event = {"requestContext": {"authorizer": authorizer}}
    assert request_scopes(event, AlertingConfig()) == expected
    if not authorizer:
        assert request_scopes(event, AlertingConfig(api_key_scopes=["read"])) == {"read"}


def test_the_api_masks_the_actor_and_answers_an_unexpected_failure_with_500(aws, monkeypatch):
    from operations.alerting_aws_lambda import operations_api_handler
    from operations.alerting.state import new_id

    runtime = _runtime(aws)
    alert_id = new_id("alert")
    runtime.alerting.store.insert_alert({
        "id": alert_id, "dedup_key": "sku=S1|aspect:packaging", "state": "open", "severity": "warning",
        "kind": "trend", "dimension": "sku", "value": "S1", "signal": "aspect:packaging", "owner": "fulfilment",
        "evidence": {"count": 5, "examples": [], "feedback_ids": []}, "opened_at": NOW.isoformat(),
        "first_seen": NOW.isoformat(), "last_finding_at": NOW.isoformat(), "created_wall": NOW.isoformat(),
        "updated_wall": NOW.isoformat()})
    event = {"httpMethod": "POST", "path": f"/alerts/{alert_id}/ack", "body": "{}",
             "requestContext": {"authorizer": {"principalId": "jane.doe@example.com", "scopes": "review"}}}
    assert operations_api_handler(event, None, runtime=runtime)["statusCode"] == 200
    (action,) = [a for a in runtime.alerting.store.actions(alert_id) if a["action"] == "ack"]
    assert action["actor"].startswith("principal:") and "jane.doe@example.com" not in action["actor"]
    assert _call(runtime, "POST", f"/alerts/{alert_id}/resolve", body="not an object")[0] == 422
    event["body"] = "{not json"
    assert json.loads(operations_api_handler(event, None, runtime=runtime)["body"])["detail"]["reason"] == "invalid_json"

    def broken(*args, **kwargs):
        raise RuntimeError("table gone")

    monkeypatch.setattr(runtime.alerting.store, "alerts", broken)
    status, body = _call(runtime, "GET", "/alerts")
    assert status == 500 and body["detail"]["reason"] == "internal_error" and "table gone" not in json.dumps(body)


@pytest.mark.slow  # imports the whole fbrain CLI
def test_fbrain_loop_detect_keeps_its_state_in_dynamodb_when_configured(aws):
    """The same command, `alerting.state_backend=dynamodb`: what the Lambda writes, the CLI reads and writes."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    workspace = aws["environ"]["FBRAIN_WORKSPACE"]
    result = CliRunner().invoke(app, ["--set", "alerting.state_backend=dynamodb", "--set", "alerting.channels=[]",
                                      "loop", "detect", "--at", NOW.isoformat(), "--workspace", workspace])
    assert result.exit_code == 0, result.output
    assert HOT_KEY in json.loads(result.output)["keys"]
    alerts = [i for i in _items(aws, aws["config"].incidents_table, "alert#") if i["dedup_key"]["S"] == HOT_KEY]
    assert len(alerts) == 1
    status, listed = _call(_runtime(aws), "GET", "/alerts")
    assert status == 200 and HOT_KEY in {a["dedup_key"] for a in listed["alerts"]}
