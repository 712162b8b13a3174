"""Small helpers shared by the stacks."""
from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)
"""The retention periods CloudWatch Logs accepts, in the order of CDK's RetentionDays members."""


def log_retention(days: int) -> logs.RetentionDays:
    """CDK's RetentionDays for a number of days (one CloudWatch Logs accepts)."""
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"log retention {days} days: CloudWatch Logs accepts {LOG_RETENTION_DAYS}")
    members = [member for member in logs.RetentionDays if member.name != "INFINITE"]
    return members[LOG_RETENTION_DAYS.index(days)]


def lambda_role(scope: Construct, construct_id: str, log_group: logs.ILogGroup, description: str) -> iam.Role:
    """A Lambda execution role that may write only its own log group (instead of the AWS managed
    AWSLambdaBasicExecutionRole, which allows every log group of the account)."""
    role = iam.Role(scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description)
    role.add_to_policy(iam.PolicyStatement(
        sid="OwnLogGroup", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[log_group.log_group_arn, f"{log_group.log_group_arn}:log-stream:*"]))
    return role


LAMBDA_RUNTIME_REASON = ("The functions run the project's Python (3.11, infrastructure.lambda_runtime): their packages "
                         "carry native wheels (pydantic-core) built for the interpreter that packages them, so the "
                         "runtime moves with the project's Python, not ahead of it.")


def suppress_runtime_finding(function) -> None:
    """cdk-nag L1 (not the latest runtime) on a function that runs the project's Python, with the reason."""
    from cdk_nag import NagSuppressions

    NagSuppressions.add_resource_suppressions(function, [{"id": "AwsSolutions-L1", "reason": LAMBDA_RUNTIME_REASON}])


# ---------------------------------------------------------------------------- handler settings
LAMBDA_ENVIRONMENT_LIMIT_BYTES = 4096
"""Lambda refuses a function whose environment variables (names and values) exceed 4 KB."""


def section_environment(section_name: str, section, deployed: dict[str, str] | None = None) -> dict[str, str]:
    """`FBRAIN__SECTION__FIELD` variables that give a Lambda handler the configuration the app was synthesised
    with: each field this configuration changes from the section's default, plus the values only the deployment
    knows (`deployed`: stream and table names, the warehouse, ...). The handler reads them with
    processing.settings.load_sections, as every job does."""
    import dataclasses

    from processing.settings import ENV_PREFIX, environment_variables, value_to_string

    deployed = dict(deployed or {})
    names = {item.name for item in dataclasses.fields(section)}
    unknown = sorted(set(deployed) - names)
    if unknown:
        raise ValueError(f"{section_name} has no field(s) {unknown}")
    default = type(section)()
    changed = [name for name in sorted(names - set(deployed)) if getattr(section, name) != getattr(default, name)]
    environment = environment_variables(section_name, section, changed)
    environment.update({f"{ENV_PREFIX}{section_name.upper()}__{name.upper()}": value_to_string(value)
                        for name, value in deployed.items()})
    return environment


def check_environment_size(function_name: str, environment: dict[str, str]) -> None:
    """Refuse at synthesis what Lambda would refuse at deployment (tokens count as their unresolved text)."""
    size = sum(len(name) + len(str(value)) for name, value in environment.items())
    if size > LAMBDA_ENVIRONMENT_LIMIT_BYTES:
        raise ValueError(f"{function_name}: {size} bytes of environment variables, Lambda allows "
                         f"{LAMBDA_ENVIRONMENT_LIMIT_BYTES}: keep that configuration's changes to what the function uses")


# ---------------------------------------------------------------------------- the loop image
REPO_ROOT = Path(__file__).resolve().parents[2]
LOOP_DOCKERFILE = "containers/loop/Dockerfile"
"""The container-image Lambdas' image (consumer, alert detection, operations API), built from the repository root."""


