"""Security stack: GuardDuty, Macie on the raw bucket, CloudTrail data events of the lake, IAM Access Analyzer."""
from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_accessanalyzer as accessanalyzer
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_guardduty as guardduty
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_macie as macie
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr
from cdk_nag import NagSuppressions
from constructs import Construct

from pipelines.infrastructure_config import InfrastructureConfig
from infrastructure.stacks.common import log_retention
from infrastructure.stacks.data import DataStack

LAKE_BUCKETS = ("raw", "processed", "features", "models", "artifacts")
"""Buckets whose object-level (data) events CloudTrail records."""


class SecurityStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: InfrastructureConfig, data: DataStack,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if settings.enable_guardduty:
            self.detector = guardduty.CfnDetector(
                self, "GuardDuty", enable=True, finding_publishing_frequency="FIFTEEN_MINUTES",
                features=[guardduty.CfnDetector.CFNFeatureConfigurationProperty(name="S3_DATA_EVENTS", status="ENABLED")])

        self.analyzer = accessanalyzer.CfnAnalyzer(self, "AccessAnalyzer", type="ACCOUNT",
                                                   analyzer_name=f"{settings.project}-account")

        trail_bucket = s3.Bucket(
            self, "TrailBucket", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True, versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=data.access_logs, server_access_logs_prefix="cloudtrail/",
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(settings.access_log_expiry_days))],
            removal_policy=cdk.RemovalPolicy.RETAIN)
        trail_logs = logs.LogGroup(self, "TrailLogs", retention=log_retention(settings.log_retention_days),
                                   encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN)
        self.trail = cloudtrail.Trail(
            self, "Trail", trail_name=f"{settings.project}-trail", bucket=trail_bucket, encryption_key=data.key,
            send_to_cloud_watch_logs=True, cloud_watch_log_group=trail_logs, enable_file_validation=True,
            include_global_service_events=True, is_multi_region_trail=False)
        self.trail.add_s3_event_selector(
            [cloudtrail.S3EventSelector(bucket=data.buckets[kind]) for kind in LAKE_BUCKETS],
            read_write_type=cloudtrail.ReadWriteType.ALL)

        if settings.enable_macie:
            self.macie_session = macie.CfnSession(self, "Macie", status="ENABLED",
                                                  finding_publishing_frequency="ONE_HOUR")
            self.macie_job = self._macie_job(settings, data)
            self.macie_job.node.add_dependency(self.macie_session)

    def _macie_job(self, settings: InfrastructureConfig, data: DataStack) -> cr.AwsCustomResource:
        """CloudFormation has no Macie classification job resource: one SDK call at create time.

        Jobs cannot be deleted, so stack deletion cancels it (UpdateClassificationJob CANCELLED)."""
        raw = data.buckets["raw"]
        frequency = {"DAILY": {"dailySchedule": {}}, "WEEKLY": {"weeklySchedule": {"dayOfWeek": "MONDAY"}},
                     "MONTHLY": {"monthlySchedule": {"dayOfMonth": 1}}}[settings.macie_job_frequency]
        job_name = f"{settings.project}-raw-pii"
        create = cr.AwsSdkCall(
            service="Macie2", action="createClassificationJob",
            parameters={
                "clientToken": job_name, "name": job_name, "jobType": "SCHEDULED",
                "description": "Sensitive data discovery in raw feedback (unmasked text lands here)",
                "scheduleFrequency": frequency, "samplingPercentage": settings.macie_sampling_percentage,
                "s3JobDefinition": {"bucketDefinitions": [{"accountId": self.account, "buckets": [raw.bucket_name]}]},
            },
            physical_resource_id=cr.PhysicalResourceId.from_response("jobId"))
        cancel = cr.AwsSdkCall(
            service="Macie2", action="updateClassificationJob",
            parameters={"jobId": cr.PhysicalResourceIdReference(), "jobStatus": "CANCELLED"})
        job_arn = self.format_arn(service="macie2", resource="classification-job", resource_name="*")
        resource = cr.AwsCustomResource(
            self, "MacieRawJob", on_create=create, on_delete=cancel, install_latest_aws_sdk=False,
            policy=cr.AwsCustomResourcePolicy.from_statements([
                iam.PolicyStatement(actions=["macie2:CreateClassificationJob", "macie2:UpdateClassificationJob",
                                             "macie2:TagResource"], resources=[job_arn])]),
            log_group=logs.LogGroup(self, "MacieRawJobLogs", retention=log_retention(settings.log_retention_days),
                                    encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN))
        NagSuppressions.add_resource_suppressions(resource, [{
            "id": "AwsSolutions-IAM5",
            "reason": "Macie assigns the job id at creation, so the policy names classification-job/* of this account.",
        }], apply_to_children=True)
        # The provider Lambda is aws-cdk-lib's singleton; X-Ray tracing like every Lambda of the app.
        provider = self.node.find_child(f"AWS{cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace('-', '')}")
        provider.node.default_child.add_property_override("TracingConfig", {"Mode": "Active"})
        provider.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"]))
        NagSuppressions.add_resource_suppressions(provider.role, [{
            "id": "AwsSolutions-IAM5", "reason": "X-Ray PutTraceSegments / PutTelemetryRecords have no resource type.",
            "appliesTo": ["Resource::*"]}], apply_to_children=True)
        NagSuppressions.add_stack_suppressions(self, [
            {"id": "AwsSolutions-IAM4",
             "reason": "CDK's AwsCustomResource provider Lambda uses AWSLambdaBasicExecutionRole for its logs only.",
             "appliesTo": ["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]},
        ])
        return resource
