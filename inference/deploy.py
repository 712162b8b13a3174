"""Deploy an approved model package to a SageMaker real-time endpoint (boto3), safely.

`deploy_model_package` does, in order:
1. CreateModel from the package's inference container (image + model data), with the
   model's name/version and serving settings in the container environment;
2. CreateEndpointConfig with DataCaptureConfig (sampling, KMS, S3 prefix; input and output);
3. PutMetricAlarm x2 (5XX errors, p99 model latency): the rollback alarms;
4. CreateEndpoint, or UpdateEndpoint with a blue/green DeploymentConfig (canary or linear
   traffic shifting) whose AutoRollbackConfiguration watches those alarms;
5. once the endpoint is InService: Application Auto Scaling (RegisterScalableTarget and a
   target-tracking policy on SageMakerVariantInvocationsPerInstance).

Resource names are derived from the package version and a digest of the request, so a
retried deployment reuses what an earlier attempt created instead of failing or duplicating.

`fbrain deploy --aws` (pipelines.aws.deploy_endpoint) calls `deploy_model_package` with the
`aws` and `serving` sections. Locally there is no SageMaker: `serve_model_dir(model_dir, config)`
(re-exported from inference.serve) serves the approved version over HTTP, which is what
`fbrain deploy` runs.

`handler(event, context)` is the deploy Lambda. EventBridge sends it
"SageMaker Model Package State Change" events (deploys when ModelApprovalStatus is
Approved) and "SageMaker Endpoint State Change" events (applies auto scaling when the
endpoint reaches InService: scaling cannot be registered while an endpoint is Creating,
and a Lambda cannot wait out a canary rollout). Its settings come from the environment:
ENDPOINT_NAME, MODEL_EXECUTION_ROLE_ARN, DATA_CAPTURE_S3_URI, ENDPOINT_INSTANCE_TYPE,
KMS_KEY_ID, and any `FBRAIN__SERVING__<FIELD>` override of ServingConfig.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from inference.config import ServingConfig
from processing.settings import environment_variables
from inference.serve import MODEL_NAME_ENV, MODEL_VERSION_ENV, config_from_env, serve_model_dir

__all__ = ["deploy_model_package", "handler", "serve_model_dir", "DeploymentTarget", "AwsClients", "DeploymentError"]

logger = logging.getLogger(__name__)

SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"
MAX_NAME_LENGTH = 63
TRAFFIC_TYPES = {"canary": "CANARY", "linear": "LINEAR", "all_at_once": "ALL_AT_ONCE"}
MICROSECONDS_PER_MS = 1000
BUSY_STATES = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
"""Endpoint states in which UpdateEndpoint is refused."""
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
CONTAINER_ENV_FIELDS = ("runtime", "max_batch_size", "max_batch_wait_ms", "onnx_intra_op_threads", "overlength")
"""ServingConfig fields passed to the container as FBRAIN__SERVING__<FIELD> (processing.settings)."""


class DeploymentError(RuntimeError):
    """The package cannot be deployed (not approved, no inference container, bad settings)."""


@dataclass
class DeploymentTarget:
    """Where and as whom to deploy (identity, not tuning: tuning is in ServingConfig)."""

    endpoint_name: str
    """Endpoint to create or update."""
    role_arn: str
    """Execution role of the SageMaker model (pulls the image, reads the model data)."""
    capture_s3_uri: str
    """DataCaptureConfig.DestinationS3Uri, e.g. s3://bucket/datacapture."""
    instance_type: str = "ml.c6i.xlarge"
    """Production variant instance type."""
    kms_key_id: str = ""
    """KMS key for captured data; empty means the bucket's default encryption."""
    tags: dict[str, str] = field(default_factory=dict)
    """Tags on the model, endpoint config and endpoint."""


@dataclass(frozen=True)
class ModelPackage:
    arn: str
    group: str
    version: str
    approval_status: str
    image: str
    model_data_url: str


@dataclass
class DeploymentResult:
    endpoint_name: str
    model_name: str
    endpoint_config_name: str
    action: str
    """`created`, `updated` or `unchanged` (the endpoint already runs this config)."""
    alarm_names: list[str]
    autoscaling_applied: bool


