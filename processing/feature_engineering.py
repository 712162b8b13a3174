"""The FeatureEngineering pipeline step: raw feedback -> lake -> features -> train/validation/test.

    python3 -m processing.feature_engineering --input-dir /opt/ml/processing/input/raw \
        --output-dir /opt/ml/processing/output [--set processing.split_seed=3 ...]

Pass 1 (per shard, streaming in chunks): read -> bronze -> validate (quarantine) -> clean,
mask PII, pseudonymise ids, detect language -> spam rules -> staged candidates with dedup keys
and text statistics.
Pass 2 (merge, over every shard's staging): resolve exact / near duplicates globally ->
reviewers' corrections (`--corrections-dir`) override labels -> silver + gold + run report
(books must balance) -> history features over narrow columns ->
Feature Store (own process) while the examples are streamed part by part into
`<output>/<split>/examples.jsonl`. Texts are never all in memory at once. With
`--corrections-state-dir`, a successful pass 2 ends by writing the corrections training marker
there (`last_training.json`: a watermark of the corrections it read).

With several instances (`--shard-count N` or SageMaker's resourceconfig), each instance runs
pass 1 only; one `--merge-only` run over the combined lake does pass 2 (docs/processing.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from processing import lake
from processing.cleaning import SilverRowBuilder
from processing.config import ProcessingConfig
from processing.pii import pseudonym_salt
from processing.secrets import SecretUnavailable
from processing.settings import add_settings_argument, load_sections
from processing.corrections import (LAST_TRAINING_MARKER, CorrectionIndex, CorrectionsRead, read_corrections,
                                    Watermark, write_outcomes, write_training_marker)
from processing.dedup import (DUPLICATE, KEPT, NEAR_DUPLICATE, NearDuplicateHasher, customer_key, exact_key,
                              normalised_for_dedup, resolve_duplicates, text_key)
from processing.features import TEXT_STATISTICS, compute_features, text_statistics
from processing.json_lines import json_lines_text
from processing.readers import (IDENTITY, BadRecord, ColumnMapping, InputItem, RawRecord, list_input_files, parse_item,
                                read_chunks)
from processing.schema import EXAMPLE_COLUMNS, ReasonCode, RecordValidationError, validate_record
from processing.sharding import ShardSpec, detect_shard, files_for_shard
from processing.spam import SpamFilter
from processing.splits import SPLITS, assign_splits
from processing.taxonomy import load_taxonomy

log = logging.getLogger("processing.feature_engineering")


class ProgressLog:
    """Logs rows done and rows/s at most every `every_rows` rows."""

    def __init__(self, what: str, every_rows: int):
        self.what, self.every_rows = what, max(1, every_rows)
        self.started = time.perf_counter()
        self.rows = 0
        self._next = self.every_rows

    def add(self, rows: int) -> None:
        self.rows += rows
        if self.rows >= self._next:
            self._next = (self.rows // self.every_rows + 1) * self.every_rows
            self.log()

    def log(self) -> None:
        elapsed = time.perf_counter() - self.started
        log.info("%s: %d rows in %.1fs (%.0f rows/s)", self.what, self.rows, elapsed, self.rows / max(elapsed, 1e-9))


def _quarantine_row(payload: str, reason: str, message: str, field: Optional[str], feedback_id: Any,
                    source_file: str, line_no: int, now: datetime) -> dict[str, Any]:
    return {"payload": payload, "reason": reason, "message": message, "field": field,
            "feedback_id": feedback_id if isinstance(feedback_id, str) else None,
            "source_file": source_file, "line_no": line_no, "quarantined_at": now}


def _guess_channel(item: InputItem) -> Optional[str]:
    record = getattr(item, "record", None)
    channel = record.get("channel") if type(record) is dict else None
    return channel if type(channel) is str else None


def _id_hash(feedback_id: str) -> int:
    return hash(feedback_id)  # per-process set membership only: never persisted or compared across shards


@dataclass
class ChunkOutput:
    """What the pure part of pass 1 makes of one chunk (picklable: workers send it back)."""

    quarantined: list
    """Quarantine rows for records that failed parsing, validation or cleaning."""
    candidates: list
    """(feedback_id, position in chunk, 'staged' | 'spam' | 'quarantine', row) per valid record, in input order;
    for 'staged' the row is its index in `staged`."""
    pii_counts: Counter
    spam_rules: Counter
    bronze: Any = None
    """lake.bronze_table of the whole chunk, in input order (built here so the writer only filters)."""
    staged: Any = None
    """Arrow table (staging schema) of the 'staged' candidates, whose candidate row is their index in it.
    Arrow tables cross the process boundary as buffers: far cheaper than pickling row dicts."""


class ChunkTransformer:
    """Validate -> clean, mask, pseudonymise, detect language -> spam rules -> dedup keys, for one chunk.

    No state crosses chunks, so chunks can go to worker processes (or Spark partitions);
    the only run-wide rule, "a feedback_id is accepted once", is applied by the caller.
    """

    def __init__(self, config: ProcessingConfig, shard_index: int, now: datetime,
                 mapping: ColumnMapping = IDENTITY):
        self.config, self.shard_index, self.now, self.mapping = config, shard_index, now, mapping
        self.builder = SilverRowBuilder(config)
        self.spam = SpamFilter(config)
        self.hasher = NearDuplicateHasher(config)
        self.staging_schema = lake.staging_schema(self.hasher.lsh.bands)

    def __call__(self, chunk_index: int, chunk: list[InputItem]) -> ChunkOutput:
        out = ChunkOutput([], [], Counter(), Counter())
        staged: list[dict[str, Any]] = []
        channels: list[Optional[str]] = []
        for position, item in enumerate(chunk):
            item = parse_item(item, self.mapping)  # JSON lines arrive undecoded (cheaper to send to a worker)
            channels.append(_guess_channel(item) or None)
            if isinstance(item, BadRecord):
                out.quarantined.append(_quarantine_row(item.payload, item.reason, item.message, None, None,
                                                       item.source_file, item.line_no, self.now))
                continue
            raw_id = item.record.get("feedback_id") if isinstance(item.record, dict) else None
            try:
                record = validate_record(item.record, self.config.max_text_chars)
            except RecordValidationError as exc:
                out.quarantined.append(_quarantine_row(item.payload, exc.reason.value, exc.message, exc.field,
                                                       raw_id, item.source_file, item.line_no, self.now))
                continue
            row = self.builder.build(record, item.source_file, item.line_no, out.pii_counts, detect_language=False)
            if not row["text"]:
                empty = _quarantine_row(item.payload, ReasonCode.text_empty.value,
                                        "text is empty after removing HTML and invisible characters", "text",
                                        record.feedback_id, item.source_file, item.line_no, self.now)
                out.candidates.append((record.feedback_id, position, "quarantine", empty))
                continue
            rule = self.spam.reason(row["text"])
            if rule:
                # Spam never reaches a model: its language is not detected (record's own value kept).
                out.candidates.append((record.feedback_id, position, "spam", {**row, "spam_rule": rule}))
            else:
                self.builder.fill_language(row)
                out.candidates.append((record.feedback_id, position, "staged", len(staged)))
                staged.append(row)
        out.staged = self._staging_table(staged, chunk_index)
        out.bronze = lake.bronze_table([item.payload for item in chunk], [item.source_file for item in chunk],
                                       [item.line_no for item in chunk], channels, self.now, self.shard_index)
        return out

    def _staging_table(self, rows: list[dict[str, Any]], chunk_index: int) -> pa.Table:
        """Silver fields from the row dicts; dedup keys and text statistics filled in as whole columns
        (per-row dict entries for 20 computed columns cost more than computing them)."""
        table = pa.Table.from_pylist(rows, schema=self.staging_schema)
        if not rows:
            return table
        texts = [row["text"] for row in rows]
        normalised = [normalised_for_dedup(text) for text in texts]
        min_tokens = self.config.near_duplicate_min_tokens
        columns: dict[str, Any] = {
            "exact_key": [exact_key(text, row["customer_id"]) for text, row in zip(normalised, rows)],
            "text_key": [text_key(text) for text in normalised],
            "customer_key": [customer_key(row["customer_id"]) for row in rows],
            "near_eligible": [text.count(" ") + 1 >= min_tokens for text in normalised],
            "shard_index": np.full(len(rows), self.shard_index),
            "chunk_index": np.full(len(rows), chunk_index),
        }
        bands = self.hasher.band_keys(self.hasher.signatures(normalised))
        columns.update({f"band_{b}": bands[:, b] for b in range(bands.shape[1])})
        statistics = text_statistics(pd.Series(texts, dtype=object))
        columns.update({name: statistics[name].to_numpy() for name in TEXT_STATISTICS})
        for name, values in columns.items():
            index = table.schema.get_field_index(name)
            field = table.schema.field(index)
            table = table.set_column(index, field, pa.array(values, type=field.type))
        return table


_WORKER_TRANSFORMER: Optional[ChunkTransformer] = None


def _init_worker(config: ProcessingConfig, shard_index: int, now: datetime, mapping: ColumnMapping) -> None:
    global _WORKER_TRANSFORMER
    _WORKER_TRANSFORMER = ChunkTransformer(config, shard_index, now, mapping)


def _transform_in_worker(chunk_index: int, chunk: list[InputItem]) -> ChunkOutput:
    assert _WORKER_TRANSFORMER is not None
    return _WORKER_TRANSFORMER(chunk_index, chunk)


class PassOne:
    """Read, bronze, validate, clean, mask, filter spam and stage one shard's records."""

    def __init__(self, lake_dir: Path, config: ProcessingConfig, shard: ShardSpec, now: datetime,
                 mapping: ColumnMapping = IDENTITY):
        self.lake_dir, self.config, self.shard, self.now = lake_dir, config, shard, now
        self.mapping = mapping
        self.transformer = ChunkTransformer(config, shard.index, now, mapping)
        self.staging_dir = lake_dir / lake.STAGING / f"shard={shard.index:03d}"
        self.report = lake.RunReport(shards=[shard.index])
        self.clock = lake.StageClock()
        self.seen_ids: set[int] = set()

    def run(self, chunks: Iterable[list[InputItem]]) -> lake.RunReport:
        started = time.perf_counter()
        progress = ProgressLog(f"shard {self.shard.index} pass 1", self.config.progress_every_rows)
        for chunk_index, chunk, output in self._transformed(chunks):
            self.write_chunk(chunk_index, chunk, output)
            progress.add(len(chunk))
        progress.log()
        self.report.stages = self.clock.as_dict()
        self.report.wall_seconds = round(time.perf_counter() - started, 3)
        self.report.check_books(pass_one=True)
        self.report.write(self.staging_dir / lake.SHARD_REPORT)
        return self.report

    def _transformed(self, chunks: Iterable[list[InputItem]]) -> Iterator[tuple[int, list[InputItem], ChunkOutput]]:
        """In-process, or on `workers` processes with at most 2 chunks each in flight (bounded memory)."""
        if self.config.workers <= 1:
            for chunk_index, chunk in enumerate(chunks):
                with self.clock.stage("transform", rows=len(chunk)):
                    output = self.transformer(chunk_index, chunk)
                yield chunk_index, chunk, output
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self.transformer.builder.languages.preload()  # forked workers share the loaded profiles
        in_flight: list = []
        with ProcessPoolExecutor(self.config.workers, mp_context=context, initializer=_init_worker,
                                 initargs=(self.config, self.shard.index, self.now, self.mapping)) as pool:
            for chunk_index, chunk in enumerate(chunks):
                in_flight.append((chunk_index, chunk, pool.submit(_transform_in_worker, chunk_index, chunk)))
                if len(in_flight) >= 2 * self.config.workers:
                    yield self._collect(in_flight.pop(0))
            while in_flight:
                yield self._collect(in_flight.pop(0))

    def _collect(self, entry: tuple) -> tuple[int, list[InputItem], ChunkOutput]:
        chunk_index, chunk, future = entry
        started = time.perf_counter()
        output = future.result()
        timing = self.clock.stages.setdefault("transform_wait", lake.StageTiming())
        timing.seconds += time.perf_counter() - started
        timing.rows += len(chunk)
        return chunk_index, chunk, output

    def write_chunk(self, chunk_index: int, chunk: list[InputItem], output: ChunkOutput) -> None:
        report, clock = self.report, self.clock
        with clock.stage("bronze", rows=len(chunk)):
            report.bronze += lake.write_bronze_table(output.bronze, self.lake_dir, self.now.date().isoformat(),
                                                     self.shard.index, chunk_index)
        quarantined = list(output.quarantined)
        staged_keep = np.zeros(output.staged.num_rows, dtype=bool)
        spam_rows: list[dict[str, Any]] = []
        spam_rules = Counter()
        with clock.stage("duplicate_ids", rows=len(output.candidates)):
            for feedback_id, position, kind, row in output.candidates:
                key = _id_hash(feedback_id)
                if key in self.seen_ids:
                    item = chunk[position]
                    quarantined.append(_quarantine_row(
                        item.payload, ReasonCode.duplicate_id.value,
                        f"feedback_id {feedback_id!r} was already seen in this run; the first occurrence is kept",
                        "feedback_id", feedback_id, item.source_file, item.line_no, self.now))
                    continue
                self.seen_ids.add(key)
                if kind == "staged":
                    staged_keep[row] = True
                elif kind == "spam":
                    spam_rows.append(row)
                    spam_rules[row["spam_rule"]] += 1
                else:
                    quarantined.append(row)
        staged = output.staged.filter(pa.array(staged_keep)) if not staged_keep.all() else output.staged
        with clock.stage("write_pass_one", rows=staged.num_rows + len(spam_rows) + len(quarantined)):
            name = lake.part_name(self.shard.index, chunk_index)
            if staged.num_rows:
                pq.write_table(staged, _ensure(self.staging_dir / f"part-c{chunk_index:05d}.parquet"))
            lake.write_table(spam_rows, lake.SPAM_SCHEMA, self.lake_dir / lake.FILTERED_SPAM / name)
            lake.write_table(quarantined, lake.QUARANTINE_SCHEMA, self.lake_dir / lake.QUARANTINE / name)
        report.staged += staged.num_rows
        report.spam += len(spam_rows)
        report.quarantine += len(quarantined)
        detected = staged.column("language_detected").to_numpy(zero_copy_only=False).astype(bool)
        has_language = staged.column("language").is_valid().to_numpy(zero_copy_only=False)
        report.languages_detected += int((detected & has_language).sum())
        report.add_counter("quarantine_reasons", Counter(q["reason"] for q in quarantined))
        report.add_counter("spam_rules", spam_rules)
        report.add_counter("pii_masked", output.pii_counts)


