"""The live loop's lake: Apache Iceberg tables bronze, silver, gold and quarantine.

Embedded default: a pyiceberg SqlCatalog on a SQLite file with a local file warehouse; on AWS
the Glue Data Catalog with an s3:// warehouse (`loop.catalog=glue`), so Athena, EMR and Glue
Spark read the same tables.

Every write the worker makes is tagged with its micro-batch id in the snapshot summary
(`fbrain.batch`): `write_once` skips a write whose snapshot already exists, so a worker that
died between two writes redoes only the missing ones (exactly once, see operations.worker).

- bronze: every received item as received (raw JSON), append-only, partitioned by ingest_date and channel.
- quarantine: items that failed validation or cleaning, with the reason code.
- silver: cleaned, PII-masked, pseudonymised, deduplicated records with language, spam rule, predictions,
  the model that made them, reviewers' corrections and a timestamp per stage.
- gold: counts per time window x sku x product_category x region x channel x sentiment x intent x aspect, from
  predictions with corrections taking precedence; `aspect` = "*" rows count records, the others count mentions.
  Counts are additive: a key's count is the sum of its rows (each micro-batch appends its own; compaction
  sums them into one row per key), so readers aggregate with SUM(count) ... GROUP BY.
"""
from __future__ import annotations

import logging
import os
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa

from operations.config import LoopConfig

log = logging.getLogger(__name__)

BATCH_PROPERTY = "fbrain.batch"
BRONZE, SILVER, GOLD, QUARANTINE = "bronze", "silver", "gold", "quarantine"
ALL_RECORDS = "*"
"""The gold `aspect` value of rows that count records rather than aspect mentions."""
NONE_VALUE = "unknown"
"""Gold dimension value for a record without that attribute."""

_TS = pa.timestamp("us", tz="UTC")
_LIST = pa.list_(pa.string())