def _name(*parts: str, digest_of: Any) -> str:
    digest = hashlib.sha256(json.dumps(digest_of, sort_keys=True, default=str).encode()).hexdigest()[:8]
    stem = "-".join(p for p in parts if p)
    stem = "".join(c if c.isalnum() or c == "-" else "-" for c in stem)[: MAX_NAME_LENGTH - len(digest) - 1]
    return f"{stem}-{digest}"


def _tags(target: DeploymentTarget) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(target.tags.items())]


def describe_package(sm: Any, arn: str) -> ModelPackage:
    raw = sm.describe_model_package(ModelPackageName=arn)
    containers = (raw.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers or not containers[0].get("Image"):
        raise DeploymentError(f"model package {arn} has no inference container image")
    if not containers[0].get("ModelDataUrl"):
        raise DeploymentError(f"model package {arn} has no ModelDataUrl")
    return ModelPackage(
        arn=arn,
        group=raw.get("ModelPackageGroupName", ""),
        version=str(raw.get("ModelPackageVersion", "")),
        approval_status=raw.get("ModelApprovalStatus", ""),
        image=containers[0]["Image"],
        model_data_url=containers[0]["ModelDataUrl"],
    )


def model_request(package: ModelPackage, target: DeploymentTarget, config: ServingConfig) -> dict[str, Any]:
    environment = {MODEL_NAME_ENV: package.group or target.endpoint_name, MODEL_VERSION_ENV: package.version or "unversioned"}
    environment.update(environment_variables("serving", config, CONTAINER_ENV_FIELDS))
    request = {
        "PrimaryContainer": {"Image": package.image, "ModelDataUrl": package.model_data_url, "Environment": environment},
        "ExecutionRoleArn": target.role_arn,
    }
    request["ModelName"] = _name(target.endpoint_name, f"v{package.version}", digest_of=request)
    if target.tags:
        request["Tags"] = _tags(target)
    return request


def data_capture_config(target: DeploymentTarget, config: ServingConfig) -> dict[str, Any]:
    capture: dict[str, Any] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": int(round(config.capture_sampling_percentage)),
        "DestinationS3Uri": target.capture_s3_uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json", "application/jsonlines"],
        },
    }
    if target.kms_key_id:
        capture["KmsKeyId"] = target.kms_key_id
    return capture


def endpoint_config_request(model_name: str, target: DeploymentTarget, config: ServingConfig) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ProductionVariants": [
            {
                "VariantName": config.variant_name,
                "ModelName": model_name,
                "InstanceType": target.instance_type,
                "InitialInstanceCount": config.deploy_instance_count,
                "InitialVariantWeight": 1.0,
            }
        ],
        "DataCaptureConfig": data_capture_config(target, config),
    }
    if target.kms_key_id:
        request["KmsKeyId"] = target.kms_key_id
    request["EndpointConfigName"] = _name(target.endpoint_name, "config", digest_of=request)
    if target.tags:
        request["Tags"] = _tags(target)
    return request


def alarm_requests(target: DeploymentTarget, config: ServingConfig) -> list[dict[str, Any]]:
    dimensions = [{"Name": "EndpointName", "Value": target.endpoint_name}, {"Name": "VariantName", "Value": config.variant_name}]
    common = {
        "Namespace": "AWS/SageMaker",
        "Dimensions": dimensions,
        "Period": 60,
        "EvaluationPeriods": config.rollback_evaluation_minutes,
        "DatapointsToAlarm": config.rollback_evaluation_minutes,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
    }
    return [
        {
            "AlarmName": f"{target.endpoint_name}-invocation-5xx-errors",
            "AlarmDescription": "Rollback alarm of the feedback-brain deployment: server errors.",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "Threshold": float(config.rollback_5xx_errors),
            **common,
        },
        {
            "AlarmName": f"{target.endpoint_name}-model-latency-p99",
            "AlarmDescription": "Rollback alarm of the feedback-brain deployment: p99 model latency.",
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p99",
            "Threshold": float(config.rollback_p99_latency_ms * MICROSECONDS_PER_MS),  # ModelLatency is in microseconds
            **common,
        },
    ]