# What pass 2 keeps in memory per silver row: the columns of history features and splits, plus the
# text statistics computed part by part. Texts stay on disk and are streamed again for the examples.
HISTORY_COLUMNS = ["feedback_id", "created_at", "channel", "customer_id", "sku", "star_rating", "intent",
                   "sentiment", "split_group"]
_INDEX_COLUMNS = ["feedback_id", "created_at", "exact_key", "text_key", "customer_key", "near_eligible", "shard_index",
                  "chunk_index", "source_file", "line_no"]


@dataclass
class MergedSilver:
    """Pass 2's view of silver: narrow columns in memory, the part files (same row order) on disk."""

    narrow: pd.DataFrame
    """HISTORY_COLUMNS + processing.features.TEXT_STATISTICS, one row per silver record."""
    parts: list
    """Silver part files in the order of `narrow`'s rows."""


def load_corrections(corrections_dir: Optional[Path], taxonomy_version: str) -> CorrectionIndex:
    """The reviewers' corrections to apply in pass 2 (none when no folder is given or it holds none)."""
    if corrections_dir is None:
        log.info("corrections: no --corrections-dir given; labels stay as ingested")
        return CorrectionIndex(CorrectionsRead(), taxonomy_version)
    read = read_corrections(corrections_dir)
    if not read.total:
        log.info("corrections: none under %s; labels stay as ingested", corrections_dir)
    else:
        log.info("corrections: %d read from %s (%d invalid)", read.total, corrections_dir, len(read.invalid))
    return CorrectionIndex(read, taxonomy_version)


