"""The monitoring pipeline: the text monitor as a scheduled SageMaker Pipeline (SageMaker Python SDK v3).

Amazon SageMaker Model Monitor is closed to new customers, so the monitor runs as a pipeline
that any account can use: an EventBridge Scheduler schedule (`monitoring.schedule_expression`)
starts it (StartPipelineExecution, `fbrain monitor rules apply`), and its one Processing step
runs `python3 -m monitoring.monitor` in the processing image with Model Monitor's own file
formats (constraint_violations.json, statistics.json) and container paths:

    MonitorCapturedTraffic: CaptureUri   -> /opt/ml/processing/input/endpoint (the endpoint's data capture)
                            BaselineUri  -> /opt/ml/processing/baseline       (ComputeMonitorBaseline's output)
                            ModelDataUri -> /opt/ml/processing/model          (the served model.tar.gz)
                            results      <- /opt/ml/processing/resultdata

The window is the `monitoring.window_hours` before the execution's start. With violations and
EmitDriftEvents=true the job sends the ModelDriftDetected event that the drift-retrain rule turns
into a training pipeline execution; with PublishMetrics=true it sends the window's metrics to
CloudWatch (`monitoring.put_metric_data_namespace`) for dashboards and alarms. The same JSON runs locally (`fbrain monitor pipeline run --local`).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from pipelines.config import FeedbackBrainConfig
from pipelines.sdk_offline import offline_pipeline_session, prepare_environment, quiet_fast_build

prepare_environment()

from sagemaker.core.processing import Processor  # noqa: E402
from sagemaker.core.workflow.execution_variables import ExecutionVariables  # noqa: E402
from sagemaker.core.workflow.parameters import ParameterString  # noqa: E402
from sagemaker.mlops.workflow.pipeline import Pipeline  # noqa: E402
from sagemaker.mlops.workflow.steps import ProcessingStep  # noqa: E402

from pipelines.definition import (  # noqa: E402
    _output_to, _s3_input, _step_output_uri, image_uri, module_command, section_with_parameters,
)

MONITOR_STEP = "MonitorCapturedTraffic"
MONITOR_MODULE = "monitoring.monitor"
MONITOR_IMAGE_KIND = "processing"
BASELINE_DIR = "/opt/ml/processing/baseline"
MODEL_DIR = "/opt/ml/processing/model"
RESULTS_OUTPUT = "results"
PIPELINE_DESCRIPTION = "feedback-brain: text and prediction drift of the endpoint's captured traffic"

CAPTURE_URI = "CaptureUri"
BASELINE_URI = "BaselineUri"
MODEL_DATA_URI = "ModelDataUri"
EMIT_DRIFT_EVENTS = "EmitDriftEvents"
PUBLISH_METRICS = "PublishMetrics"
INSTANCE_TYPE = "MonitorInstanceType"
CHAMPION_PARAMETERS = (BASELINE_URI, MODEL_DATA_URI)
CHAMPION_NOT_SET = "champion-not-set"
"""Parameters that follow the champion: filled from the newest Approved package when not configured."""


def default_capture_uri(config: FeedbackBrainConfig) -> str:
    """Where the endpoint captures: s3://<bucket>/<data_capture_prefix>/<endpoint_name>/."""
    return f"s3://{config.aws.bucket}/{config.aws.data_capture_prefix.strip('/')}/{config.aws.endpoint_name}/"


def unset_champion_uri(config: FeedbackBrainConfig, name: str) -> str:
    """Default of a champion parameter left to the lookup: a key that names what is missing.

    The schedule (`fbrain monitor rules apply`) and `fbrain monitor pipeline run --local` always pass the
    champion's values; an execution started without them fails on this empty input, and its name says why."""
    return f"s3://{config.aws.bucket}/{config.monitoring.pipeline_name}/{CHAMPION_NOT_SET}/{name}/"


def monitoring_parameters(config: FeedbackBrainConfig) -> dict[str, ParameterString]:
    monitoring = config.monitoring
    return {
        CAPTURE_URI: ParameterString(CAPTURE_URI, default_value=default_capture_uri(config)),
        BASELINE_URI: ParameterString(
            BASELINE_URI, default_value=monitoring.baseline_uri or unset_champion_uri(config, BASELINE_URI)),
        MODEL_DATA_URI: ParameterString(
            MODEL_DATA_URI, default_value=monitoring.model_data_uri or unset_champion_uri(config, MODEL_DATA_URI)),
        EMIT_DRIFT_EVENTS: ParameterString(EMIT_DRIFT_EVENTS, default_value="true", enum_values=["true", "false"]),
        PUBLISH_METRICS: ParameterString(PUBLISH_METRICS, default_value="true", enum_values=["true", "false"]),
        INSTANCE_TYPE: ParameterString(INSTANCE_TYPE, default_value=monitoring.monitor_instance_type),
    }


