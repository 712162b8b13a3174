"""The one configuration object of feedback-brain.

Each layer owns its section (processing.config, training.config, ...); this module composes
them, adds the AWS / local-run settings, and applies overrides from a JSON or YAML file and
from `--set section.field=value` on the command line. Defaults run locally with no AWS account.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.config import GenerativeConfig, ServingConfig
from monitoring.config import MonitoringConfig
from operations.alerting.config import AlertingConfig
from operations.config import LoopConfig
from pipelines.local.settings import RunnerSettings
from processing.config import ProcessingConfig
from training.config import EvaluationConfig, TrainingConfig


@dataclass
class AwsConfig:
    region: str = "us-east-1"
    role_arn: str = "arn:aws:iam::111122223333:role/feedback-brain-sagemaker"
    """Execution role of the pipeline's jobs (CodeBuild passes the real one)."""
    bucket: str = "feedback-brain-artifacts"
    """Bucket for pipeline inputs and outputs; locally a folder of the object store."""
    pipeline_name: str = "feedback-brain"
    model_package_group: str = "feedback-brain-models"
    image_tag: str = "latest"
    """Tag of the three images under containers/ (CI sets the commit SHA)."""
    ecr_registry: str = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
    processing_instance_type: str = "ml.m5.xlarge"
    processing_instance_count: int = 1
    training_instance_type: str = "ml.g5.xlarge"
    training_instance_count: int = 1
    endpoint_instance_type: str = "ml.c6i.xlarge"
    endpoint_name: str = "feedback-brain"
    kms_key_id: str = ""
    """KMS key for volumes and outputs; empty means the account's default key."""
    input_prefix: str = "input/feedback"
    """Key prefix under `bucket` of the raw feedback (default of the InputDataUri parameter)."""
    processing_volume_size_gb: int = 30
    """EBS volume of each processing instance."""
    training_volume_size_gb: int = 50
    """EBS volume of each training instance (backbone, checkpoints, model)."""
    processing_max_runtime_s: int = 2 * 60 * 60
    """A processing job is stopped after this many seconds."""
    training_max_runtime_s: int = 8 * 60 * 60
    training_use_spot: bool = True
    """Managed spot training (~70% cheaper); interrupted jobs resume from /opt/ml/checkpoints."""
    training_max_wait_s: int = 12 * 60 * 60
    """Spot only: run time plus waiting for capacity; must be >= training_max_runtime_s."""
    """A training job is stopped after this many seconds."""
    inference_content_type: str = "application/json"
    """Request/response MIME type recorded on the registered model package."""
    deploy_lambda_arn: str = "arn:aws:lambda:us-east-1:111122223333:function:feedback-brain-deploy"
    """Lambda (inference.deploy.handler) that deploys a model package when it is approved."""
    approval_rule_name: str = "feedback-brain-model-approved"
    """EventBridge rule that fires on Approved packages of `model_package_group`."""
    endpoint_rule_name: str = "feedback-brain-endpoint-in-service"
    """EventBridge rule that fires when `endpoint_name` is InService (the deploy Lambda then
    applies auto scaling)."""
    mlflow_tracking_arn: str = ""
    """SageMaker managed MLflow tracking server ARN, passed to TrainModel and EvaluateModel
    as MLFLOW_TRACKING_URI; empty leaves the variable out of the definition."""


@dataclass
class LocalConfig:
    workspace: str = ".fbrain"
    """Root of everything a local run writes: object store, registry, executions."""
    demo_data: str = ""
    """Input file for the local run; empty means the corpus shipped in processing/data."""

    @property
    def object_store(self) -> Path:
        return Path(self.workspace) / "s3"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{(Path(self.workspace) / 'mlflow.db').resolve()}"

    @property
    def executions_dir(self) -> Path:
        return Path(self.workspace) / "executions"


@dataclass
class FeedbackBrainConfig:
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    generative: GenerativeConfig = field(default_factory=GenerativeConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    aws: AwsConfig = field(default_factory=AwsConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    loop: LoopConfig = field(default_factory=LoopConfig)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    pass


def _coerce(value: str, annotation: Any, dotted: str) -> Any:
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation, str)
    origin = typing.get_origin(annotation)
    if origin is not None and origin is not typing.Union:
        return json.loads(value) if isinstance(value, str) else value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).lower()
        if lowered not in {"true", "false", "1", "0", "yes", "no"}:
            raise ConfigError(f"{dotted}: expected a boolean, got {value!r}")
        return lowered in {"true", "1", "yes"}
    try:
        return annotation(value) if annotation in (int, float, str) else value
    except (TypeError, ValueError):
        raise ConfigError(f"{dotted}: expected {annotation.__name__}, got {value!r}") from None


def apply_override(config: FeedbackBrainConfig, dotted: str, value: Any) -> None:
    """Set `section.field` (e.g. `training.epochs`) on config, converting the value to the field's type."""
    section_name, _, field_name = dotted.partition(".")
    section = getattr(config, section_name, None)
    if section is None or not dataclasses.is_dataclass(section) or not field_name:
        sections = [f.name for f in dataclasses.fields(config)]
        raise ConfigError(f"unknown setting {dotted!r}: use SECTION.FIELD with SECTION in {sections}")
    fields = {f.name: f for f in dataclasses.fields(section)}
    if field_name not in fields:
        raise ConfigError(f"unknown setting {dotted!r}: {section_name} has {sorted(fields)}")
    hints = typing.get_type_hints(type(section))
    setattr(section, field_name, _coerce(value, hints.get(field_name, str), dotted))


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> FeedbackBrainConfig:
    """Defaults, then a JSON/YAML file, then `section.field=value` overrides, in that order."""
    config = FeedbackBrainConfig()
    if path:
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        for section_name, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section_name!r} must be a mapping")
            for key, value in values.items():
                apply_override(config, f"{section_name}.{key}", value)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        apply_override(config, key.strip(), value.strip())
    return config
