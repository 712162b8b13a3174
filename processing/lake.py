"""The lake's folders, Parquet schemas, writers and the run report.

Layout under the job's `lake` output (the same keys under s3://.../lake/ on AWS):

    bronze/ingest_date=YYYY-MM-DD/channel=<channel>/part-s<shard>-c<chunk>.parquet   as received
    quarantine/part-s<shard>-c<chunk>.parquet       invalid records + reason code  (restricted)
    staging/shard=<shard>/part-c<chunk>.parquet     masked candidates + dedup keys (pass 1)
    staging/shard=<shard>/shard_report.json
    silver/part-s<shard>-c<chunk>.parquet           cleaned, PII-masked, deduplicated
    filtered/spam/..., filtered/duplicates/...      what silver left out, and why
    gold/daily_by_<dimension>.parquet               counts and label rates per day
    corrections/{applied,unmatched,invalid}.jsonl   reviewers' corrections: label changes, and those not
                                                    applied with their reason (restricted: reviewer names)
    run_report.json

Bronze and quarantine hold records as received, PII included: they are the restricted zone
(on AWS, a separate prefix policy); silver and gold never hold unmasked PII. Part files carry
the shard number so several processing instances can upload into one prefix.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from processing.features import FEATURE_TYPES, TEXT_STATISTICS

log = logging.getLogger(__name__)

BRONZE = "bronze"
QUARANTINE = "quarantine"
STAGING = "staging"
SILVER = "silver"
FILTERED_SPAM = "filtered/spam"
FILTERED_DUPLICATES = "filtered/duplicates"
GOLD = "gold"
CORRECTIONS = "corrections"
RUN_REPORT = "run_report.json"
SHARD_REPORT = "shard_report.json"
UNKNOWN_CHANNEL = "unknown"

BRONZE_SCHEMA = pa.schema([
    ("payload", pa.string()),
    ("source_file", pa.string()),
    ("line_no", pa.int64()),
    ("ingested_at", pa.timestamp("us", tz="UTC")),
    ("shard_index", pa.int32()),
])
QUARANTINE_SCHEMA = pa.schema([
    ("payload", pa.string()),
    ("reason", pa.string()),
    ("message", pa.string()),
    ("field", pa.string()),
    ("feedback_id", pa.string()),
    ("source_file", pa.string()),
    ("line_no", pa.int64()),
    ("quarantined_at", pa.timestamp("us", tz="UTC")),
])
_LIST = pa.list_(pa.string())
SILVER_SCHEMA = pa.schema([
    ("feedback_id", pa.string()),
    ("text", pa.string()),
    ("title", pa.string()),
    ("channel", pa.string()),
    ("source", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("customer_id", pa.string()),
    ("order_id", pa.string()),
    ("sku", pa.string()),
    ("product_category", pa.string()),
    ("region", pa.string()),
    ("language", pa.string()),
    ("language_detected", pa.bool_()),
    ("star_rating", pa.int64()),
    ("sentiment", pa.string()),
    ("intent", pa.string()),
    ("aspects", _LIST),
    ("flags", _LIST),
    ("labeled_tasks", _LIST),
    ("remediation_status", pa.string()),
    ("taxonomy_version", pa.string()),
    ("pii_masked", _LIST),
    ("split_group", pa.string()),
    ("source_file", pa.string()),
    ("line_no", pa.int64()),
])
SPAM_SCHEMA = SILVER_SCHEMA.append(pa.field("spam_rule", pa.string()))


def staging_schema(bands: int) -> pa.Schema:
    keys = [pa.field("exact_key", pa.int64()), pa.field("text_key", pa.int64()), pa.field("customer_key", pa.int64()),
            pa.field("near_eligible", pa.bool_()),
            pa.field("shard_index", pa.int32()), pa.field("chunk_index", pa.int32())]
    keys += [pa.field(f"band_{i}", pa.int64()) for i in range(bands)]
    # Row-level text features ride along from pass 1 (parallel) so pass 2 never re-reads the texts for them.
    arrow_types = {"Integral": pa.int64(), "Fractional": pa.float64()}
    statistics = [pa.field(name, arrow_types[FEATURE_TYPES[name]]) for name in TEXT_STATISTICS]
    return pa.schema(list(SILVER_SCHEMA) + keys + statistics)


def part_name(shard_index: int, chunk_index: int) -> str:
    return f"part-s{shard_index:03d}-c{chunk_index:05d}.parquet"


def write_table(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> int:
    """Write rows (dicts) as one Parquet file; nothing is written for no rows."""
    if not rows:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)
    return table.num_rows


def bronze_table(payloads: list[str], source_files: list[str], line_nos: list[int], channels: list[Optional[str]],
                 ingested_at: Any, shard_index: int) -> pa.Table:
    """A chunk's bronze rows as one Arrow table (+ a `channel` column, the partition key; None = unknown)."""
    n = len(payloads)
    return pa.table({
        "payload": pa.array(payloads, pa.string()),
        "source_file": pa.array(source_files, pa.string()),
        "line_no": pa.array(line_nos, pa.int64()),
        "ingested_at": pa.array([ingested_at] * n, BRONZE_SCHEMA.field("ingested_at").type),
        "shard_index": pa.array([shard_index] * n, pa.int32()),
        "channel": pa.array(channels, pa.string()),
    })