def deployment_config(alarm_names: list[str], config: ServingConfig) -> dict[str, Any]:
    if config.rollout_mode not in TRAFFIC_TYPES:
        raise DeploymentError(f"rollout_mode {config.rollout_mode!r}: choose one of {sorted(TRAFFIC_TYPES)}")
    routing: dict[str, Any] = {"Type": TRAFFIC_TYPES[config.rollout_mode], "WaitIntervalInSeconds": config.rollout_wait_s}
    step = {"Type": "CAPACITY_PERCENT", "Value": config.rollout_step_percent}
    if config.rollout_mode == "canary":
        routing["CanarySize"] = step
    elif config.rollout_mode == "linear":
        routing["LinearStepSize"] = step
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": config.rollout_termination_wait_s,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarm_names]},
    }


def scaling_requests(endpoint_name: str, config: ServingConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    resource = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint_name}/variant/{config.variant_name}",
        "ScalableDimension": SCALABLE_DIMENSION,
    }
    register = {**resource, "MinCapacity": config.autoscaling_min_instances, "MaxCapacity": config.autoscaling_max_instances}
    policy = {
        **resource,
        "PolicyName": f"{endpoint_name}-invocations-per-instance",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": config.autoscaling_target_invocations,
            "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC},
            "ScaleInCooldown": config.autoscaling_scale_in_cooldown_s,
            "ScaleOutCooldown": config.autoscaling_scale_out_cooldown_s,
        },
    }
    return register, policy


def _exists(call: Any, **kwargs: Any) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code in ("ValidationException", "ResourceNotFound", "ResourceNotFoundException") and (
            "not found" in message.lower() or "could not find" in message.lower() or "does not exist" in message.lower()
        ):
            return None
        raise


def apply_autoscaling(autoscaling: Any, endpoint_name: str, config: ServingConfig) -> None:
    """Register the variant as a scalable target and put the target-tracking policy (idempotent)."""
    register, policy = scaling_requests(endpoint_name, config)
    autoscaling.register_scalable_target(**register)
    autoscaling.put_scaling_policy(**policy)
    logger.info("auto scaling on %s: %d-%d instances, target %.0f invocations/instance",
                register["ResourceId"], register["MinCapacity"], register["MaxCapacity"], config.autoscaling_target_invocations)


def _current_instance_type(sm: Any, endpoint: dict[str, Any], variant: str) -> str | None:
    current = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    for item in current.get("ProductionVariants", []):
        if item.get("VariantName") == variant:
            return item.get("InstanceType")
    return None


@dataclass
class AwsClients:
    sagemaker: Any
    autoscaling: Any
    cloudwatch: Any

    @classmethod
    def create(cls, region: str | None = None) -> "AwsClients":
        import boto3

        session = boto3.Session(region_name=region)
        return cls(session.client("sagemaker"), session.client("application-autoscaling"), session.client("cloudwatch"))