def loop_image_ignore_patterns() -> list[str]:
    """The build context of the loop image: its Dockerfile.dockerignore (Docker's syntax), so the staged asset
    holds what the Dockerfile copies and nothing else (no .venv, .git, cdk.out or workspace)."""
    text = (REPO_ROOT / f"{LOOP_DOCKERFILE}.dockerignore").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def loop_image_code(handler: str):
    """Code of a container-image Lambda running `handler` (module.function) from the loop image."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    return lambda_.DockerImageCode.from_image_asset(
        str(REPO_ROOT), file=LOOP_DOCKERFILE, cmd=[handler], platform=ecr_assets_platform(),
        exclude=loop_image_ignore_patterns(), ignore_mode=cdk.IgnoreMode.DOCKER)


def ecr_assets_platform():
    from aws_cdk import aws_ecr_assets as ecr_assets

    return ecr_assets.Platform.LINUX_AMD64  # the functions' architecture (x86_64), whatever machine builds it


# ---------------------------------------------------------------------------- REST APIs
def secured_rest_api(scope: Construct, construct_id: str, *, name: str, settings, key, description: str):
    """A REST API as every API of the app is deployed: stage `v1` traced with X-Ray and throttled, JSON access
    logs in a log group encrypted with the data key, API keys bound to a usage plan with a daily quota, and the
    AWS managed common rule set of WAF in front. Returns (api, request validator)."""
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigateway
    from aws_cdk import aws_wafv2 as wafv2

    access_logs = logs.LogGroup(scope, f"{construct_id}AccessLogs", retention=log_retention(settings.log_retention_days),
                                encryption_key=key, removal_policy=cdk.RemovalPolicy.RETAIN)
    api = apigateway.RestApi(
        scope, construct_id, rest_api_name=name, description=description,
        cloud_watch_role=True,
        deploy_options=apigateway.StageOptions(
            stage_name="v1", tracing_enabled=True, throttling_rate_limit=settings.api_rate_limit_rps,
            throttling_burst_limit=settings.api_burst_limit, logging_level=apigateway.MethodLoggingLevel.ERROR,
            access_log_destination=apigateway.LogGroupLogDestination(access_logs),
            access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                caller=False, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True,
                response_length=True, status=True, user=False)))
    validator = api.add_request_validator(f"{construct_id}Validator", validate_request_body=True,
                                          validate_request_parameters=True)
    plan = api.add_usage_plan(f"{construct_id}UsagePlan", name=f"{name}-clients",
                              throttle=apigateway.ThrottleSettings(rate_limit=settings.api_rate_limit_rps,
                                                                   burst_limit=settings.api_burst_limit),
                              quota=apigateway.QuotaSettings(limit=settings.api_quota_per_day, period=apigateway.Period.DAY))
    plan.add_api_stage(stage=api.deployment_stage)
    plan.add_api_key(api.add_api_key(f"{construct_id}ClientKey", api_key_name=f"{name}-client"))
    acl = wafv2.CfnWebACL(
        scope, f"{construct_id}Firewall", scope="REGIONAL", default_action={"allow": {}},
        visibility_config={"cloudWatchMetricsEnabled": True, "metricName": f"{name}-waf", "sampledRequestsEnabled": True},
        rules=[{"name": "aws-common", "priority": 0, "overrideAction": {"none": {}},
                "statement": {"managedRuleGroupStatement": {"vendorName": "AWS", "name": "AWSManagedRulesCommonRuleSet"}},
                "visibilityConfig": {"cloudWatchMetricsEnabled": True, "metricName": f"{name}-aws-common",
                                     "sampledRequestsEnabled": True}}])
    wafv2.CfnWebACLAssociation(scope, f"{construct_id}FirewallAssociation", web_acl_arn=acl.attr_arn,
                               resource_arn=api.deployment_stage.stage_arn)
    return api, validator


def suppress_api_key_findings(stack, who: str) -> None:
    """The API findings that API keys answer, with the reasons (one call per stack with a secured_rest_api)."""
    from cdk_nag import NagSuppressions

    NagSuppressions.add_stack_suppressions(stack, [
        {"id": "AwsSolutions-COG4",
         "reason": f"Clients are {who}, authenticated with API keys bound to a throttled usage plan "
                   "(no end users, so no Cognito user pool)."},
        {"id": "AwsSolutions-APIG4", "reason": "Every method requires an API key bound to a throttled usage plan."},
        {"id": "AwsSolutions-IAM4",
         "reason": "API Gateway's account-level CloudWatch role uses AmazonAPIGatewayPushToCloudWatchLogs.",
         "appliesTo": ["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"]},
    ])


def container_function(scope: Construct, construct_id: str, *, function_name: str, handler: str, settings, key,
                       environment: dict[str, str], memory_mb: int, timeout_s: int, description: str):
    """A container-image Lambda running `handler` from the loop image: traced, its own encrypted log group,
    a role that may write only that log group, environment encrypted with the data key."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    check_environment_size(function_name, environment)
    log_group = logs.LogGroup(scope, f"{construct_id}Logs", retention=log_retention(settings.log_retention_days),
                              encryption_key=key, removal_policy=cdk.RemovalPolicy.RETAIN)
    return lambda_.DockerImageFunction(
        scope, construct_id, function_name=function_name, description=description, code=loop_image_code(handler),
        memory_size=memory_mb, timeout=cdk.Duration.seconds(timeout_s), tracing=lambda_.Tracing.ACTIVE,
        environment=environment, environment_encryption=key, log_group=log_group,
        role=lambda_role(scope, f"{construct_id}Role", log_group, f"feedback-brain {description}"))
