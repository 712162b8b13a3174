"""Upsert / start / describe and deploy-on-approval wiring, against moto (in-process) and Stubber."""
from __future__ import annotations

import copy
import io
import json
import zipfile
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.aws import (
    PipelineAwsError,
    describe_execution,
    pipeline_parameters_request,
    start_execution,
    upsert_pipeline,
    wire_deploy_on_approval,
)
from pipelines.config import FeedbackBrainConfig, load_config
from pipelines.definition import definition_json

REGION = "us-east-1"


def _deploy_function(session: boto3.Session) -> str:
    """A Lambda function in moto to stand as the deploy target (never invoked here)."""
    role = session.client("iam").create_role(
        RoleName="deploy-lambda",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return session.client("lambda").create_function(
        FunctionName="feedback-brain-deploy",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": archive.getvalue()},
    )["FunctionArn"]


_names = iter(range(1_000_000))


@pytest.fixture(scope="module")
def moto_account():
    """One in-process moto account for the module (starting one per test costs seconds here)."""
    from moto_support import missing_feature_groups_are_not_found

    with mock_aws(), missing_feature_groups_are_not_found():
        session = boto3.Session(region_name=REGION)
        yield session, _deploy_function(session)


@pytest.fixture
def aws(moto_account):
    """A configuration whose AWS names are unique to the test, so tests cannot see each other."""
    session, function_arn = moto_account
    suffix = next(_names)
    config = load_config(overrides=[
        f"aws.pipeline_name=feedback-brain-{suffix}",
        f"aws.model_package_group=feedback-brain-models-{suffix}",
        f"aws.approval_rule_name=feedback-brain-approved-{suffix}",
        f"aws.endpoint_rule_name=feedback-brain-in-service-{suffix}",
        f"aws.endpoint_name=feedback-brain-{suffix}",
    ])
    config.aws.deploy_lambda_arn = function_arn
    return config, session


def test_upsert_creates_then_updates(aws):
    config, session = aws
    first = upsert_pipeline(config, session=session)
    assert first["created"] is True
    assert first["feature_group"]["status"] == "Created"  # FeatureEngineering's PutRecord target exists
    sagemaker = session.client("sagemaker")
    described = sagemaker.describe_pipeline(PipelineName=config.aws.pipeline_name)
    assert described["PipelineArn"] == first["pipeline_arn"]
    assert json.loads(described["PipelineDefinition"]) == json.loads(definition_json(config))
    assert described["RoleArn"] == config.aws.role_arn
    group = sagemaker.describe_model_package_group(ModelPackageGroupName=config.aws.model_package_group)
    assert group["ModelPackageGroupArn"] == first["model_package_group_arn"]

    changed = copy.deepcopy(config)
    changed.aws.image_tag = "0123abc"
    second = upsert_pipeline(changed, session=session)
    assert second["created"] is False and second["pipeline_arn"] == first["pipeline_arn"]
    updated = sagemaker.describe_pipeline(PipelineName=config.aws.pipeline_name)["PipelineDefinition"]
    assert "feedback-brain-training:0123abc" in updated
    assert json.loads(json.dumps(second)) == second  # the CLI prints it as JSON


def test_upsert_accepts_a_sagemaker_client(aws):
    config, session = aws
    result = upsert_pipeline(config, session=session.client("sagemaker"), wire_deploy=False)
    assert result["created"] and result["approval_rule_arn"] is None


def test_approval_rule_targets_the_deploy_lambda(aws):
    config, session = aws
    result = upsert_pipeline(config, session=session)
    events = session.client("events")
    rule = events.describe_rule(Name=config.aws.approval_rule_name)
    assert rule["Arn"] == result["approval_rule_arn"]
    assert rule["State"] == "ENABLED"
    pattern = json.loads(rule["EventPattern"])
    assert pattern == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": [config.aws.model_package_group], "ModelApprovalStatus": ["Approved"]},
    }
    targets = events.list_targets_by_rule(Rule=config.aws.approval_rule_name)["Targets"]
    assert [(t["Id"], t["Arn"]) for t in targets] == [("deploy-lambda", config.aws.deploy_lambda_arn)]
    in_service = events.describe_rule(Name=config.aws.endpoint_rule_name)
    assert json.loads(in_service["EventPattern"]) == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Endpoint State Change"],
        "detail": {"EndpointName": [config.aws.endpoint_name], "EndpointStatus": ["IN_SERVICE"]},
    }
    in_service_targets = events.list_targets_by_rule(Rule=config.aws.endpoint_rule_name)["Targets"]
    assert [t["Arn"] for t in in_service_targets] == [config.aws.deploy_lambda_arn]
    policy = json.loads(session.client("lambda").get_policy(FunctionName="feedback-brain-deploy")["Policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    for rule_name, rule_arn in ((config.aws.approval_rule_name, rule["Arn"]),
                                (config.aws.endpoint_rule_name, in_service["Arn"])):
        statement = statements[f"{rule_name}-invoke"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == rule_arn
    # Wiring twice is harmless (the permission already exists).
    assert wire_deploy_on_approval(config, session=session) == result["approval_rule_arn"]


def test_upsert_keeps_the_dead_letter_queue_the_cdk_gave_the_deploy_target(aws):
    """`cdk deploy` creates the rules with a dead-letter queue; PutTargets replaces a target whole, so an upsert
    afterwards must carry the queue over, or failed deployments would be dropped silently."""
    from pipelines.aws import DEPLOY_TARGET_ID, DEPLOY_TARGET_RETRY_POLICY

    config, session = aws
    events = session.client("events")
    queue_arn = session.client("sqs").get_queue_attributes(
        QueueUrl=session.client("sqs").create_queue(QueueName=f"{config.aws.approval_rule_name}-dlq")["QueueUrl"],
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=config.aws.approval_rule_name, EventPattern=json.dumps({"source": ["aws.sagemaker"]}))
    events.put_targets(Rule=config.aws.approval_rule_name, Targets=[{
        "Id": DEPLOY_TARGET_ID, "Arn": config.aws.deploy_lambda_arn, "DeadLetterConfig": {"Arn": queue_arn},
        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 600}}])

    upsert_pipeline(config, session=session)
    (target,) = events.list_targets_by_rule(Rule=config.aws.approval_rule_name)["Targets"]
    assert target["Arn"] == config.aws.deploy_lambda_arn
    assert target["DeadLetterConfig"] == {"Arn": queue_arn}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 600}
    # A rule the CDK never made gets the shared retry policy (and no queue to keep).
    (fresh,) = events.list_targets_by_rule(Rule=config.aws.endpoint_rule_name)["Targets"]
    assert fresh["RetryPolicy"] == DEPLOY_TARGET_RETRY_POLICY and "DeadLetterConfig" not in fresh


