"""The CreateMonitoringSchedule request that runs the text monitor hourly against the endpoint.

Only for accounts that still have Amazon SageMaker Model Monitor (closed to new customers): applied
by `fbrain monitor rules apply --model-monitor-schedule`. By default the same monitor runs as the
monitoring pipeline (pipelines/monitoring_definition.py) started by an EventBridge Scheduler schedule.

The job is a custom Model Monitor container: the inference image (it holds the monitoring
package) started as `python3 -m monitoring.monitor`. SageMaker mounts the captured data at
/opt/ml/processing/input/endpoint, downloads statistics.json / constraints.json (BaselineConfig)
and passes their paths as `baseline_statistics` / `baseline_constraints`; the other baseline
files and the model come as S3 URIs in the job's environment.
"""
from __future__ import annotations

from typing import Any

from monitoring.baseline import CONSTRAINTS_FILE, EMBEDDINGS_FILE, STATISTICS_FILE
from monitoring.config import MonitoringConfig
from monitoring.text_descriptors import TOKENIZER_FILE

MONITOR_ENTRYPOINT = ["python3", "-m", "monitoring.monitor"]
MAX_ENVIRONMENT_VALUE_CHARS = 256
"""SageMaker's limit on one environment value of a monitoring job definition."""


def monitor_image_uri(ecr_registry: str, config: MonitoringConfig, image_tag: str) -> str:
    return f"{ecr_registry}/{config.monitor_image_repository}:{image_tag}"


def create_monitoring_schedule_request(
    config: MonitoringConfig,
    *,
    endpoint_name: str,
    image_uri: str,
    role_arn: str,
    baseline_s3_uri: str,
    output_s3_uri: str,
    model_data_uri: str,
    kms_key_id: str = "",
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of sagemaker.create_monitoring_schedule for the text monitor.

    baseline_s3_uri is the ComputeMonitorBaseline step's output prefix (statistics.json,
    constraints.json, embeddings.npy, tokenizer.json); model_data_uri the model.tar.gz the
    endpoint serves (embeds captured texts for embedding drift).
    """
    baseline = baseline_s3_uri.rstrip("/")
    environment = {
        "baseline_embeddings": f"{baseline}/{EMBEDDINGS_FILE}",
        "baseline_tokenizer": f"{baseline}/{TOKENIZER_FILE}",
        "model_dir": model_data_uri,
        "publish_cloudwatch_metrics": "Enabled",
        "emit_drift_events": "true",
    }
    too_long = {k: len(v) for k, v in environment.items() if len(v) > MAX_ENVIRONMENT_VALUE_CHARS}
    if too_long:
        raise ValueError(f"environment values over {MAX_ENVIRONMENT_VALUE_CHARS} characters: {too_long}")
    output_config: dict[str, Any] = {"MonitoringOutputs": [{"S3Output": {
        "S3Uri": output_s3_uri, "LocalPath": config.results_local_path, "S3UploadMode": "EndOfJob",
    }}]}
    resources: dict[str, Any] = {"ClusterConfig": {
        "InstanceCount": config.monitor_instance_count,
        "InstanceType": config.monitor_instance_type,
        "VolumeSizeInGB": config.monitor_volume_size_gb,
    }}
    if kms_key_id:
        output_config["KmsKeyId"] = kms_key_id
        resources["ClusterConfig"]["VolumeKmsKeyId"] = kms_key_id
    request: dict[str, Any] = {
        "MonitoringScheduleName": config.schedule_name,
        "MonitoringScheduleConfig": {
            "ScheduleConfig": {"ScheduleExpression": config.schedule_expression},
            "MonitoringType": "DataQuality",
            "MonitoringJobDefinition": {
                "BaselineConfig": {
                    "ConstraintsResource": {"S3Uri": f"{baseline}/{CONSTRAINTS_FILE}"},
                    "StatisticsResource": {"S3Uri": f"{baseline}/{STATISTICS_FILE}"},
                },
                "MonitoringInputs": [{"EndpointInput": {
                    "EndpointName": endpoint_name,
                    "LocalPath": config.capture_local_path,
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                }}],
                "MonitoringOutputConfig": output_config,
                "MonitoringResources": resources,
                "MonitoringAppSpecification": {"ImageUri": image_uri, "ContainerEntrypoint": MONITOR_ENTRYPOINT},
                "StoppingCondition": {"MaxRuntimeInSeconds": config.monitor_max_runtime_s},
                "Environment": environment,
                "RoleArn": role_arn,
            },
        },
    }
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    return request
