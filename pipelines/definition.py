"""The feedback-brain SageMaker pipeline, built with SageMaker Python SDK v3.

FeatureEngineering (pass 1, N instances) -> MergeFeatureShards (pass 2, one instance)
    -> TrainModel -> EvaluateModel -> CheckModelGate
    -> true:  ComputeMonitorBaseline -> RegisterModel
    -> false: ModelGateFailed

With `training.teacher_source` (docs/teacher.md) TrainModel distils from teacher outputs in its `teacher`
channel: `uri` reads them from the TeacherOutputsUri parameter; `step` adds
MergeFeatureShards -> TrainTeacher (GPU, TeacherInstanceType) -> ScoreTeacher -> TrainModel.

Step names, container paths and entry points are the contract in docs/contracts.md. Code
lives in the images (tagged by `aws.image_tag`), never uploaded at build time, so building is
offline and two builds are byte-identical. Every step names its entry point in the JSON, so
the local runner (`pipelines/local/`) runs the very same command without Docker.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Literal, Optional

from pipelines.config import FeedbackBrainConfig
from pipelines.sdk_offline import offline_pipeline_session, prepare_environment, quiet_fast_build

prepare_environment()

from sagemaker.core.drift_check_baselines import DriftCheckBaselines  # noqa: E402
from sagemaker.core.model_metrics import MetricsSource, ModelMetrics  # noqa: E402
from sagemaker.core.processing import Processor  # noqa: E402
from sagemaker.core.shapes import (  # noqa: E402
    MetricDefinition,
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
)
from sagemaker.mlops.workflow.condition_step import ConditionStep  # noqa: E402
from sagemaker.core.workflow.conditions import (  # noqa: E402
    ConditionEquals,
    ConditionGreaterThanOrEqualTo,
)
from sagemaker.core.workflow.execution_variables import ExecutionVariables  # noqa: E402
from sagemaker.core.workflow.functions import Join, JsonGet  # noqa: E402
from sagemaker.core.workflow.properties import PropertyFile  # noqa: E402
from sagemaker.mlops.workflow.fail_step import FailStep  # noqa: E402
from sagemaker.mlops.workflow.model_step import ModelStep  # noqa: E402
from sagemaker.mlops.workflow.pipeline import Pipeline  # noqa: E402
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep  # noqa: E402
from sagemaker.core.training.configs import (  # noqa: E402
    CheckpointConfig, Compute, InputData, OutputDataConfig, StoppingCondition,
)
from sagemaker.train.model_trainer import ModelTrainer  # noqa: E402

from pipelines.parameters import PipelineParameters, build_parameters  # noqa: E402
from processing.corrections import STATE_DIR as CORRECTIONS_STATE_FOLDER  # noqa: E402
from processing.settings import SET_FLAG, section_arguments, value_to_string  # noqa: E402
from training.config import SAGEMAKER_CHECKPOINT_DIR  # noqa: E402
from training.tracking import METRIC_DEFINITIONS  # noqa: E402

logger = logging.getLogger(__name__)

ImageKind = Literal["processing", "training", "inference"]
IMAGE_KINDS: tuple[ImageKind, ...] = ("processing", "training", "inference")
IMAGE_REPOSITORY_PREFIX = "feedback-brain-"
"""ECR repository of each image is this prefix + its kind (containers/<kind>/Dockerfile)."""

# Step names (contract).
FEATURE_ENGINEERING = "FeatureEngineering"
MERGE_FEATURE_SHARDS = "MergeFeatureShards"
TRAIN_MODEL = "TrainModel"
TRAIN_TEACHER = "TrainTeacher"
SCORE_TEACHER = "ScoreTeacher"
EVALUATE_MODEL = "EvaluateModel"
CHECK_MODEL_GATE = "CheckModelGate"
MODEL_GATE_FAILED = "ModelGateFailed"
COMPUTE_MONITOR_BASELINE = "ComputeMonitorBaseline"
REGISTER_MODEL = "RegisterModel"

# Entry points (contract): the same module runs in the image and locally.
PYTHON = "python3"
FEATURE_ENGINEERING_MODULE = "processing.feature_engineering"
TRAINING_MODULE = "training.train"
TEACHER_OUTPUTS_MODULE = "training.teacher_outputs"
EVALUATION_MODULE = "training.evaluate"
MONITOR_BASELINE_MODULE = "monitoring.baseline"
STEP_MODULES = {
    FEATURE_ENGINEERING: FEATURE_ENGINEERING_MODULE,
    MERGE_FEATURE_SHARDS: FEATURE_ENGINEERING_MODULE,
    TRAIN_MODEL: TRAINING_MODULE,
    TRAIN_TEACHER: TRAINING_MODULE,
    SCORE_TEACHER: TEACHER_OUTPUTS_MODULE,
    EVALUATE_MODEL: EVALUATION_MODULE,
    COMPUTE_MONITOR_BASELINE: MONITOR_BASELINE_MODULE,
}
"""Module each job step runs with `python3 -m`; tests check the images run the same."""
SERVING_MODULE = "inference.serve"
"""What the inference image's `serve` runs (SageMaker hosting, not a pipeline step)."""
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_STEPS = (TRAIN_MODEL, EVALUATE_MODEL)
"""Steps that talk to the MLflow tracking server / registry."""
STEP_IMAGE_KINDS: dict[str, ImageKind] = {
    FEATURE_ENGINEERING: "processing",
    MERGE_FEATURE_SHARDS: "processing",
    TRAIN_MODEL: "training",
    TRAIN_TEACHER: "training",
    SCORE_TEACHER: "training",  # the GPU image: mpnet scores ~10 texts/s on 2 CPU cores
    EVALUATE_MODEL: "processing",
    COMPUTE_MONITOR_BASELINE: "processing",
    REGISTER_MODEL: "inference",
}

