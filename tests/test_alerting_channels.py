"""Notification channels against a local HTTP server (payload contracts) and httpx.MockTransport (retries)."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from operations.alerting.channels import (PAGERDUTY_MAX_DEDUP_KEY, SLACK_MAX_BLOCKS, SLACK_MAX_SECTION_CHARS, Channels,
                                          HttpSender, read_setting)
from operations.alerting.config import AlertingConfig


def _alert(i=0, key=None, severity="critical", example="the sole cracked after a day"):
    return {"id": f"alert-{i}", "dedup_key": key or f"sku=SKU-{i}|aspect:product_quality", "state": "open",
            "severity": severity, "kind": "trend", "dimension": "sku", "value": f"SKU-{i}",
            "signal": "aspect:product_quality", "owner": "product-quality",
            "playbook": {"id": "product_quality", "version": "1", "title": "Product defect",
                         "diagnostic_steps": ["check batch"], "actions": ["hold stock"]},
            "evidence": {"count": 12, "volume": 40, "window_hours": 24, "rate": 0.3, "baseline_rate": 0.05,
                         "lift": 6.0, "p_value": 1e-9, "value": f"SKU-{i}",
                         "examples": [{"text": example * 40}] * 3}}


@pytest.fixture
def server():
    received = []
    responses = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            code, payload = responses.pop(0) if responses else (200, {"key": "FB-1"} if "issue" in self.path else {})
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", received, responses
    httpd.shutdown()


def _channels(url):
    environ = {"FBRAIN_SLACK_WEBHOOK_URL": f"{url}/slack/hook", "FBRAIN_TEAMS_WEBHOOK_URL": f"{url}/teams/hook",
               "FBRAIN_JIRA_BASE_URL": url, "FBRAIN_JIRA_EMAIL": "ops@example.com", "FBRAIN_JIRA_API_TOKEN": "tok",
               "FBRAIN_PAGERDUTY_ROUTING_KEY": "R" * 32, "FBRAIN_PAGERDUTY_EVENTS_URL": url}
    return Channels(AlertingConfig(), environ=environ, sleep=lambda s: None)


def test_slack_block_kit_limits_hold_for_a_large_group(server):
    url, received, _ = server
    payload, delivery = _channels(url).group("slack", [_alert(i) for i in range(40)])
    assert delivery.status == "sent" and delivery.code == 200
    body = received[-1]["body"]
    assert received[-1]["path"] == "/slack/hook" and body == payload
    assert body["text"] and len(body["blocks"]) <= SLACK_MAX_BLOCKS
    for block in body["blocks"]:
        texts = [block.get("text", {}).get("text", "")] + [e.get("text", "") for e in block.get("elements", [])
                                                           if isinstance(e.get("text"), str)]
        assert all(len(t) <= SLACK_MAX_SECTION_CHARS for t in texts)
    assert body["blocks"][0]["type"] == "header" and body["blocks"][-1]["type"] == "actions"
    assert any("more on the dashboard" in b.get("text", {}).get("text", "") for b in body["blocks"])


def test_teams_adaptive_card(server):
    url, received, _ = server
    _, delivery = _channels(url).group("teams", [_alert(1)])
    assert delivery.status == "sent"
    body = received[-1]["body"]
    (attachment,) = body["attachments"]
    assert body["type"] == "message" and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and card["body"][0]["type"] == "TextBlock"
    assert card["actions"][0]["type"] == "Action.OpenUrl"


def test_jira_create_issue_with_adf_and_basic_auth(server):
    url, received, _ = server
    _, delivery = _channels(url).jira(_alert(2))
    assert delivery.status == "sent" and delivery.response == {"key": "FB-1"}
    request = received[-1]
    assert request["path"] == "/rest/api/3/issue"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"ops@example.com:tok").decode()
    fields = request["body"]["fields"]
    assert fields["project"] == {"key": "FB"} and fields["issuetype"] == {"name": "Task"}
    assert len(fields["summary"]) <= 255
    description = fields["description"]
    assert description["type"] == "doc" and description["version"] == 1
    assert {node["type"] for node in description["content"]} <= {"paragraph", "bulletList"}


def test_pagerduty_events_v2_trigger_acknowledge_resolve(server):
    url, received, _ = server
    channels = _channels(url)
    long_key = "sku=" + "X" * 400 + "|aspect:product_quality"
    for action in ("trigger", "acknowledge", "resolve"):
        logged, delivery = channels.pagerduty(_alert(3, key=long_key), action)
        assert delivery.status == "sent" and logged["routing_key"] == "***"
    events = [r["body"] for r in received]
    assert [r["path"] for r in received] == ["/v2/enqueue"] * 3
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert len({e["dedup_key"] for e in events}) == 1 and len(events[0]["dedup_key"]) == PAGERDUTY_MAX_DEDUP_KEY
    assert events[0]["routing_key"] == "R" * 32
    assert events[0]["payload"]["severity"] in ("critical", "error", "warning", "info")
    assert len(events[0]["payload"]["summary"]) <= 1024 and events[0]["payload"]["source"] == "feedback-brain"
    assert "payload" not in events[1] and "payload" not in events[2]
    with pytest.raises(ValueError, match="event_action"):
        channels.pagerduty(_alert(3), "snooze")


def test_retries_on_5xx_and_429_not_on_4xx():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response([500, 429, 202][len(calls) - 1] if len(calls) <= 3 else 202)

    sender = HttpSender(1.0, 3, httpx.MockTransport(handler), sleep=lambda s: None)
    delivery = sender.post("http://hook.test/x", {"a": 1})
    assert delivery.status == "sent" and delivery.attempts == 3 and delivery.code == 202

    bad = HttpSender(1.0, 3, httpx.MockTransport(lambda r: httpx.Response(400)), sleep=lambda s: None)
    assert (d := bad.post("http://hook.test/x", {})).status == "failed" and d.attempts == 1 and d.code == 400

    def timeout(request):
        raise httpx.ConnectTimeout("slow", request=request)

    slow = HttpSender(1.0, 2, httpx.MockTransport(timeout), sleep=lambda s: None)
    assert (d := slow.post("http://hook.test/x", {})).status == "failed" and d.attempts == 2
    assert d.error == "ConnectTimeout"


def test_unconfigured_channels_only_record():
    channels = Channels(AlertingConfig(), environ={})
    assert not any(channels.configured(c) for c in ("slack", "teams", "jira", "pagerduty"))
    payload, delivery = channels.group("slack", [_alert(1)])
    assert delivery.status == "unconfigured" and payload["blocks"]


def test_secrets_from_aws_secrets_manager():
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("secretsmanager", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response("get_secret_value", {"SecretString": "https://hooks.slack.test/T/B/X", "Name": "slack"},
                         {"SecretId": "fbrain/slack-webhook"})
    with stubber:
        value = read_setting("FBRAIN_SLACK_WEBHOOK_URL", {"FBRAIN_SLACK_WEBHOOK_URL_SECRET_ID": "fbrain/slack-webhook"},
                             client)
    assert value == "https://hooks.slack.test/T/B/X"
    assert read_setting("FBRAIN_SLACK_WEBHOOK_URL", {}, client) is None


def test_a_secret_per_channel_named_in_the_config():
    """alerting.<channel>_secret_id: the bare value or a JSON object; an unreadable or incomplete secret makes
    that channel's deliveries fail with the reason (logged), never a silent skip, and names no secret value."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="fb/teams", SecretString="https://teams.test/hook")
        client.create_secret(Name="fb/jira", SecretString=json.dumps({
            "FBRAIN_JIRA_BASE_URL": "https://acme.atlassian.test", "FBRAIN_JIRA_EMAIL": "bot@acme.test",
            "FBRAIN_JIRA_API_TOKEN": "tok-123"}))
        client.create_secret(Name="fb/pd", SecretString=json.dumps({"routing": "missing the key name"}))
        config = AlertingConfig(teams_secret_id="fb/teams", jira_secret_id="fb/jira", pagerduty_secret_id="fb/pd",
                                slack_secret_id="fb/absent")
        channels = Channels(config, environ={}, secrets_client=client)
        assert channels.settings["teams"] == {"FBRAIN_TEAMS_WEBHOOK_URL": "https://teams.test/hook"}
        assert channels.settings["jira"]["FBRAIN_JIRA_API_TOKEN"] == "tok-123"
        assert set(channels.errors) == {"slack", "pagerduty"}
        _, delivery = channels.group("slack", [_alert(1)])
        assert delivery.status == "failed" and "fb/absent" in delivery.error
        payload, delivery = channels.pagerduty(_alert(1), "trigger")
        assert delivery.status == "failed" and "FBRAIN_PAGERDUTY_ROUTING_KEY" in delivery.error
        assert "missing the key name" not in delivery.error and payload["routing_key"] == ""
        # the environment still wins over the config's secret
        assert Channels(config, environ={"FBRAIN_SLACK_WEBHOOK_URL": "https://hooks.slack.test/env"},
                        secrets_client=client).settings["slack"] == {"FBRAIN_SLACK_WEBHOOK_URL": "https://hooks.slack.test/env"}