def test_stored_patterns_match_our_events_only(aws):
    """The rule as stored in moto's EventBridge, run through moto's own event matcher
    (delivery to a target needs jsonpath_ng, which this environment does not install)."""
    from moto.events.models import EventPattern

    config, session = aws
    upsert_pipeline(config, session=session)
    stored = session.client("events").describe_rule(Name=config.aws.approval_rule_name)["EventPattern"]
    pattern = EventPattern.load(stored)

    def state_change(status, group=config.aws.model_package_group, source="aws.sagemaker"):
        return {"version": "0", "id": "1", "source": source, "account": "123456789012",
                "time": "2026-11-23T10:00:00Z", "region": REGION, "resources": [],
                "detail-type": "SageMaker Model Package State Change",
                "detail": {"ModelPackageGroupName": group, "ModelApprovalStatus": status,
                           "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/x/1"}}

    assert pattern.matches_event(state_change("Approved"))
    assert not pattern.matches_event(state_change("Rejected"))
    assert not pattern.matches_event(state_change("PendingManualApproval"))
    assert not pattern.matches_event(state_change("Approved", group="someone-else"))
    assert not pattern.matches_event(state_change("Approved", source="aws.custom"))

    in_service = EventPattern.load(
        session.client("events").describe_rule(Name=config.aws.endpoint_rule_name)["EventPattern"])

    def endpoint_change(status, name=config.aws.endpoint_name):
        return {"version": "0", "id": "2", "source": "aws.sagemaker", "account": "123456789012",
                "time": "2026-11-23T10:00:00Z", "region": REGION, "resources": [],
                "detail-type": "SageMaker Endpoint State Change",
                "detail": {"EndpointName": name, "EndpointStatus": status}}

    assert in_service.matches_event(endpoint_change("IN_SERVICE"))
    assert not in_service.matches_event(endpoint_change("UPDATING"))
    assert not in_service.matches_event(endpoint_change("IN_SERVICE", name="another-endpoint"))


