"""Small helpers shared by the stacks."""
from __future__ import annotations

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
