"""Per-feedback features: text statistics, rating, channel, customer and SKU history.

History features are computed **as of the event time**: only events strictly earlier than a
row's `created_at` count (events at the same instant do not see each other), so a feature
never carries information from the row's own moment or its future. History features are
vectorised (sort + grouped cumulative sums); text statistics take a few C-speed string calls per text.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import pandas as pd

from processing.pii import PLACEHOLDERS

RECORD_IDENTIFIER = "feedback_id"
EVENT_TIME = "event_time"
COMPLAINT_INTENT = "complaint"

# Feature name -> SageMaker Feature Store type (Integral | Fractional | String). Order is the
# column order of compute_features and of the feature group.
FEATURE_TYPES: dict[str, str] = {
    RECORD_IDENTIFIER: "String",
    EVENT_TIME: "String",
    "channel": "String",
    "customer_id": "String",
    "sku": "String",
    "text_chars": "Integral",
    "text_words": "Integral",
    "exclamation_count": "Integral",
    "question_count": "Integral",
    "uppercase_ratio": "Fractional",
    "pii_placeholder_count": "Integral",
    "star_rating": "Fractional",
    "customer_prior_feedback_count": "Integral",
    "customer_prior_mean_rating": "Fractional",
    "customer_prior_complaint_count": "Integral",
    "sku_prior_feedback_count": "Integral",
    "sku_prior_mean_rating": "Fractional",
    "sku_prior_complaint_count": "Integral",
}
FEATURE_NAMES = tuple(FEATURE_TYPES)
REQUIRED_COLUMNS = ("feedback_id", "created_at", "text")
_PLACEHOLDER_RE = "|".join(re.escape(p) for p in PLACEHOLDERS)


TEXT_STATISTICS = ("text_chars", "text_words", "exclamation_count", "question_count", "uppercase_ratio",
                   "pii_placeholder_count")


_LETTER_RE = re.compile(r"[^\W\d_]")
_UPPERCASE_RE = re.compile(r"[A-Z\u00C0-\u00DE]")
_PLACEHOLDER_FIND_RE = re.compile(_PLACEHOLDER_RE)
# bytes.translate deletion tables: what is left of an ASCII text is its letters / its capitals.
_NOT_ASCII_LETTER = bytes(b for b in range(128) if not chr(b).isalpha())
_NOT_ASCII_UPPERCASE = bytes(b for b in range(128) if not "A" <= chr(b) <= "Z")


def text_statistics_of(text: str) -> tuple[int, int, int, int, float, int]:
    """TEXT_STATISTICS of one text, in that order.

    Letters are `[^\\W\\d_]` and capitals `[A-Z\u00C0-\u00DE]`; on ASCII text (most feedback)
    C-speed byte deletion counts the same characters as those regexes, several times faster.
    """
    if text.isascii():
        raw = text.encode("ascii")
        letters = len(raw.translate(None, _NOT_ASCII_LETTER))
        uppercase = len(raw.translate(None, _NOT_ASCII_UPPERCASE))
    else:
        letters, uppercase = len(_LETTER_RE.findall(text)), len(_UPPERCASE_RE.findall(text))
    placeholders = len(_PLACEHOLDER_FIND_RE.findall(text)) if "[" in text else 0
    return (len(text), len(text.split()), text.count("!"), text.count("?"),
            uppercase / letters if letters else 0.0, placeholders)


def text_statistics(text: pd.Series) -> pd.DataFrame:
    """The row-level text features (no history): computable chunk by chunk, then passed to compute_features."""
    values = [text_statistics_of(value) for value in text.fillna("").astype(str)]
    frame = pd.DataFrame(values, columns=list(TEXT_STATISTICS), index=text.index)
    if not values:  # an empty frame has object columns; keep the feature types
        frame = frame.astype({name: "int64" for name in TEXT_STATISTICS if name != "uppercase_ratio"})
        frame["uppercase_ratio"] = frame["uppercase_ratio"].astype("float64")
    return frame


def _prior_history(frame: pd.DataFrame, entity: str, prefix: str) -> pd.DataFrame:
    """Counts and mean rating of the entity's strictly earlier events, aligned to frame's index."""
    result = pd.DataFrame(index=frame.index, data={
        f"{prefix}_prior_feedback_count": 0,
        f"{prefix}_prior_mean_rating": np.nan,
        f"{prefix}_prior_complaint_count": 0,
    })
    known = frame[frame[entity].notna()]
    if known.empty:
        return result
    events = pd.DataFrame({
        "entity": known[entity].astype(str),
        "time": known["created_at"],
        "n": 1,
        "rated": known["star_rating"].notna().astype("int64"),
        "rating_sum": known["star_rating"].fillna(0.0).astype(float),
        "complaints": (known["intent"] == COMPLAINT_INTENT).astype("int64"),
    })
    # One row per (entity, instant): events sharing an instant are not each other's past.
    per_instant = events.groupby(["entity", "time"], sort=True).sum()
    running = per_instant.groupby(level="entity").cumsum() - per_instant
    prior = events[["entity", "time"]].join(running, on=["entity", "time"])
    result.loc[known.index, f"{prefix}_prior_feedback_count"] = prior["n"].to_numpy()
    result.loc[known.index, f"{prefix}_prior_complaint_count"] = prior["complaints"].to_numpy()
    rated = prior["rated"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        result.loc[known.index, f"{prefix}_prior_mean_rating"] = np.where(
            rated > 0, prior["rating_sum"].to_numpy() / np.maximum(rated, 1), np.nan)
    return result


def compute_features(silver: pd.DataFrame, text_stats: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per feedback_id (silver's order) with the columns of FEATURE_TYPES.

    `silver` needs feedback_id, created_at and text; channel, customer_id, sku, star_rating and
    intent are used when present. Later copies of a feedback_id are rejected, not merged.
    `text_stats` (text_statistics of the same rows, in the same order) replaces `text`: the
    processing job computes it part by part, so the history features never need the texts in memory.
    """
    required = [c for c in REQUIRED_COLUMNS if c != "text" or text_stats is None]
    missing = [c for c in required if c not in silver.columns]
    if missing:
        raise ValueError(f"compute_features needs columns {missing}; got {list(silver.columns)}")
    if text_stats is not None and len(text_stats) != len(silver):
        raise ValueError(f"text_stats has {len(text_stats)} rows for {len(silver)} silver rows")
    duplicated = silver["feedback_id"].duplicated()
    if duplicated.any():
        raise ValueError(f"feedback_id must be unique; repeated: {silver.loc[duplicated, 'feedback_id'].head(5).tolist()}")
    frame = silver.reset_index(drop=True)
    frame = frame.assign(**{optional: None for optional in ("channel", "customer_id", "sku", "star_rating", "intent")
                            if optional not in frame.columns})
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["star_rating"] = pd.to_numeric(frame["star_rating"], errors="coerce").astype(float)
    stats = text_statistics(frame["text"]) if text_stats is None else text_stats.reset_index(drop=True)

    features = pd.concat([
        frame[["feedback_id"]],
        pd.DataFrame({EVENT_TIME: frame["created_at"]}),
        frame[["channel", "customer_id", "sku"]],
        stats[list(TEXT_STATISTICS)],
        frame[["star_rating"]],
        _prior_history(frame, "customer_id", "customer"),
        _prior_history(frame, "sku", "sku"),
    ], axis=1)
    for name, kind in FEATURE_TYPES.items():
        if kind == "Integral":
            features[name] = features[name].astype("int64")
        elif kind == "Fractional":
            features[name] = features[name].astype("float64")
    return features[list(FEATURE_NAMES)]
