"""Settings of the AWS deployment (the `infrastructure` section, read by the CDK app under infrastructure/).

Everything the stacks name or size that is not already a setting of another layer lives here;
names shared with the code that runs on AWS (pipeline, model package group, endpoint, feature
group, rules, buckets of the pipeline) come from those layers' sections (`aws`, `processing`,
`serving`, `monitoring`), so the deployed resources and the code that uses them cannot disagree.

The section lives in `pipelines/` (not in `infrastructure/`) because `pipelines/config.py` composes every
section and `infrastructure/` sits above `pipelines/` in the layering.
"""
from __future__ import annotations

from dataclasses import field
from typing import Literal

from processing.settings import settings_section


@settings_section
class DeploymentStage:
    """One stage of the CodePipeline after the source: a CodeBuild run of buildspec.yml."""

    name: str
    """Stage name shown in CodePipeline (e.g. `dev`, `prod`)."""
    manual_approval: bool = False
    """A person approves in CodePipeline before this stage runs."""
    start_execution: bool = True
    """False sets FBRAIN_SKIP_EXECUTION=true: the build tests, pushes images and upserts the
    pipeline without starting a training run."""


def _default_stages() -> list[DeploymentStage]:
    return [DeploymentStage(name="dev", manual_approval=False, start_execution=False),
            DeploymentStage(name="prod", manual_approval=True, start_execution=True)]


