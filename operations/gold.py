"""Gold: the live loop's aggregates per time window, computed from silver (predictions, corrections winning).

Used by the worker (each micro-batch adds its counts) and by erasure (operations.privacy recomputes the
windows a forgotten customer touched); one module so neither imports the other.
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
    keys = ["window_start", "sku", "product_category", "region", "channel", "sentiment", "intent", "aspect"]
    counts = pd.concat([records, mentions], ignore_index=True).groupby(keys).size().reset_index(name="count")
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


def merged_gold(lake: Lake, batch_silver: pd.DataFrame, window: str, now: datetime) -> tuple[pa.Table, Any]:
    """Gold of the windows `batch_silver` touches: the counts already there plus the batch's, and the filter
    of those windows (for an overwrite). Only gold rows are read, however large silver grows."""
    delta = gold_rows(batch_silver, window, now)
    starts = [_window_start(t, window) for t in pd.to_datetime(batch_silver["created_at"], utc=True)]
    low, high = min(starts), max(starts) + _window_length(window)
    window_filter = And(GreaterThanOrEqual("window_start", low.isoformat()), LessThan("window_start", high.isoformat()))
    existing = lake.scan(lake_tables.GOLD, window_filter)
    if not existing.num_rows or not delta.num_rows:
        return (delta if delta.num_rows else existing), window_filter
    keys = ["window_start", "sku", "product_category", "region", "channel", "sentiment", "intent", "aspect"]
    both = pd.concat([existing.to_pandas(), delta.to_pandas()], ignore_index=True)
    merged = both.groupby(keys, dropna=False)["count"].sum().reset_index()
    merged["updated_at"] = now
    return pa.Table.from_pandas(merged, schema=lake_tables.SCHEMAS[lake_tables.GOLD], preserve_index=False), window_filter