def merge_staging(lake_dir: Path, config: ProcessingConfig, clock: lake.StageClock,
                  keep_staging: bool = False, staged_lake_dir: Optional[Path] = None,
                  corrections: Optional[CorrectionIndex] = None,
                  corrections_source: Optional[str] = None) -> tuple[lake.RunReport, MergedSilver]:
    """Pass 2: global dedup over all shards' staging -> corrections -> silver, filtered/duplicates, gold, run report.

    Staging is read from `staged_lake_dir` (default: `lake_dir`, where everything else is written).
    `corrections` (load_corrections) override silver's labels; what became of each one is counted in the
    report and written under lake/corrections/."""
    now = datetime.now(timezone.utc)
    report = lake.RunReport()
    staging_root = (staged_lake_dir or lake_dir) / lake.STAGING
    shard_dirs = sorted(staging_root.glob("shard=*"))
    if not shard_dirs:
        raise FileNotFoundError(f"no staged shards under {staging_root}: run pass 1 first")
    for shard_dir in shard_dirs:
        shard_report = lake.read_report(shard_dir / lake.SHARD_REPORT)
        for name in ("bronze", "spam", "quarantine", "languages_detected"):
            setattr(report, name, getattr(report, name) + getattr(shard_report, name))
        for name in ("quarantine_reasons", "spam_rules", "pii_masked"):
            report.add_counter(name, Counter(getattr(shard_report, name)))
        report.shards += shard_report.shards
        report.input_files += shard_report.input_files
        clock.merge(shard_report.stages)
    parts = [p for d in shard_dirs for p in lake.iter_parts(d)]
    with clock.stage("dedup_resolve"):
        bands = [f.name for f in pq.read_schema(parts[0]) if f.name.startswith("band_")] if parts else []
        index = (pd.concat([pq.read_table(p, columns=_INDEX_COLUMNS + bands).to_pandas() for p in parts],
                           ignore_index=True) if parts else pd.DataFrame(columns=_INDEX_COLUMNS + bands))
        part_lengths = [pq.ParquetFile(p).metadata.num_rows for p in parts]
        # The same feedback_id in two shards: keep the first in (shard, chunk, line) order.
        id_clash = index.duplicated("feedback_id", keep="first").to_numpy()
        resolved = resolve_duplicates(index[~id_clash], config)
        clock.stages["dedup_resolve"].rows += len(index)
    outcome = np.full(len(index), "id_clash", dtype=object)
    outcome[~id_clash] = resolved["outcome"].to_numpy()
    duplicate_of = np.full(len(index), None, dtype=object)
    duplicate_of[~id_clash] = resolved["duplicate_of"].to_numpy()
    split_group = np.full(len(index), None, dtype=object)
    split_group[~id_clash] = resolved["split_group"].to_numpy()

    gold = lake.GoldAccumulator(load_taxonomy(config.taxonomy_version).label_maps(), config.gold_time_grain,
                                config.gold_flush_rows)
    quarantined: list[dict[str, Any]] = []
    narrow_frames: list[pd.DataFrame] = []
    silver_parts: list[Path] = []
    offset = 0
    with clock.stage("silver_write", rows=len(index)):
        for part, length in zip(parts, part_lengths):
            table = pq.read_table(part)
            part_outcome = outcome[offset:offset + length]
            table = table.set_column(table.schema.get_field_index("split_group"), "split_group",
                                     pa.array(split_group[offset:offset + length], type=pa.string(), from_pandas=True))
            shard_index = table.column("shard_index")[0].as_py()
            name = part.name.replace("part-", f"part-s{int(shard_index):03d}-")
            kept = table.filter(pa.array(part_outcome == KEPT))
            ingested = kept.select(lake.SILVER_SCHEMA.names)
            # Silver, gold and the example files carry the corrected labels. The history features keep the
            # labels as ingested: a correction is made after the fact (created_at of the correction >
            # the row's), so feeding it into later rows' "prior complaint" counts would leak a label that
            # was not known at those rows' event time. Ingested labels are never newer than their row.
            silver_table = corrections.apply(ingested) if corrections is not None else ingested
            silver_parts.append(_ensure(lake_dir / lake.SILVER / name))
            pq.write_table(silver_table.cast(lake.SILVER_SCHEMA), silver_parts[-1])
            is_removed = np.isin(part_outcome, [DUPLICATE, NEAR_DUPLICATE])
            if is_removed.any():
                removed = table.filter(pa.array(is_removed)).select(
                    ["feedback_id", "created_at", "text", "customer_id", "source_file", "line_no"])
                removed = removed.append_column("outcome", pa.array(part_outcome[is_removed], type=pa.string()))
                removed = removed.append_column("duplicate_of", pa.array(
                    duplicate_of[offset:offset + length][is_removed], type=pa.string(), from_pandas=True))
                pq.write_table(removed, _ensure(lake_dir / lake.FILTERED_DUPLICATES / name))
            clashes = table.filter(pa.array(part_outcome == "id_clash")).select(
                ["feedback_id", "source_file", "line_no"]).to_pylist()
            for clash in clashes:
                quarantined.append(_quarantine_row(
                    "", ReasonCode.duplicate_id.value,
                    f"feedback_id {clash['feedback_id']!r} also arrived in another shard; the first is kept "
                    f"(payload in bronze: {clash['source_file']} line {clash['line_no']})",
                    "feedback_id", clash["feedback_id"], clash["source_file"], int(clash["line_no"]), now))
            silver = silver_table.to_pandas()
            gold.add(silver)
            history = silver if silver_table is ingested else ingested.select(HISTORY_COLUMNS).to_pandas()
            narrow_frames.append(pd.concat([history[HISTORY_COLUMNS], kept.select(TEXT_STATISTICS).to_pandas()], axis=1))
            report.silver += len(silver)
            report.duplicates += int((part_outcome == DUPLICATE).sum())
            report.near_duplicates += int((part_outcome == NEAR_DUPLICATE).sum())
            offset += length
    if quarantined:
        lake.write_table(quarantined, lake.QUARANTINE_SCHEMA, lake_dir / lake.QUARANTINE / "part-merge-id-clash.parquet")
        report.quarantine += len(quarantined)
        report.add_counter("quarantine_reasons", Counter(q["reason"] for q in quarantined))
    with clock.stage("gold", rows=report.silver):
        gold.write(lake_dir / lake.GOLD)
    if corrections is not None:
        outcomes = corrections.finish()
        write_outcomes(outcomes, lake_dir / lake.CORRECTIONS)
        report.corrections = outcomes.summary(corrections_source)
        log.info("corrections: %s", {k: v for k, v in report.corrections.items() if k != "source"})
    if not keep_staging and staged_lake_dir is None:
        shutil.rmtree(staging_root)
    if narrow_frames:
        narrow = pd.concat(narrow_frames, ignore_index=True)
    else:
        narrow = lake.staging_schema(0).empty_table().to_pandas()[HISTORY_COLUMNS + list(TEXT_STATISTICS)]
    report.check_books()
    return report, MergedSilver(narrow, silver_parts)


