"""The AWS side of the pipeline: upsert, start, describe, and deploy-on-approval wiring.

On SageMaker the flow is the one of the AWS MLOps project templates:
CodeBuild upserts the pipeline and starts an execution (without waiting); the pipeline
registers a model package (PendingManualApproval by default); a person approves it; the
model package state change event matches an EventBridge rule on our group with
ModelApprovalStatus `Approved`; the rule invokes the deploy Lambda
(`inference.deploy.handler`, ARN in `aws.deploy_lambda_arn`), which deploys the package.
A second rule sends "our endpoint is InService" to the same Lambda, which then applies
auto scaling to the new variant.

It also creates the feature group (ensure_feature_group), deploys an approved package
(`fbrain deploy --aws`), lists and approves model packages (`fbrain model ... --aws`), upserts the
monitoring pipeline and applies its EventBridge Scheduler schedule and the retraining rules
(`fbrain monitor pipeline upsert`, `fbrain monitor rules apply`).

Every function takes an optional `session`: a `boto3.Session`, or a ready SageMaker client
(tests pass clients built inside moto's `mock_aws`); by default a session for
`config.aws.region` is created.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, TypedDict

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.config import FeedbackBrainConfig

logger = logging.getLogger(__name__)

APPROVED = "Approved"
IN_SERVICE = "IN_SERVICE"
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
DEPLOY_TARGET_ID = "deploy-lambda"
"""Id of the deploy Lambda among each rule's targets."""
DEPLOY_TARGET_RETRY_POLICY = {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 3600}
"""How EventBridge retries the deploy Lambda (the CDK's rules and `fbrain pipeline upsert` alike)."""
INVOKE_PERMISSION_SUFFIX = "-invoke"
"""Statement id of the Lambda permission = rule name + this suffix."""
PIPELINE_DESCRIPTION = "feedback-brain: feedback -> features -> multi-task model -> gate -> registry"
TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")


class PipelineAwsError(RuntimeError):
    """An AWS call for the pipeline failed; the message names the call and the cause."""


CORRECTIONS_PLACEHOLDER = "_state/prefix.json"
"""Object under the corrections prefix that keeps it from being empty (readers skip `_state/`)."""


class UpsertResult(TypedDict):
    """What `upsert_pipeline` did (a plain dict, so the CLI can print it as JSON)."""

    pipeline_arn: str
    created: bool
    """True when the pipeline did not exist and was created; False when it was updated."""
    model_package_group_arn: str
    approval_rule_arn: Optional[str]
    """None when deploy-on-approval was not wired (aws.deploy_lambda_arn empty or wire_deploy=False)."""
    feature_group: Optional[dict[str, Any]]
    """ensure_feature_group's answer (name, ARN, status, created); None when create_feature_group=False."""