@settings_section
class InfrastructureConfig:
    # --- naming ---
    project: str = "feedback-brain"
    """Prefix of stack names, table names, secrets, alarms and tags."""
    bucket_name_prefix: str = "feedback-brain"
    """Data buckets are `<prefix>-<kind>-<account>-<region>` (S3 names are global); the pipeline's
    own bucket is `aws.bucket`."""

    # --- data lake: S3 ---
    raw_infrequent_access_days: int = 30
    """Raw feedback objects move to S3 Standard-IA after this many days."""
    raw_glacier_days: int = 180
    """Raw feedback objects move to S3 Glacier Flexible Retrieval after this many days."""
    capture_expiry_days: int = 90
    """Endpoint data-capture objects (prefix `capture_prefix` of the artifacts bucket) expire after this."""
    capture_prefix: str = "datacapture"
    """Key prefix of the endpoint's data capture in the artifacts bucket (DATA_CAPTURE_S3_URI)."""
    noncurrent_version_expiry_days: int = 30
    """Overwritten / deleted object versions are kept this long."""
    access_log_expiry_days: int = 365
    """S3 server access logs and CloudTrail logs are kept this long."""
    lake_prefix: str = "lake"
    """Iceberg warehouse prefix in the processed bucket."""

    # --- DynamoDB ---
    # The loop's tables (FeedbackMetadata, CustomerInsights, ModelPerformance) are named by the `loop` section
    # (loop.feedback_metadata_table, ...), the lake's Glue database by `loop.namespace`; their keys are
    # operations.aws_tables' constants; the incidents and review-queue tables by the `alerting` section.
    stream_view_type: Literal["NEW_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY", "OLD_IMAGE"] = "NEW_AND_OLD_IMAGES"
    """DynamoDB Streams view of FeedbackMetadata."""

    # --- Lambda ---
    lambda_runtime: Literal["python3.11"] = "python3.11"
    """Runtime of the Python Lambdas: the project's Python (3.11), since their packages carry native wheels
    (pydantic-core) installed for the interpreter that builds them."""
    lambda_memory_mb: int = 512
    lambda_timeout_s: int = 300
    """Deploy Lambda timeout: CreateModel + EndpointConfig + alarms + Create/UpdateEndpoint."""
    log_retention_days: int = 365
    """CloudWatch Logs retention of every log group the app creates."""

    # --- ingest ---
    loop_lambda_memory_mb: int = 2048
    """Memory of the container-image Lambdas of the loop image (consumer, alert detection, operations API):
    pandas / pyarrow micro-batches; Lambda's CPU share grows with memory."""
    api_timeout_s: int = 29
    """Timeout of the Lambdas behind API Gateway (POST /feedback, the operations routes): API Gateway's own
    integration limit is 29 s."""
    consumer_timeout_s: int = 120
    """Timeout of the Kinesis consumer Lambda (one batch: clean, dedup, score on the endpoint, write)."""
    kinesis_shards: int = 1
    """Shards of the feedback stream (1 MB/s or 1,000 records/s in per shard)."""
    kinesis_retention_hours: int = 24
    consumer_batch_size: int = 100
    """Records per consumer Lambda invocation."""
    consumer_max_batching_window_s: int = 5
    consumer_max_retry_attempts: int = 3
    """Retries of a failing batch (halved on each error) before records go to the DLQ."""
    api_rate_limit_rps: float = 50.0
    """API Gateway steady-state requests per second per stage (and per usage plan)."""
    api_burst_limit: int = 100
    api_quota_per_day: int = 1_000_000
    """Requests per API key per day (usage plan)."""

    # --- operations ---
    operations_api_scopes: list[Literal["read", "review", "admin"]] = field(default_factory=lambda: ["read", "review"])
    """Scopes of a request to the operations API that API Gateway let through with one of its API keys (the
    handler's `alerting.api_key_scopes`): reading insights and alerts, acting on alerts, reviewing. `admin`
    (erasure requests) is left to a separate, narrower key or an authorizer."""
    lake_maintenance_schedule: str = "rate(1 day)"
    """EventBridge Scheduler expression of the lake's upkeep on AWS (operations.aws_lambda.maintain_handler: raw text
    purged after loop.bronze_raw_retention_days, every table compacted, snapshots beyond loop.snapshot_keep_last
    expired), the job the local worker does between micro-batches."""
    lake_maintenance_timeout_s: int = 900
    """Timeout of the lake maintenance Lambda (compaction rewrites whole tables; 900 s is Lambda's maximum)."""
    detect_timeout_s: int = 300
    """Timeout of the scheduled alert-detection Lambda (reads the lake's gold and silver tables)."""
    notification_secrets: list[str] = field(default_factory=lambda: ["slack", "pagerduty", "jira", "teams"])
    """One Secrets Manager secret per notification channel, `<project>/notifications/<channel>`."""
    alarm_email: str = ""
    """Email subscribed to the alarm topic; empty leaves the topic without a subscription."""
    lambda_error_threshold: int = 1
    """Alarm when a Lambda reports at least this many errors in 5 minutes."""
    api_5xx_threshold: int = 1
    """Alarm when an API answers at least this many 5XX in 5 minutes."""
    dlq_depth_threshold: int = 1
    """Alarm when this many messages wait in a dead-letter queue."""
    iterator_age_threshold_ms: int = 60_000
    """Alarm when the consumer falls this far behind the stream."""
    pipeline_failure_threshold: int = 1
    """Alarm when this many executions of the SageMaker pipeline fail in an hour."""

    # --- security ---
    enable_guardduty: bool = True
    """One detector per account and region: turn off where the account already has one."""
    enable_macie: bool = True
    """Macie session + a classification job on the raw bucket (one session per account and region)."""
    macie_job_frequency: Literal["DAILY", "WEEKLY", "MONTHLY"] = "WEEKLY"
    macie_sampling_percentage: int = 10
    """Share of raw objects Macie inspects per run (cost grows with bytes scanned)."""

    # --- CI/CD ---
    github_owner: str = "feedback-brain"
    github_repository: str = "feedback-brain"
    github_branch: str = "main"
    codestar_connection_arn: str = ""
    """An existing CodeStar (CodeConnections) connection; empty creates one (authorise it once in the console)."""
    codebuild_compute_type: Literal["SMALL", "MEDIUM", "LARGE", "X2_LARGE"] = "LARGE"
    """CodeBuild compute of the build (docker builds of three images + the test suite)."""
    codebuild_timeout_minutes: int = 120
    stages: list[DeploymentStage] = field(default_factory=_default_stages)
    """Deployment stages after the source, in order."""