def _ensure(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def external_items(external_dir: Path) -> Iterator[InputItem]:
    """Records from the colleague's named adapters, one data set folder each."""
    from processing.adapters import ADAPTERS  # lands with the data & features work

    for name, adapter in sorted(ADAPTERS.items()):
        folder = external_dir / adapter.folder
        if not folder.exists():
            log.warning("external data set %s not found under %s: skipped", name, external_dir)
            continue
        log.info("reading external data set %s", name)
        for line_no, record in enumerate(adapter.iter_records(folder), start=1):
            yield RawRecord(record, json.dumps(record, ensure_ascii=False, default=str), f"external/{name}", line_no)


def compute_silver_features(silver: MergedSilver, report: lake.RunReport, clock: lake.StageClock) -> pd.DataFrame:
    """processing.features over pass 2's narrow columns (text statistics came from pass 1)."""
    narrow = silver.narrow
    with clock.stage("features", rows=len(narrow)):
        features = compute_features(narrow[HISTORY_COLUMNS], text_stats=narrow[list(TEXT_STATISTICS)])
    report.features = {"status": "computed", "rows": len(features), "columns": len(features.columns)}
    return features


def _ingest(features: pd.DataFrame, feature_group_name: str) -> tuple[Any, float]:
    from processing.feature_store import open_feature_store

    started = time.perf_counter()
    store = open_feature_store(feature_group_name)
    try:
        ingest_report = store.ingest(features)
    finally:
        store.close()
    return _jsonable(ingest_report), time.perf_counter() - started


def _ingest_in_child(features: pd.DataFrame, feature_group_name: str, results: Any) -> None:
    from processing.feature_store import FeatureStoreIngestionError

    try:
        results.put(("ok", *_ingest(features, feature_group_name)))
    except FeatureStoreIngestionError as exc:  # the parent raises the same error, message intact
        results.put(("ingestion_error", str(exc), 0.0))
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent, which fails the run with it
        import traceback

        results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", 0.0))


class FeatureIngestion:
    """Feature Store ingestion of the features frame: in a forked process when `background`, so the
    examples are written meanwhile (ingestion needs only `features`; both are single-threaded)."""

    def __init__(self, features: pd.DataFrame, feature_group_name: str, background: bool):
        import multiprocessing

        self.rows = len(features)
        self.process = None
        self.result: Optional[tuple[Any, float]] = None
        if background and "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")  # the child shares the frame copy-on-write
            self.results = context.Queue()
            self.process = context.Process(target=_ingest_in_child, args=(features, feature_group_name, self.results),
                                           name="feature-store-ingest", daemon=True)
            self.process.start()
        else:
            self.result = _ingest(features, feature_group_name)

    def wait(self) -> tuple[Any, float]:
        """(ingestion report as JSON-able data, seconds the ingestion took); raises if it failed."""
        if self.process is None:
            assert self.result is not None
            return self.result
        import queue

        while True:
            try:
                status, payload, seconds = self.results.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"feature store ingestion process died (exit code {self.process.exitcode}) "
                                       f"before reporting; no ingestion report") from None
        self.process.join()
        if status == "ingestion_error":
            from processing.feature_store import FeatureStoreIngestionError

            raise FeatureStoreIngestionError(payload)
        if status != "ok":
            raise RuntimeError(f"feature store ingestion failed: {payload}")
        return payload, seconds


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return json.loads(json.dumps(value.to_dict(), default=str))
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return json.loads(json.dumps(asdict(value), default=str))
    return json.loads(json.dumps(value, default=str))