# Container paths (contract).
PROCESSING_ROOT = "/opt/ml/processing"
RAW_INPUT_DIR = f"{PROCESSING_ROOT}/input/raw"
STAGED_LAKE_DIR = f"{PROCESSING_ROOT}/input/lake"
CORRECTIONS_DIR = f"{PROCESSING_ROOT}/input/corrections"
FEATURE_OUTPUT_DIR = f"{PROCESSING_ROOT}/output"
CORRECTIONS_STATE_OUTPUT = "corrections_state"
CORRECTIONS_STATE_DIR = f"{FEATURE_OUTPUT_DIR}/{CORRECTIONS_STATE_OUTPUT}"
MODEL_DIR = f"{PROCESSING_ROOT}/model"
TEST_DIR = f"{PROCESSING_ROOT}/test"
TRAIN_DIR = f"{PROCESSING_ROOT}/train"
EVALUATION_DIR = f"{PROCESSING_ROOT}/evaluation"
BASELINE_DIR = f"{PROCESSING_ROOT}/baseline"
TEACHER_OUTPUT_DIR = f"{PROCESSING_ROOT}/teacher"
TEACHER_CHANNEL = "teacher"
"""Training channel of the teacher outputs (training.train reads SM_CHANNEL_TEACHER)."""

SPLITS = ("train", "validation", "test")
LAKE_OUTPUT = "lake"
CORRECTIONS_INPUT = "corrections"
EVALUATION_OUTPUT = "evaluation"
BASELINE_OUTPUT = "baseline"
EVALUATION_REPORT = "EvaluationReport"
EVALUATION_FILE = "evaluation.json"
STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
JSON_CONTENT_TYPE = "application/json"
GATE_FAILED_PREFIX = "Model gate failed:"


def image_uri(config: FeedbackBrainConfig, kind: ImageKind) -> str:
    """`<ecr_registry>/feedback-brain-<kind>:<image_tag>` for one of the three images."""
    if kind not in IMAGE_KINDS:
        raise ValueError(f"unknown image kind {kind!r}; expected one of {IMAGE_KINDS}")
    return f"{config.aws.ecr_registry}/{IMAGE_REPOSITORY_PREFIX}{kind}:{config.aws.image_tag}"


