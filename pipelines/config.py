"""The one configuration object of feedback-brain.

Each layer owns its section (processing.config, training.config, ...); this module composes
them, adds the AWS / local-run settings, and applies overrides from a JSON or YAML file and
from `--set section.field=value` on the command line. Defaults run locally with no AWS account.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from inference.config import GenerativeConfig, ServingConfig
from monitoring.config import MonitoringConfig
from operations.alerting.config import AlertingConfig
from pipelines.infrastructure_config import InfrastructureConfig
from operations.config import LoopConfig
from pipelines.local.settings import RunnerSettings
from processing import settings
from processing.config import ProcessingConfig
from processing.pii import PSEUDONYM_SALT_SECRET
from processing.settings import SettingsError, settings_section
from training.config import EvaluationConfig, TrainingConfig


@settings_section
class AwsConfig:
    region: str = "us-east-1"
    role_arn: str = "arn:aws:iam::111122223333:role/feedback-brain-sagemaker"
    """Role of the pipelines themselves (CreatePipeline's RoleArn) and of every job whose own role below is
    empty (CodeBuild passes the real one)."""
    processing_role_arn: str = ""
    """Execution role of the processing jobs (FeatureEngineering, EvaluateModel, ComputeMonitorBaseline);
    empty: `role_arn`. The infrastructure app deploys one per job type, each with only what that job uses."""
    training_role_arn: str = ""
    """Execution role of the TrainModel job; empty: `role_arn`."""
    monitoring_role_arn: str = ""
    """Execution role of the monitoring pipeline's MonitorCapturedTraffic job; empty: `role_arn`."""
    model_role_arn: str = ""
    """Role of the models the pipeline registers and the endpoint runs (RegisterModel); empty: `role_arn`."""
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
    data_capture_prefix: str = "datacapture"
    """Key prefix under `bucket` of the endpoint's data capture (`fbrain deploy --aws`, the monitoring
    pipeline's CaptureUri); locally the same prefix of the local object store."""
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
    pseudonym_salt_secret_id: str = PSEUDONYM_SALT_SECRET
    """Secrets Manager secret with the salt of customer / order id pseudonyms; the processing jobs read it
    (default of the PseudonymSaltSecretId pipeline parameter; the infrastructure app creates it)."""
    mlflow_tracking_arn: str = ""
    """SageMaker managed MLflow tracking server ARN, passed to TrainModel and EvaluateModel
    as MLFLOW_TRACKING_URI; empty leaves the variable out of the definition."""

    def job_role_arn(self, job: Literal["processing", "training", "monitoring", "model"]) -> str:
        """The execution role of one job type: its own setting, else `role_arn`."""
        return getattr(self, f"{job}_role_arn") or self.role_arn


@settings_section
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
    infrastructure: InfrastructureConfig = field(default_factory=InfrastructureConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def local_capture_dir(self) -> Path:
        """Where the local endpoint writes data capture: serving.capture_dir, else the capture prefix of the
        local object store (the layout SageMaker uses under s3://aws.bucket/aws.data_capture_prefix)."""
        if self.serving.capture_dir:
            return Path(self.serving.capture_dir)
        return self.local.object_store / self.aws.bucket / self.aws.data_capture_prefix


ConfigError = SettingsError
"""Raised for an unknown setting or a value that does not fit it (the message names the key)."""


def sections_of(config: FeedbackBrainConfig) -> dict[str, Any]:
    """Section name -> section object: what the shared override functions of processing.settings act on."""
    return {item.name: getattr(config, item.name) for item in dataclasses.fields(config)}


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON or YAML document of `{section: {field: value}}`; a file that does not parse is a ConfigError."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = (yaml.safe_load(text) or {}) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'YAML' if str(path).endswith(('.yaml', '.yml')) else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of section: {{field: value}}")
    return data


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                environ: Mapping[str, str] | None = None) -> FeedbackBrainConfig:
    """Defaults, then a JSON/YAML file, then `FBRAIN__SECTION__FIELD` variables, then `section.field=value`
    overrides, in that order (later wins). Every value is validated against its field's type."""
    config = FeedbackBrainConfig()
    sections = sections_of(config)
    if path:
        settings.apply_mapping(sections, read_config_file(path), str(path))
    settings.apply_overrides(sections, settings.environment_overrides(None, environ), origin="environment")
    settings.apply_overrides(sections, overrides or [])
    return config
