"""The feedback feature group: its definition, ingestion (local or SageMaker) and reads.

`open_feature_store(name)` returns a writer chosen by environment, never by a different code
path in the job: outside a SageMaker job (processing.workspace), or with
`FBRAIN_LOCAL_FEATURE_STORE=<dir>` set, a local store that lays out its
offline store exactly like SageMaker's (Parquet under
`offline/<account>/sagemaker/<region>/offline-store/<group>-<created>/data/year=/month=/day=/hour=/`)
and keeps an online store in SQLite (latest record per id by event time, as SageMaker's online
store does); otherwise `sagemaker-featurestore-runtime` PutRecord, batched, retried with
exponential backoff on throttling and 5xx errors, and every record that still fails is reported
(never dropped silently): the job fails when more fail than `feature_store_max_failed_records`
(check_ingest_failures), and at once when the group does not exist. `ensure_feature_group` creates
the group (`fbrain features create-group`, `fbrain pipeline upsert`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

import numpy as np
import pandas as pd

from processing.config import ProcessingConfig
from processing.features import EVENT_TIME, FEATURE_TYPES, RECORD_IDENTIFIER
from processing.json_lines import json_lines
from processing.workspace import LOCAL_STORE_FOLDER, local_workspace

logger = logging.getLogger(__name__)

LOCAL_STORE_ENV = "FBRAIN_LOCAL_FEATURE_STORE"
FEATURE_STORE_KIND_ENV = "FBRAIN_FEATURE_STORE"
RUNTIME_SERVICE = "sagemaker-featurestore-runtime"
# Error codes worth another attempt (the rest, e.g. ValidationError, fail at once).
RETRYABLE_CODES = frozenset({"ThrottlingException", "Throttling", "ServiceUnavailable", "InternalFailure",
                             "InternalServerError", "RequestTimeout", "ServiceQuotaExceededException"})
MISSING_GROUP_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException"})
CREATE_GROUP_HINT = "create it with `fbrain features create-group` (or `fbrain pipeline upsert`)"
# Columns SageMaker adds to every offline-store row.
OFFLINE_META_COLUMNS = ("write_time", "api_invocation_time", "is_deleted")


# ---------------------------------------------------------------- definition
def feature_definitions() -> list[dict[str, str]]:
    """FeatureDefinitions of the feedback feature group (CreateFeatureGroup shape)."""
    return [{"FeatureName": name, "FeatureType": kind} for name, kind in FEATURE_TYPES.items()]


def create_feature_group_request(config: Optional[ProcessingConfig] = None,
                                 feature_group_name: Optional[str] = None) -> dict[str, Any]:
    """Keyword arguments of sagemaker.create_feature_group: online + offline store, KMS."""
    config = config or ProcessingConfig()
    online: dict[str, Any] = {"EnableOnlineStore": True}
    s3_storage: dict[str, Any] = {"S3Uri": config.feature_store_offline_s3_uri}
    if config.feature_store_kms_key_id:
        online["SecurityConfig"] = {"KmsKeyId": config.feature_store_kms_key_id}
        s3_storage["KmsKeyId"] = config.feature_store_kms_key_id
    return {
        "FeatureGroupName": feature_group_name or config.feature_group_name,
        "RecordIdentifierFeatureName": RECORD_IDENTIFIER,
        "EventTimeFeatureName": EVENT_TIME,
        "FeatureDefinitions": feature_definitions(),
        "OnlineStoreConfig": online,
        "OfflineStoreConfig": {"S3StorageConfig": s3_storage, "DisableGlueTableCreation": False,
                               "TableFormat": "Glue"},
        "RoleArn": config.feature_store_role_arn,
        "Description": "Per-feedback text statistics, rating, channel and as-of customer / SKU history.",
        "Tags": [{"Key": "project", "Value": "feedback-brain"}],
    }


class FeatureStoreIngestionError(RuntimeError):
    """Feature rows did not reach the Feature Store (missing group, or more failures than tolerated)."""


class FeatureGroupError(RuntimeError):
    """The feature group could not be created, or did not become Created in time."""


def ensure_feature_group(sagemaker_client: Any, request: dict[str, Any], config: Optional[ProcessingConfig] = None,
                         wait: bool = True, sleep: Callable[[float], None] = time.sleep,
                         clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Create the feature group of `request` (create_feature_group_request) unless it exists; wait until Created.

    Idempotent: an existing group is kept as it is (a group's definitions cannot be updated in place).
    Returns {"feature_group_name", "feature_group_arn", "status", "created"}."""
    from botocore.exceptions import ClientError

    config = config or ProcessingConfig()
    name = request["FeatureGroupName"]

    def describe() -> Optional[dict[str, Any]]:
        try:
            return sagemaker_client.describe_feature_group(FeatureGroupName=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING_GROUP_CODES:
                return None
            raise FeatureGroupError(f"DescribeFeatureGroup {name} failed: {error}") from error

    described = describe()
    created = described is None
    if created:
        try:
            sagemaker_client.create_feature_group(**request)
        except ClientError as error:
            raise FeatureGroupError(f"CreateFeatureGroup {name} failed: {error}") from error
        logger.info("creating feature group %s (offline store %s)", name,
                    request["OfflineStoreConfig"]["S3StorageConfig"]["S3Uri"])
        described = describe() or {"FeatureGroupStatus": "Creating"}
    deadline = clock() + config.feature_group_wait_timeout_s
    while wait and described.get("FeatureGroupStatus") == "Creating":
        if clock() >= deadline:
            raise FeatureGroupError(f"feature group {name} still Creating after {config.feature_group_wait_timeout_s:.0f}s "
                                    "(processing.feature_group_wait_timeout_s)")
        sleep(config.feature_group_poll_s)
        described = describe() or {"FeatureGroupStatus": "Creating"}
    status = described.get("FeatureGroupStatus", "Unknown")
    if status in ("CreateFailed", "Deleting", "DeleteFailed"):
        raise FeatureGroupError(f"feature group {name} is {status}: {described.get('FailureReason', 'no reason given')}")
    return {"feature_group_name": name, "feature_group_arn": described.get("FeatureGroupArn"), "status": status,
            "created": created}


def check_ingest_failures(ingest: dict[str, Any], config: ProcessingConfig) -> None:
    """Raise when more records failed PutRecord than `feature_store_max_failed_records` allows."""
    failed = int(ingest.get("failed", 0))
    if failed <= config.feature_store_max_failed_records:
        return
    first = (ingest.get("failures") or [{}])[0]
    raise FeatureStoreIngestionError(
        f"{failed} of {ingest.get('attempted', '?')} feature records failed PutRecord into feature group "
        f"{ingest.get('feature_group_name')!r} (tolerated: {config.feature_store_max_failed_records}, "
        f"processing.feature_store_max_failed_records); first failure: {first.get('error_code')} {first.get('message')}")


def format_event_time(value: Any) -> str:
    """ISO-8601 UTC with milliseconds, the event-time format SageMaker accepts."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def to_record(row: dict[str, Any]) -> list[dict[str, str]]:
    """One feature row as a PutRecord Record; missing values are left out (SageMaker allows it)."""
    record = []
    for name, kind in FEATURE_TYPES.items():
        value = row.get(name)
        if _is_missing(value):
            continue
        if name == EVENT_TIME:
            text = format_event_time(value)
        elif kind == "Integral":
            text = str(int(value))
        elif kind == "Fractional":
            text = repr(float(value))
        else:
            text = str(value)
        record.append({"FeatureName": name, "ValueAsString": text})
    return record


def format_event_times(values: pd.Series) -> pd.Series:
    """format_event_time for a whole column (same strings; numpy's C formatter, not strftime per value)."""
    utc = pd.to_datetime(values, utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    # Casting to milliseconds floors, as format_event_time's `microsecond // 1000` does.
    text = np.datetime_as_string(utc.astype("datetime64[ms]"), unit="ms")
    return pd.Series(np.char.add(text, "Z").astype(object), index=values.index)


def _value_strings(column: pd.Series, name: str, kind: str) -> pd.Series:
    """ValueAsString of a whole column, as to_record makes it per value (missing values are NaN here)."""
    if name == EVENT_TIME:
        return format_event_times(column)
    present = column.dropna()
    if kind == "Integral":
        present = present.astype("int64")
    elif kind == "Fractional":
        present = present.astype("float64")  # pandas' float -> str is Python's repr (shortest round-trip)
    return present.astype(str).reindex(column.index)


def _record_value_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per feature present in frame: its ValueAsString strings as to_record makes them (NaN = missing)."""
    return pd.DataFrame({name: _value_strings(frame[name], name, kind).astype(object)
                         for name, kind in FEATURE_TYPES.items() if name in frame.columns}, index=frame.index)


def _online_record_json(values: pd.DataFrame) -> list[str]:
    """One JSON object per row, {name: value} for present values (what get_record returns, as GetRecord
    leaves missing features out). Rows are grouped by which features they have, and each group is
    written by pandas' C JSON writer with just those columns: no per-row Python."""
    if values.empty:
        return []
    present = values.notna().to_numpy()
    pattern = present.astype(np.int64) @ (np.int64(1) << np.arange(present.shape[1], dtype=np.int64))
    records = np.empty(len(values), dtype=object)
    for code in np.unique(pattern):
        rows = np.flatnonzero(pattern == code)
        columns = [name for i, name in enumerate(values.columns) if (int(code) >> i) & 1]
        records[rows] = json_lines(values.iloc[rows][columns])
    return records.tolist()


# ---------------------------------------------------------------- ingestion report
@dataclass
class IngestFailure:
    feedback_id: str
    error_code: str
    message: str
    attempts: int


@dataclass
class IngestReport:
    """What one put() did; `failures` lists every record that was not stored."""

    feature_group_name: str
    attempted: int = 0
    succeeded: int = 0
    retries: int = 0
    failures: list[IngestFailure] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def merge(self, other: "IngestReport") -> None:
        self.attempted += other.attempted
        self.succeeded += other.succeeded
        self.retries += other.retries
        self.failures.extend(other.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"feature_group_name": self.feature_group_name, "attempted": self.attempted,
                "succeeded": self.succeeded, "failed": self.failed, "retries": self.retries,
                "failures": [vars(f) for f in self.failures]}


class FeatureStoreWriter(Protocol):
    feature_group_name: str

    def put(self, features: pd.DataFrame) -> IngestReport: ...

    def ingest(self, features: pd.DataFrame) -> IngestReport: ...

    def close(self) -> None: ...


def _check_columns(features: pd.DataFrame) -> None:
    missing = [name for name in (RECORD_IDENTIFIER, EVENT_TIME) if name not in features.columns]
    if missing:
        raise ValueError(f"feature rows need {missing} (record identifier and event time)")


# ---------------------------------------------------------------- SageMaker
class SageMakerFeatureStoreWriter:
    """Batched PutRecord with retries and exponential backoff; failures are reported."""

    def __init__(self, feature_group_name: str, client: Any = None, config: Optional[ProcessingConfig] = None,
                 sleep: Callable[[float], None] = time.sleep, jitter: Callable[[], float] = random.random):
        self.feature_group_name = feature_group_name
        self.config = config or ProcessingConfig()
        if client is None:
            import boto3
            from botocore.config import Config

            # Our loop does the retrying (and counts it); botocore's own retries are off.
            client = boto3.client(RUNTIME_SERVICE, config=Config(retries={"mode": "standard", "max_attempts": 1}))
        self.client = client
        self.sleep = sleep
        self.jitter = jitter

    def _delay(self, attempt: int) -> float:
        base = self.config.feature_store_backoff_base_s * (2 ** (attempt - 1))
        return min(self.config.feature_store_backoff_max_s, base * (0.5 + 0.5 * self.jitter()))

    def _put_one(self, record: list[dict[str, str]], feedback_id: str) -> tuple[int, Optional[IngestFailure]]:
        """(retries used, failure or None) for one record."""
        from botocore.exceptions import ClientError, EndpointConnectionError

        for attempt in range(1, self.config.feature_store_max_attempts + 1):
            try:
                self.client.put_record(FeatureGroupName=self.feature_group_name, Record=record)
                return attempt - 1, None
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                message = error.response.get("Error", {}).get("Message", str(error))
                retryable = code in RETRYABLE_CODES or status >= 500
                if code in MISSING_GROUP_CODES:
                    # Every other record would fail the same way: stop at the first, with the fix.
                    raise FeatureStoreIngestionError(
                        f"feature group {self.feature_group_name!r} does not exist ({message}): {CREATE_GROUP_HINT}"
                    ) from error
            except EndpointConnectionError as error:
                code, message, retryable = "EndpointConnectionError", str(error), True
            if not retryable or attempt == self.config.feature_store_max_attempts:
                logger.warning("PutRecord failed for %s after %d attempt(s): %s %s", feedback_id, attempt, code, message)
                return attempt - 1, IngestFailure(feedback_id, code, message, attempt)
            self.sleep(self._delay(attempt))
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def put(self, features: pd.DataFrame) -> IngestReport:
        _check_columns(features)
        report = IngestReport(self.feature_group_name)
        started = time.perf_counter()
        rows = features.to_dict("records")
        batch_size = self.config.feature_store_batch_size
        workers = max(1, self.config.feature_store_max_workers)
        pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        try:
            for start in range(0, len(rows), batch_size):
                batch = [(to_record(row), str(row[RECORD_IDENTIFIER])) for row in rows[start:start + batch_size]]
                outcomes = pool.map(lambda item: self._put_one(*item), batch) if pool else \
                    (self._put_one(*item) for item in batch)
                for retries, failure in outcomes:
                    report.attempted += 1
                    report.retries += retries
                    if failure is None:
                        report.succeeded += 1
                    else:
                        report.failures.append(failure)
                self._log_progress(report, len(rows), started)
        finally:
            if pool:
                pool.shutdown()
        return report

    def _log_progress(self, report: IngestReport, total: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        logger.info("feature store %s: %d/%d records put (%d failed, %d retries, %.0f records/s)",
                    self.feature_group_name, report.attempted, total, report.failed, report.retries,
                    report.attempted / max(elapsed, 1e-9))

    ingest = put

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- local
class LocalFeatureStore:
    """Offline store as SageMaker lays it out (Parquet, hourly partitions) + SQLite online store."""

    def __init__(self, root: Path, feature_group_name: str, config: Optional[ProcessingConfig] = None,
                 region: Optional[str] = None):
        self.root = Path(root)
        self.feature_group_name = feature_group_name
        self.config = config or ProcessingConfig()
        self.region = region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self.offline_dir = self._offline_dir()
        self.online_path = self.root / "online" / f"{feature_group_name}.sqlite"
        self.online_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.online_path)
        self._db.execute("CREATE TABLE IF NOT EXISTS records (feedback_id TEXT PRIMARY KEY, event_epoch REAL NOT NULL,"
                         " event_time TEXT NOT NULL, record TEXT NOT NULL)")

    def _offline_dir(self) -> Path:
        # SageMaker names the folder after the group and its creation time; keep the first one.
        meta_path = self.root / "feature_groups" / f"{self.feature_group_name}.json"
        if meta_path.exists():
            created = json.loads(meta_path.read_text())["creation_epoch"]
        else:
            created = int(time.time())
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps({
                "creation_epoch": created,
                "request": create_feature_group_request(self.config, self.feature_group_name)}, indent=2))
        return (self.root / "offline" / self.config.feature_store_account_id / "sagemaker" / self.region
                / "offline-store" / f"{self.feature_group_name}-{created}" / "data")

    def put(self, features: pd.DataFrame) -> IngestReport:
        _check_columns(features)
        report = IngestReport(self.feature_group_name, attempted=len(features))
        if features.empty:
            return report
        now = pd.Timestamp.now(tz="UTC")
        frame = features[[c for c in FEATURE_TYPES if c in features.columns]].copy()
        frame[EVENT_TIME] = pd.to_datetime(frame[EVENT_TIME], utc=True)
        frame["write_time"] = now
        frame["api_invocation_time"] = now
        frame["is_deleted"] = False
        # Parquet encoding releases the GIL, so the offline files are written while the online records are built.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="offline-store") as pool:
            offline = pool.submit(self._write_offline, frame, now)
            self._write_online(frame)
            offline.result()
        report.succeeded = len(frame)
        logger.info("local feature store %s: %d records written to %s", self.feature_group_name, len(frame), self.root)
        return report

    def _write_offline(self, frame: pd.DataFrame, now: pd.Timestamp) -> None:
        """One Parquet file per event-time hour (SageMaker's partitioning), written from one Arrow table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        event = frame[EVENT_TIME]
        # numpy hours, not a tz-aware Series: its to_numpy() makes one Timestamp object per row.
        hour_key = event.dt.tz_convert(None).to_numpy(dtype="datetime64[h]")
        order = np.argsort(hour_key, kind="stable")
        stored = frame.assign(**{EVENT_TIME: format_event_times(event)}).iloc[order]
        table = pa.Table.from_pandas(stored, preserve_index=False)
        sorted_hours = hour_key[order]
        # Row offsets where the hour changes: each run of equal hours is one partition file.
        starts = np.flatnonzero(np.r_[True, sorted_hours[1:] != sorted_hours[:-1]])
        ends = np.r_[starts[1:], len(sorted_hours)]
        file_name = f"{now.strftime('%Y%m%dT%H%M%SZ')}_{uuid.uuid4().hex[:12]}.parquet"
        for start, end in zip(starts, ends):
            hour = sorted_hours[start].astype(datetime)
            folder = (self.offline_dir / f"year={hour.year:04d}" / f"month={hour.month:02d}"
                      / f"day={hour.day:02d}" / f"hour={hour.hour:02d}")
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.slice(start, end - start), folder / file_name)

    def _write_online(self, frame: pd.DataFrame) -> None:
        values = _record_value_frame(frame)
        records = _online_record_json(values)
        event_epoch = (frame[EVENT_TIME].astype("int64") / 1e9).tolist()
        event_text = values[EVENT_TIME].tolist()
        rows = list(zip(frame[RECORD_IDENTIFIER].astype(str).tolist(), event_epoch, event_text, records))
        # Like SageMaker's online store: a record older than the stored one does not replace it.
        self._db.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?) ON CONFLICT(feedback_id) DO UPDATE SET"
            " event_epoch = excluded.event_epoch, event_time = excluded.event_time, record = excluded.record"
            " WHERE excluded.event_epoch >= records.event_epoch", rows)
        self._db.commit()

    def get_record(self, feedback_id: str) -> Optional[dict[str, str]]:
        """The online store's latest record for an id (values as strings, as GetRecord returns)."""
        row = self._db.execute("SELECT record FROM records WHERE feedback_id = ?", (feedback_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def read_offline(self, columns: Optional[Iterable[str]] = None) -> pd.DataFrame:
        """Every record version in the offline store, event_time as a UTC timestamp."""
        return read_offline_store(self.offline_dir, columns)

    ingest = put

    def close(self) -> None:
        self._db.close()


def read_offline_store(folder: Path, columns: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """Every record version under an offline-store folder (local, or a copy of SageMaker's S3 one)."""
    files = sorted(Path(folder).rglob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(columns or FEATURE_TYPES))
    frame = pd.concat([pd.read_parquet(f, columns=list(columns) if columns else None) for f in files],
                      ignore_index=True)
    if EVENT_TIME in frame.columns:
        frame[EVENT_TIME] = pd.to_datetime(frame[EVENT_TIME], utc=True)
    return frame


def open_feature_store(feature_group_name: str, config: Optional[ProcessingConfig] = None,
                       client: Any = None) -> FeatureStoreWriter:
    """Where features go: the folder $FBRAIN_LOCAL_FEATURE_STORE names; SageMaker PutRecord inside a SageMaker job
    (or with FBRAIN_FEATURE_STORE=sagemaker); otherwise a local store in the workspace (a module run by hand)."""
    local_dir = os.environ.get(LOCAL_STORE_ENV)
    if local_dir:
        return LocalFeatureStore(Path(local_dir), feature_group_name, config)
    workspace = local_workspace()
    if workspace is not None and os.environ.get(FEATURE_STORE_KIND_ENV, "").lower() != "sagemaker":
        logger.info("not in a SageMaker job: features go to the local Feature Store in %s (set %s=sagemaker to "
                    "call PutRecord from here)", workspace / LOCAL_STORE_FOLDER, FEATURE_STORE_KIND_ENV)
        return LocalFeatureStore(workspace / LOCAL_STORE_FOLDER, feature_group_name, config)
    return SageMakerFeatureStoreWriter(feature_group_name, client=client, config=config)


# ---------------------------------------------------------------- point-in-time training sets
def point_in_time_join(labels: pd.DataFrame, store: "LocalFeatureStore | pd.DataFrame | Path",
                       feature_names: Iterable[str], key: str = RECORD_IDENTIFIER,
                       label_time: str = EVENT_TIME) -> pd.DataFrame:
    """Labels with, per row, the latest feature values recorded at or before the row's time.

    `labels` holds `key` and `label_time`; `store` is a LocalFeatureStore, an offline-store
    folder (e.g. a sync of the SageMaker offline store's S3 prefix) or a frame of offline-store
    rows (several versions per key allowed, `event_time` per version). A label
    row whose key has no version at or before its time gets missing features, never a later one.
    """
    feature_names = list(feature_names)
    missing = [c for c in (key, label_time) if c not in labels.columns]
    if missing:
        raise ValueError(f"labels need columns {missing}")
    if isinstance(store, LocalFeatureStore):
        offline = store.read_offline()
    elif isinstance(store, (str, Path)):
        offline = read_offline_store(Path(store))
    else:
        offline = store
    unknown = [f for f in feature_names if f not in offline.columns]
    if unknown:
        raise ValueError(f"features {unknown} are not in the store; it has {sorted(offline.columns)}")
    if "is_deleted" in offline.columns:
        offline = offline[~offline["is_deleted"].astype(bool)]
    versions = offline[[key, EVENT_TIME] + [f for f in feature_names if f not in (key, EVENT_TIME)]].copy()
    versions = versions.rename(columns={EVENT_TIME: "_feature_time"})
    versions["_feature_time"] = pd.to_datetime(versions["_feature_time"], utc=True)
    left = labels.copy()
    left["_row"] = range(len(left))
    left["_label_time"] = pd.to_datetime(left[label_time], utc=True)
    left[key] = left[key].astype(str)
    versions[key] = versions[key].astype(str)
    joined = pd.merge_asof(left.sort_values("_label_time"), versions.sort_values("_feature_time"),
                           left_on="_label_time", right_on="_feature_time", by=key, direction="backward",
                           allow_exact_matches=True)
    joined = joined.sort_values("_row").drop(columns=["_row", "_label_time"]).reset_index(drop=True)
    return joined.rename(columns={"_feature_time": "feature_event_time"})