def module_command(module: str) -> list[str]:
    """The container entry point that runs `module` (`python3 -m module`)."""
    return [PYTHON, "-m", module]


class EntrypointModelTrainer(ModelTrainer):
    """A ModelTrainer whose CreateTrainingJob request names the container entry point.

    ModelTrainer only sets `AlgorithmSpecification.ContainerEntrypoint` when it uploads
    `source_code` (timestamped, so non-deterministic). Our code is baked into the image, so
    the entry point is stated here instead; SageMaker runs it in place of the image's
    ENTRYPOINT and the local runner reads it from the same field.
    """

    container_entrypoint: Optional[list[str]] = None

    def _create_training_job_args(self, input_data_config=None, boto3: bool = False):
        request = super()._create_training_job_args(input_data_config=input_data_config, boto3=boto3)
        if self.container_entrypoint:
            spec = request.get("AlgorithmSpecification", request.get("algorithm_specification"))
            if isinstance(spec, dict):
                spec["ContainerEntrypoint"] = list(self.container_entrypoint)
            elif spec is not None:
                spec.container_entrypoint = list(self.container_entrypoint)
        return request


def _training_channel(name: str, source) -> InputData:
    return InputData(channel_name=name, data_source=source)


def _step_output_uri(config: FeedbackBrainConfig, step_name: str, output_name: str) -> Join:
    """s3://<bucket>/<pipeline>/<execution id>/<step>/<output>: one folder per execution."""
    return Join(
        on="/",
        values=[
            "s3:/",
            config.aws.bucket,
            config.aws.pipeline_name,
            ExecutionVariables.PIPELINE_EXECUTION_ID,
            step_name,
            output_name,
        ],
    )


def _s3_input(name: str, source, local_path: str, distribution: str = "FullyReplicated") -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=source,
            local_path=local_path,
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type=distribution,
        ),
    )


def _s3_output(config: FeedbackBrainConfig, step_name: str, name: str, local_path: str) -> ProcessingOutput:
    return _output_to(name, _step_output_uri(config, step_name, name), local_path)


def _output_to(name: str, destination, local_path: str) -> ProcessingOutput:
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(s3_uri=destination, local_path=local_path, s3_upload_mode="EndOfJob"),
    )


def corrections_state_uri(params: PipelineParameters) -> Join:
    """`<CorrectionsUri>_state`: the markers folder beside the corrections (processing.corrections.STATE_DIR).

    Joined with no separator because CorrectionsUri ends with '/' (pipelines.parameters.check_parameter_values
    refuses a value without it; pipeline functions cannot strip a slash, and `a//_state` is another S3 key)."""
    return Join(on="", values=[params.corrections_uri, CORRECTIONS_STATE_FOLDER])


def job_environment(config: FeedbackBrainConfig, step_name: str) -> Optional[dict[str, str]]:
    """Environment of a job: the MLflow tracking server for the steps that use the registry."""
    if step_name in MLFLOW_STEPS and config.aws.mlflow_tracking_arn:
        return {MLFLOW_TRACKING_URI: config.aws.mlflow_tracking_arn}
    return None


def _processor(config, session, params: PipelineParameters, step_name: str, instance_count=None,
               instance_type=None) -> Processor:
    kms_key = config.aws.kms_key_id or None
    return Processor(
        role=config.aws.job_role_arn("processing"),
        image_uri=image_uri(config, STEP_IMAGE_KINDS[step_name]),
        instance_count=instance_count or params.processing_instance_count,
        instance_type=instance_type or params.processing_instance_type,
        entrypoint=module_command(STEP_MODULES[step_name]),
        volume_size_in_gb=config.aws.processing_volume_size_gb,
        volume_kms_key=kms_key,
        output_kms_key=kms_key,
        max_runtime_in_seconds=config.aws.processing_max_runtime_s,
        base_job_name=f"{config.aws.pipeline_name}-{step_name}",
        sagemaker_session=session,
        env=job_environment(config, step_name),
    )