@dataclass
class ExecutionDescription:
    arn: str
    status: str
    display_name: Optional[str]
    started: Optional[str]
    last_modified: Optional[str]
    failure_reason: Optional[str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    """One dict per step: name, status, started, ended, failure_reason (newest first)."""

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _boto_session(config: FeedbackBrainConfig, session) -> boto3.Session:
    if isinstance(session, boto3.Session):
        return session
    return boto3.Session(region_name=config.aws.region)


def _client(config: FeedbackBrainConfig, session, service: str):
    """A client for `service`; a client passed as `session` is used when it is that service."""
    if session is not None and not isinstance(session, boto3.Session):
        if session.meta.service_model.service_name == service:
            return session
        return boto3.Session(region_name=session.meta.region_name).client(service)
    return _boto_session(config, session).client(service)


def _call(description: str, function, **request):
    try:
        return function(**request)
    except ClientError as error:
        raise PipelineAwsError(f"{description} failed: {error}") from error


MISSING_RESOURCE_CODES = ("ResourceNotFound", "ResourceNotFoundException")
MISSING_RESOURCE_PHRASES = ("does not exist", "not found", "could not find")
"""SageMaker reports some missing resources as ValidationException with one of these phrases."""


def _is_missing(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "").lower()
    if code in MISSING_RESOURCE_CODES:
        return True
    return code == "ValidationException" and any(phrase in message for phrase in MISSING_RESOURCE_PHRASES)


def _exists(description: str, describe, **request) -> bool:
    """Whether a describe / get call finds the resource (a missing one is False; any other error is raised)."""
    try:
        describe(**request)
    except ClientError as error:
        if not _is_missing(error):
            raise PipelineAwsError(f"{description} failed: {error}") from error
        return False
    return True


def ensure_model_package_group(config: FeedbackBrainConfig, session=None) -> str:
    """The ARN of the model package group, created when missing."""
    sagemaker = _client(config, session, "sagemaker")
    group = config.aws.model_package_group
    try:
        return sagemaker.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    except ClientError as error:
        if not _is_missing(error):
            raise PipelineAwsError(f"DescribeModelPackageGroup {group} failed: {error}") from error
    response = _call(
        f"CreateModelPackageGroup {group}",
        sagemaker.create_model_package_group,
        ModelPackageGroupName=group,
        ModelPackageGroupDescription="Candidates of the feedback-brain multi-task model",
    )
    logger.info("created model package group %s", group)
    return response["ModelPackageGroupArn"]


def approval_event_pattern(config: FeedbackBrainConfig) -> dict[str, Any]:
    """EventBridge pattern: a package of our group changed state and is now Approved."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [MODEL_PACKAGE_STATE_CHANGE],
        "detail": {
            "ModelPackageGroupName": [config.aws.model_package_group],
            "ModelApprovalStatus": [APPROVED],
        },
    }


def endpoint_in_service_event_pattern(config: FeedbackBrainConfig) -> dict[str, Any]:
    """EventBridge pattern: our endpoint reached InService (after a create or an update)."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [ENDPOINT_STATE_CHANGE],
        "detail": {"EndpointName": [config.aws.endpoint_name], "EndpointStatus": [IN_SERVICE]},
    }


def _put_lambda_rule(config: FeedbackBrainConfig, session, name: str, pattern: dict, description: str) -> str:
    events = _client(config, session, "events")
    rule_arn = _call(
        f"PutRule {name}",
        events.put_rule,
        Name=name,
        EventPattern=json.dumps(pattern, sort_keys=True),
        State="ENABLED",
        Description=description,
    )["RuleArn"]
    response = _call(
        f"PutTargets {name}",
        events.put_targets,
        Rule=name,
        Targets=[_deploy_target(config, events, name)],
    )
    if response.get("FailedEntryCount"):
        raise PipelineAwsError(f"PutTargets {name} rejected targets: {response.get('FailedEntries')}")
    _allow_rule_to_invoke(config, session, name, rule_arn)
    logger.info("rule %s -> %s", rule_arn, config.aws.deploy_lambda_arn)
    return rule_arn


def _deploy_target(config: FeedbackBrainConfig, events, rule_name: str) -> dict[str, Any]:
    """The deploy Lambda target, keeping the dead-letter queue and retry policy the rule's target has already.

    PutTargets replaces a target with the same id whole: without this, an upsert after `cdk deploy` would
    drop the CDK's dead-letter queue (an infrastructure resource this command does not know about).
    """
    target: dict[str, Any] = {"Id": DEPLOY_TARGET_ID, "Arn": config.aws.deploy_lambda_arn,
                              "RetryPolicy": dict(DEPLOY_TARGET_RETRY_POLICY)}
    existing = _call(f"ListTargetsByRule {rule_name}", events.list_targets_by_rule, Rule=rule_name)["Targets"]
    for current in existing:
        if current["Id"] == DEPLOY_TARGET_ID:
            target.update({key: current[key] for key in ("RetryPolicy", "DeadLetterConfig") if key in current})
    if "DeadLetterConfig" not in target:
        logger.warning("rule %s: the deploy target has no dead-letter queue (the CDK's Ml stack adds one)", rule_name)
    return target


def wire_deploy_on_approval(config: FeedbackBrainConfig, session=None) -> str:
    """Approval rule (and endpoint-InService rule) -> deploy Lambda; returns the approval rule ARN.

    Idempotent: PutRule and PutTargets overwrite; an existing Lambda permission is kept.
    """
    if not config.aws.deploy_lambda_arn:
        raise PipelineAwsError("aws.deploy_lambda_arn is empty: there is no deploy Lambda to target")
    approval_arn = _put_lambda_rule(
        config, session, config.aws.approval_rule_name, approval_event_pattern(config),
        f"Deploy approved model packages of {config.aws.model_package_group}",
    )
    _put_lambda_rule(
        config, session, config.aws.endpoint_rule_name, endpoint_in_service_event_pattern(config),
        f"Apply auto scaling when {config.aws.endpoint_name} is InService",
    )
    return approval_arn