def write_examples(silver: MergedSilver, features: Optional[pd.DataFrame], output_dir: Path,
                   config: ProcessingConfig) -> dict[str, int]:
    """`<output>/<split>/examples.jsonl` with EXAMPLE_COLUMNS (+ numeric feature columns), streamed part by part."""
    narrow = silver.narrow
    split = assign_splits(narrow, config.validation_fraction, config.test_fraction, config.split_seed).to_numpy()
    numeric: list[str] = []
    if features is not None and len(features):
        numeric = [c for c in features.columns
                   if c not in EXAMPLE_COLUMNS and c != "event_time" and pd.api.types.is_numeric_dtype(features[c])
                   and not pd.api.types.is_bool_dtype(features[c])]
    counts = dict.fromkeys(SPLITS, 0)
    handles = {name: _ensure(output_dir / name / "examples.jsonl").open("w", encoding="utf-8") for name in SPLITS}
    offset = 0
    try:
        for part in silver.parts:
            frame = pq.read_table(part, columns=list(EXAMPLE_COLUMNS)).to_pandas()
            rows = slice(offset, offset + len(frame))
            if not np.array_equal(frame["feedback_id"].to_numpy(), narrow["feedback_id"].to_numpy()[rows]):
                raise RuntimeError(f"silver part {part} does not line up with pass 2's index: was the lake changed?")
            frame["star_rating"] = frame["star_rating"].astype("Int64")
            for column in numeric:
                frame[column] = features[column].to_numpy()[rows]
            frame["created_at"] = _isoformat_utc(frame["created_at"])
            part_split = split[rows]
            for name in SPLITS:
                chosen = frame[part_split == name]
                if len(chosen):
                    handles[name].write(json_lines_text(chosen))
                    counts[name] += len(chosen)
            offset += len(frame)
    finally:
        for handle in handles.values():
            handle.close()
    return counts


