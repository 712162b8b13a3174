"""Typed parameters of the feedback-brain pipeline, with defaults taken from the configuration.

Names are part of the public interface: `fbrain pipeline start --param Epochs=1` and the local
runner's `--param` refer to them, and `start_execution` passes them to SageMaker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pipelines.config import FeedbackBrainConfig
from pipelines.sdk_offline import prepare_environment

prepare_environment()

from sagemaker.core.workflow.parameters import (  # noqa: E402
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)

def default_input_data_uri(config: FeedbackBrainConfig) -> str:
    """S3 prefix of the raw feedback files the pipeline reads when no InputDataUri is given."""
    return f"s3://{config.aws.bucket}/{config.aws.input_prefix.strip('/')}"


CORRECTIONS_URI = "CorrectionsUri"
PREFIX_PARAMETERS = (CORRECTIONS_URI,)
"""S3 prefix parameters whose value must end with '/': the definition appends folder names to them with
`Std:Join` on "" (MergeFeatureShards writes `<CorrectionsUri>_state/last_training.json`), and pipeline
functions cannot strip a slash."""


def default_corrections_uri(config: FeedbackBrainConfig) -> str:
    """S3 prefix where reviewers' corrections are recorded (`monitoring.corrections`), read by MergeFeatureShards.

    The trailing slash keeps S3Prefix matching to this folder (not `corrections-old/...`) and is required
    (PREFIX_PARAMETERS)."""
    return f"s3://{config.aws.bucket}/{config.monitoring.corrections_prefix.strip('/')}/"


TEACHER_OUTPUTS_URI = "TeacherOutputsUri"


def default_teacher_outputs_uri(config: FeedbackBrainConfig) -> str:
    """S3 prefix of teacher outputs (training.distillation) for training.teacher_source=uri: the setting
    `training.teacher_outputs_uri`, else s3://<bucket>/teacher-outputs/."""
    return config.training.teacher_outputs_uri or f"s3://{config.aws.bucket}/teacher-outputs/"


def check_parameter_values(values: Mapping[str, Any]) -> None:
    """Raise ValueError for a parameter value the definition cannot use (a PREFIX_PARAMETERS value without
    its trailing '/'); the types are checked by whoever sends the values."""
    for name in PREFIX_PARAMETERS:
        value = values.get(name)
        if value is not None and not (str(value).startswith("s3://") and str(value).endswith("/")):
            raise ValueError(f"parameter {name}={value!r} must be an S3 prefix ending with '/' "
                             "(s3://bucket/prefix/)")


@dataclass(frozen=True)
class PipelineParameters:
    """All pipeline parameters, one attribute each; `all()` keeps the definition's order."""

    input_data_uri: ParameterString
    corrections_uri: ParameterString
    processing_instance_type: ParameterString
    processing_instance_count: ParameterInteger
    training_instance_type: ParameterString
    training_instance_count: ParameterInteger
    backbone_model_id: ParameterString
    epochs: ParameterInteger
    learning_rate: ParameterFloat
    max_sequence_length: ParameterInteger
    batch_size: ParameterInteger
    macro_f1_threshold: ParameterFloat
    regression_tolerance: ParameterFloat
    model_approval_status: ParameterString
    feature_group_name: ParameterString
    pseudonym_salt_secret_id: ParameterString
    teacher_instance_type: ParameterString | None = None
    """Only with training.teacher_source=step (TrainTeacher, ScoreTeacher)."""
    teacher_outputs_uri: ParameterString | None = None
    """Only with training.teacher_source=uri (TrainModel's `teacher` channel)."""

    def all(self) -> list:
        """The parameters this definition has (the teacher ones only where training.teacher_source uses them)."""
        return [value for value in (getattr(self, name) for name in self.__dataclass_fields__) if value is not None]


MODEL_APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
"""Values CreateModelPackage accepts for ModelApprovalStatus."""


def build_parameters(config: FeedbackBrainConfig) -> PipelineParameters:
    """Pipeline parameters whose defaults come from the configuration sections."""
    return PipelineParameters(
        input_data_uri=ParameterString("InputDataUri", default_value=default_input_data_uri(config)),
        corrections_uri=ParameterString(CORRECTIONS_URI, default_value=default_corrections_uri(config)),
        processing_instance_type=ParameterString(
            "ProcessingInstanceType", default_value=config.aws.processing_instance_type
        ),
        processing_instance_count=ParameterInteger(
            "ProcessingInstanceCount", default_value=config.aws.processing_instance_count
        ),
        training_instance_type=ParameterString(
            "TrainingInstanceType", default_value=config.aws.training_instance_type
        ),
        training_instance_count=ParameterInteger(
            "TrainingInstanceCount", default_value=config.aws.training_instance_count
        ),
        backbone_model_id=ParameterString("BackboneModelId", default_value=config.training.backbone),
        epochs=ParameterInteger("Epochs", default_value=config.training.epochs),
        learning_rate=ParameterFloat("LearningRate", default_value=config.training.learning_rate),
        max_sequence_length=ParameterInteger(
            "MaxSequenceLength", default_value=config.training.max_seq_length
        ),
        batch_size=ParameterInteger("BatchSize", default_value=config.training.batch_size),
        macro_f1_threshold=ParameterFloat(
            "MacroF1Threshold", default_value=config.evaluation.macro_f1_threshold
        ),
        regression_tolerance=ParameterFloat(
            "RegressionTolerance", default_value=config.evaluation.regression_tolerance
        ),
        model_approval_status=ParameterString(
            "ModelApprovalStatus",
            default_value=MODEL_APPROVAL_STATUSES[0],
            enum_values=list(MODEL_APPROVAL_STATUSES),
        ),
        feature_group_name=ParameterString(
            "FeatureGroupName", default_value=config.processing.feature_group_name
        ),
        pseudonym_salt_secret_id=ParameterString(
            "PseudonymSaltSecretId", default_value=config.aws.pseudonym_salt_secret_id
        ),
        teacher_instance_type=ParameterString(
            "TeacherInstanceType", default_value=config.training.teacher_instance_type
        ) if config.training.teacher_source == "step" else None,
        teacher_outputs_uri=ParameterString(
            TEACHER_OUTPUTS_URI, default_value=default_teacher_outputs_uri(config)
        ) if config.training.teacher_source == "uri" else None,
    )
