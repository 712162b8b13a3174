"""No notification, alert or log line carries unmasked PII, whatever the example texts hold (property test)."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from operations.alerting.alerts import AlertManager
from operations.alerting.channels import Channels
from operations.alerting.config import AlertingConfig
from operations.alerting.detection import Finding
from operations.alerting.playbooks import load_playbooks
from operations.alerting.store import AlertStore

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10)
emails = st.builds(lambda a, b, d, tld: f"{a}.{b}@{d}.{tld}", words, words, words, st.sampled_from(["com", "org", "de"]))
phones = st.builds(lambda a, b, c: f"+1 ({a}) {b}-{c}", st.integers(200, 999), st.integers(200, 999),
                   st.integers(1000, 9999))
cards = st.sampled_from(["4111 1111 1111 1111", "5500 0000 0000 0004", "3400 000000 00009"])
fillers = st.lists(words, min_size=0, max_size=6).map(" ".join)
CONFIG = AlertingConfig(pagerduty_min_severity="warning")
PLAYBOOKS = load_playbooks(CONFIG)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=emails, phone=phones, card=cards, before=fillers, after=fillers, severity=st.sampled_from(
    ["warning", "error", "critical"]), note=fillers)
def test_no_unmasked_pii_reaches_alerts_notifications_or_logs(tmp_path_factory, caplog, email, phone, card, before,
                                                              after, severity, note):
    store = AlertStore(tmp_path_factory.mktemp("pii") / "alerts.db")
    manager = AlertManager(CONFIG, store, PLAYBOOKS, Channels(CONFIG, environ={}))
    text = f"{before} contact me at {email} or {phone}, paid with {card} {after}"
    finding = Finding(key=f"sku={email}|aspect:packaging", kind="trend", dimension="sku", value=email,
                      signal="aspect:packaging", severity=severity, owner="fulfilment", window_hours=24, count=9,
                      volume=30, rate=0.3, baseline_rate=0.05, baseline_count=3, baseline_volume=100, lift=6.0,
                      p_value=1e-9, first_seen="2026-12-01T00:00:00+00:00",
                      examples=[{"feedback_id": "f1", "text": text, "sentiment": "negative"}],
                      feedback_ids=["f1"], terms=[email.split("@")[0]])
    with caplog.at_level(logging.DEBUG):
        manager.process([finding], datetime(2026, 12, 1, 12, tzinfo=timezone.utc))
        (alert,) = store.alerts()
        manager.act(alert["id"], "ack", "key:test", manager.mask(f"{note} called {phone}"))
    everything = json.dumps([manager.public(a) for a in store.alerts()]) + json.dumps(store.notifications()) + \
        json.dumps(store.audit_log(10000)) + json.dumps(store.actions(alert["id"])) + caplog.text
    assert store.notifications(), "every notification is logged, even with no channel configured"
    for secret in (email, phone, card, card.replace(" ", "")):
        assert secret not in everything
    store.close()
