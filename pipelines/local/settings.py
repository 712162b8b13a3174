"""Settings of the embedded local pipeline runner.

The runner's knobs live here (not in `pipelines/config.py`) because the runner takes a pipeline
definition, not the product configuration: anything that calls `run_pipeline` gets these
defaults, and callers may pass a modified `RunnerSettings`.
"""
from __future__ import annotations

from dataclasses import field

from processing.settings import settings_section

OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
    "AWS_DEFAULT_REGION": "us-east-1",
    "TOKENIZERS_PARALLELISM": "false",
}
"""The offline flags of docs/contracts.md; every job subprocess gets them."""

DEFAULT_IMAGE_ENTRYPOINTS: dict[str, list[str]] = {
    "feedback-brain-training": ["python3", "-m", "training.train"],
    "feedback-brain-processing": ["python3", "-m", "processing.feature_engineering"],
}
"""ECR repository name -> command, for job definitions that rely on the image's ENTRYPOINT
(a Training step without `AlgorithmSpecification.ContainerEntrypoint`)."""


def _marker_folders() -> list[str]:
    # Imported when settings are made, not with this module: processing.corrections pulls in the record
    # schema (pydantic), which the runner's import should not pay for.
    from processing.corrections import STATE_DIR

    return [STATE_DIR]


@settings_section
class RunnerSettings:
    pipeline_name: str = "feedback-brain"
    """`Execution.PipelineName` when the definition's Metadata names none."""
    log_tail_lines: int = 30
    """Lines of a failed step's log printed on the console."""
    progress_every_seconds: float = 15.0
    """A running job's heartbeat line (elapsed time, log lines so far) at most this often."""
    forward_output_lines: bool = True
    """Echo each job output line on the console logger (INFO) besides writing it to the step log."""
    step_timeout_seconds: float = 0.0
    """Kill a job subprocess after this many seconds (0: honour the step's StoppingCondition only)."""
    cache_enabled_by_default: bool = True
    """Cache steps that have no CacheConfig (SageMaker does not; locally re-running unchanged
    steps only costs time, so the default is on; `no_cache=True` turns caching off)."""
    registry_experiment: str = "feedback-brain-model-registry"
    """MLflow experiment that holds the runs and logged models behind registered versions."""
    champion_alias: str = "champion"
    """MLflow registered-model alias given to Approved versions."""
    approval_tag: str = "approval_status"
    """Model-version tag that carries the SageMaker ModelApprovalStatus."""
    image_entrypoints: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_IMAGE_ENTRYPOINTS))
    """ECR repository name -> command, used when a job definition names no entry point."""
    model_requirements: list[str] = field(default_factory=lambda: [
        "torch", "transformers", "tokenizers", "safetensors", "onnxruntime", "numpy"])
    """Distributions whose installed versions are recorded as the registered model's pip requirements."""
    max_version_metric_tags: int = 100
    """At most this many `metric.*` tags on a registered version (gate metrics first); all go to the run."""
    metric_batch_size: int = 1000
    """Metrics per MLflow log_batch call (MLflow's own limit is 1000)."""
    champion_dependent_modules: list[str] = field(default_factory=lambda: ["training.evaluate"])
    """Job modules whose result depends on FBRAIN_CHAMPION_MODEL_DIR (evaluation compares with the
    champion): their cache key includes the champion version, so a new champion re-runs them."""
    cache_ignored_input_folders: list[str] = field(default_factory=_marker_folders)
    """Folders inside an input prefix whose objects jobs never read, left out of the input content hash:
    the corrections' `_state/` markers, which MergeFeatureShards skips when reading and itself writes back
    (the training marker), so they would otherwise make that step miss the cache on every next run."""
    code_packages: list[str] = field(default_factory=lambda: [
        "processing", "training", "inference", "monitoring", "pipelines"])
    """Top-level packages in import order (docs/contracts.md); a `-m pkg.mod` job's cache key
    hashes `pkg` and every package before it, since it may import them."""
