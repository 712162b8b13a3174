"""GET /insights: what customers say about a slice (sku, category, region, channel, aspect) in a window,
and how that changed against the previous window of equal length. Counts come from silver's model
predictions, a reviewer's correction taking precedence."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Optional

import pandas as pd
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

from operations import lake as lake_tables
from operations.lake import Lake
from operations.gold import effective_labels

FILTER_COLUMNS = ("sku", "product_category", "region", "channel")


def _summary(frame: pd.DataFrame) -> dict[str, Any]:
    volume = len(frame)
    sentiments = Counter(frame["sentiment"].dropna())
    return {
        "volume": volume,
        "sentiment": {label: {"count": n, "share": round(n / volume, 4)} for label, n in sorted(sentiments.items())},
        "intents": dict(Counter(frame["intent"].dropna()).most_common()),
        "aspects": dict(Counter(a for aspects in frame["aspects"] for a in aspects).most_common()),
    }


def insights(lake: Lake, since: datetime, until: datetime, filters: dict[str, Optional[str]],
             aspect: Optional[str], examples: int) -> dict[str, Any]:
    if until <= since:
        raise ValueError("`until` must be after `since`")
    previous_since = since - (until - since)
    condition = And(GreaterThanOrEqual("created_at", previous_since.isoformat()), LessThan("created_at", until.isoformat()))
    for column in FILTER_COLUMNS:
        if filters.get(column):
            condition = And(condition, EqualTo(column, filters[column]))
    silver = lake.scan(lake_tables.SILVER, condition).to_pandas()
    silver = silver[silver["spam_rule"].isna() & silver["sentiment"].notna()]
    labels = effective_labels(silver)
    frame = silver[["feedback_id", "text", "created_at", "sentiment_score"]].assign(**{
        "sentiment": labels["sentiment"], "intent": labels["intent"], "aspects": labels["aspects"]})
    if aspect:
        frame = frame[[aspect in a for a in frame["aspects"]]]
    created = pd.to_datetime(frame["created_at"], utc=True)
    current, previous = frame[created >= since], frame[created < since]
    now, before = _summary(current), _summary(previous)
    change = {
        "volume_previous": before["volume"],
        "volume_change": now["volume"] - before["volume"],
        "volume_change_ratio": round((now["volume"] - before["volume"]) / before["volume"], 4) if before["volume"] else None,
        "sentiment_share_change": {
            label: round(now["sentiment"].get(label, {}).get("share", 0.0)
                         - before["sentiment"].get(label, {}).get("share", 0.0), 4)
            for label in sorted(set(now["sentiment"]) | set(before["sentiment"]))},
    }
    picked = current.sort_values(["created_at", "feedback_id"], ascending=False).head(examples)
    return {
        "window": {"since": since.isoformat(), "until": until.isoformat(),
                   "previous_since": previous_since.isoformat()},
        "filters": {**{k: v for k, v in filters.items() if v}, **({"aspect": aspect} if aspect else {})},
        **now,
        "change": change,
        "examples": [{"feedback_id": r.feedback_id, "text": r.text, "sentiment": r.sentiment, "intent": r.intent,
                      "aspects": list(r.aspects), "created_at": pd.Timestamp(r.created_at).isoformat()}
                     for r in picked.itertuples()],
        "counted_from": "model predictions; reviewers' corrections take precedence",
    }


def default_window(until: Optional[datetime], since: Optional[datetime], now: datetime) -> tuple[datetime, datetime]:
    until = until or now
    return (since or until - timedelta(days=7)), until
