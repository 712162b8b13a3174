"""Notification channels: Slack incoming webhook (Block Kit), Microsoft Teams (Adaptive Card), Jira Cloud
(REST v3 create issue, ADF description) and PagerDuty Events API v2 (trigger / acknowledge / resolve).

Each is a real HTTP client (httpx) with a timeout and retries with exponential backoff on connection
errors, 429 and 5xx. URLs and tokens come from the environment, or from AWS Secrets Manager when the
environment names a secret id instead (`FBRAIN_SLACK_WEBHOOK_URL` or `FBRAIN_SLACK_WEBHOOK_URL_SECRET_ID`),
or from the channel's secret named in the config (`alerting.slack_secret_id`, ...: the way the Lambdas on
AWS get them); never from configuration files. A channel without its settings is `unconfigured`: the
notification is only recorded in the notification log. A channel whose secret cannot be read is not
skipped silently: its notifications are logged as `failed` with the reason, and the other channels send.

Payloads are built from `public_alert` views, whose text has been through the PII masker.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import httpx

from operations.alerting.config import AlertingConfig
from processing.secrets import SecretUnavailable, read_aws_secret

log = logging.getLogger(__name__)

SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION_CHARS = 3000
PAGERDUTY_MAX_DEDUP_KEY = 255
PAGERDUTY_MAX_SUMMARY = 1024
JIRA_MAX_SUMMARY = 255
PAGERDUTY_SEVERITIES = ("info", "warning", "error", "critical")
SECRET_SUFFIX = "_SECRET_ID"

SETTINGS = {
    "slack": ("FBRAIN_SLACK_WEBHOOK_URL",),
    "teams": ("FBRAIN_TEAMS_WEBHOOK_URL",),
    "jira": ("FBRAIN_JIRA_BASE_URL", "FBRAIN_JIRA_EMAIL", "FBRAIN_JIRA_API_TOKEN"),
    "pagerduty": ("FBRAIN_PAGERDUTY_ROUTING_KEY",),
}
"""Environment variables each channel needs (each may instead be NAME_SECRET_ID = a Secrets Manager id)."""
PAGERDUTY_URL_ENV = "FBRAIN_PAGERDUTY_EVENTS_URL"
PAGERDUTY_DEFAULT_URL = "https://events.pagerduty.com"


def read_setting(name: str, environ: Optional[dict[str, str]] = None, secrets_client: Any = None) -> Optional[str]:
    """The value of `name` from the environment, or the Secrets Manager secret named by `name_SECRET_ID`."""
    environ = os.environ if environ is None else environ
    if environ.get(name):
        return environ[name]
    secret_id = environ.get(name + SECRET_SUFFIX)
    if not secret_id:
        return None
    return read_aws_secret(secret_id, secrets_client)


def channel_secret(channel: str, secret_id: str, secrets_client: Any = None) -> dict[str, str]:
    """The settings of `channel` held in one Secrets Manager secret: a JSON object with the SETTINGS names, or,
    for a channel of one setting, the bare value. SecretUnavailable when unreadable or incomplete."""
    value = read_aws_secret(secret_id, secrets_client)
    names = SETTINGS[channel]
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, dict):
        missing = [n for n in names if not parsed.get(n)]
        if missing:
            raise SecretUnavailable(f"secret {secret_id!r} of the {channel} channel lacks {missing}")
        return {n: str(parsed[n]) for n in names}
    if len(names) != 1:
        raise SecretUnavailable(f"secret {secret_id!r} of the {channel} channel must be a JSON object with {list(names)}")
    return {names[0]: value}


def secret_id_of(config: AlertingConfig, channel: str) -> str:
    return getattr(config, f"{channel}_secret_id")


@dataclass
class Delivery:
    status: str
    """sent | failed | unconfigured"""
    code: Optional[int] = None
    attempts: int = 0
    error: Optional[str] = None
    response: Optional[dict[str, Any]] = None


class HttpSender:
    """POST JSON with a timeout and retries (connection errors, 429, 5xx; exponential backoff)."""

    def __init__(self, timeout_s: float, retries: int, transport: Optional[httpx.BaseTransport] = None,
                 sleep: Callable[[float], None] = time.sleep, backoff_s: float = 0.5):
        self.client = httpx.Client(timeout=timeout_s, transport=transport)
        self.retries, self.sleep, self.backoff_s = max(1, retries), sleep, backoff_s

    def post(self, url: str, body: dict[str, Any], headers: Optional[dict[str, str]] = None) -> Delivery:
        error, code = None, None
        for attempt in range(1, self.retries + 1):
            try:
                response = self.client.post(url, json=body, headers=headers or {})
                code = response.status_code
                if code < 300:
                    try:
                        payload = response.json()
                    except ValueError:
                        payload = None
                    return Delivery("sent", code, attempt, response=payload if isinstance(payload, dict) else None)
                error = f"HTTP {code}"
                if code != 429 and code < 500:
                    return Delivery("failed", code, attempt, error)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}"
            if attempt < self.retries:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
        return Delivery("failed", code, self.retries, error)


# ------------------------------------------------------------------------------------------ payloads
def _evidence_line(alert: dict[str, Any]) -> str:
    ev = alert["evidence"]
    if alert["kind"] == "trend":
        return (f"{ev['count']} of {ev['volume']} items in the last {ev['window_hours']:g} h "
                f"({ev['rate']:.1%}) vs baseline {ev['baseline_rate']:.1%}; lift {ev['lift']}x, p={ev['p_value']:.1e}")
    if alert["kind"] == "immediate":
        return f"{ev['count']} item(s) flagged in the last {ev['window_hours']:g} h: escalated at once"
    return f"{ev['count']} similar negative items in {ev['window_hours']:g} h, new against the baseline (terms: {ev['value']})"


def _title(alert: dict[str, Any]) -> str:
    return f"[{alert['severity'].upper()}] {alert['signal']} on {alert['dimension']}={alert['value']}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def slack_payload(alerts: list[dict[str, Any]], dashboard_url: str) -> dict[str, Any]:
    """Block Kit message for a group of alerts of one owner: at most 50 blocks, sections under 3,000 chars."""
    owner = alerts[0]["owner"]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"{len(alerts)} alert(s) for {owner}", 150)}}]
    per_alert = 3
    shown = alerts[:(SLACK_MAX_BLOCKS - 3) // per_alert]
    for alert in shown:
        playbook = alert.get("playbook") or {}
        text = (f"*{_title(alert)}*  ({alert['state']})\n{_evidence_line(alert)}\n"
                f"Owner: *{alert['owner']}*  ·  Playbook: {playbook.get('title', '-')} v{playbook.get('version', '-')}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SLACK_MAX_SECTION_CHARS)}})
        quotes = "\n".join(f"> {e['text']}" for e in alert["evidence"]["examples"]) or "> (no example)"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(quotes, SLACK_MAX_SECTION_CHARS)}]})
        blocks.append({"type": "divider"})
    if len(alerts) > len(shown):
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"…and {len(alerts) - len(shown)} more on the dashboard"}})
    blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open dashboard"},
                                                    "url": dashboard_url}]})
    return {"text": _clip(f"{len(alerts)} alert(s) for {owner}: " + "; ".join(_title(a) for a in alerts), 3000),
            "blocks": blocks[:SLACK_MAX_BLOCKS]}


def teams_payload(alerts: list[dict[str, Any]], dashboard_url: str) -> dict[str, Any]:
    body: list[dict[str, Any]] = [{"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True,
                                   "text": f"{len(alerts)} alert(s) for {alerts[0]['owner']}"}]
    for alert in alerts:
        playbook = alert.get("playbook") or {}
        body.append({"type": "TextBlock", "weight": "Bolder", "wrap": True, "text": _title(alert)})
        body.append({"type": "FactSet", "facts": [
            {"title": "Evidence", "value": _evidence_line(alert)}, {"title": "Owner", "value": alert["owner"]},
            {"title": "State", "value": alert["state"]},
            {"title": "Playbook", "value": f"{playbook.get('title', '-')} v{playbook.get('version', '-')}"}]})
        for example in alert["evidence"]["examples"]:
            body.append({"type": "TextBlock", "wrap": True, "isSubtle": True, "text": f"\u201c{example['text']}\u201d"})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
            "body": body, "actions": [{"type": "Action.OpenUrl", "title": "Open dashboard", "url": dashboard_url}]}
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


def _adf_paragraph(text: str, strong: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if strong:
        node["marks"] = [{"type": "strong"}]
    return {"type": "paragraph", "content": [node]}


def _adf_list(items: list[str]) -> dict[str, Any]:
    return {"type": "bulletList", "content": [{"type": "listItem", "content": [_adf_paragraph(i)]} for i in items]}


def jira_payload(alert: dict[str, Any], project: str) -> dict[str, Any]:
    """Create-issue body (REST v3): summary, labels and an Atlassian Document Format description."""
    playbook = alert.get("playbook") or {}
    content = [_adf_paragraph(_evidence_line(alert)),
               _adf_paragraph(f"Owner: {alert['owner']} · severity {alert['severity']} · dedup key {alert['dedup_key']}"),
               _adf_paragraph("Examples (masked)", strong=True),
               _adf_list([e["text"] for e in alert["evidence"]["examples"]] or ["(none)"])]
    if playbook:
        content += [_adf_paragraph(f"Playbook: {playbook['title']} v{playbook['version']}", strong=True),
                    _adf_paragraph("Diagnostic steps"), _adf_list(playbook["diagnostic_steps"]),
                    _adf_paragraph("Actions"), _adf_list(playbook["actions"])]
    return {"fields": {
        "project": {"key": project}, "issuetype": {"name": "Task"},
        "summary": _clip(_title(alert), JIRA_MAX_SUMMARY),
        "labels": ["feedback-brain", alert["owner"], alert["severity"]],
        "description": {"type": "doc", "version": 1, "content": content}}}


def pagerduty_event(alert: dict[str, Any], action: str, routing_key: str) -> dict[str, Any]:
    if action not in ("trigger", "acknowledge", "resolve"):
        raise ValueError(f"PagerDuty event_action {action!r}: trigger, acknowledge or resolve")
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                             "dedup_key": alert["dedup_key"][:PAGERDUTY_MAX_DEDUP_KEY]}
    if action == "trigger":
        severity = alert["severity"] if alert["severity"] in PAGERDUTY_SEVERITIES else "info"
        event["payload"] = {"summary": _clip(f"{_title(alert)}: {_evidence_line(alert)}", PAGERDUTY_MAX_SUMMARY),
                            "source": "feedback-brain", "severity": severity, "component": alert["dimension"],
                            "group": alert["owner"], "class": alert["signal"],
                            "custom_details": {"owner": alert["owner"], "value": alert["value"],
                                               "playbook": (alert.get("playbook") or {}).get("id"),
                                               "examples": [e["text"] for e in alert["evidence"]["examples"]]}}
    return event


# ------------------------------------------------------------------------------------------ channels
class Channels:
    """The configured channels; `send_*` return (channel, Delivery, payload) for the notification log."""

    def __init__(self, config: AlertingConfig, environ: Optional[dict[str, str]] = None,
                 transport: Optional[httpx.BaseTransport] = None, secrets_client: Any = None,
                 sleep: Callable[[float], None] = time.sleep, dashboard_url: Optional[str] = None):
        self.config, self.dashboard_url = config, dashboard_url or config.dashboard_url
        self.sender = HttpSender(config.http_timeout_s, config.http_retries, transport, sleep)
        self.settings: dict[str, dict[str, str]] = {}
        self.errors: dict[str, str] = {}
        """Channels whose secret could not be read, with why (their deliveries fail, logged)."""
        for channel in config.channels:
            try:
                values = {name: read_setting(name, environ, secrets_client) for name in SETTINGS[channel]}
                if not all(values.values()) and secret_id_of(config, channel):
                    values = channel_secret(channel, secret_id_of(config, channel), secrets_client)  # type: ignore[assignment]
            except SecretUnavailable as exc:
                self.errors[channel] = str(exc)
                log.error("channel %s: %s", channel, exc)
                continue
            if all(values.values()):
                self.settings[channel] = values  # type: ignore[assignment]
        if "pagerduty" in self.settings:
            self.settings["pagerduty"]["url"] = (environ if environ is not None else os.environ).get(
                PAGERDUTY_URL_ENV, PAGERDUTY_DEFAULT_URL)

    def configured(self, channel: str) -> bool:
        return channel in self.settings

    def _not_sent(self, channel: str) -> Optional[Delivery]:
        """The delivery of a channel that cannot send: failed (secret unreadable) or unconfigured."""
        if channel in self.errors:
            return Delivery("failed", error=f"secret unavailable: {self.errors[channel]}")
        return None if self.configured(channel) else Delivery("unconfigured")

    def group(self, channel: str, alerts: list[dict[str, Any]]) -> tuple[dict[str, Any], Delivery]:
        """Slack or Teams message for a group of alerts."""
        payload = (slack_payload if channel == "slack" else teams_payload)(alerts, self.dashboard_url)
        if (not_sent := self._not_sent(channel)) is not None:
            return payload, not_sent
        url = self.settings[channel][SETTINGS[channel][0]]
        return payload, self.sender.post(url, payload)

    def jira(self, alert: dict[str, Any]) -> tuple[dict[str, Any], Delivery]:
        payload = jira_payload(alert, self.config.jira_project)
        if (not_sent := self._not_sent("jira")) is not None:
            return payload, not_sent
        values = self.settings["jira"]
        token = base64.b64encode(f"{values['FBRAIN_JIRA_EMAIL']}:{values['FBRAIN_JIRA_API_TOKEN']}".encode()).decode()
        return payload, self.sender.post(values["FBRAIN_JIRA_BASE_URL"].rstrip("/") + "/rest/api/3/issue", payload,
                                         {"Authorization": f"Basic {token}", "Accept": "application/json"})

    def pagerduty(self, alert: dict[str, Any], action: str) -> tuple[dict[str, Any], Delivery]:
        key = self.settings.get("pagerduty", {}).get("FBRAIN_PAGERDUTY_ROUTING_KEY", "")
        payload = pagerduty_event(alert, action, key)
        if (not_sent := self._not_sent("pagerduty")) is not None:
            return {**payload, "routing_key": ""}, not_sent
        delivery = self.sender.post(self.settings["pagerduty"]["url"].rstrip("/") + "/v2/enqueue", payload)
        return {**payload, "routing_key": "***"}, delivery  # the log never keeps the routing key