def _isoformat_utc(values: pd.Series) -> np.ndarray:
    """`Timestamp.isoformat()` strings of UTC times, vectorised (microseconds shown only when a value has them)."""
    times = pd.to_datetime(values, utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[us]")
    unit = "s" if (times.astype("int64") % 1_000_000 == 0).all() else "us"
    return np.char.add(np.datetime_as_string(times, unit=unit), "+00:00").astype(object)


def run(input_dir: Optional[Path], output_dir: Path, config: ProcessingConfig, shard: ShardSpec,
        mapping: Optional[ColumnMapping] = None, include_external: Optional[Path] = None,
        merge_only: bool = False, keep_staging: bool = False, stage_only: bool = False,
        staged_lake_dir: Optional[Path] = None, corrections_dir: Optional[Path] = None,
        corrections_state_dir: Optional[Path] = None) -> lake.RunReport:
    """The whole step; returns the run report (also written to <output>/lake/run_report.json).

    `corrections_dir`: reviewers' corrections (processing.corrections layout) applied in pass 2.
    `corrections_state_dir`: where pass 2 writes the training marker (processing.corrections.
    LAST_TRAINING_MARKER) once the run succeeds; the pipeline uploads it to `<CorrectionsUri>_state/`, which
    starts a new counting period for the corrections-retrain event."""
    if corrections_state_dir is not None and corrections_dir is None:
        raise ValueError("--corrections-state-dir needs --corrections-dir: the marker says when corrections were read")
    started = time.perf_counter()
    lake_dir = output_dir / "lake"
    clock = lake.StageClock()
    if not merge_only:
        if input_dir is None:
            raise ValueError("--input-dir is required unless --merge-only")
        files = files_for_shard(list_input_files(input_dir), input_dir, shard)
        log.info("shard %d/%d: %d input files", shard.index, shard.count, len(files))
        # JSON lines are decoded by the transformer (in the workers), not by this reading process.
        chunks = read_chunks(input_dir, config.chunk_rows, mapping, files=files, parse=False)
        if include_external:
            from processing.readers import iter_chunks

            chunks = _chain(chunks, iter_chunks(external_items(include_external), config.chunk_rows))
        pass_one = PassOne(lake_dir, config, shard, datetime.now(timezone.utc), mapping or IDENTITY)
        pass_one.report.input_files = [str(f) for f in files]
        shard_report = pass_one.run(chunks)
        log.info("pass 1 done: %s", shard_report.counts())
        if stage_only or shard.count > 1:
            log.info("shard %d of %d staged; run --merge-only over the combined lake folder for silver and splits",
                     shard.index, shard.count)
            return shard_report
    # The marker records what was read (corrections.consumed); its time, taken before reading, is for people
    # and for readers of markers written before watermarks.
    corrections_read_at = datetime.now(timezone.utc)
    corrections = load_corrections(corrections_dir, config.taxonomy_version)
    report, silver = merge_staging(lake_dir, config, clock, keep_staging, staged_lake_dir, corrections,
                                   str(corrections_dir) if corrections_dir is not None else None)
    features = compute_silver_features(silver, report, clock)
    ingestion = FeatureIngestion(features, config.feature_group_name, background=config.workers > 1)
    with clock.stage("splits_examples", rows=len(silver.narrow)):
        report.splits = write_examples(silver, features, output_dir, config)
    with clock.stage("feature_store_wait"):
        report.features["ingest"], ingest_seconds = ingestion.wait()
    clock.stages["feature_store_ingest"] = lake.StageTiming(ingest_seconds, ingestion.rows)
    report.stages = clock.as_dict()
    report.wall_seconds = round(time.perf_counter() - started, 3)
    report.rows_per_second = round(report.bronze / report.wall_seconds, 1) if report.wall_seconds else 0.0
    report.check_books()
    report.write(lake_dir / lake.RUN_REPORT)
    # After the report is written (it lists every failed record), before the marker: a run whose features
    # did not reach the Feature Store fails, and its corrections count again.
    from processing.feature_store import check_ingest_failures

    check_ingest_failures(report.features["ingest"], config)
    # Last, so a run that fails anywhere above leaves no marker and the period goes on.
    write_corrections_marker(corrections_state_dir, corrections_read_at, corrections.consumed, report, config)
    log.info("run complete: %s; splits %s; %.0f rows/s", report.counts(), report.splits, report.rows_per_second)
    return report


def write_corrections_marker(state_dir: Optional[Path], read_at: datetime, consumed: Watermark,
                             report: lake.RunReport, config: ProcessingConfig) -> Optional[Path]:
    """The training marker: `consumed` (what this run read, which is what no longer counts towards a retrain),
    `at` = read_at, and what the run did with the corrections; None without a folder."""
    if state_dir is None:
        log.info("corrections: no --corrections-state-dir given; the training marker (%s) is not written and the "
                 "corrections counting period does not change", LAST_TRAINING_MARKER)
        return None
    summary = report.corrections or {}
    path = write_training_marker(
        state_dir, read_at, consumed, written_by=log.name, finished_at=datetime.now(timezone.utc).isoformat(),
        taxonomy_version=str(config.taxonomy_version), corrections_source=summary.get("source"),
        **{f"corrections_{name}": summary.get(name, 0) for name in ("read", "applied", "superseded", "unmatched",
                                                                     "invalid")})
    log.info("corrections: training marker written to %s (watermark %s)", path, consumed.marker_fields())
    return path


def _chain(*iterables: Iterable) -> Iterator:
    for iterable in iterables:
        yield from iterable


SECTION = "processing"
"""The configuration section this job takes whole (`--set processing.field=value`)."""


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m processing.feature_engineering", description=__doc__.split("\n")[0])
    parser.add_argument("--input-dir", type=Path, help="file or folder of CSV / JSONL / Parquet input")
    parser.add_argument("--output-dir", type=Path, required=True, help="gets train/ validation/ test/ lake/")
    add_settings_argument(parser, [SECTION])
    parser.add_argument("--column-mapping", help='JSON: {"fields": {...}, "constants": {...}, "derive_feedback_id": true}')
    parser.add_argument("--include-external", type=Path, help="folder of external data sets read by processing.adapters")
    parser.add_argument("--shard-index", type=int, help="this instance's shard (default: from SageMaker resourceconfig)")
    parser.add_argument("--shard-count", type=int, help="number of shards (default: from SageMaker resourceconfig)")
    parser.add_argument("--merge-only", action="store_true", help="skip pass 1; merge every staged shard under --output-dir")
    parser.add_argument("--keep-staging", action="store_true", help="keep lake/staging after the merge (debugging)")
    parser.add_argument("--stage-only", action="store_true",
                        help="pass 1 only, even with one shard (the pipeline merges in its own step)")
    parser.add_argument("--staged-lake-dir", type=Path,
                        help="with --merge-only: read lake/staging from this lake folder (default: <output-dir>/lake)")
    parser.add_argument("--corrections-dir", type=Path,
                        help="reviewers' corrections (*.jsonl / *.json, _state/ skipped) applied to labels in pass 2; "
                             "absent or empty: none")
    parser.add_argument("--corrections-state-dir", type=Path,
                        help="with --corrections-dir: write last_training.json here when the run succeeds (the "
                             "pipeline uploads it to <CorrectionsUri>_state/: a new corrections counting period)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ProcessingConfig:
    """The whole processing section: defaults, then FBRAIN__PROCESSING__* variables, then `--set processing.X=...`
    (the pipeline definition passes every field this way)."""
    config = ProcessingConfig()
    load_sections({SECTION: config}, args.settings)
    return config


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = config_from_args(args)
    try:
        pseudonym_salt(config)  # fail fast, before any data is read, when the salt's secret cannot be read
    except SecretUnavailable as exc:
        log.error("%s", exc)
        return 2
    mapping = ColumnMapping.from_json(args.column_mapping) if args.column_mapping else None
    shard = detect_shard(args.shard_index, args.shard_count)
    from processing.feature_store import FeatureStoreIngestionError

    try:
        report = run(args.input_dir, args.output_dir, config, shard, mapping, args.include_external,
                     args.merge_only, args.keep_staging, args.stage_only, args.staged_lake_dir, args.corrections_dir,
                     args.corrections_state_dir)
    except FeatureStoreIngestionError as error:
        log.error("feature store ingestion failed: %s", error)
        return 1
    print(json.dumps({"counts": report.counts(), "splits": report.splits, "rows_per_second": report.rows_per_second}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