def write_bronze_table(table: pa.Table, lake_dir: Path, ingest_date: str, shard_index: int, chunk_index: int) -> int:
    """Bronze rows into hive partitions by ingestion date and channel (one file per channel; C-speed filters)."""
    import pyarrow.compute as pc

    channels = table.column("channel").fill_null(UNKNOWN_CHANNEL)
    rows = table.drop_columns(["channel"])
    written = 0
    for channel in sorted(pc.unique(channels).to_pylist()):
        part = rows.filter(pc.equal(channels, channel))
        folder = lake_dir / BRONZE / f"ingest_date={ingest_date}" / f"channel={safe_partition_value(channel)}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, folder / part_name(shard_index, chunk_index))
        written += part.num_rows
    return written


def safe_partition_value(value: str) -> str:
    """A channel read from untrusted input must not escape its folder."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(value))[:64]
    return cleaned or UNKNOWN_CHANNEL


def read_parquet_folder(folder: Path, columns: Optional[list[str]] = None):
    """All part files of a folder (recursive) as one pandas DataFrame (empty when none)."""
    import pandas as pd

    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame(columns=columns or [])
    return pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files], ignore_index=True)


def count_rows(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.rglob("*.parquet"))


@dataclass
class StageTiming:
    seconds: float = 0.0
    rows: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class StageClock:
    """Accumulates time and rows per named stage: `with clock.stage("silver", rows=n): ...`."""

    def __init__(self) -> None:
        self.stages: dict[str, StageTiming] = {}

    def stage(self, name: str, rows: int = 0) -> "_StageContext":
        return _StageContext(self.stages.setdefault(name, StageTiming()), rows)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {name: {"seconds": round(t.seconds, 4), "rows": t.rows, "rows_per_second": round(t.rows_per_second, 1)}
                for name, t in self.stages.items()}

    def merge(self, other: dict[str, dict[str, float]]) -> None:
        for name, values in other.items():
            timing = self.stages.setdefault(name, StageTiming())
            timing.seconds += values["seconds"]
            timing.rows += int(values["rows"])


class _StageContext:
    def __init__(self, timing: StageTiming, rows: int):
        self.timing, self.rows = timing, rows

    def __enter__(self) -> "_StageContext":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.timing.seconds += time.perf_counter() - self.started
        self.timing.rows += self.rows


class BooksDoNotBalance(AssertionError):
    """bronze != silver + duplicates + near_duplicates + spam + quarantine: something was lost."""


@dataclass
class RunReport:
    """What happened to every record of a run (or of one shard's first pass)."""

    bronze: int = 0
    silver: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    spam: int = 0
    quarantine: int = 0
    staged: int = 0
    """Records that passed validation and spam rules, awaiting deduplication (pass 1 only)."""
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    spam_rules: dict[str, int] = field(default_factory=dict)
    pii_masked: dict[str, int] = field(default_factory=dict)
    languages_detected: int = 0
    shards: list[int] = field(default_factory=list)
    input_files: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    corrections: dict[str, Any] = field(default_factory=dict)
    """Reviewers' corrections (pass 2; processing.corrections.CorrectionOutcomes.summary): read, applied,
    superseded, unmatched, invalid (+ reasons), mapped (from an older taxonomy version, by version), rows
    corrected / labels changed / tasks added per task."""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    rows_per_second: float = 0.0

    def add_counter(self, name: str, counter: Counter) -> None:
        target = getattr(self, name)
        for key, value in counter.items():
            target[key] = target.get(key, 0) + int(value)

    def check_books(self, pass_one: bool = False) -> None:
        """Raise BooksDoNotBalance unless every bronze record has exactly one outcome."""
        if pass_one:
            accounted = self.staged + self.spam + self.quarantine
            formula = "staged + spam + quarantine"
        else:
            accounted = self.silver + self.duplicates + self.near_duplicates + self.spam + self.quarantine
            formula = "silver + duplicates + near_duplicates + spam + quarantine"
        if accounted != self.bronze:
            raise BooksDoNotBalance(f"bronze={self.bronze} but {formula}={accounted}: {self.counts()}")
        if sum(self.quarantine_reasons.values()) != self.quarantine:
            raise BooksDoNotBalance(f"quarantine={self.quarantine} but reasons sum to {self.quarantine_reasons}")
        if self.corrections:
            c = self.corrections
            if c["read"] != c["applied"] + c["superseded"] + c["unmatched"] + c["invalid"]:
                raise BooksDoNotBalance(f"corrections read={c['read']} but applied + superseded + unmatched + "
                                        f"invalid = {c['applied'] + c['superseded'] + c['unmatched'] + c['invalid']}")
            # Mapped corrections (older taxonomy version) are not an outcome: each is one of the valid ones.
            if c.get("mapped", 0) > c["applied"] + c["superseded"] + c["unmatched"]:
                raise BooksDoNotBalance(f"corrections mapped={c['mapped']} but only applied + superseded + unmatched "
                                        f"= {c['applied'] + c['superseded'] + c['unmatched']} were valid")

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("bronze", "silver", "duplicates", "near_duplicates", "spam", "quarantine", "staged")}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["books_balance"] = "bronze == silver + duplicates + near_duplicates + spam + quarantine"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunReport":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str), encoding="utf-8")