def section_with_parameters(section_name: str, section, parameters: dict) -> list:
    """`--set=section.field=value` for every field of a job's section (processing.settings.section_arguments),
    with `{field: pipeline parameter}` joined in as `--set=section.field=<parameter>` so Studio / `--param` values
    win."""
    joined = {name: Join(on="=", values=[SET_FLAG, f"{section_name}.{name}", parameter])
              for name, parameter in parameters.items()}
    return section_arguments(section_name, section, replace=joined)


def _processing_arguments(config, params) -> list:
    """The whole processing section; the feature group and the salt's secret id come from pipeline parameters."""
    return section_with_parameters("processing", config.processing, {
        "feature_group_name": params.feature_group_name,
        "pseudonym_salt_secret_id": params.pseudonym_salt_secret_id,
    })


def _feature_engineering_step(config, session, params) -> ProcessingStep:
    """Pass 1 on `ProcessingInstanceCount` instances, each on the input files SageMaker shards to it."""
    processor = _processor(config, session, params, FEATURE_ENGINEERING)
    step_args = processor.run(
        # Each instance downloads only its share of the files; processing.sharding then reads all it sees.
        inputs=[_s3_input("raw", params.input_data_uri, RAW_INPUT_DIR, distribution="ShardedByS3Key")],
        outputs=[_s3_output(config, FEATURE_ENGINEERING, LAKE_OUTPUT, f"{FEATURE_OUTPUT_DIR}/{LAKE_OUTPUT}")],
        arguments=["--input-dir", RAW_INPUT_DIR, "--output-dir", FEATURE_OUTPUT_DIR, "--stage-only",
                   *_processing_arguments(config, params)],
    )
    return ProcessingStep(name=FEATURE_ENGINEERING, step_args=step_args)


def _merge_step(config, session, params, feature_step: ProcessingStep) -> ProcessingStep:
    """Pass 2 on one instance over every shard's staging: global dedup, reviewers' corrections, silver, gold,
    features, splits."""
    processor = _processor(config, session, params, MERGE_FEATURE_SHARDS, instance_count=1)
    outputs = [_s3_output(config, MERGE_FEATURE_SHARDS, split, f"{FEATURE_OUTPUT_DIR}/{split}") for split in SPLITS]
    outputs.append(_s3_output(config, MERGE_FEATURE_SHARDS, LAKE_OUTPUT, f"{FEATURE_OUTPUT_DIR}/{LAKE_OUTPUT}"))
    # The training marker goes back beside the corrections it read (not under this execution's folder):
    # monitoring.corrections counts only corrections created after it towards the next retraining event.
    outputs.append(_output_to(CORRECTIONS_STATE_OUTPUT, corrections_state_uri(params), CORRECTIONS_STATE_DIR))
    staged = feature_step.properties.ProcessingOutputConfig.Outputs[LAKE_OUTPUT].S3Output.S3Uri
    step_args = processor.run(
        # The whole corrections prefix (markers under _state/ included: the job skips them), so every
        # correction recorded up to the start of the job reaches the labels.
        inputs=[_s3_input(LAKE_OUTPUT, staged, STAGED_LAKE_DIR),
                _s3_input(CORRECTIONS_INPUT, params.corrections_uri, CORRECTIONS_DIR)],
        outputs=outputs,
        arguments=["--merge-only", "--staged-lake-dir", STAGED_LAKE_DIR, "--output-dir", FEATURE_OUTPUT_DIR,
                   "--corrections-dir", CORRECTIONS_DIR, "--corrections-state-dir", CORRECTIONS_STATE_DIR,
                   *_processing_arguments(config, params)],
    )
    return ProcessingStep(name=MERGE_FEATURE_SHARDS, step_args=step_args)


def _split_uri(feature_step: ProcessingStep, split: str):
    return feature_step.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri


