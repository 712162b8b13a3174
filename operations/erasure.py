"""A data subject's erasure beyond the loop's own tables: the batch pipeline's Feature Store (online and
offline stores) and the endpoint's data capture, in the workspace or on AWS.

`operations.privacy.forget_customer` finds the subject (pseudonym, feedback ids, the texts a model read for
them) and hands it to each eraser made by `pipeline_erasers` (`loop.forget_pipeline_data`):

- local: the workspace's Feature Store (`<workspace>/featurestore`, written by the local pipeline): rows of the
  customer deleted from every online-store SQLite file, offline Parquet files holding them rewritten without
  them; capture JSONL files under the local capture root rewritten without the customer's texts.
- aws: the offline store's Parquet objects of `processing.feature_group_name` under
  `processing.feature_store_offline_s3_uri` rewritten without the customer's rows (older object versions
  deleted, so a versioned bucket keeps no copy), then featurestore-runtime DeleteRecord (HardDelete, online
  store) for every record id of the customer; capture objects under `s3://aws.bucket/aws.data_capture_prefix`
  rewritten the same way. DeleteRecord's `OfflineStore` target is not used: it only appends a tombstone row
  (`is_deleted`), leaving the customer's rows in S3.

Feature rows are matched by record id (the customer's feedback ids) or by the pseudonymised `customer_id`,
which also reaches rows the batch pipeline wrote for ids the loop never saw. Captured requests carry texts and
no ids, so captured items are matched by the exact text the model read (inference.capture.drop_captured_texts);
an identical text of another customer is removed with them.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from inference.capture import CAPTURE_SUFFIX, drop_texts_from_capture_file
from processing.features import RECORD_IDENTIFIER

log = logging.getLogger(__name__)

CUSTOMER_COLUMN = "customer_id"
MISSING_RECORD_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException"})


@dataclass(frozen=True)
class DataSubject:
    """What identifies one customer's data outside the loop's tables (never the raw customer id)."""

    pseudonym: str
    """The salted pseudonym the pipeline stores as `customer_id` (processing.pii.pseudonymise)."""
    feedback_ids: frozenset[str]
    """The customer's feedback ids (= Feature Store record identifiers)."""
    texts: frozenset[str]
    """The texts a model read for the customer's records (processing.schema.model_input_text of the masked
    silver text, and of the raw text), as captured endpoint requests hold them."""


SubjectEraser = Callable[[DataSubject], dict[str, int]]


# ---------------------------------------------------------------- object stores: a folder or an S3 prefix
class Objects(Protocol):
    def keys(self, suffix: str) -> Iterator[str]: ...

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


class LocalObjects:
    """Files under a folder; rewrites replace the file atomically."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def keys(self, suffix: str) -> Iterator[str]:
        if self.root.is_dir():
            yield from sorted(str(p) for p in self.root.rglob(f"*{suffix}") if p.is_file())

    def read(self, key: str) -> bytes:
        return Path(key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=Path(key).parent, suffix=".erasing")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, key)

    def delete(self, key: str) -> None:
        Path(key).unlink()


class S3Objects:
    """Objects under an s3:// prefix. A rewrite or delete also deletes the key's older versions (and delete
    markers), so a versioned bucket keeps no copy of the erased data."""

    def __init__(self, uri: str, client: Any = None):
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        self.bucket, _, self.prefix = uri[len("s3://"):].partition("/")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def keys(self, suffix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith(suffix):
                    yield item["Key"]

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        self._delete_history(key, keep_latest=True)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)
        self._delete_history(key, keep_latest=False)

    def _delete_history(self, key: str, keep_latest: bool) -> None:
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key):
            for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if version["Key"] != key or version.get("VersionId") in (None, "null"):
                    continue  # another key with this prefix, or an unversioned bucket (nothing older is kept)
                if keep_latest and version.get("IsLatest"):
                    continue
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version["VersionId"])


# ---------------------------------------------------------------- Feature Store offline store (Parquet)
def subject_rows(table: pa.Table, subject: DataSubject) -> pa.Array:
    """Boolean mask of the rows of a feature table that belong to the subject (record id or pseudonym)."""
    mask = pc.is_in(table.column(RECORD_IDENTIFIER).cast(pa.string()),
                    value_set=pa.array(sorted(subject.feedback_ids), pa.string()))
    if CUSTOMER_COLUMN in table.column_names:
        mask = pc.or_(mask, pc.equal(table.column(CUSTOMER_COLUMN).cast(pa.string()), subject.pseudonym))
    return pc.fill_null(mask, False)


def erase_parquet_rows(objects: Objects, subject: DataSubject,
                       selected: Callable[[str], bool] = lambda key: True) -> dict[str, Any]:
    """Rewrite every Parquet object holding the subject's rows without them (delete it when none are left).
    Returns {"rows", "files", "record_ids"} (record_ids: the ids of the rows removed)."""
    rows = files = 0
    record_ids: set[str] = set()
    for key in objects.keys(".parquet"):
        if not selected(key):
            continue
        table = pq.read_table(pa.BufferReader(objects.read(key)))
        if RECORD_IDENTIFIER not in table.column_names:
            continue
        mask = subject_rows(table, subject)
        matched = pc.sum(mask).as_py() or 0
        if not matched:
            continue
        record_ids.update(str(v) for v in table.filter(mask).column(RECORD_IDENTIFIER).to_pylist())
        kept = table.filter(pc.invert(mask))
        if kept.num_rows:
            sink = pa.BufferOutputStream()
            pq.write_table(kept, sink)
            objects.write(key, sink.getvalue().to_pybytes())
        else:
            objects.delete(key)
        rows += matched
        files += 1
    return {"rows": rows, "files": files, "record_ids": record_ids}


# ---------------------------------------------------------------- endpoint data capture (JSONL)
def erase_capture(objects: Objects, subject: DataSubject) -> dict[str, int]:
    """Rewrite every capture file holding one of the subject's texts without those request items (and their
    predictions); a file left empty is deleted."""
    texts_removed = records_removed = files = 0
    if not subject.texts:
        return {"capture_texts": 0, "capture_records": 0, "capture_files": 0}
    for key in objects.keys(CAPTURE_SUFFIX):
        content = objects.read(key).decode("utf-8")
        rewritten, removed, dropped = drop_texts_from_capture_file(content, subject.texts)
        if not removed:
            continue
        if rewritten:
            objects.write(key, rewritten.encode("utf-8"))
        else:
            objects.delete(key)
        texts_removed, records_removed, files = texts_removed + removed, records_removed + dropped, files + 1
    return {"capture_texts": texts_removed, "capture_records": records_removed, "capture_files": files}


# ---------------------------------------------------------------- erasers
class LocalFeatureStoreEraser:
    """The local Feature Store of a workspace (processing.feature_store.LocalFeatureStore): every group's online
    SQLite store and offline Parquet files."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __call__(self, subject: DataSubject) -> dict[str, int]:
        offline = erase_parquet_rows(LocalObjects(self.root / "offline"), subject)
        online = 0
        ids = sorted(subject.feedback_ids | offline["record_ids"])
        for path in sorted((self.root / "online").glob("*.sqlite")):
            db = sqlite3.connect(path)
            try:
                db.execute("PRAGMA secure_delete = ON")  # deleted records are zeroed, not left in free pages
                marks = ",".join("?" * len(ids))
                where = f"feedback_id IN ({marks}) OR " if ids else ""
                online += db.execute(f"DELETE FROM records WHERE {where}json_extract(record, '$.customer_id') = ?",
                                     [*ids, subject.pseudonym]).rowcount
                db.commit()
            finally:
                db.close()
        return {"feature_store_online": online, "feature_store_offline_rows": offline["rows"],
                "feature_store_offline_files": offline["files"]}


