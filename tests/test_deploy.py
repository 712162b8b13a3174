"""Deployment requests, validated by botocore's service models (moto for create, Stubber for update/scaling)."""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from inference.config import ServingConfig
from inference.deploy import (
    AwsClients,
    DeploymentError,
    DeploymentTarget,
    alarm_requests,
    deploy_model_package,
    deployment_config,
    handler,
    scaling_requests,
)

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/feedback-brain-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-inference:abc123"
MODEL_DATA = "s3://feedback-brain-artifacts/models/model.tar.gz"
# moto's endpoint-config validator predates the c6i family; the real default is ml.c6i.xlarge.
MOTO_INSTANCE = "ml.c5.xlarge"


def target(**kwargs) -> DeploymentTarget:
    values = dict(endpoint_name="feedback-brain", role_arn=ROLE, capture_s3_uri="s3://feedback-brain-artifacts/datacapture",
                  instance_type=MOTO_INSTANCE, kms_key_id="arn:aws:kms:us-east-1:123456789012:key/abcd", tags={"project": "feedback-brain"})
    values.update(kwargs)
    return DeploymentTarget(**values)


def register_package(sm, status="Approved") -> str:
    sm.create_model_package_group(ModelPackageGroupName="feedback-brain-models")
    arn = sm.create_model_package(
        ModelPackageGroupName="feedback-brain-models",
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL_DATA}],
            "SupportedContentTypes": ["application/json", "application/jsonlines", "text/csv"],
            "SupportedResponseMIMETypes": ["application/json", "application/jsonlines"],
        },
    )["ModelPackageArn"]
    return arn


@pytest.fixture
def aws():
    with mock_aws():
        yield AwsClients(boto3.client("sagemaker", region_name=REGION), boto3.client("application-autoscaling", region_name=REGION),
                         boto3.client("cloudwatch", region_name=REGION))


