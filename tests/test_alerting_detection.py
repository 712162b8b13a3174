"""Detection on item frames: volume-aware trend test, immediate flags, emerging themes, owners from the taxonomy."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from operations.alerting.config import AlertingConfig
from operations.alerting.detection import Detector, parse_at

AT = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _item(i, when, sku="SKU-1", negative=False, aspects=(), flags=(), text="fine product", region="EU", intent=None):
    return {"feedback_id": f"f{i}", "created_at": when, "sku": sku, "product_category": f"cat-{sku[-1]}",
            "region": region, "channel": "review", "text": text, "sentiment": "negative" if negative else "positive",
            "sentiment_score": 0.9, "intent": intent or ("complaint" if negative else "praise"), "intent_score": 0.8,
            "aspects": list(aspects), "flags": list(flags)}


def _stream(days=20, per_day=12, skus=8, seed=0):
    rng = np.random.default_rng(seed)
    rows, i = [], 0
    for day in range(days):
        for s in range(skus):
            for _ in range(rng.poisson(per_day)):
                negative = rng.random() < 0.25
                aspects = ["product_quality"] if negative and rng.random() < 0.3 else []
                when = AT - timedelta(days=days - day) + timedelta(seconds=int(rng.integers(0, 86400)))
                rows.append(_item(i, when, f"SKU-{s}", negative, aspects, region=f"R{s % 3}",
                                  text=f"varied words {rng.integers(0, 10**9)}"))
                i += 1
    return rows


def _frame(rows):
    frame = pd.DataFrame(rows)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def test_clean_stream_raises_nothing():
    assert Detector(AlertingConfig()).detect(_frame(_stream()), AT) == []


def test_sku_spike_is_found_with_owner_evidence_and_severity():
    rows = _stream()
    rows += [_item(10_000 + j, AT - timedelta(hours=2, minutes=j), "SKU-3", True, ["product_quality"],
                   text="the sole cracked after a day") for j in range(10)]
    findings = {f.key: f for f in Detector(AlertingConfig()).detect(_frame(rows), AT)}
    finding = findings["sku=SKU-3|aspect:product_quality"]
    assert finding.owner == "product-quality"
    assert finding.severity in ("warning", "error", "critical") and finding.p_value < 1e-6
    assert finding.count >= 10 and finding.baseline_rate < finding.rate
    assert finding.parents == {"product_category": "cat-3"}
    assert len(finding.examples) == 3 and all(e["text"] for e in finding.examples)


def test_few_items_do_not_alert_however_high_the_share():
    rows = _stream()
    rows += [_item(10_000 + j, AT - timedelta(minutes=10 + j), "SKU-3", True, ["packaging"]) for j in range(3)]
    assert not [f for f in Detector(AlertingConfig()).detect(_frame(rows), AT) if "packaging" in f.signal]


def test_volume_surge_without_a_higher_share_does_not_alert():
    rows = _stream()
    rows += [_item(10_000 + j, AT - timedelta(hours=1, minutes=j % 50), "SKU-2") for j in range(200)]
    assert Detector(AlertingConfig()).detect(_frame(rows), AT) == []


def test_one_safety_report_escalates_at_once_to_the_flag_owner():
    rows = _stream() + [_item(99_999, AT - timedelta(minutes=5), "SKU-5", True, flags=["safety_concern"])]
    (finding,) = [f for f in Detector(AlertingConfig()).detect(_frame(rows), AT) if f.kind == "immediate"]
    assert finding.key == "sku=SKU-5|flag:safety_concern" and finding.severity == "critical"
    assert finding.owner == "product-safety" and finding.count == 1


def test_new_theme_outside_the_taxonomy_is_clustered():
    rows = _stream()
    rows += [_item(20_000 + j, AT - timedelta(hours=3, minutes=j), f"SKU-{j % 8}", True,
                   text=f"the mobile app login qr scanner keeps crashing {j}") for j in range(8)]
    (finding,) = [f for f in Detector(AlertingConfig()).detect(_frame(rows), AT) if f.kind == "emerging"]
    assert finding.owner == "voice-of-customer" and finding.count == 8
    assert {"qr", "scanner"} & set(finding.terms)


def test_parse_at():
    assert parse_at("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_at("yesterday")


def test_a_weekday_that_always_runs_high_does_not_alert_once_history_allows():
    rng = np.random.default_rng(5)
    at = datetime(2026, 11, 29, tzinfo=timezone.utc)  # Sunday 00:00: the last 24 h are a Saturday
    rows, i = [], 0
    for day in range(28):
        start = at - timedelta(days=28 - day)
        saturday = start.weekday() == 5
        for _ in range(rng.poisson(80)):
            negative = rng.random() < (0.6 if saturday else 0.15)
            rows.append(_item(i, start + timedelta(seconds=int(rng.integers(0, 86400))), "SKU-1", negative,
                              ["packaging"] if negative else [], text=f"w{rng.integers(0, 10**9)}"))
            i += 1
    frame = _frame(rows)
    seasonal = [f.key for f in Detector(AlertingConfig()).detect(frame, at) if f.kind == "trend"]
    flat = [f.key for f in Detector(AlertingConfig(seasonal_min_days=1000)).detect(frame, at) if f.kind == "trend"]
    assert "sku=SKU-1|aspect:packaging" in flat
    assert "sku=SKU-1|aspect:packaging" not in seasonal
