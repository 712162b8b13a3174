"""Gold: the live loop's aggregates per time window, computed from silver (predictions, corrections winning).

Gold counts are additive: a key's count is the sum of its rows. Each micro-batch appends its own counts
(`gold_rows` of its silver rows; an append costs the same however large gold grows, where merging into
the existing rows meant a scan and an overwrite per batch), compaction sums a key's rows into one
(`operations.lake.Lake.compact`), and erasure and reviewers' corrections replace whole windows with
counts recomputed from silver (`recompute_gold`). One module so neither the worker nor privacy imports
the other.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

from operations import lake as lake_tables
from operations.lake import Lake


def _window_start(value: datetime, window: str) -> datetime:
    value = value.astimezone(timezone.utc)
    if window == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _window_length(window: str) -> timedelta:
    return timedelta(hours=1) if window == "hour" else timedelta(days=1)


def effective_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Sentiment, intent and aspects a count should use: a reviewer's correction over the model's prediction."""
    out = pd.DataFrame(index=frame.index)
    out["sentiment"] = frame["corrected_sentiment"].where(frame["corrected_sentiment"].notna(), frame["sentiment"])
    out["intent"] = frame["corrected_intent"].where(frame["corrected_intent"].notna(), frame["intent"])
    out["aspects"] = [c if c is not None else (p if p is not None else [])
                      for c, p in zip(frame["corrected_aspects"], frame["aspects"])]
    return out


def gold_rows(silver: pd.DataFrame, window: str, now: datetime) -> pa.Table:
    """Gold counts per window x dimensions x (sentiment, intent, aspect) of scored silver rows."""
    silver = silver[silver["spam_rule"].isna() & silver["sentiment"].notna()]
    if silver.empty:
        return lake_tables.SCHEMAS[lake_tables.GOLD].empty_table()
    labels = effective_labels(silver)
    frame = pd.DataFrame({
        "window_start": [_window_start(t.to_pydatetime(), window) for t in pd.to_datetime(silver["created_at"], utc=True)],
        **{dim: silver[dim].fillna(lake_tables.NONE_VALUE).astype(str)
           for dim in ("sku", "product_category", "region", "channel")},
        "sentiment": labels["sentiment"].fillna(lake_tables.NONE_VALUE).to_numpy(),
        "intent": labels["intent"].fillna(lake_tables.NONE_VALUE).to_numpy(),
        "aspects": labels["aspects"].to_numpy(),
    })
    records = frame.drop(columns="aspects").assign(aspect=lake_tables.ALL_RECORDS)
    mentions = frame.explode("aspects").dropna(subset=["aspects"]).rename(columns={"aspects": "aspect"})
    counts = pd.concat([records, mentions], ignore_index=True).groupby(list(lake_tables.GOLD_KEYS)).size().reset_index(name="count")
    counts["updated_at"] = now
    return pa.Table.from_pandas(counts, schema=lake_tables.SCHEMAS[lake_tables.GOLD], preserve_index=False)


def recompute_gold(lake: Lake, created: list[datetime], window: str, now: datetime) -> tuple[pa.Table, Any]:
    """Gold rows of every window holding one of the `created` times, from silver, and the filter of those
    windows (for an overwrite): right whatever was written before, so a replayed batch cannot double-count."""
    starts = [_window_start(t, window) for t in created]
    low, high = min(starts), max(starts) + _window_length(window)
    silver = lake.scan(lake_tables.SILVER, And(GreaterThanOrEqual("created_at", low.isoformat()),
                                               LessThan("created_at", high.isoformat()))).to_pandas()
    return gold_rows(silver, window, now), And(GreaterThanOrEqual("window_start", low.isoformat()),
                                                LessThan("window_start", high.isoformat()))