def test_first_deployment_creates_model_config_with_capture_alarms_and_endpoint(aws):
    arn = register_package(aws.sagemaker)
    config = ServingConfig(capture_sampling_percentage=20)
    result = deploy_model_package(arn, target(), config, aws)
    assert result.action == "created"
    model = aws.sagemaker.describe_model(ModelName=result.model_name)
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["PrimaryContainer"]["ModelDataUrl"] == MODEL_DATA
    assert model["PrimaryContainer"]["Environment"]["FBRAIN_MODEL_NAME"] == "feedback-brain-models"
    assert model["PrimaryContainer"]["Environment"]["FBRAIN__SERVING__RUNTIME"] == "onnx-int8"
    endpoint_config = aws.sagemaker.describe_endpoint_config(EndpointConfigName=result.endpoint_config_name)
    capture = endpoint_config["DataCaptureConfig"]
    assert capture["EnableCapture"] and capture["InitialSamplingPercentage"] == 20
    assert capture["DestinationS3Uri"] == "s3://feedback-brain-artifacts/datacapture"
    assert capture["KmsKeyId"].endswith("key/abcd")
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    variant = endpoint_config["ProductionVariants"][0]
    assert variant["VariantName"] == "AllTraffic" and variant["ModelName"] == result.model_name
    endpoint = aws.sagemaker.describe_endpoint(EndpointName="feedback-brain")
    assert endpoint["EndpointConfigName"] == result.endpoint_config_name
    alarms = {a["AlarmName"]: a for a in aws.cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(alarms) == set(result.alarm_names)
    latency = alarms["feedback-brain-model-latency-p99"]
    assert latency["MetricName"] == "ModelLatency" and latency["Threshold"] == config.rollback_p99_latency_ms * 1000
    # A retry reuses what exists instead of failing on duplicate names.
    again = deploy_model_package(arn, target(), config, aws)
    assert again.model_name == result.model_name and again.endpoint_config_name == result.endpoint_config_name
    assert again.action == "unchanged"


def test_unapproved_or_incomplete_packages_are_refused(aws):
    arn = register_package(aws.sagemaker, status="PendingManualApproval")
    with pytest.raises(DeploymentError, match="PendingManualApproval"):
        deploy_model_package(arn, target(), ServingConfig(), aws)


def test_update_uses_blue_green_canary_with_rollback_alarms_and_scaling():
    config = ServingConfig(rollout_mode="canary", rollout_step_percent=10, autoscaling_max_instances=6)
    sm = boto3.client("sagemaker", region_name=REGION)
    autoscaling = boto3.client("application-autoscaling", region_name=REGION)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/feedback-brain-models/3"
    with Stubber(sm) as sms, Stubber(autoscaling) as ass, Stubber(cloudwatch) as cws:
        sms.add_response("describe_model_package", {
            "ModelPackageName": "feedback-brain-models", "ModelPackageArn": arn, "ModelPackageGroupName": "feedback-brain-models",
            "ModelPackageVersion": 3, "ModelApprovalStatus": "Approved", "CreationTime": "2026-11-23T08:00:00Z",
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "InferenceSpecification": {"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL_DATA}],
                                       "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
        }, {"ModelPackageName": arn})
        not_found = {"service_error_code": "ValidationException", "service_message": "Could not find model"}
        sms.add_client_error("describe_model", **not_found)
        sms.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}, {
            "ModelName": ANY, "PrimaryContainer": ANY, "ExecutionRoleArn": ROLE, "Tags": ANY})
        sms.add_client_error("describe_endpoint_config", service_error_code="ValidationException",
                             service_message="Could not find endpoint configuration")
        sms.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"}, {
            "EndpointConfigName": ANY, "ProductionVariants": ANY, "DataCaptureConfig": ANY, "KmsKeyId": ANY, "Tags": ANY})
        for alarm in alarm_requests(target(instance_type="ml.c6i.xlarge"), config):
            cws.add_response("put_metric_alarm", {}, alarm)
        sms.add_response("describe_endpoint", {
            "EndpointName": "feedback-brain", "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/feedback-brain",
            "EndpointConfigName": "feedback-brain-config-old", "EndpointStatus": "InService",
            "CreationTime": "2026-11-01T00:00:00Z", "LastModifiedTime": "2026-11-01T00:00:00Z"}, {"EndpointName": "feedback-brain"})
        sms.add_response("describe_endpoint_config", {
            "EndpointConfigName": "feedback-brain-config-old", "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/old",
            "CreationTime": "2026-11-01T00:00:00Z",
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "old", "InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1}]},
            {"EndpointConfigName": "feedback-brain-config-old"})
        # The instance type changes (c5 -> c6i): the scalable target must go before the update.
        register, policy = scaling_requests("feedback-brain", config)
        ass.add_response("deregister_scalable_target", {}, {k: register[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension")})
        expected_deployment = deployment_config(["feedback-brain-invocation-5xx-errors", "feedback-brain-model-latency-p99"], config)
        sms.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/feedback-brain"}, {
            "EndpointName": "feedback-brain", "EndpointConfigName": ANY, "DeploymentConfig": expected_deployment})
        sms.add_response("describe_endpoint", {
            "EndpointName": "feedback-brain", "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/feedback-brain",
            "EndpointConfigName": "new", "EndpointStatus": "InService",
            "CreationTime": "2026-11-01T00:00:00Z", "LastModifiedTime": "2026-11-23T00:00:00Z"}, {"EndpointName": "feedback-brain"})
        ass.add_response("register_scalable_target", {}, register)
        ass.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:p", "Alarms": []}, policy)
        result = deploy_model_package(arn, target(instance_type="ml.c6i.xlarge"), config, AwsClients(sm, autoscaling, cloudwatch), wait=True)
        sms.assert_no_pending_responses()
        ass.assert_no_pending_responses()
        cws.assert_no_pending_responses()
    assert result.action == "updated" and result.autoscaling_applied
    routing = expected_deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "CANARY", "WaitIntervalInSeconds": 300, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}
    assert policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance")
    assert register["MaxCapacity"] == 6


def test_linear_rollout_and_bad_mode():
    linear = deployment_config(["a"], ServingConfig(rollout_mode="linear", rollout_step_percent=25))
    assert linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["LinearStepSize"] == {"Type": "CAPACITY_PERCENT", "Value": 25}
    assert linear["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "a"}]}
    with pytest.raises(ValueError, match="'canary', 'linear' or 'all_at_once'"):  # refused when the setting is made
        ServingConfig(rollout_mode="yolo")


LAMBDA_ENV = {"ENDPOINT_NAME": "feedback-brain", "MODEL_EXECUTION_ROLE_ARN": ROLE,
              "DATA_CAPTURE_S3_URI": "s3://feedback-brain-artifacts/datacapture", "ENDPOINT_INSTANCE_TYPE": MOTO_INSTANCE,
              "FBRAIN__SERVING__CAPTURE_SAMPLING_PERCENTAGE": "50"}


def package_event(arn: str, status: str) -> dict:
    return {"version": "0", "source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
            "detail": {"ModelPackageArn": arn, "ModelPackageGroupName": "feedback-brain-models", "ModelApprovalStatus": status}}


def test_lambda_deploys_on_approval_and_skips_otherwise(aws, monkeypatch):
    for key, value in LAMBDA_ENV.items():
        monkeypatch.setenv(key, value)
    arn = register_package(aws.sagemaker)
    assert handler(package_event(arn, "Rejected"), None, aws)["action"] == "skipped"
    assert aws.sagemaker.list_endpoints()["Endpoints"] == []
    result = handler(package_event(arn, "Approved"), None, aws)
    assert result["action"] == "created"
    endpoint_config = aws.sagemaker.describe_endpoint_config(EndpointConfigName=result["endpoint_config"])
    assert endpoint_config["DataCaptureConfig"]["InitialSamplingPercentage"] == 50
    other = handler({"detail-type": "SageMaker Endpoint State Change", "detail": {"EndpointName": "other", "EndpointStatus": "IN_SERVICE"}}, None, aws)
    assert other["action"] == "skipped"


def test_lambda_applies_scaling_when_the_endpoint_is_in_service(monkeypatch):
    for key, value in LAMBDA_ENV.items():
        monkeypatch.setenv(key, value)
    autoscaling = boto3.client("application-autoscaling", region_name=REGION)
    register, policy = scaling_requests("feedback-brain", ServingConfig())
    with Stubber(autoscaling) as stub:
        stub.add_response("register_scalable_target", {}, register)
        stub.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:p"}, policy)
        event = {"detail-type": "SageMaker Endpoint State Change", "detail": {"EndpointName": "feedback-brain", "EndpointStatus": "IN_SERVICE"}}
        assert handler(event, None, AwsClients(None, autoscaling, None))["action"] == "autoscaling_applied"
        stub.assert_no_pending_responses()


def test_lambda_needs_its_environment(monkeypatch):
    for key in LAMBDA_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(DeploymentError, match="ENDPOINT_NAME"):
        handler(package_event("arn", "Approved"), None)