SCHEMAS: dict[str, pa.Schema] = {
    BRONZE: pa.schema([
        ("seq", pa.int64()), ("feedback_id", pa.string()), ("customer_id", pa.string()), ("payload", pa.string()),
        ("channel", pa.string()), ("ingest_date", pa.string()), ("received_at", _TS), ("batch_id", pa.int64()),
    ]),
    QUARANTINE: pa.schema([
        ("seq", pa.int64()), ("feedback_id", pa.string()), ("customer_id", pa.string()), ("payload", pa.string()),
        ("reason", pa.string()), ("message", pa.string()), ("field", pa.string()), ("received_at", _TS),
        ("quarantined_at", _TS), ("batch_id", pa.int64()),
    ]),
    SILVER: pa.schema([
        ("feedback_id", pa.string()), ("seq", pa.int64()), ("text", pa.string()), ("title", pa.string()),
        ("channel", pa.string()), ("source", pa.string()), ("customer_id", pa.string()), ("order_id", pa.string()),
        ("sku", pa.string()), ("product_category", pa.string()), ("region", pa.string()),
        ("language", pa.string()), ("language_detected", pa.bool_()), ("star_rating", pa.int64()),
        ("spam_rule", pa.string()), ("pii_masked", _LIST),
        ("label_sentiment", pa.string()), ("label_intent", pa.string()), ("label_aspects", _LIST),
        ("labeled_tasks", _LIST),
        ("sentiment", pa.string()), ("sentiment_score", pa.float64()), ("intent", pa.string()),
        ("intent_score", pa.float64()), ("aspects", _LIST), ("flags", _LIST),
        ("model_name", pa.string()), ("model_version", pa.string()),
        ("corrected_sentiment", pa.string()), ("corrected_intent", pa.string()), ("corrected_aspects", _LIST),
        ("created_at", _TS), ("received_at", _TS), ("enriched_at", _TS), ("scored_at", _TS), ("batch_id", pa.int64()),
    ]),
    GOLD: pa.schema([
        ("window_start", _TS), ("sku", pa.string()), ("product_category", pa.string()), ("region", pa.string()),
        ("channel", pa.string()), ("sentiment", pa.string()), ("intent", pa.string()), ("aspect", pa.string()),
        ("count", pa.int64()), ("updated_at", _TS),
    ]),
}
PARTITIONS = {BRONZE: ("ingest_date", "channel")}
GOLD_KEYS = ("window_start", "sku", "product_category", "region", "channel", "sentiment", "intent", "aspect")
"""The dimensions of a gold count; rows sharing them add up."""
TABLE_PROPERTIES = {
    # Every micro-batch commits a metadata file per table: keep only the last few on disk.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


def open_catalog(config: LoopConfig, workspace: Path):
    """The Iceberg catalog named by the config (SQLite file in the workspace, or AWS Glue)."""
    if config.catalog == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        properties = {"warehouse": config.warehouse_uri(workspace)}
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")  # fbrain sets it from aws.region
        if region:  # else pyarrow asks S3 for the bucket's region on every new file system
            properties["client.region"] = region
        if config.aws_endpoint_url:  # a stand-in for AWS (moto server, LocalStack) for Glue and the S3 file IO
            properties.update({"glue.endpoint": config.aws_endpoint_url, "s3.endpoint": config.aws_endpoint_url})
        return GlueCatalog("feedback_brain", **properties)
    from pyiceberg.catalog.sql import SqlCatalog

    db = config.path(workspace, config.catalog_db)
    db.parent.mkdir(parents=True, exist_ok=True)
    warehouse = config.warehouse_uri(workspace)
    if warehouse.startswith("file://"):
        Path(warehouse[len("file://"):]).mkdir(parents=True, exist_ok=True)
    return SqlCatalog("feedback_brain", uri=f"sqlite:///{db.resolve()}", warehouse=warehouse)


class Lake:
    """The four tables of one namespace, created on first use."""

    def __init__(self, config: LoopConfig, workspace: Path):
        self.config, self.workspace = config, Path(workspace)
        self.catalog = open_catalog(config, workspace)
        self.catalog.create_namespace_if_not_exists(config.namespace)
        self._tables: dict[str, Any] = {}
        self.single_writer = False
        """Set by the worker: this process makes every commit, and a pyiceberg Table is updated in place by its
        own commits, so reads skip the catalog round trip (refresh_all() after a failed commit)."""
        for name in SCHEMAS:
            self.table(name)

    def identifier(self, name: str) -> str:
        return f"{self.config.namespace}.{name}"

    def table(self, name: str):
        """The table, refreshed to its latest snapshot (another process may have committed)."""
        table = self._tables.get(name)
        if table is None:
            table = self.catalog.create_table_if_not_exists(self.identifier(name), schema=SCHEMAS[name],
                                                            properties=TABLE_PROPERTIES)
            if PARTITIONS.get(name) and not table.spec().fields:
                with table.update_spec() as spec:
                    for column in PARTITIONS[name]:
                        spec.add_identity(column)
            self._tables[name] = table
            return table
        return table if self.single_writer else table.refresh()

    def refresh_all(self) -> None:
        for table in self._tables.values():
            table.refresh()

    def has_batch(self, name: str, batch_id: int) -> bool:
        """Whether a snapshot of `name` was written by micro-batch `batch_id`."""
        # Newest first: the worker is the only writer, so once an earlier batch's snapshot shows up, this one has none.
        for snapshot in reversed(self.table(name).snapshots()):
            written = snapshot.summary.get(BATCH_PROPERTY) if snapshot.summary is not None else None
            if written is None:
                continue  # compaction, retention, erasure
            if int(written) == batch_id:
                return True
            if int(written) < batch_id:
                return False
        return False

    def write_once(self, name: str, rows: pa.Table, batch_id: int, overwrite_filter: Any = None) -> bool:
        """Append (or overwrite rows matching `overwrite_filter`) unless batch `batch_id` already did; True if written."""
        if self.has_batch(name, batch_id):
            return False
        self.write(name, rows, {BATCH_PROPERTY: str(batch_id)}, overwrite_filter)
        return True

    def insert_new(self, name: str, rows: list[dict[str, Any]], properties: dict[str, str],
                   key: str = "feedback_id", time_column: str = "received_at") -> int:
        """Append the rows whose `key` the table does not hold yet, as one snapshot; returns how many.

        The idempotent write of an at-least-once source (the Kinesis consumer: a redelivered record is already
        there and is left as first written). The lookup of the keys is bounded by the rows' `time_column` range
        (a redelivery carries the same receive time), so the data files' column statistics prune the scan to the
        files of that time instead of the whole table. The local worker plans its batches and uses
        `write_once`'s batch tags instead."""
        from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThanOrEqual

        times = [row[time_column] for row in rows]
        condition = And(In(key, sorted({row[key] for row in rows})),
                        And(GreaterThanOrEqual(time_column, min(times).isoformat()),
                            LessThanOrEqual(time_column, max(times).isoformat())))
        held = set(self.scan(name, condition, columns=(key,)).column(key).to_pylist())
        new = [row for row in rows if row[key] not in held]
        if new:
            self.write(name, pa.Table.from_pylist(new, schema=SCHEMAS[name]), properties)
        return len(new)

    def write(self, name: str, rows: pa.Table, properties: dict[str, str], overwrite_filter: Any = None) -> None:
        """Append, or replace the rows matching `overwrite_filter`, as one snapshot with `properties`."""
        table = self.table(name)
        rows = rows.cast(SCHEMAS[name])
        if overwrite_filter is not None and rows.num_rows == 0:  # pyiceberg cannot overwrite with no rows
            table.delete(overwrite_filter, snapshot_properties=properties)
        elif overwrite_filter is None:
            table.append(rows, snapshot_properties=properties)
        else:
            with warnings.catch_warnings():  # an overwrite of windows gold does not hold yet is normal
                warnings.filterwarnings("ignore", "Delete operation did not match any records")
                table.overwrite(rows, overwrite_filter=overwrite_filter, snapshot_properties=properties)

    def scan(self, name: str, row_filter: Any = None, columns: Optional[tuple[str, ...]] = None,
             snapshot_id: Optional[int] = None) -> pa.Table:
        table = self.table(name)
        kwargs: dict[str, Any] = {}
        if row_filter is not None:
            kwargs["row_filter"] = row_filter
        if columns:
            kwargs["selected_fields"] = columns
        if snapshot_id is not None:
            kwargs["snapshot_id"] = snapshot_id
        return table.scan(**kwargs).to_arrow()

    def snapshot_id(self, name: str) -> Optional[int]:
        snapshot = self.table(name).current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def compact(self, name: str) -> int:
        """Rewrite the table's data as one set of files (pyiceberg 0.12 has no rewrite_data_files), gold's rows
        summed to one per key, then expire snapshots older than `snapshot_expiry_hours`; returns the rows rewritten."""
        table = self.table(name)
        if table.current_snapshot() is None:
            return 0
        data = table.scan().to_arrow()
        if name == GOLD:
            data = summed_gold(data)
        table.overwrite(data, snapshot_properties={"fbrain.compaction": "1"})
        self.expire_snapshots(name)
        return data.num_rows

    def expire_snapshots(self, name: str, older_than: Optional[datetime] = None, keep_last: Optional[int] = None) -> int:
        """Expire snapshots older than `older_than` (default: `snapshot_expiry_hours` ago) and, with `keep_last`,
        all but the newest `keep_last`; never the current one. Returns how many were expired."""
        table = self.table(name)
        cutoff_ms = int((older_than or datetime.now(timezone.utc)
                         - timedelta(hours=self.config.snapshot_expiry_hours)).timestamp() * 1000)
        snapshots = table.snapshots()
        if keep_last is not None and len(snapshots) > keep_last:
            cutoff_ms = max(cutoff_ms, sorted(s.timestamp_ms for s in snapshots)[-max(keep_last, 1)])
        current = table.current_snapshot()
        old = [s for s in snapshots if s.timestamp_ms < cutoff_ms and current is not None
               and s.snapshot_id != current.snapshot_id]
        if old:
            # older_than reads the table metadata once; by_ids copies all of it twice per snapshot id.
            cutoff = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=cutoff_ms)
            table.maintenance.expire_snapshots().older_than(cutoff).commit()
            log.info("lake: expired %d snapshots of %s", len(old), name)
        return len(old)

    def remove_orphan_files(self, name: str) -> int:
        """Delete data files no remaining snapshot references (left by deletes, overwrites and expired snapshots),
        so erased rows do not survive in the warehouse (local folder or S3: pyiceberg's expire_snapshots leaves the
        files). Run only while no writer is between writing files and committing."""
        from pyarrow.fs import FileSelector, FileType
        from pyiceberg.io.pyarrow import PyArrowFileIO

        table = self.table(name)
        if not isinstance(table.io, PyArrowFileIO):
            return 0
        scheme, netloc, path = PyArrowFileIO.parse_location(table.location().rstrip("/") + "/data")
        filesystem = table.io.fs_by_scheme(scheme, netloc)
        referenced = {PyArrowFileIO.parse_location(p)[2] for p in table.inspect.all_files().column("file_path").to_pylist()}
        removed = 0
        for info in filesystem.get_file_info(FileSelector(path, recursive=True, allow_not_found=True)):
            if info.type == FileType.File and info.path.endswith(".parquet") and info.path not in referenced:
                filesystem.delete_file(info.path)
                removed += 1
        return removed


def summed_gold(rows: pa.Table) -> pa.Table:
    """Gold rows with one row per key: counts summed, the latest `updated_at` kept."""
    summed = rows.group_by(list(GOLD_KEYS), use_threads=False).aggregate([("count", "sum"), ("updated_at", "max")])
    summed = summed.rename_columns([{"count_sum": "count", "updated_at_max": "updated_at"}.get(c, c)
                                    for c in summed.column_names])
    return summed.select(SCHEMAS[GOLD].names).cast(SCHEMAS[GOLD])