def _allow_rule_to_invoke(config: FeedbackBrainConfig, session, rule_name: str, rule_arn: str) -> None:
    """Resource policy on the Lambda so that EventBridge may invoke it for this rule."""
    lambda_client = _client(config, session, "lambda")
    try:
        lambda_client.add_permission(
            FunctionName=config.aws.deploy_lambda_arn,
            StatementId=f"{rule_name}{INVOKE_PERMISSION_SUFFIX}",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=rule_arn,
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceConflictException":
            raise PipelineAwsError(f"AddPermission on {config.aws.deploy_lambda_arn} failed: {error}") from error
        logger.info("deploy Lambda already allows %s", rule_arn)


def ensure_corrections_prefix(config: FeedbackBrainConfig, session=None) -> Optional[str]:
    """Put a placeholder under the default CorrectionsUri when it holds no object; returns its URI, else None.

    MergeFeatureShards reads that prefix as an S3Prefix input, and SageMaker refuses an input
    prefix with no objects, which is the case before the first correction is recorded. A failure
    here is logged, not raised: upserting the pipeline must not depend on this bucket."""
    from pipelines.parameters import default_corrections_uri

    bucket, _, prefix = default_corrections_uri(config).removeprefix("s3://").partition("/")
    key = f"{prefix}{CORRECTIONS_PLACEHOLDER}"
    try:
        s3 = _client(config, session, "s3")
        if s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0):
            return None
        s3.put_object(Bucket=bucket, Key=key, ContentType="application/json", Body=json.dumps({
            "note": "keeps this prefix non-empty for the MergeFeatureShards input; corrections never live in _state/"
        }).encode("utf-8"))
    except (ClientError, BotoCoreError) as error:
        logger.warning("could not check or seed s3://%s/%s (%s): MergeFeatureShards fails while no object lies "
                       "under it", bucket, prefix, error)
        return None
    logger.info("seeded empty corrections prefix with s3://%s/%s", bucket, key)
    return f"s3://{bucket}/{key}"


def ensure_feature_group(config: FeedbackBrainConfig, session=None, wait: bool = True) -> dict[str, Any]:
    """The feature group FeatureEngineering ingests into (processing.feature_group_name), created when missing.

    From processing.feature_store's definitions; waits until it is Created (PutRecord fails before)."""
    from processing.feature_store import FeatureGroupError, create_feature_group_request
    from processing.feature_store import ensure_feature_group as ensure_group

    request = create_feature_group_request(config.processing, config.processing.feature_group_name)
    try:
        return ensure_group(_client(config, session, "sagemaker"), request, config.processing, wait=wait)
    except FeatureGroupError as error:
        raise PipelineAwsError(str(error)) from error


def upsert_pipeline(
    config: FeedbackBrainConfig,
    session=None,
    definition: Optional[str] = None,
    wire_deploy: bool = True,
    create_feature_group: bool = True,
) -> UpsertResult:
    """Create or update the pipeline from our definition (built here unless given).

    Also makes sure the model package group exists (RegisterModel writes into it), that the
    corrections prefix is not empty (ensure_corrections_prefix), that the feature group exists
    and is Created (`create_feature_group`; FeatureEngineering's PutRecord needs it) and, when
    `wire_deploy` and a deploy Lambda is configured, wires deploy-on-approval.
    """
    if definition is None:
        from pipelines.definition import definition_json

        definition = definition_json(config)
    group_arn = ensure_model_package_group(config, session)
    ensure_corrections_prefix(config, session)
    feature_group = ensure_feature_group(config, session) if create_feature_group else None
    arn, exists = put_pipeline(config, session, config.aws.pipeline_name, definition, PIPELINE_DESCRIPTION)
    rule_arn = None
    if wire_deploy and config.aws.deploy_lambda_arn:
        rule_arn = wire_deploy_on_approval(config, session)
    return UpsertResult(
        pipeline_arn=arn, created=not exists, model_package_group_arn=group_arn, approval_rule_arn=rule_arn,
        feature_group=feature_group,
    )