class SageMakerFeatureStoreEraser:
    """A SageMaker feature group: offline Parquet objects in S3 rewritten, then DeleteRecord (HardDelete) on the
    online store for each of the subject's record ids."""

    def __init__(self, feature_group_name: str, offline_s3_uri: str, runtime_client: Any = None, s3_client: Any = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.feature_group_name = feature_group_name
        self.offline = S3Objects(offline_s3_uri, s3_client)
        if runtime_client is None:
            import boto3

            runtime_client = boto3.client("sagemaker-featurestore-runtime")
        self.runtime = runtime_client
        self.clock = clock

    def __call__(self, subject: DataSubject) -> dict[str, int]:
        from botocore.exceptions import ClientError

        from processing.feature_store import format_event_time

        # SageMaker writes <uri>/<account>/sagemaker/<region>/offline-store/<group>-<created>/data/...
        marker = f"/offline-store/{self.feature_group_name}-"
        offline = erase_parquet_rows(self.offline, subject, lambda key: marker in f"/{key}")
        deleted = absent = 0
        for record_id in sorted(subject.feedback_ids | offline["record_ids"]):
            try:
                self.runtime.delete_record(FeatureGroupName=self.feature_group_name, RecordIdentifierValueAsString=record_id,
                                           EventTime=format_event_time(self.clock()), TargetStores=["OnlineStore"],
                                           DeletionMode="HardDelete")
                deleted += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") not in MISSING_RECORD_CODES:
                    raise
                absent += 1
        log.info("feature group %s: %d online records deleted, %d offline rows in %d objects rewritten",
                 self.feature_group_name, deleted, offline["rows"], offline["files"])
        return {"feature_store_online": deleted, "feature_store_offline_rows": offline["rows"],
                "feature_store_offline_files": offline["files"]}


class CaptureEraser:
    """Endpoint data capture under a folder or an s3:// prefix."""

    def __init__(self, objects: Objects):
        self.objects = objects

    def __call__(self, subject: DataSubject) -> dict[str, int]:
        return erase_capture(self.objects, subject)


def pipeline_erasers(target: str, workspace: Path, feature_group_name: str, offline_s3_uri: str,
                     local_capture_root: Optional[Path], capture_s3_uri: str,
                     clients: Optional[dict[str, Any]] = None) -> Sequence[SubjectEraser]:
    """The erasers of `loop.forget_pipeline_data`: `local` (workspace Feature Store, local capture folder) or
    `aws` (SageMaker feature group, S3 capture prefix). `clients` may hold `s3` and
    `sagemaker-featurestore-runtime` boto3 clients (default: made from the environment)."""
    from processing.workspace import LOCAL_STORE_FOLDER

    clients = clients or {}
    if target == "local":
        erasers: list[SubjectEraser] = [LocalFeatureStoreEraser(Path(workspace) / LOCAL_STORE_FOLDER)]
        if local_capture_root is not None:
            erasers.append(CaptureEraser(LocalObjects(local_capture_root)))
        return erasers
    if target == "aws":
        s3 = clients.get("s3")
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        return [SageMakerFeatureStoreEraser(feature_group_name, offline_s3_uri,
                                            clients.get("sagemaker-featurestore-runtime"), s3),
                CaptureEraser(S3Objects(capture_s3_uri, s3))]
    raise ValueError(f"loop.forget_pipeline_data must be local or aws, got {target!r}")
