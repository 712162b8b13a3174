"""`fbrain deploy --aws` and `fbrain model list|approve|reject`, through the CLI (moto; Stubber where moto stops)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from typer.testing import CliRunner

from pipelines.cli import app

REGION = "us-east-1"
GROUP = "feedback-brain-models"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-inference:abc123"
MODEL_DATA = "s3://feedback-brain-artifacts/models/model.tar.gz"
# moto's endpoint-config validator predates the c6i family.
AWS_SETTINGS = ["--set", "aws.endpoint_instance_type=ml.c5.xlarge",
                "--set", "aws.role_arn=arn:aws:iam::123456789012:role/feedback-brain-sagemaker"]


def fbrain(*args: str):
    return CliRunner().invoke(app, [*AWS_SETTINGS, *args])


def _register(sagemaker, status: str) -> str:
    return sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL_DATA}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]


@pytest.fixture
def aws_account():
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        yield sagemaker


# ---------------------------------------------------------------- fbrain deploy --aws
def test_deploy_aws_creates_the_endpoint_from_the_newest_approved_package(aws_account):
    sagemaker = aws_account
    result = fbrain("deploy", "--aws")
    assert result.exit_code == 1 and "has no Approved package" in result.output
    _register(sagemaker, "Approved")
    newest = _register(sagemaker, "Approved")
    _register(sagemaker, "PendingManualApproval")

    result = fbrain("deploy", "--aws", "--wait")
    assert result.exit_code == 0, result.output
    deployed = json.loads(result.output)
    assert deployed["action"] == "created" and deployed["autoscaling_applied"] is True
    endpoint = sagemaker.describe_endpoint(EndpointName="feedback-brain")
    endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert endpoint_config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://feedback-brain-artifacts/datacapture"
    model = sagemaker.describe_model(ModelName=endpoint_config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Environment"]["FBRAIN_MODEL_VERSION"] == newest.rsplit("/", 1)[1]
    scaling = boto3.client("application-autoscaling", region_name=REGION).describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t["ResourceId"] for t in scaling] == ["endpoint/feedback-brain/variant/AllTraffic"]

    # Same package again: nothing to do. A pending package is refused with the reason.
    assert json.loads(fbrain("deploy", "--aws", "--model-package-arn", newest).output)["action"] == "unchanged"
    pending = _register(sagemaker, "PendingManualApproval")
    result = fbrain("deploy", "--aws", "--model-package-arn", pending)
    assert result.exit_code == 1 and "PendingManualApproval" in result.output
    assert "needs --aws" in fbrain("deploy", "--model-package-arn", newest).output


def test_deploy_aws_updates_a_running_endpoint_blue_green(monkeypatch):
    """moto has no UpdateEndpoint: the update path is checked against botocore's model with Stubber."""
    import pipelines.aws as aws_module

    clients = {name: boto3.client(name, region_name=REGION)
               for name in ("sagemaker", "application-autoscaling", "cloudwatch")}
    monkeypatch.setattr(aws_module, "_client", lambda config, session, service: clients[service])
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{GROUP}/4"
    with Stubber(clients["sagemaker"]) as sm, Stubber(clients["cloudwatch"]) as cw:
        sm.add_response("describe_model_package", {
            "ModelPackageName": GROUP, "ModelPackageArn": arn, "ModelPackageGroupName": GROUP,
            "ModelPackageVersion": 4, "ModelApprovalStatus": "Approved", "CreationTime": "2026-12-01T00:00:00Z",
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "InferenceSpecification": {"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL_DATA}],
                                       "SupportedContentTypes": ["application/json"],
                                       "SupportedResponseMIMETypes": ["application/json"]}}, {"ModelPackageName": arn})
        missing = {"service_error_code": "ValidationException", "service_message": "Could not find model"}
        sm.add_client_error("describe_model", **missing)
        sm.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:{REGION}:123456789012:model/m"})
        sm.add_client_error("describe_endpoint_config", service_error_code="ValidationException",
                            service_message="Could not find endpoint configuration")
        sm.add_response("create_endpoint_config", {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/c"})
        cw.add_response("put_metric_alarm", {})
        cw.add_response("put_metric_alarm", {})
        sm.add_response("describe_endpoint", {
            "EndpointName": "feedback-brain", "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/feedback-brain",
            "EndpointConfigName": "feedback-brain-config-old", "EndpointStatus": "InService",
            "CreationTime": "2026-11-01T00:00:00Z", "LastModifiedTime": "2026-11-01T00:00:00Z"},
            {"EndpointName": "feedback-brain"})
        sm.add_response("describe_endpoint_config", {
            "EndpointConfigName": "feedback-brain-config-old",
            "EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/old",
            "ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": "ml.c5.xlarge"}],
            "CreationTime": "2026-11-01T00:00:00Z"}, {"EndpointConfigName": "feedback-brain-config-old"})
        sm.add_response("update_endpoint", {"EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/feedback-brain"},
                        {"EndpointName": "feedback-brain", "EndpointConfigName": ANY, "DeploymentConfig": ANY})
        result = fbrain("deploy", "--aws", "--model-package-arn", arn)
        sm.assert_no_pending_responses()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["action"] == "updated"