def put_pipeline(config: FeedbackBrainConfig, session, name: str, definition: str, description: str
                 ) -> tuple[str, bool]:
    """CreatePipeline, or UpdatePipeline when `name` exists; (pipeline ARN, whether it existed)."""
    sagemaker = _client(config, session, "sagemaker")
    request = {"PipelineName": name, "PipelineDefinition": definition, "PipelineDescription": description,
               "RoleArn": config.aws.role_arn}
    exists = _exists(f"DescribePipeline {name}", sagemaker.describe_pipeline, PipelineName=name)
    if exists:
        arn = _call(f"UpdatePipeline {name}", sagemaker.update_pipeline, **request)["PipelineArn"]
        logger.info("updated pipeline %s", arn)
    else:
        arn = _call(f"CreatePipeline {name}", sagemaker.create_pipeline, **request)["PipelineArn"]
        logger.info("created pipeline %s", arn)
    return arn, exists


def _declared_parameters(definition: str) -> dict[str, dict]:
    return {p["Name"]: p for p in json.loads(definition).get("Parameters", [])}


def pipeline_parameters_request(definition: str, parameters: Mapping[str, Any]) -> list[dict[str, str]]:
    """PipelineParameters for StartPipelineExecution, checked against the definition.

    Unknown names and values that do not fit the parameter's type are refused here, with
    the list of valid names, instead of failing later inside SageMaker.
    """
    declared = _declared_parameters(definition)
    request = []
    for name, value in sorted(parameters.items()):
        if name not in declared:
            raise PipelineAwsError(f"unknown pipeline parameter {name!r}; the pipeline has {sorted(declared)}")
        kind = declared[name]["Type"]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        try:
            if kind == "Integer":
                int(text)
            elif kind == "Float":
                float(text)
            elif kind == "Boolean" and text.lower() not in ("true", "false"):
                raise ValueError(text)
        except ValueError:
            raise PipelineAwsError(f"parameter {name}={value!r} is not a valid {kind}") from None
        enum_values = declared[name].get("EnumValues")
        if enum_values and text not in enum_values:
            raise PipelineAwsError(f"parameter {name}={value!r} must be one of {enum_values}")
        request.append({"Name": name, "Value": text})
    from pipelines.parameters import check_parameter_values

    try:
        check_parameter_values(parameters)
    except ValueError as error:
        raise PipelineAwsError(str(error)) from None
    return request


def start_execution(
    config: FeedbackBrainConfig,
    parameters: Optional[Mapping[str, Any]] = None,
    session=None,
    display_name: Optional[str] = None,
) -> str:
    """Start an execution and return its ARN at once (the pipeline runs for hours)."""
    from pipelines.definition import definition_json

    sagemaker = _client(config, session, "sagemaker")
    request: dict[str, Any] = {
        "PipelineName": config.aws.pipeline_name,
        "PipelineParameters": pipeline_parameters_request(definition_json(config), parameters or {}),
    }
    if display_name:
        request["PipelineExecutionDisplayName"] = display_name
    arn = _call(f"StartPipelineExecution {config.aws.pipeline_name}", sagemaker.start_pipeline_execution, **request)[
        "PipelineExecutionArn"
    ]
    logger.info("started execution %s", arn)
    return arn


def _text(value) -> Optional[str]:
    return None if value is None else str(value)


def describe_execution(
    config: FeedbackBrainConfig, execution_arn: str, session=None, include_steps: bool = True
) -> ExecutionDescription:
    """Status of one execution and, when asked, of its steps."""
    sagemaker = _client(config, session, "sagemaker")
    response = _call(
        f"DescribePipelineExecution {execution_arn}",
        sagemaker.describe_pipeline_execution,
        PipelineExecutionArn=execution_arn,
    )
    description = ExecutionDescription(
        arn=response["PipelineExecutionArn"],
        status=response.get("PipelineExecutionStatus", "Unknown"),
        display_name=response.get("PipelineExecutionDisplayName"),
        started=_text(response.get("CreationTime")),
        last_modified=_text(response.get("LastModifiedTime")),
        failure_reason=response.get("FailureReason"),
    )
    if include_steps:
        paginator = sagemaker.get_paginator("list_pipeline_execution_steps")
        for page in paginator.paginate(PipelineExecutionArn=execution_arn):
            for step in page.get("PipelineExecutionSteps", []):
                description.steps.append(
                    {
                        "name": step.get("StepName"),
                        "status": step.get("StepStatus"),
                        "started": _text(step.get("StartTime")),
                        "ended": _text(step.get("EndTime")),
                        "failure_reason": step.get("FailureReason"),
                    }
                )
    return description