def deploy_model_package(
    package_arn: str,
    target: DeploymentTarget,
    config: ServingConfig | None = None,
    clients: AwsClients | None = None,
    *,
    require_approved: bool = True,
    wait: bool = False,
) -> DeploymentResult:
    """Create or update the endpoint with the package's model (see the module docstring)."""
    config = config or ServingConfig()
    clients = clients or AwsClients.create()
    sm = clients.sagemaker
    package = describe_package(sm, package_arn)
    if require_approved and package.approval_status != "Approved":
        raise DeploymentError(f"model package {package_arn} is {package.approval_status or 'not approved'}; only Approved packages deploy")

    model = model_request(package, target, config)
    if _exists(sm.describe_model, ModelName=model["ModelName"]) is None:
        sm.create_model(**model)
        logger.info("created model %s from %s", model["ModelName"], package.model_data_url)
    endpoint_config = endpoint_config_request(model["ModelName"], target, config)
    if _exists(sm.describe_endpoint_config, EndpointConfigName=endpoint_config["EndpointConfigName"]) is None:
        sm.create_endpoint_config(**endpoint_config)
        logger.info("created endpoint config %s (capture %d%% to %s)", endpoint_config["EndpointConfigName"],
                    int(round(config.capture_sampling_percentage)), target.capture_s3_uri)

    alarms = alarm_requests(target, config)
    for alarm in alarms:
        clients.cloudwatch.put_metric_alarm(**alarm)
    alarm_names = [a["AlarmName"] for a in alarms]

    endpoint = _exists(sm.describe_endpoint, EndpointName=target.endpoint_name)
    if endpoint is None:
        request = {"EndpointName": target.endpoint_name, "EndpointConfigName": endpoint_config["EndpointConfigName"]}
        if target.tags:
            request["Tags"] = _tags(target)
        sm.create_endpoint(**request)
        action = "created"
    elif endpoint.get("EndpointConfigName") == endpoint_config["EndpointConfigName"]:
        action = "unchanged"  # a retried deployment whose update already went through
    elif endpoint.get("EndpointStatus") in BUSY_STATES:
        raise DeploymentError(f"endpoint {target.endpoint_name} is {endpoint['EndpointStatus']}; retry once it is InService")
    else:
        if _current_instance_type(sm, endpoint, config.variant_name) not in (None, target.instance_type):
            # Application Auto Scaling refuses endpoint updates that change a scaled variant's instance type.
            register, _ = scaling_requests(target.endpoint_name, config)
            _exists(clients.autoscaling.deregister_scalable_target, **{k: register[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension")})
        sm.update_endpoint(
            EndpointName=target.endpoint_name,
            EndpointConfigName=endpoint_config["EndpointConfigName"],
            DeploymentConfig=deployment_config(alarm_names, config),
        )
        action = "updated"
    logger.info("%s endpoint %s with %s (package %s)", action, target.endpoint_name, endpoint_config["EndpointConfigName"], package_arn)

    autoscaling_applied = False
    if wait:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=target.endpoint_name)
        apply_autoscaling(clients.autoscaling, target.endpoint_name, config)
        autoscaling_applied = True
    return DeploymentResult(target.endpoint_name, model["ModelName"], endpoint_config["EndpointConfigName"], action, alarm_names, autoscaling_applied)


def target_from_env(environ: dict[str, str] | None = None) -> DeploymentTarget:
    environ = dict(os.environ if environ is None else environ)
    missing = [k for k in ("ENDPOINT_NAME", "MODEL_EXECUTION_ROLE_ARN", "DATA_CAPTURE_S3_URI") if not environ.get(k)]
    if missing:
        raise DeploymentError(f"deploy Lambda needs environment variables {missing}")
    return DeploymentTarget(
        endpoint_name=environ["ENDPOINT_NAME"],
        role_arn=environ["MODEL_EXECUTION_ROLE_ARN"],
        capture_s3_uri=environ["DATA_CAPTURE_S3_URI"],
        instance_type=environ.get("ENDPOINT_INSTANCE_TYPE") or DeploymentTarget.instance_type,
        kms_key_id=environ.get("KMS_KEY_ID", ""),
    )


def handler(event: dict[str, Any], context: Any = None, clients: AwsClients | None = None) -> dict[str, Any]:
    """Deploy Lambda: approved package -> deploy; our endpoint InService -> auto scaling."""
    detail_type = event.get("detail-type", "")
    detail = event.get("detail") or {}
    target = target_from_env()
    config = config_from_env()
    if detail_type == PACKAGE_STATE_CHANGE:
        status = detail.get("ModelApprovalStatus")
        arn = detail.get("ModelPackageArn")
        if status != "Approved":
            logger.info("model package %s is %s: nothing to deploy", arn, status)
            return {"action": "skipped", "reason": f"ModelApprovalStatus is {status}"}
        if not arn:
            raise DeploymentError("event detail has no ModelPackageArn")
        result = deploy_model_package(arn, target, config, clients or AwsClients.create())
        return {"action": result.action, "endpoint": result.endpoint_name, "model": result.model_name,
                "endpoint_config": result.endpoint_config_name, "alarms": result.alarm_names}
    if detail_type == ENDPOINT_STATE_CHANGE:
        name, status = detail.get("EndpointName"), detail.get("EndpointStatus")
        if name != target.endpoint_name or status not in ("IN_SERVICE", "InService"):
            return {"action": "skipped", "reason": f"endpoint {name} is {status}"}
        apply_autoscaling((clients or AwsClients.create()).autoscaling, name, config)
        return {"action": "autoscaling_applied", "endpoint": name}
    return {"action": "skipped", "reason": f"unhandled event type {detail_type!r}"}