def training_hyperparameters(config: FeedbackBrainConfig, params: PipelineParameters, teacher: bool = False) -> dict:
    """Every training setting, as the strings SageMaker passes: pipeline parameters where there is one.

    The whole `training` section goes to the job, not only what differs from the defaults, so the
    training job's record says how its model was trained and `--set training.X=...` reaches it
    (training.train parses these back with the section's types)."""
    values = {setting.name: value_to_string(getattr(config.training, setting.name))
              for setting in dataclasses.fields(config.training)}
    values.update({
        "backbone": params.backbone_model_id,
        "epochs": params.epochs.to_string(),
        "learning_rate": params.learning_rate.to_string(),
        "max_seq_length": params.max_sequence_length.to_string(),
        "batch_size": params.batch_size.to_string(),
    })
    if teacher:
        # The teacher: its own encoder and epochs, no ONNX export (it is never served).
        values.update({"backbone": config.training.teacher_backbone,
                       "epochs": value_to_string(config.training.teacher_epochs),
                       "export_onnx": value_to_string(False)})
    return values


def _train_step(config, session, params, feature_step: ProcessingStep, step_name: str = TRAIN_MODEL,
                teacher_outputs=None) -> TrainingStep:
    """TrainModel (the served student), or with step_name=TRAIN_TEACHER the teacher on TeacherInstanceType.

    teacher_outputs: S3 URI of teacher outputs for the student's `teacher` channel (distillation), or None."""
    kms_key = config.aws.kms_key_id or None
    is_teacher = step_name == TRAIN_TEACHER
    trainer = EntrypointModelTrainer(
        role=config.aws.job_role_arn("training"),
        sagemaker_session=session,
        base_job_name=f"{config.aws.pipeline_name}-{step_name}",
        training_image=image_uri(config, STEP_IMAGE_KINDS[step_name]),
        container_entrypoint=module_command(STEP_MODULES[step_name]),
        compute=Compute(
            instance_type=params.teacher_instance_type if is_teacher else params.training_instance_type,
            instance_count=1 if is_teacher else params.training_instance_count,
            volume_size_in_gb=config.aws.training_volume_size_gb,
            volume_kms_key_id=kms_key,
            enable_managed_spot_training=config.aws.training_use_spot or None,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=config.aws.training_max_runtime_s,
            max_wait_time_in_seconds=config.aws.training_max_wait_s if config.aws.training_use_spot else None,
        ),
        # Spot interruptions restart the job; training.train resumes from the last epoch's
        # checkpoint, which SageMaker syncs between /opt/ml/checkpoints and this prefix.
        checkpoint_config=CheckpointConfig(
            s3_uri=_step_output_uri(config, step_name, "checkpoints"), local_path=SAGEMAKER_CHECKPOINT_DIR),
        output_data_config=OutputDataConfig(
            s3_output_path=_step_output_uri(config, step_name, "model"),
            kms_key_id=kms_key,
        ),
        environment=job_environment(config, TRAIN_MODEL) or {},
        hyperparameters=training_hyperparameters(config, params, teacher=is_teacher),
    )
    # SageMaker reads these from the job log (lines `metric: name=value` of training.tracking).
    trainer.with_metric_definitions(
        [MetricDefinition(name=metric["Name"], regex=metric["Regex"]) for metric in METRIC_DEFINITIONS]
    )
    channels = [_training_channel(split, _split_uri(feature_step, split)) for split in ("train", "validation")]
    if teacher_outputs is not None:
        channels.append(_training_channel(TEACHER_CHANNEL, teacher_outputs))
    step_args = trainer.train(input_data_config=channels, wait=False, logs=False)
    return TrainingStep(name=step_name, step_args=step_args)


def _score_teacher_step(config, session, params, feature_step, teacher_step: TrainingStep) -> ProcessingStep:
    """The trained teacher's probabilities for every training text (training.teacher_outputs), on the teacher's GPU."""
    processor = _processor(config, session, params, SCORE_TEACHER, instance_count=1,
                           instance_type=params.teacher_instance_type)
    step_args = processor.run(
        inputs=[_s3_input("model", teacher_step.properties.ModelArtifacts.S3ModelArtifacts, MODEL_DIR),
                _s3_input("train", _split_uri(feature_step, "train"), TRAIN_DIR)],
        outputs=[_s3_output(config, SCORE_TEACHER, TEACHER_CHANNEL, TEACHER_OUTPUT_DIR)],
        arguments=["--model-dir", MODEL_DIR, "--examples-dir", TRAIN_DIR, "--output-dir", TEACHER_OUTPUT_DIR,
                   "--batch-size", value_to_string(config.evaluation.prediction_batch_size)],
    )
    return ProcessingStep(name=SCORE_TEACHER, step_args=step_args)


