"""Ingest stack: API Gateway (POST /feedback) -> submit Lambda -> Kinesis -> consumer Lambda -> lake and tables.

Built only when the live loop's handlers (`operations.lambda_handlers`) exist in the checkout
(infrastructure.app.ingest_handlers_available); the handlers are packaged from the repository
like the deploy Lambda.
"""
from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_wafv2 as wafv2
from cdk_nag import NagSuppressions
from constructs import Construct

from pipelines.infrastructure_config import InfrastructureConfig
from infrastructure.lambda_packages import LambdaPackage
from infrastructure.stacks.common import lambda_role, log_retention
from infrastructure.stacks.data import TABLE_KEYS, DataStack, lake_database
from infrastructure.stacks.ml import lambda_runtime
from pipelines.config import FeedbackBrainConfig

SUBMIT_HANDLER = "operations.lambda_handlers.submit_handler"
CONSUME_HANDLER = "operations.lambda_handlers.consume_handler"
FIVE_MINUTES = cdk.Duration.minutes(5)


class IngestStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: FeedbackBrainConfig, settings: InfrastructureConfig,
                 data: DataStack, submit_package: LambdaPackage, consume_package: LambdaPackage, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.stream = kinesis.Stream(
            self, "FeedbackStream", stream_name=f"{settings.project}-feedback", shard_count=settings.kinesis_shards,
            retention_period=cdk.Duration.hours(settings.kinesis_retention_hours),
            encryption=kinesis.StreamEncryption.KMS, encryption_key=data.key)
        NagSuppressions.add_resource_suppressions(self.stream, [{
            "id": "AwsSolutions-KDS3",
            "reason": "Feedback text is customer PII before masking: the stream uses the project's customer-managed key "
                      "like every other store of it, so one key policy and one CloudTrail record cover all access.",
        }])
        environment = {
            "FBRAIN_FEEDBACK_STREAM": self.stream.stream_name,
            "FBRAIN_LAKE_WAREHOUSE": f"s3://{data.buckets['processed'].bucket_name}/{settings.lake_prefix}",
            "FBRAIN_RAW_BUCKET": data.buckets["raw"].bucket_name,
            "FBRAIN_GLUE_DATABASE": lake_database(config, settings),
            **{f"FBRAIN_{field.upper()}": getattr(settings, field) for field in TABLE_KEYS},
        }
        self.submit_function = self._function("Submit", submit_package, settings, data, environment)
        self.consume_function = self._function("Consume", consume_package, settings, data, environment)
        self.stream.grant_write(self.submit_function)

        self.dead_letters = sqs.Queue(self, "ConsumerDeadLetters", encryption=sqs.QueueEncryption.KMS,
                                      encryption_master_key=data.key, enforce_ssl=True,
                                      retention_period=cdk.Duration.days(14))
        NagSuppressions.add_resource_suppressions(self.dead_letters, [{
            "id": "AwsSolutions-SQS3", "reason": "This queue is itself the consumer's dead-letter queue."}])
        self.consume_function.add_event_source(event_sources.KinesisEventSource(
            self.stream, starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=settings.consumer_batch_size,
            max_batching_window=cdk.Duration.seconds(settings.consumer_max_batching_window_s),
            bisect_batch_on_error=True, report_batch_item_failures=True,
            retry_attempts=settings.consumer_max_retry_attempts,
            on_failure=event_sources.SqsDlq(self.dead_letters)))
        for kind in ("raw", "processed"):
            data.buckets[kind].grant_read_write(self.consume_function)
        for table in data.tables.values():
            table.grant_read_write_data(self.consume_function)

        access_logs = logs.LogGroup(self, "ApiAccessLogs", retention=log_retention(settings.log_retention_days),
                                    encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN)
        self.api = apigateway.RestApi(
            self, "FeedbackApi", rest_api_name=f"{settings.project}-feedback",
            cloud_watch_role=True,
            deploy_options=apigateway.StageOptions(
                stage_name="v1", tracing_enabled=True, throttling_rate_limit=settings.api_rate_limit_rps,
                throttling_burst_limit=settings.api_burst_limit, logging_level=apigateway.MethodLoggingLevel.ERROR,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True,
                    response_length=True, status=True, user=False)))
        validator = self.api.add_request_validator("BodyValidator", validate_request_body=True,
                                                   validate_request_parameters=True)
        body_model = self.api.add_model("FeedbackBody", content_type="application/json", schema=apigateway.JsonSchema(
            schema=apigateway.JsonSchemaVersion.DRAFT4, type=apigateway.JsonSchemaType.OBJECT))
        feedback = self.api.root.add_resource("feedback")
        feedback.add_method("POST", apigateway.LambdaIntegration(self.submit_function), api_key_required=True,
                            request_validator=validator, request_models={"application/json": body_model})
        plan = self.api.add_usage_plan("UsagePlan", name=f"{settings.project}-clients",
                                       throttle=apigateway.ThrottleSettings(rate_limit=settings.api_rate_limit_rps,
                                                                            burst_limit=settings.api_burst_limit),
                                       quota=apigateway.QuotaSettings(limit=settings.api_quota_per_day,
                                                                      period=apigateway.Period.DAY))
        plan.add_api_stage(stage=self.api.deployment_stage)
        plan.add_api_key(self.api.add_api_key("ClientKey", api_key_name=f"{settings.project}-client"))

        acl = wafv2.CfnWebACL(
            self, "ApiFirewall", scope="REGIONAL", default_action={"allow": {}},
            visibility_config={"cloudWatchMetricsEnabled": True, "metricName": f"{settings.project}-api-waf",
                               "sampledRequestsEnabled": True},
            rules=[{"name": "aws-common", "priority": 0, "overrideAction": {"none": {}},
                    "statement": {"managedRuleGroupStatement": {"vendorName": "AWS", "name": "AWSManagedRulesCommonRuleSet"}},
                    "visibilityConfig": {"cloudWatchMetricsEnabled": True, "metricName": "aws-common",
                                         "sampledRequestsEnabled": True}}])
        wafv2.CfnWebACLAssociation(self, "ApiFirewallAssociation", web_acl_arn=acl.attr_arn,
                                   resource_arn=self.api.deployment_stage.stage_arn)
        NagSuppressions.add_stack_suppressions(self, [
            {"id": "AwsSolutions-COG4",
             "reason": "Clients are services pushing feedback, authenticated with API keys and a usage plan "
                       "(no end users, so no Cognito user pool)."},
            {"id": "AwsSolutions-APIG4",
             "reason": "POST /feedback requires an API key bound to a throttled usage plan."},
            {"id": "AwsSolutions-IAM4",
             "reason": "API Gateway's account-level CloudWatch role uses AmazonAPIGatewayPushToCloudWatchLogs.",
             "appliesTo": ["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"]},
        ])
        for function in (self.submit_function, self.consume_function):
            NagSuppressions.add_resource_suppressions(function.role, [{
                "id": "AwsSolutions-IAM5",
                "reason": "Log streams are created per container; X-Ray has no resource type; the consumer writes any "
                          "key of the lake buckets; S3/KMS/DynamoDB action wildcards are CDK's grant sets.",
            }], apply_to_children=True)

    def _function(self, name: str, package: LambdaPackage, settings: InfrastructureConfig, data: DataStack,
                  environment: dict[str, str]) -> lambda_.Function:
        log_group = logs.LogGroup(self, f"{name}FunctionLogs", retention=log_retention(settings.log_retention_days),
                                  encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN)
        return lambda_.Function(
            self, f"{name}Function", function_name=f"{settings.project}-{name.lower()}",
            runtime=lambda_runtime(settings.lambda_runtime), handler=package.handler,
            code=lambda_.Code.from_asset(str(package.directory)), memory_size=settings.lambda_memory_mb,
            timeout=cdk.Duration.seconds(60), tracing=lambda_.Tracing.ACTIVE, environment=environment,
            environment_encryption=data.key, log_group=log_group,
            role=lambda_role(self, f"{name}FunctionRole", log_group, f"feedback-brain {name.lower()} Lambda"))

    def alarm_specs(self, settings: InfrastructureConfig) -> list[tuple]:
        return [
            ("ConsumerDeadLetters", self.dead_letters.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES),
             settings.dlq_depth_threshold - 0.5, "feedback records the consumer gave up on"),
            ("KinesisIteratorAge", self.stream.metric_get_records_iterator_age_milliseconds(
                period=FIVE_MINUTES, statistic="Maximum"), settings.iterator_age_threshold_ms, "consumer lag"),
            ("SubmitFunctionErrors", self.submit_function.metric_errors(period=FIVE_MINUTES),
             settings.lambda_error_threshold - 0.5, "POST /feedback Lambda errors"),
            ("ConsumeFunctionErrors", self.consume_function.metric_errors(period=FIVE_MINUTES),
             settings.lambda_error_threshold - 0.5, "consumer Lambda errors"),
        ]

    def dashboard_widgets(self) -> list[cloudwatch.IWidget]:
        return [
            cloudwatch.GraphWidget(title="Funnel: API requests, stream records, consumer invocations", left=[
                self.api.metric_count(period=FIVE_MINUTES), self.stream.metric_incoming_records(period=FIVE_MINUTES),
                self.consume_function.metric_invocations(period=FIVE_MINUTES)], width=12),
            cloudwatch.GraphWidget(title="Lag: iterator age (ms), API latency (ms)", left=[
                self.stream.metric_get_records_iterator_age_milliseconds(period=FIVE_MINUTES, statistic="Maximum")],
                right=[self.api.metric_latency(period=FIVE_MINUTES)], width=12),
        ]