def test_start_and_describe_execution(aws):
    config, session = aws
    upsert_pipeline(config, session=session, wire_deploy=False)
    arn = start_execution(config, {"Epochs": 1, "ModelApprovalStatus": "Approved"}, session=session)
    assert arn.startswith("arn:aws:sagemaker:") and config.aws.pipeline_name in arn
    executions = session.client("sagemaker").list_pipeline_executions(PipelineName=config.aws.pipeline_name)
    assert [e["PipelineExecutionArn"] for e in executions["PipelineExecutionSummaries"]] == [arn]
    described = describe_execution(config, arn, session=session, include_steps=False)
    assert described.arn == arn
    assert described.status in ("Executing", "Succeeded")


def test_start_refuses_parameters_the_pipeline_does_not_have(aws):
    config, session = aws
    upsert_pipeline(config, session=session, wire_deploy=False)
    with pytest.raises(PipelineAwsError, match="unknown pipeline parameter 'Epoch'.*'Epochs'"):
        start_execution(config, {"Epoch": 1}, session=session)
    with pytest.raises(PipelineAwsError, match="not a valid Integer"):
        start_execution(config, {"Epochs": "many"}, session=session)
    with pytest.raises(PipelineAwsError, match="must be one of"):
        start_execution(config, {"ModelApprovalStatus": "Sure"}, session=session)


def test_start_without_a_pipeline_reports_the_call(aws):
    config, session = aws
    with pytest.raises(PipelineAwsError, match=f"StartPipelineExecution {config.aws.pipeline_name} failed"):
        start_execution(config, {}, session=session)


def test_parameters_request_is_sorted_strings():
    definition = definition_json(FeedbackBrainConfig())
    assert pipeline_parameters_request(definition, {"LearningRate": 1e-4, "Epochs": 2}) == [
        {"Name": "Epochs", "Value": "2"},
        {"Name": "LearningRate", "Value": "0.0001"},
    ]


def test_describe_execution_lists_steps_with_stubber():
    """moto has no ListPipelineExecutionSteps; the request/response shapes are botocore's."""
    config = FeedbackBrainConfig()
    client = boto3.Session(region_name=REGION).client("sagemaker")
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/feedback-brain/execution/abc123"
    started = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    with Stubber(client) as stub:
        stub.add_response(
            "describe_pipeline_execution",
            {"PipelineExecutionArn": arn, "PipelineExecutionStatus": "Failed",
             "FailureReason": "Step ModelGateFailed failed", "CreationTime": started},
            {"PipelineExecutionArn": arn},
        )
        stub.add_response(
            "list_pipeline_execution_steps",
            {"PipelineExecutionSteps": [
                {"StepName": "ModelGateFailed", "StepStatus": "Failed", "StartTime": started,
                 "FailureReason": "Model gate failed: macro_f1 0.41 is 0.19 below 0.6"},
                {"StepName": "FeatureEngineering", "StepStatus": "Succeeded", "StartTime": started, "EndTime": started},
            ]},
            {"PipelineExecutionArn": arn},
        )
        described = describe_execution(config, arn, session=client)
        stub.assert_no_pending_responses()
    assert described.status == "Failed" and described.finished
    assert [(s["name"], s["status"]) for s in described.steps] == [
        ("ModelGateFailed", "Failed"), ("FeatureEngineering", "Succeeded")]
    assert "0.19 below" in described.steps[0]["failure_reason"]


def test_wiring_without_a_lambda_is_refused():
    config = FeedbackBrainConfig()
    config.aws.deploy_lambda_arn = ""
    with pytest.raises(PipelineAwsError, match="deploy_lambda_arn is empty"):
        wire_deploy_on_approval(config)


def test_upsert_keeps_the_corrections_prefix_non_empty(aws):
    """MergeFeatureShards reads CorrectionsUri as an S3Prefix input, which SageMaker refuses while it holds no
    object: upsert seeds a placeholder under _state/ (which no corrections reader takes for a correction)."""
    from monitoring.corrections import S3CorrectionStore
    from pipelines.aws import ensure_corrections_prefix

    config, session = aws
    s3 = session.client("s3")
    s3.create_bucket(Bucket=config.aws.bucket)
    upsert_pipeline(config, session=session, wire_deploy=False)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=config.aws.bucket, Prefix="corrections/")["Contents"]]
    assert keys == ["corrections/_state/prefix.json"]
    assert list(S3CorrectionStore(s3, config.aws.bucket, "corrections").iter_corrections()) == []
    assert ensure_corrections_prefix(config, session) is None, "a prefix with objects is left alone"