def read_report(path: Path) -> RunReport:
    return RunReport.from_dict(json.loads(path.read_text(encoding="utf-8")))


def iter_parts(folder: Path) -> Iterable[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


GOLD_DIMENSIONS = ("sku", "product_category", "channel", "region")
UNKNOWN_VALUE = "unknown"


class GoldAccumulator:
    """Counts and label rates per day x dimension, accumulated chunk by chunk (bounded memory).

    Rates use labels where present: `sentiment_<s>_rate` = rows labeled s / rows with a
    sentiment label; `aspect_<a>_rate` = rows mentioning a / rows labeled for aspects.
    Indicator rows are grouped once `flush_rows` of them are pending: pandas' groupby has a
    fixed cost per call, which dominated when every 10k-row part was grouped five times.
    """

    def __init__(self, label_maps: dict[str, list[str]], time_grain: str = "D", flush_rows: int = 100_000):
        self.label_maps = label_maps
        self.time_grain = time_grain
        self.flush_rows = flush_rows
        self._parts: dict[str, list[Any]] = {dim: [] for dim in GOLD_DIMENSIONS + ("overall",)}
        self._pending: list[Any] = []
        self._pending_rows = 0

    def _indicators(self, silver):
        import numpy as np
        import pandas as pd

        n = len(silver)
        # Naive UTC timestamps floored to the grain (what `write` stores), not Python date objects: vectorised.
        columns: dict[str, Any] = {"day": silver["created_at"].dt.tz_convert(None).dt.floor(self.time_grain)}
        for dim in GOLD_DIMENSIONS:
            columns[dim] = silver[dim].fillna(UNKNOWN_VALUE).astype(str)
        columns["overall"] = "all"
        columns["feedback_count"] = np.ones(n, dtype=np.int64)
        columns["rated_count"] = silver["star_rating"].notna().to_numpy(dtype=np.int64)
        columns["star_rating_sum"] = silver["star_rating"].fillna(0).to_numpy(dtype=float)
        for task, prefix in (("sentiment", "sentiment_"), ("intent", "intent_")):
            columns[f"{task}_labeled"] = silver[task].notna().to_numpy(dtype=np.int64)
            # One factorize per column, then integer compares: no string compare per label.
            codes, uniques = pd.factorize(silver[task])
            position = {value: i for i, value in enumerate(uniques)}
            for label in self.label_maps[task]:
                columns[f"{prefix}{label}"] = (codes == position.get(label, -2)).astype(np.int64)
        columns["aspects_labeled"] = silver["aspects"].notna().to_numpy(dtype=np.int64)
        # One row per (record, aspect); its index is the record's position, repeated.
        mentioned = silver["aspects"].reset_index(drop=True).explode()
        record, names = mentioned.index.to_numpy(), mentioned.to_numpy()
        for label in self.label_maps["aspects"]:
            hit = np.zeros(n, dtype=np.int64)
            hit[record[names == label]] = 1
            columns[f"aspect_{label}"] = hit
        return pd.DataFrame(columns, index=silver.index)

    def add(self, silver) -> None:
        if len(silver) == 0:
            return
        self._pending.append(self._indicators(silver))
        self._pending_rows += len(silver)
        if self._pending_rows >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        import pandas as pd

        if not self._pending:
            return
        frame = pd.concat(self._pending, ignore_index=True)
        self._pending, self._pending_rows = [], 0
        counts = [c for c in frame.columns if c not in GOLD_DIMENSIONS + ("overall", "day")]
        for dim in self._parts:
            self._parts[dim].append(frame.groupby(["day", dim])[counts].sum())

    def write(self, gold_dir: Path) -> dict[str, int]:
        import pandas as pd

        self._flush()
        gold_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        for dim, parts in self._parts.items():
            if not parts:
                continue
            table = pd.concat(parts).groupby(level=[0, 1]).sum().reset_index()
            table["mean_star_rating"] = table["star_rating_sum"] / table["rated_count"].where(table["rated_count"] > 0)
            for task, prefix, denominator in (("sentiment", "sentiment_", "sentiment_labeled"),
                                              ("intent", "intent_", "intent_labeled"),
                                              ("aspects", "aspect_", "aspects_labeled")):
                valid = table[denominator].where(table[denominator] > 0)
                for label in self.label_maps[task]:
                    table[f"{prefix}{label}_rate"] = table[f"{prefix}{label}"] / valid
            table["day"] = pd.to_datetime(table["day"])
            path = gold_dir / f"daily_by_{dim}.parquet"
            table.to_parquet(path, index=False)
            written[dim] = len(table)
        return written