# ---------------------------------------------------------------- fbrain model ... --aws
def test_model_approve_and_list_on_sagemaker(aws_account):
    sagemaker = aws_account
    _register(sagemaker, "PendingManualApproval")
    _register(sagemaker, "PendingManualApproval")
    result = fbrain("model", "approve", "2", "--aws", "--description", "better on airline tweets")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["previous_status"] == "PendingManualApproval"
    package = sagemaker.describe_model_package(ModelPackageName=json.loads(result.output)["arn"])
    assert package["ModelApprovalStatus"] == "Approved" and package["ModelPackageVersion"] == 2
    listed = json.loads(fbrain("model", "list", "--aws").output)
    assert [(p["version"], p["approval_status"]) for p in listed] == [(2, "Approved"), (1, "PendingManualApproval")]
    assert fbrain("model", "reject", "1", "--aws").exit_code == 0
    assert sagemaker.describe_model_package(ModelPackageName=listed[1]["arn"])["ModelApprovalStatus"] == "Rejected"
    result = fbrain("model", "approve", "9", "--aws")
    assert result.exit_code == 1 and "DescribeModelPackage" in result.output


# ---------------------------------------------------------------- fbrain model ... (local registry)
def _local_version(workspace: Path, quality: float, status: str) -> None:
    from pipelines.local.object_store import ObjectStore
    from pipelines.local.registry import register_model_package
    from pipelines.local.settings import RunnerSettings

    store = ObjectStore(workspace / "s3")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = f"quality={quality}\n".encode()
        info = tarfile.TarInfo("weights.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    key = f"runs/{quality}"
    (store.path(f"s3://b/{key}/model.tar.gz")).parent.mkdir(parents=True, exist_ok=True)
    store.path(f"s3://b/{key}/model.tar.gz").write_bytes(archive.getvalue())
    store.path(f"s3://b/{key}/evaluation.json").write_text(json.dumps({"gate": {"macro_f1": quality}}))
    store.path(f"s3://b/{key}/baseline/statistics.json").parent.mkdir(parents=True)
    store.path(f"s3://b/{key}/baseline/statistics.json").write_text(json.dumps({"label_maps": {}}))
    request = {"ModelPackageGroupName": GROUP, "ModelApprovalStatus": status,
               "InferenceSpecification": {"Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://b/{key}/model.tar.gz"}]},
               "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                "S3Uri": f"s3://b/{key}/evaluation.json"}}},
               "DriftCheckBaselines": {"ModelDataQuality": {"Statistics": {
                   "ContentType": "application/json", "S3Uri": f"s3://b/{key}/baseline/statistics.json"}}}}
    register_model_package(workspace, request, store, RunnerSettings(), "exec", "RegisterModel")


def test_model_approve_locally_moves_the_champion_alias(tmp_path):
    from pipelines.local.registry import resolve_champion

    workspace = tmp_path / "ws"
    workspace.mkdir()
    result = fbrain("model", "list", "--workspace", str(workspace))
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    _local_version(workspace, 0.7, "PendingManualApproval")
    _local_version(workspace, 0.8, "PendingManualApproval")
    assert resolve_champion(workspace, GROUP) is None

    result = fbrain("model", "approve", "1", "--workspace", str(workspace))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["champion"] is True
    champion = resolve_champion(workspace, GROUP)
    assert champion[0] == 1 and (champion[1] / "weights.txt").read_text() == "quality=0.7\n"
    listed = json.loads(fbrain("model", "list", "--workspace", str(workspace)).output)
    assert [(v["version"], v["approval_status"], v["champion"], v["gate_macro_f1"]) for v in listed] == [
        (2, "PendingManualApproval", False, 0.8), (1, "Approved", True, 0.7)]

    assert fbrain("model", "approve", "2", "--workspace", str(workspace)).exit_code == 0
    assert resolve_champion(workspace, GROUP)[0] == 2
    assert fbrain("model", "reject", "2", "--workspace", str(workspace)).exit_code == 0
    assert resolve_champion(workspace, GROUP) is None
    result = fbrain("model", "approve", "7", "--workspace", str(workspace))
    assert result.exit_code == 2 and "has no version 7" in result.output


def test_local_monitoring_follows_the_local_champion(tmp_path):
    """`fbrain monitor pipeline run --local` without --param: the champion's baseline and model, no AWS events."""
    from pipelines.config import load_config
    from pipelines.local_run import local_monitoring_parameters

    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = load_config()
    with pytest.raises(SystemExit, match="no approved model"):
        local_monitoring_parameters(config, workspace, {})
    result = fbrain("monitor", "pipeline", "run", "--local", "--workspace", str(workspace))
    assert result.exit_code != 0 and "no approved model" in str(result.exception or result.output)
    _local_version(workspace, 0.7, "Approved")
    _local_version(workspace, 0.8, "PendingManualApproval")
    assert local_monitoring_parameters(config, workspace, {}) == {
        "BaselineUri": "s3://b/runs/0.7/baseline/", "ModelDataUri": "s3://b/runs/0.7/model.tar.gz",
        "EmitDriftEvents": "false", "PublishMetrics": "false"}
    assert fbrain("model", "approve", "2", "--workspace", str(workspace)).exit_code == 0
    assert local_monitoring_parameters(config, workspace, {"EmitDriftEvents": "true"})["BaselineUri"] == \
        "s3://b/runs/0.8/baseline/"