# ---------------------------------------------------------------- deployment and approval
def data_capture_uri(config: FeedbackBrainConfig) -> str:
    """Where the endpoint captures requests and responses: s3://<bucket>/<data_capture_prefix>."""
    return f"s3://{config.aws.bucket}/{config.aws.data_capture_prefix.strip('/')}"


def deployment_target(config: FeedbackBrainConfig):
    """The endpoint `fbrain deploy --aws` creates or updates, from the `aws` section."""
    from inference.deploy import DeploymentTarget

    return DeploymentTarget(
        endpoint_name=config.aws.endpoint_name, role_arn=config.aws.job_role_arn("model"), capture_s3_uri=data_capture_uri(config),
        instance_type=config.aws.endpoint_instance_type, kms_key_id=config.aws.kms_key_id,
    )


def deploy_endpoint(config: FeedbackBrainConfig, package_arn: Optional[str] = None, wait: bool = False,
                    session=None):
    """Deploy an Approved package (default: the group's newest) with inference.deploy; returns its DeploymentResult.

    Without `wait` the call returns once the endpoint is Creating/Updating; the endpoint-InService rule
    (wired by `pipeline upsert`) then has the deploy Lambda apply auto scaling."""
    from inference.deploy import AwsClients, DeploymentError, deploy_model_package
    from training.champion import ChampionLookupError, latest_approved_package

    clients = AwsClients(_client(config, session, "sagemaker"), _client(config, session, "application-autoscaling"),
                         _client(config, session, "cloudwatch"))
    if not package_arn:
        try:
            package = latest_approved_package(clients.sagemaker, config.aws.model_package_group)
        except ChampionLookupError as error:
            raise PipelineAwsError(str(error)) from error
        if package is None:
            raise PipelineAwsError(f"model package group {config.aws.model_package_group} has no Approved package: "
                                   "approve one (`fbrain model approve VERSION --aws`) or pass --model-package-arn")
        package_arn = package.arn
    try:
        return deploy_model_package(package_arn, deployment_target(config), config.serving, clients, wait=wait)
    except DeploymentError as error:
        raise PipelineAwsError(str(error)) from error
    except ClientError as error:
        raise PipelineAwsError(f"deploying {package_arn} failed: {error}") from error


def model_package_arn(config: FeedbackBrainConfig, version: int, session=None) -> str:
    """ARN of version `version` of our group (from the group's ARN: same region, account and name)."""
    group_arn = ensure_model_package_group_arn(config, session)
    prefix, _, group = group_arn.partition(":model-package-group/")
    return f"{prefix}:model-package/{group}/{int(version)}"


def ensure_model_package_group_arn(config: FeedbackBrainConfig, session=None) -> str:
    sagemaker = _client(config, session, "sagemaker")
    group = config.aws.model_package_group
    return _call(f"DescribeModelPackageGroup {group}", sagemaker.describe_model_package_group,
                 ModelPackageGroupName=group)["ModelPackageGroupArn"]


def list_model_packages(config: FeedbackBrainConfig, session=None) -> list[dict[str, Any]]:
    """Every package of our group, newest first: version, approval status, creation time, ARN."""
    sagemaker = _client(config, session, "sagemaker")
    packages = []
    try:
        for page in sagemaker.get_paginator("list_model_packages").paginate(
                ModelPackageGroupName=config.aws.model_package_group, SortBy="CreationTime", SortOrder="Descending"):
            for summary in page.get("ModelPackageSummaryList", []):
                packages.append({"version": summary.get("ModelPackageVersion"),
                                 "approval_status": summary.get("ModelApprovalStatus"),
                                 "created": _text(summary.get("CreationTime")), "arn": summary["ModelPackageArn"]})
    except ClientError as error:
        raise PipelineAwsError(f"ListModelPackages {config.aws.model_package_group} failed: {error}") from error
    return packages