def _evaluate_step(config, session, params, feature_step, train_step, report: PropertyFile) -> ProcessingStep:
    processor = _processor(config, session, params, EVALUATE_MODEL)
    step_args = processor.run(
        inputs=[
            _s3_input("model", train_step.properties.ModelArtifacts.S3ModelArtifacts, MODEL_DIR),
            _s3_input("test", _split_uri(feature_step, "test"), TEST_DIR),
            _s3_input("train", _split_uri(feature_step, "train"), TRAIN_DIR),
        ],
        outputs=[_s3_output(config, EVALUATE_MODEL, EVALUATION_OUTPUT, EVALUATION_DIR)],
        arguments=[
            "--model-dir", MODEL_DIR,
            "--test-dir", TEST_DIR,
            "--train-dir", TRAIN_DIR,
            "--output-dir", EVALUATION_DIR,
            "--model-package-group", config.aws.model_package_group,
            *section_with_parameters("evaluation", config.evaluation, {
                "macro_f1_threshold": params.macro_f1_threshold.to_string(),
                "regression_tolerance": params.regression_tolerance.to_string(),
            }),
        ],
    )
    return ProcessingStep(name=EVALUATE_MODEL, step_args=step_args, property_files=[report])


def _baseline_step(config, session, params, feature_step, train_step) -> ProcessingStep:
    processor = _processor(config, session, params, COMPUTE_MONITOR_BASELINE)
    step_args = processor.run(
        inputs=[
            _s3_input("model", train_step.properties.ModelArtifacts.S3ModelArtifacts, MODEL_DIR),
            _s3_input("train", _split_uri(feature_step, "train"), TRAIN_DIR),
        ],
        outputs=[_s3_output(config, COMPUTE_MONITOR_BASELINE, BASELINE_OUTPUT, BASELINE_DIR)],
        arguments=["--model-dir", MODEL_DIR, "--train-dir", TRAIN_DIR, "--output-dir", BASELINE_DIR,
                   *section_arguments("monitoring", config.monitoring)],
    )
    return ProcessingStep(name=COMPUTE_MONITOR_BASELINE, step_args=step_args)


def _file_in_output(step: ProcessingStep, output_name: str, file_name: str) -> Join:
    uri = step.properties.ProcessingOutputConfig.Outputs[output_name].S3Output.S3Uri
    return Join(on="/", values=[uri, file_name])


def _register_step(config, session, params, train_step, evaluate_step, baseline_step) -> ModelStep:
    from sagemaker.serve.model_builder import ModelBuilder

    model_metrics = ModelMetrics(
        model_statistics=MetricsSource(
            content_type=JSON_CONTENT_TYPE,
            s3_uri=_file_in_output(evaluate_step, EVALUATION_OUTPUT, EVALUATION_FILE),
        )
    )
    drift_check_baselines = DriftCheckBaselines(
        model_data_statistics=MetricsSource(
            content_type=JSON_CONTENT_TYPE,
            s3_uri=_file_in_output(baseline_step, BASELINE_OUTPUT, STATISTICS_FILE),
        ),
        model_data_constraints=MetricsSource(
            content_type=JSON_CONTENT_TYPE,
            s3_uri=_file_in_output(baseline_step, BASELINE_OUTPUT, CONSTRAINTS_FILE),
        ),
    )
    builder = ModelBuilder(
        image_uri=image_uri(config, STEP_IMAGE_KINDS[REGISTER_MODEL]),
        s3_model_data_url=train_step.properties.ModelArtifacts.S3ModelArtifacts,
        role_arn=config.aws.job_role_arn("model"),
        sagemaker_session=session,
    )
    step_args = builder.register(
        model_package_group_name=config.aws.model_package_group,
        content_types=[config.aws.inference_content_type],
        response_types=[config.aws.inference_content_type],
        inference_instances=[config.aws.endpoint_instance_type],
        transform_instances=[config.aws.endpoint_instance_type],
        model_metrics=model_metrics,
        drift_check_baselines=drift_check_baselines,
        approval_status=params.model_approval_status,
    )
    return ModelStep(name=REGISTER_MODEL, step_args=step_args, depends_on=[baseline_step])


