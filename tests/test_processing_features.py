"""Per-feedback features, with customer / SKU history strictly as of the event time."""
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.features import FEATURE_NAMES, compute_features, text_statistics_of
from processing.pii import PLACEHOLDERS


def _silver(rows):
    frame = pd.DataFrame(rows, columns=["feedback_id", "created_at", "text", "channel", "customer_id", "sku",
                                        "star_rating", "intent"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


SILVER = _silver([
    # out of time order on purpose: history must follow event time, not row order
    ("f3", "2026-10-03T09:00Z", "Where is it?? Call [PHONE]", "chat", "c1", "S1", None, "delivery_status"),
    ("f1", "2026-10-01T09:00Z", "BROKEN on day one!", "review", "c1", "S1", 1, "complaint"),
    ("f2", "2026-10-02T09:00Z", "love it", "review", "c1", "S2", 5, "praise"),
    ("f4", "2026-10-03T09:00Z", "same instant as f3", "review", "c2", "S1", 4, "complaint"),
    ("f5", "2026-10-04T09:00Z", "Email [EMAIL] or [URL]", "email", None, "S1", 2, None),
])


def test_text_statistics():
    features = compute_features(SILVER).set_index("feedback_id")
    assert list(compute_features(SILVER).columns) == list(FEATURE_NAMES)
    f1 = features.loc["f1"]
    assert (f1.text_chars, f1.text_words, f1.exclamation_count, f1.question_count) == (18, 4, 1, 0)
    assert f1.uppercase_ratio == pytest.approx(6 / 14)
    assert features.loc["f3", "question_count"] == 2
    assert features.loc["f3", "pii_placeholder_count"] == 1 and features.loc["f5", "pii_placeholder_count"] == 2
    assert features.loc["f1", "event_time"] == pd.Timestamp("2026-10-01T09:00Z")


def test_customer_history_counts_only_strictly_earlier_events():
    features = compute_features(SILVER).set_index("feedback_id")
    assert features.loc["f1", "customer_prior_feedback_count"] == 0
    assert np.isnan(features.loc["f1", "customer_prior_mean_rating"])
    assert features.loc["f2", "customer_prior_feedback_count"] == 1
    assert features.loc["f2", "customer_prior_complaint_count"] == 1
    assert features.loc["f3", "customer_prior_feedback_count"] == 2
    assert features.loc["f3", "customer_prior_mean_rating"] == pytest.approx(3.0)
    assert features.loc["f5", "customer_prior_feedback_count"] == 0  # no customer id: no history


def test_sku_history_excludes_events_at_the_same_instant():
    features = compute_features(SILVER).set_index("feedback_id")
    # f3 and f4 share an instant: neither sees the other
    assert features.loc["f3", "sku_prior_feedback_count"] == 1
    assert features.loc["f4", "sku_prior_feedback_count"] == 1
    assert features.loc["f4", "sku_prior_complaint_count"] == 1
    assert features.loc["f5", "sku_prior_feedback_count"] == 3
    assert features.loc["f5", "sku_prior_mean_rating"] == pytest.approx((1 + 4) / 2)
    assert features.loc["f5", "sku_prior_complaint_count"] == 2


def test_matches_a_brute_force_as_of_computation_on_generated_data():
    from processing.demo_data import generate_records
    from processing.schema import RecordValidationError, validate_record

    rows = []
    for raw in generate_records(600, 5):
        try:
            rows.append(validate_record(raw).model_dump())
        except RecordValidationError:
            continue
    silver = pd.DataFrame(rows).drop_duplicates("feedback_id")
    features = compute_features(silver).set_index("feedback_id")
    for _, row in silver.sample(40, random_state=1).iterrows():
        earlier = silver[(silver.customer_id == row.customer_id) & (silver.created_at < row.created_at)]
        got = features.loc[row.feedback_id]
        assert got.customer_prior_feedback_count == len(earlier)
        assert got.customer_prior_complaint_count == (earlier.intent == "complaint").sum()
        expected_mean = earlier.star_rating.dropna().mean()
        assert (np.isnan(expected_mean) and np.isnan(got.customer_prior_mean_rating)) or \
            got.customer_prior_mean_rating == pytest.approx(expected_mean)


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="needs columns"):
        compute_features(SILVER.drop(columns=["created_at"]))
    with pytest.raises(ValueError, match="unique"):
        compute_features(pd.concat([SILVER, SILVER.head(1)]))


def test_minimal_columns_work():
    features = compute_features(SILVER[["feedback_id", "created_at", "text"]])
    assert (features["customer_prior_feedback_count"] == 0).all()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("aZ9_ !?[]\t\nÉéß½😀\x1c") + ["[EMAIL]", "[PHONE]", " WORD "]), max_size=40).map("".join))
def test_text_statistics_fast_path_equals_the_regex_definitions(text):
    """The ASCII fast path counts exactly what the documented regexes count (and so does the Unicode path)."""
    letters = len(re.findall(r"[^\W\d_]", text))
    uppercase = len(re.findall(r"[A-Z\u00C0-\u00DE]", text))
    placeholders = sum(text.count(p) for p in PLACEHOLDERS)
    expected = (len(text), len(text.split()), text.count("!"), text.count("?"),
                uppercase / letters if letters else 0.0, placeholders)
    assert text_statistics_of(text) == expected