def set_model_approval(config: FeedbackBrainConfig, version: int, status: str, description: str = "",
                       session=None) -> dict[str, Any]:
    """UpdateModelPackage(ModelApprovalStatus=status) on version `version` of our group.

    Approving fires the approval rule (deploy Lambda) that `pipeline upsert` wires."""
    sagemaker = _client(config, session, "sagemaker")
    arn = model_package_arn(config, version, session)
    current = _call(f"DescribeModelPackage {arn}", sagemaker.describe_model_package, ModelPackageName=arn)
    request: dict[str, Any] = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if description:
        request["ApprovalDescription"] = description
    _call(f"UpdateModelPackage {arn}", sagemaker.update_model_package, **request)
    logger.info("model package %s: %s -> %s", arn, current.get("ModelApprovalStatus"), status)
    return {"arn": arn, "version": int(version), "previous_status": current.get("ModelApprovalStatus"),
            "approval_status": status}


# ---------------------------------------------------------------- monitoring pipeline, schedule, retraining rules
def upsert_monitoring_pipeline(config: FeedbackBrainConfig, session=None) -> dict[str, Any]:
    """Create or update the monitoring pipeline (pipelines/monitoring_definition.py)."""
    from pipelines.monitoring_definition import PIPELINE_DESCRIPTION as MONITORING_DESCRIPTION
    from pipelines.monitoring_definition import monitoring_definition_json

    arn, existed = put_pipeline(config, session, config.monitoring.pipeline_name,
                                monitoring_definition_json(config), MONITORING_DESCRIPTION)
    return {"pipeline_arn": arn, "created": not existed}


def _pipeline_arn(config: FeedbackBrainConfig, session, name: str, how_to_create: str) -> str:
    sagemaker = _client(config, session, "sagemaker")
    try:
        return sagemaker.describe_pipeline(PipelineName=name)["PipelineArn"]
    except ClientError as error:
        if _is_missing(error):
            raise PipelineAwsError(f"pipeline {name} does not exist: run `{how_to_create}` first") from error
        raise PipelineAwsError(f"DescribePipeline {name} failed: {error}") from error


def events_role(config: FeedbackBrainConfig, session=None) -> str:
    """monitoring.events_role_arn, or the role named monitoring.events_role_name in the caller's account."""
    if config.monitoring.events_role_arn:
        return config.monitoring.events_role_arn
    from monitoring.triggers import events_role_arn

    account = _call("GetCallerIdentity", _client(config, session, "sts").get_caller_identity)["Account"]
    return events_role_arn(account, config.monitoring)


def champion_monitoring_inputs(config: FeedbackBrainConfig, session=None) -> dict[str, str]:
    """BaselineUri and ModelDataUri: from the configuration, else from the newest Approved package."""
    from pipelines.monitoring_definition import champion_monitoring_parameters, configured_champion_parameters
    from training.champion import ChampionLookupError, latest_approved_package

    configured = configured_champion_parameters(config)
    if configured:
        return configured
    try:
        package = latest_approved_package(_client(config, session, "sagemaker"), config.aws.model_package_group)
    except ChampionLookupError as error:
        raise PipelineAwsError(str(error)) from error
    if package is None:
        raise PipelineAwsError(f"model package group {config.aws.model_package_group} has no Approved package to "
                               "monitor: approve one (`fbrain model approve VERSION --aws`) or set "
                               "monitoring.baseline_uri and monitoring.model_data_uri")
    try:
        return champion_monitoring_parameters(package.description)
    except ValueError as error:
        raise PipelineAwsError(str(error)) from None


def monitoring_schedule_request(config: FeedbackBrainConfig, pipeline_arn: str, role_arn: str,
                                parameters: Mapping[str, str]) -> dict[str, Any]:
    """EventBridge Scheduler CreateSchedule/UpdateSchedule request: start the monitoring pipeline on schedule."""
    monitoring = config.monitoring
    return {
        "Name": monitoring.schedule_name,
        "GroupName": monitoring.scheduler_group_name,
        "ScheduleExpression": monitoring.schedule_expression,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Description": f"Run the text monitor ({monitoring.pipeline_name}) on {config.aws.endpoint_name}'s traffic",
        "Target": {
            "Arn": pipeline_arn,
            "RoleArn": role_arn,
            "SageMakerPipelineParameters": {"PipelineParameterList": [
                {"Name": name, "Value": str(value)} for name, value in sorted(parameters.items())]},
        },
    }


