"""Settings of the live loop (`fbrain loop ...`): the feedback service, its worker and its lake."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from processing.settings import settings_section


@settings_section
class LoopConfig:
    host: str = "127.0.0.1"
    """Address `fbrain loop serve` binds to."""
    port: int = 8090
    """Port of the feedback service (POST /feedback, GET /insights, ...)."""
    state_db: str = "loop/state.db"
    """SQLite file (workspace-relative) of the receive log, API keys, worker watermark and dedup index."""
    catalog: Literal["sql", "glue"] = "sql"
    """Iceberg catalog of the lake: `sql` (SQLite file `catalog_db`, embedded) or `glue` (AWS Glue Data Catalog)."""
    catalog_db: str = "loop/lake/catalog.db"
    """SQLite file (workspace-relative) of the embedded Iceberg catalog."""
    warehouse: str = ""
    """Iceberg warehouse: empty means the folder `loop/lake/warehouse` in the workspace; an s3:// URI on AWS."""
    aws_endpoint_url: str = ""
    """With catalog=glue: one endpoint URL for the lake's Glue and S3 calls instead of AWS's (a stand-in such as a
    moto server or LocalStack); empty means AWS. Only the lake uses it (no global AWS_ENDPOINT_URL)."""
    namespace: str = "feedback_brain"
    """Iceberg namespace (Glue database) holding bronze, silver, gold and quarantine."""
    micro_batch_interval_s: float = 0.1
    """The worker looks for new records this often when the receive log is drained. It bounds the wait of a
    record that arrives while the worker is idle, so it is a direct share of created -> scored latency; an idle
    poll is one SQLite read (docs/results.md: 0.5 s gave p95 2.57 s at 100 records/s, 0.1 s gave 1.78 s)."""
    micro_batch_max_records: Annotated[int, Field(ge=1)] = 2000
    """Most records one micro-batch processes. A micro-batch is what arrived since the last one, so the size adapts:
    a steady stream makes small batches (the latency stays low) and a backlog makes batches of this size. Each
    batch costs a fixed ~0.2-0.4 s of Iceberg commits (one per table) besides its records: with 500 (and the
    session-7 lake writes) the worker drained a backlog at 0.55-0.71 of the model's own batched throughput, with
    2000 at 0.80-1.05 (docs/results.md). A crash redoes at most this many records."""
    max_body_bytes: int = 5_000_000
    """POST /feedback bodies over this many bytes are refused with 413."""
    max_items_per_request: int = 1_000
    """Most records one POST /feedback may carry (more: 413)."""
    gold_window: Literal["hour", "day"] = "day"
    """Time window of the gold aggregates."""
    compact_every_batches: Annotated[int, Field(ge=0)] = 100
    """Rewrite each table's small files into one after this many micro-batches (0: never). The worker compacts one
    table at a time, the four spread over this period, so a stream stalls for one table's compaction at a time."""
    snapshot_expiry_hours: float = 0.25
    """Iceberg snapshots older than this are expired after compaction (never the current one). Every micro-batch
    makes a snapshot per table, and each commit rewrites the list of live ones: keep it short."""
    expire_every_batches: Annotated[int, Field(ge=0)] = 10
    """The worker expires snapshots beyond `snapshot_keep_last` per table after this many micro-batches (0: only
    at compaction). pyiceberg copies a table's whole snapshot list several times per commit: an append took
    0.05 s with 5 snapshots and 0.4 s with 300 on the 2-core machine, so unexpired snapshots slow every batch."""
    snapshot_keep_last: Annotated[int, Field(ge=1)] = 10
    """Newest snapshots per table the worker's expiry keeps (time travel, e.g. `fbrain loop export --snapshot-id`,
    reaches back this many micro-batches, or `snapshot_expiry_hours` if that is shorter); at least 1."""
    bronze_raw_retention_days: int = 30
    """Raw text in bronze is purged after this many days (masked silver stays)."""
    scorer: Literal["onnx", "endpoint", "url"] = "onnx"
    """How the worker scores: the champion in-process (ONNX Runtime), a SageMaker endpoint, or an HTTP /invocations URL."""
    scorer_target: str = ""
    """Endpoint name (scorer=endpoint) or base URL (scorer=url); unused for onnx."""
    kinesis_stream: str = "feedback-brain-feedback"
    """On AWS: the Kinesis stream the API Lambda puts accepted feedback on (operations.aws_lambda)."""
    feedback_metadata_table: str = "FeedbackMetadata"
    """On AWS: DynamoDB table (key feedbackId) with each record's stage, content hash and predictions."""
    customer_insights_table: str = "CustomerInsights"
    """On AWS: DynamoDB table (keys customerId, timestamp) of scored feedback per pseudonymised customer."""
    model_performance_table: str = "ModelPerformance"
    """On AWS: DynamoDB table (keys modelId, version) counting the predictions each model version made."""
    forget_pipeline_data: Literal["local", "aws"] = "local"
    """Where a forget request (`fbrain loop forget`, POST /admin/forget) also erases the customer from the batch
    pipeline's data (operations.erasure): `local` = the workspace's Feature Store and the local object store's
    endpoint data capture; `aws` = the SageMaker feature group `processing.feature_group_name` (DeleteRecord on the
    online store, offline-store Parquet in S3 rewritten) and the capture JSONL under s3://aws.bucket/aws.data_capture_prefix."""
    insights_examples: int = 3
    """Representative (masked) examples returned by GET /insights."""

    def path(self, workspace: Path, relative: str) -> Path:
        """A workspace-relative setting as a path."""
        return Path(workspace) / relative

    def warehouse_uri(self, workspace: Path) -> str:
        if self.warehouse:
            return self.warehouse
        return (Path(workspace) / "loop" / "lake" / "warehouse").resolve().as_uri()
