"""Configuration of Model Monitor for text and retraining triggers (a FeedbackBrainConfig section)."""
from __future__ import annotations

from dataclasses import field

from inference.config import Runtime
from processing.settings import settings_section


@settings_section
class MonitoringConfig:
    # --- embedding drift (domain classifier) ---
    drift_auc_threshold: float = 0.75
    """Embedding drift when the reference-vs-current domain classifier's cross-validated ROC AUC exceeds this."""
    domain_classifier_folds: int = 5
    """Cross-validation folds of the domain classifier."""
    domain_classifier_c: float = 1.0
    """Inverse L2 regularisation strength of the domain classifier's logistic regression."""
    domain_classifier_max_per_side: int = 2000
    """At most this many reference and this many current embeddings are used (sampled), to bound CPU time."""
    embedding_reference_size: int = 1000
    """Rows of the embeddings.npy reference sample the baseline stores (bounded size)."""

    # --- distribution drift ---
    psi_threshold: float = 0.25
    """Population stability index above which a distribution counts as drifted (0.25 = 'significant shift')."""
    js_distance_threshold: float = 0.2
    """Jensen-Shannon distance (base 2, 0..1) above which a distribution counts as drifted."""
    numeric_bucket_count: int = 10
    """Equal-mass buckets (baseline quantiles) used to compare numeric descriptors."""
    bucket_range_margin: float = 0.05
    """Current values within this share of the baseline's (max - min) outside [min, max] still count as in range."""
    probability_floor: float = 1e-4
    """Bucket share floor used in PSI so empty buckets do not divide by zero."""
    max_unknown_category_share: float = 0.1
    """categorical_values_check fails when more than this share of current values lie outside the baseline domain."""
    min_completeness: float = 0.95
    """completeness_check fails when fewer than this share of records carry a feature."""
    min_window_records: int = 30
    """Windows with fewer captured texts skip drift checks (too noisy) and say so."""

    # --- text descriptors ---
    oov_min_word_pieces: int = 3
    """A word counts as out-of-vocabulary when it is [UNK] or split into at least this many word pieces."""
    pii_placeholder_pattern: str = r"\[(?:[A-Z][A-Z_]{1,30})\]"
    """Regex of the placeholders PII masking puts in place of personal data (e.g. [EMAIL], [PHONE])."""
    language_min_chars: int = 3
    """Texts shorter than this get language 'unknown' instead of a guess."""
    language_detection_seed: int = 0
    """Seed of langdetect, which is otherwise non-deterministic."""

    # --- scoring (baseline predictions and embeddings) ---
    scoring_runtime: Runtime = "onnx-int8"
    """Runtime of inference.predictor used for baseline predictions and embeddings (the endpoint's
    default, so baseline and traffic see the same model); falls back to `onnx` when the int8 file is absent."""
    scoring_batch_size: int = 64
    """Texts per model call."""
    baseline_max_records: int = 5000
    """The baseline uses at most this many training texts (a seeded sample beyond): plenty for 10-bucket
    distributions, and it bounds the step's time (language detection runs at ~100 texts/s on one core)."""
    window_max_records: int = 5000
    """A monitoring window uses at most this many captured texts (a seeded sample beyond), for the same reason."""
    sample_seed: int = 13
    """Seed of every sample the monitor draws."""
    progress_every: int = 2000
    """Log a progress line with the rate every this many texts."""

    # --- monitoring pipeline (EventBridge Scheduler -> StartPipelineExecution), the default way to run the monitor ---
    pipeline_name: str = "feedback-brain-monitoring"
    """SageMaker pipeline whose one Processing step runs `python3 -m monitoring.monitor` (pipelines/monitoring_definition.py)."""
    window_hours: float = 1.0
    """A monitoring pipeline run reads the texts captured in this many hours before its start (matching the
    hourly schedule); 0 reads every captured text in its input. Used when an end time is given and no start time."""
    baseline_uri: str = ""
    """S3 prefix of the baseline files (statistics.json, constraints.json, embeddings.npy, tokenizer.json) the
    monitoring pipeline compares with; empty: the drift-check baselines of the newest Approved model package,
    looked up by `fbrain monitor rules apply` and `fbrain monitor pipeline run --local`."""
    model_data_uri: str = ""
    """model.tar.gz that embeds captured texts for embedding drift; empty: the newest Approved package's."""
    scheduler_group_name: str = "default"
    """EventBridge Scheduler schedule group of that schedule."""
    events_role_arn: str = ""
    """Role EventBridge rules and EventBridge Scheduler assume to call sagemaker:StartPipelineExecution;
    empty: arn:aws:iam::<caller's account>:role/<events_role_name>."""

    # --- schedule (EventBridge Scheduler; CreateMonitoringSchedule only for accounts that still have Model Monitor) ---
    schedule_name: str = "feedback-brain-text-monitor"
    """Name of the EventBridge Scheduler schedule that starts the monitoring pipeline (and of the optional Model
    Monitor schedule); the `MonitoringSchedule` dimension of the monitor's metrics either way."""
    schedule_expression: str = "cron(0 * ? * * *)"
    """Monitoring schedule (both the EventBridge Scheduler schedule of the monitoring pipeline and the
    optional Model Monitor schedule): hourly."""
    monitor_image_repository: str = "feedback-brain-inference"
    """ECR repository of the image that runs `python3 -m monitoring.monitor` (the inference image)."""
    monitor_instance_type: str = "ml.m5.xlarge"
    monitor_instance_count: int = 1
    monitor_volume_size_gb: int = 30
    monitor_max_runtime_s: int = 3600
    capture_local_path: str = "/opt/ml/processing/input/endpoint"
    """Where the monitoring job sees the captured data (SageMaker's default for custom monitors)."""
    results_local_path: str = "/opt/ml/processing/resultdata"

    # --- retraining triggers ---
    retrain_schedule_expression: str = "rate(7 days)"
    """EventBridge schedule of routine retraining."""
    corrections_threshold: int = 200
    """This many new human-labelled corrections since the last training start a retraining."""
    corrections_prefix: str = "corrections"
    """Key prefix of correction files in the object store / bucket."""
    event_bus_name: str = "default"
    monitoring_event_source: str = "feedback-brain.monitoring"
    drift_event_detail_type: str = "ModelDriftDetected"
    corrections_event_source: str = "feedback-brain.corrections"
    corrections_event_detail_type: str = "CorrectionsThresholdReached"
    rule_prefix: str = "feedback-brain"
    """Name prefix of the EventBridge rules (…-scheduled-retrain, …-drift-retrain, …-corrections-retrain)."""
    events_role_name: str = "feedback-brain-eventbridge"
    """IAM role EventBridge assumes to call sagemaker:StartPipelineExecution."""
    local_pipeline_command: str = "fbrain pipeline run --local"
    """What a local trigger starts (the lead's CLI runs it)."""
    retrain_pipeline_parameters: dict[str, str] = field(
        default_factory=lambda: {"ModelApprovalStatus": "PendingManualApproval"}
    )
    """Pipeline parameters the EventBridge targets pass (a triggered retrain waits for manual approval)."""
    local_monitoring_dir: str = "monitoring"
    """Folder under the workspace where `fbrain monitor run` writes runs/<UTC timestamp>/ and the trigger state."""

    # --- monitoring job outputs ---
    cloudwatch_metrics_dir: str = "/opt/ml/output/metrics/cloudwatch"
    """Where a custom Model Monitor container writes metrics for SageMaker to publish (when enabled)."""
    metric_namespace: str = "aws/sagemaker/Endpoints/data-metrics"
    """CloudWatch namespace of the monitor's metrics (Model Monitor's own for endpoint data metrics)."""
    put_metric_data: bool = False
    """Send the window's metrics (metrics.json) to CloudWatch with PutMetricData from the job. The monitoring
    pipeline's PublishMetrics parameter turns it on: SageMaker publishes the `cloudwatch_metrics_dir` files only
    for Model Monitor schedules, not for a pipeline's processing job."""
    put_metric_data_namespace: str = "feedback-brain/TextMonitor"
    """CloudWatch namespace of the metrics the job sends itself (namespaces under AWS/ are reserved)."""
    emit_drift_events: bool = False
    """Send a drift event to EventBridge when violations exist (the monitoring pipeline's EmitDriftEvents parameter
    and the Model Monitor schedule turn it on; local runs write files only)."""