def _gate_failed_step(evaluate_step: ProcessingStep, report: PropertyFile) -> FailStep:
    gate_message = JsonGet(step_name=evaluate_step.name, property_file=report, json_path="gate.message")
    return FailStep(name=MODEL_GATE_FAILED, error_message=Join(on=" ", values=[GATE_FAILED_PREFIX, gate_message]))


def build_pipeline(config: FeedbackBrainConfig):
    """The pipeline object (sagemaker.mlops.workflow.pipeline.Pipeline); no network call."""
    started = time.perf_counter()
    with quiet_fast_build():
        pipeline = _assemble_pipeline(config)
    logger.debug("pipeline object built in %.2fs", time.perf_counter() - started)
    return pipeline


def _assemble_pipeline(config: FeedbackBrainConfig):
    session = offline_pipeline_session(config.aws.region, config.aws.bucket)
    params = build_parameters(config)
    report = PropertyFile(name=EVALUATION_REPORT, output_name=EVALUATION_OUTPUT, path=EVALUATION_FILE)

    staging_step = _feature_engineering_step(config, session, params)
    feature_step = _merge_step(config, session, params, staging_step)
    teacher_steps: list = []
    teacher_outputs = None
    if config.training.teacher_source == "uri":
        teacher_outputs = params.teacher_outputs_uri
    elif config.training.teacher_source == "step":
        teacher_step = _train_step(config, session, params, feature_step, step_name=TRAIN_TEACHER)
        score_step = _score_teacher_step(config, session, params, feature_step, teacher_step)
        teacher_steps = [teacher_step, score_step]
        teacher_outputs = score_step.properties.ProcessingOutputConfig.Outputs[TEACHER_CHANNEL].S3Output.S3Uri
    train_step = _train_step(config, session, params, feature_step, teacher_outputs=teacher_outputs)
    evaluate_step = _evaluate_step(config, session, params, feature_step, train_step, report)
    baseline_step = _baseline_step(config, session, params, feature_step, train_step)
    register_step = _register_step(config, session, params, train_step, evaluate_step, baseline_step)
    gate_step = ConditionStep(
        name=CHECK_MODEL_GATE,
        conditions=[
            ConditionGreaterThanOrEqualTo(
                left=JsonGet(step_name=evaluate_step.name, property_file=report, json_path="gate.macro_f1"),
                right=params.macro_f1_threshold,
            ),
            ConditionEquals(
                left=JsonGet(step_name=evaluate_step.name, property_file=report, json_path="gate.no_regression"),
                right=True,
            ),
        ],
        if_steps=[baseline_step, register_step],
        else_steps=[_gate_failed_step(evaluate_step, report)],
    )
    return Pipeline(
        name=config.aws.pipeline_name,
        parameters=params.all(),
        steps=[staging_step, feature_step, *teacher_steps, train_step, evaluate_step, gate_step],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )


_definitions: dict[str, str] = {}


def definition_json(config: FeedbackBrainConfig) -> str:
    """The canonical definition: sorted keys, indent 2; byte-identical across builds.

    Memoised on the whole configuration (the definition is a pure function of it), since
    the CLI and the test suite ask for it several times per process.
    """
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    if key not in _definitions:
        started = time.perf_counter()
        with quiet_fast_build():
            raw = _assemble_pipeline(config).definition()
        _definitions[key] = json.dumps(json.loads(raw), indent=2, sort_keys=True)
        logger.info("pipeline definition built in %.2fs", time.perf_counter() - started)
    return _definitions[key]