def _monitor_step(config: FeedbackBrainConfig, session, params: dict[str, ParameterString]) -> ProcessingStep:
    monitoring = config.monitoring
    kms_key = config.aws.kms_key_id or None
    processor = Processor(
        role=config.aws.job_role_arn("monitoring"),
        image_uri=image_uri(config, MONITOR_IMAGE_KIND),
        instance_count=monitoring.monitor_instance_count,
        instance_type=params[INSTANCE_TYPE],
        entrypoint=module_command(MONITOR_MODULE),
        volume_size_in_gb=monitoring.monitor_volume_size_gb,
        volume_kms_key=kms_key,
        output_kms_key=kms_key,
        max_runtime_in_seconds=monitoring.monitor_max_runtime_s,
        base_job_name=f"{monitoring.pipeline_name}-{MONITOR_STEP}",
        sagemaker_session=session,
        # boto3 in the job (drift events) needs a region; SageMaker does not always set one.
        env={"AWS_DEFAULT_REGION": config.aws.region},
    )
    step_args = processor.run(
        inputs=[_s3_input("capture", params[CAPTURE_URI], monitoring.capture_local_path),
                _s3_input("baseline", params[BASELINE_URI], BASELINE_DIR),
                _s3_input("model", params[MODEL_DATA_URI], MODEL_DIR)],
        outputs=[_output_to(RESULTS_OUTPUT, _monitoring_output_uri(config), monitoring.results_local_path)],
        arguments=["--capture-dir", monitoring.capture_local_path,
                   "--baseline-dir", BASELINE_DIR,
                   "--model-dir", MODEL_DIR,
                   "--output-dir", monitoring.results_local_path,
                   "--end-time", ExecutionVariables.START_DATETIME,
                   "--endpoint-name", config.aws.endpoint_name,
                   "--schedule-name", monitoring.schedule_name,  # the metrics' MonitoringSchedule dimension
                   # The whole monitoring section; drift events and the instance type follow the parameters.
                   *section_with_parameters("monitoring", monitoring, {
                       "emit_drift_events": params[EMIT_DRIFT_EVENTS],
                       "put_metric_data": params[PUBLISH_METRICS],
                       "monitor_instance_type": params[INSTANCE_TYPE],
                   })],
    )
    return ProcessingStep(name=MONITOR_STEP, step_args=step_args)


def _monitoring_output_uri(config: FeedbackBrainConfig):
    """s3://<bucket>/<monitoring pipeline>/<execution id>/MonitorCapturedTraffic/results."""
    named = dataclasses.replace(config, aws=dataclasses.replace(config.aws, pipeline_name=config.monitoring.pipeline_name))
    return _step_output_uri(named, MONITOR_STEP, RESULTS_OUTPUT)


def build_monitoring_pipeline(config: FeedbackBrainConfig) -> Pipeline:
    """The monitoring pipeline object; no network call."""
    with quiet_fast_build():
        session = offline_pipeline_session(config.aws.region, config.aws.bucket)
        params = monitoring_parameters(config)
        return Pipeline(name=config.monitoring.pipeline_name, parameters=list(params.values()),
                        steps=[_monitor_step(config, session, params)], sagemaker_session=session,
                        pipeline_experiment_config=None)


_definitions: dict[str, str] = {}


def monitoring_definition_json(config: FeedbackBrainConfig) -> str:
    """The canonical definition: sorted keys, indent 2; byte-identical across builds (memoised on the config)."""
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    if key not in _definitions:
        with quiet_fast_build():
            raw = build_monitoring_pipeline(config).definition()
        _definitions[key] = json.dumps(json.loads(raw), indent=2, sort_keys=True)
    return _definitions[key]


def champion_monitoring_parameters(package: dict[str, Any]) -> dict[str, str]:
    """BaselineUri and ModelDataUri of a model package (DescribeModelPackage, or the local registry's record).

    The baseline prefix is the folder of its DriftCheckBaselines statistics (ComputeMonitorBaseline wrote
    statistics.json, constraints.json, embeddings.npy and tokenizer.json there)."""
    quality = (package.get("DriftCheckBaselines") or {}).get("ModelDataQuality") or {}
    statistics = (quality.get("Statistics") or {}).get("S3Uri")
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    model_data = next((c.get("ModelDataUrl") for c in containers if c.get("ModelDataUrl")), None)
    name = package.get("ModelPackageArn", "the model package")
    if not statistics:
        raise ValueError(f"{name} has no DriftCheckBaselines.ModelDataQuality.Statistics: no monitoring baseline")
    if not model_data:
        raise ValueError(f"{name} has no ModelDataUrl")
    return {BASELINE_URI: statistics.rsplit("/", 1)[0] + "/", MODEL_DATA_URI: model_data}


def configured_champion_parameters(config: FeedbackBrainConfig) -> Optional[dict[str, str]]:
    """BaselineUri/ModelDataUri from the configuration, or None when either is left to the champion lookup."""
    if config.monitoring.baseline_uri and config.monitoring.model_data_uri:
        return {BASELINE_URI: config.monitoring.baseline_uri, MODEL_DATA_URI: config.monitoring.model_data_uri}
    return None