def put_monitoring_schedule(config: FeedbackBrainConfig, request: dict[str, Any], session=None) -> dict[str, Any]:
    """Create the Scheduler schedule, or update it when it exists (idempotent)."""
    scheduler = _client(config, session, "scheduler")
    name, group = request["Name"], request["GroupName"]
    exists = _exists(f"GetSchedule {name}", scheduler.get_schedule, Name=name, GroupName=group)
    call = scheduler.update_schedule if exists else scheduler.create_schedule
    arn = _call(f"{'UpdateSchedule' if exists else 'CreateSchedule'} {name}", call, **request)["ScheduleArn"]
    logger.info("%s schedule %s -> %s", "updated" if exists else "created", arn, request["Target"]["Arn"])
    return {"schedule_arn": arn, "created": not exists}


def put_model_monitor_schedule(config: FeedbackBrainConfig, parameters: Mapping[str, str], session=None
                               ) -> dict[str, Any]:
    """The Model Monitor schedule (monitoring/schedule.py), for accounts that still have Model Monitor."""
    from monitoring.schedule import create_monitoring_schedule_request, monitor_image_uri
    from pipelines.monitoring_definition import BASELINE_URI, MODEL_DATA_URI

    sagemaker = _client(config, session, "sagemaker")
    monitoring = config.monitoring
    request = create_monitoring_schedule_request(
        monitoring, endpoint_name=config.aws.endpoint_name,
        image_uri=monitor_image_uri(config.aws.ecr_registry, monitoring, config.aws.image_tag),
        role_arn=config.aws.job_role_arn("monitoring"), baseline_s3_uri=parameters[BASELINE_URI],
        output_s3_uri=f"s3://{config.aws.bucket}/{monitoring.schedule_name}/results",
        model_data_uri=parameters[MODEL_DATA_URI], kms_key_id=config.aws.kms_key_id,
    )
    name = request["MonitoringScheduleName"]
    exists = _exists(f"DescribeMonitoringSchedule {name}", sagemaker.describe_monitoring_schedule,
                     MonitoringScheduleName=name)
    if exists:
        arn = _call(f"UpdateMonitoringSchedule {name}", sagemaker.update_monitoring_schedule,
                    MonitoringScheduleName=name,
                    MonitoringScheduleConfig=request["MonitoringScheduleConfig"])["MonitoringScheduleArn"]
    else:
        arn = _call(f"CreateMonitoringSchedule {name}", sagemaker.create_monitoring_schedule,
                    **request)["MonitoringScheduleArn"]
    return {"monitoring_schedule_arn": arn, "created": not exists}


def apply_monitoring_rules(config: FeedbackBrainConfig, session=None, model_monitor_schedule: bool = False,
                           ) -> dict[str, Any]:
    """The monitoring schedule and the retraining rules, created or updated (idempotent):

    - an EventBridge Scheduler schedule starting the monitoring pipeline with the champion's baseline and model;
    - the EventBridge rules starting the training pipeline: on a schedule, on the monitor's drift event, and
      on the N-corrections event (monitoring.triggers.retraining_rules);
    - with `model_monitor_schedule`, also a Model Monitor schedule (only accounts that still have Model Monitor).
    Both pipelines must exist (`fbrain pipeline upsert`, `fbrain monitor pipeline upsert`)."""
    from monitoring.triggers import apply_retraining_rules, retraining_rules

    role = events_role(config, session)
    training_arn = _pipeline_arn(config, session, config.aws.pipeline_name, "fbrain pipeline upsert")
    monitoring_arn = _pipeline_arn(config, session, config.monitoring.pipeline_name, "fbrain monitor pipeline upsert")
    parameters = champion_monitoring_inputs(config, session)
    schedule = put_monitoring_schedule(
        config, monitoring_schedule_request(config, monitoring_arn, role, parameters), session)
    try:
        rule_arns = apply_retraining_rules(_client(config, session, "events"),
                                           retraining_rules(config.monitoring, training_arn, role))
    except (ClientError, RuntimeError) as error:
        raise PipelineAwsError(f"retraining rules: {error}") from error
    result: dict[str, Any] = {"role_arn": role, "monitoring_pipeline_arn": monitoring_arn,
                              "training_pipeline_arn": training_arn, "schedule": schedule,
                              "monitoring_parameters": parameters, "retraining_rule_arns": rule_arns}
    if model_monitor_schedule:
        result["model_monitor_schedule"] = put_model_monitor_schedule(config, parameters, session)
    return result
