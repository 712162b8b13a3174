"""AlertManager on synthetic findings: dedup, inhibition (explained-away duplicates), reopening, cool-down."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from operations.alerting.alerts import AlertManager, TransitionError
from operations.alerting.channels import Channels
from operations.alerting.config import AlertingConfig
from operations.alerting.detection import Finding
from operations.alerting.playbooks import load_playbooks
from operations.alerting.store import AlertStore

AT = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
CONFIG = AlertingConfig()
PLAYBOOKS = load_playbooks(CONFIG)


def _finding(key, ids, volume, baseline_rate, severity="error", kind="trend", terms=()):
    dimension, _, rest = key.partition("=")
    value, _, signal = rest.partition("|")
    count = len(ids)
    rate = count / volume
    return Finding(key=key, kind=kind, dimension=dimension, value=value, signal=signal or "emerging",
                   severity=severity, owner="logistics" if "shipping" in key else (
                       "voice-of-customer" if kind == "emerging" else "product-quality"),
                   window_hours=24, count=count, volume=volume, rate=rate, baseline_rate=baseline_rate,
                   baseline_count=10, baseline_volume=200, lift=rate / baseline_rate if baseline_rate else None,
                   p_value=1e-10, first_seen=AT.isoformat(), examples=[{"feedback_id": ids[0], "text": "broken"}],
                   feedback_ids=list(ids), terms=list(terms))


@pytest.fixture(params=["sqlite", "dynamodb"])
def manager(request, tmp_path):
    """The same engine on each state backend (operations.alerting.state): SQLite locally, DynamoDB (moto) on AWS."""
    if request.param == "sqlite":
        yield AlertManager(CONFIG, AlertStore(tmp_path / "alerts.db"), PLAYBOOKS, Channels(CONFIG, environ={}))
        return
    from state_support import dynamodb_state

    with dynamodb_state(CONFIG) as state:
        yield AlertManager(CONFIG, state, PLAYBOOKS, Channels(CONFIG, environ={}))


def _state(manager):
    return {a["dedup_key"]: a["suppressed"] for a in manager.store.alerts()}


def test_a_sku_spike_inhibits_its_category_and_a_regional_delay_inhibits_its_skus_and_channels(manager):
    spike = [f"s{i}" for i in range(30)]
    base = [f"b{i}" for i in range(12)]
    region = [f"r{i}" for i in range(120)]
    findings = [
        _finding("sku=SKU-1|aspect:product_quality", spike, 80, 0.05),
        _finding("product_category=shoes|aspect:product_quality", spike + base, 400, 0.05, severity="critical"),
        _finding("region=UK|aspect:shipping_delivery", region + [f"u{i}" for i in range(12)], 600, 0.05, severity="critical"),
        _finding("sku=SKU-7|aspect:shipping_delivery", region[:14], 60, 0.05),
        _finding("channel=email|aspect:shipping_delivery", region[:40] + [f"m{i}" for i in range(6)], 400, 0.05),
    ]
    manager.process(findings, AT)
    state = _state(manager)
    by_key = {a["dedup_key"]: a["id"] for a in manager.store.alerts()}
    assert state["sku=SKU-1|aspect:product_quality"] is None
    assert state["region=UK|aspect:shipping_delivery"] is None
    assert state["product_category=shoes|aspect:product_quality"] == f"inhibited:{by_key['sku=SKU-1|aspect:product_quality']}"
    assert state["sku=SKU-7|aspect:shipping_delivery"] == f"inhibited:{by_key['region=UK|aspect:shipping_delivery']}"
    assert state["channel=email|aspect:shipping_delivery"] == f"inhibited:{by_key['region=UK|aspect:shipping_delivery']}"
    notified = {i for n in manager.store.notifications() for i in n["alert_ids"]}
    assert notified == {by_key["sku=SKU-1|aspect:product_quality"], by_key["region=UK|aspect:shipping_delivery"]}


def test_one_alert_per_incident_growth_in_cooldown_is_quiet_and_a_finding_after_resolution_reopens(manager):
    ids = [f"s{i}" for i in range(10)]
    manager.process([_finding("sku=SKU-1|aspect:packaging", ids, 80, 0.02)], AT)
    sent = len(manager.store.notifications())
    manager.process([_finding("sku=SKU-1|aspect:packaging", ids + ["s10", "s11"], 90, 0.02)], AT + timedelta(hours=1))
    (alert,) = manager.store.alerts()
    assert alert["evidence"]["count"] == 12 and len(manager.store.notifications()) == sent
    manager.process([_finding("sku=SKU-1|aspect:packaging", ids, 90, 0.02, severity="critical")], AT + timedelta(hours=2))
    assert manager.store.alerts()[0]["severity"] == "critical" and len(manager.store.notifications()) > sent
    manager.act(alert["id"], "resolve", "key:t")
    with pytest.raises(TransitionError):
        manager.act(alert["id"], "ack", "key:t")
    manager.process([_finding("sku=SKU-1|aspect:packaging", ids, 90, 0.02)], AT + timedelta(hours=30))
    (again,) = manager.store.alerts()
    assert again["id"] == alert["id"] and again["state"] == "reopened" and again["reopen_count"] == 1
    assert [a["action"] for a in manager.store.actions(alert["id"])] == ["open", "resolve", "reopen"]


def test_an_emerging_theme_is_matched_by_its_terms(manager):
    manager.process([_finding("emerging|app+code+qr", ["e1", "e2", "e3"], 100, 0.0, "warning", "emerging",
                              ("app", "qr", "code", "login", "rejecting"))], AT)
    manager.process([_finding("emerging|app+login+qr", ["e1", "e4", "e5"], 100, 0.0, "warning", "emerging",
                              ("app", "login", "loop", "qr", "works"))], AT + timedelta(hours=1))
    manager.process([_finding("emerging|delivery+drone+noise", ["e9"], 100, 0.0, "warning", "emerging",
                              ("drone", "noise", "delivery", "app"))], AT + timedelta(hours=2))
    alerts = {a["dedup_key"]: a for a in manager.store.alerts()}
    assert set(alerts) == {"emerging|app+code+qr", "emerging|delivery+drone+noise"}  # same theme again, a new one
    assert alerts["emerging|app+code+qr"]["playbook"]["id"] == "emerging_theme"
