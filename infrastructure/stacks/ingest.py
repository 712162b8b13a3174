"""Ingest stack: API Gateway (POST /feedback) -> submit Lambda -> Kinesis -> consumer Lambda -> tables.

- The submit Lambda runs `operations.aws_lambda.api_handler` from a zip package built from the repository
  (infrastructure.lambda_packages: its modules, pydantic, nothing else: it imports without numpy).
- The consumer runs `operations.aws_lambda.consumer_handler` from the loop image (containers/loop/Dockerfile:
  numpy, pandas, pyarrow, pyiceberg), staged as a Docker asset at synthesis and built by `cdk deploy`.
Both read their settings from FBRAIN__LOOP__* / FBRAIN__PROCESSING__* variables (loop_environment).
"""
from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagSuppressions
from constructs import Construct

from infrastructure.lambda_packages import LambdaPackage
from infrastructure.stacks.common import (check_environment_size, container_function, lambda_role, log_retention,
                                          section_environment, secured_rest_api, suppress_api_key_findings,
                                          suppress_runtime_finding)
from infrastructure.stacks.data import DataStack, lake_warehouse
from infrastructure.stacks.ml import lambda_runtime
from pipelines.config import FeedbackBrainConfig
from pipelines.infrastructure_config import InfrastructureConfig

SUBMIT_HANDLER = "operations.aws_lambda.api_handler"
CONSUME_HANDLER = "operations.aws_lambda.consumer_handler"
FIVE_MINUTES = cdk.Duration.minutes(5)


def loop_environment(config: FeedbackBrainConfig, data: DataStack, settings: InfrastructureConfig,
                     stream_name: str) -> dict[str, str]:
    """The `loop` and `processing` sections of the deployment as FBRAIN__ variables: the configuration's own
    changes, and the deployed stream, tables, Glue catalog and S3 warehouse, the endpoint as scorer and the
    pseudonym salt's secret (operations.aws_lambda.deployed_sections reads them back)."""
    loop = section_environment("loop", config.loop, {
        "kinesis_stream": stream_name,
        **{field: data.table_names[field] for field in ("feedback_metadata_table", "customer_insights_table",
                                                        "model_performance_table")},
        "catalog": "glue",
        "warehouse": lake_warehouse(data, settings),
        "namespace": config.loop.namespace,
        "scorer": "endpoint",
        "scorer_target": config.aws.endpoint_name,
    })
    processing = section_environment("processing", config.processing, {
        "pseudonym_salt_secret_id": config.aws.pseudonym_salt_secret_id})
    return {**loop, **processing}


def secret_arn_pattern(stack: cdk.Stack, secret_id: str) -> str:
    """ARN of a secret named `secret_id` (Secrets Manager appends 6 random characters), without a reference to
    the stack that creates it (the Operations stack, which depends on this one)."""
    return stack.format_arn(service="secretsmanager", resource="secret", resource_name=f"{secret_id}-??????",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)


class IngestStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: FeedbackBrainConfig, settings: InfrastructureConfig,
                 data: DataStack, submit_package: LambdaPackage, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        loop = config.loop
        self.stream = kinesis.Stream(
            self, "FeedbackStream", stream_name=loop.kinesis_stream, shard_count=settings.kinesis_shards,
            retention_period=cdk.Duration.hours(settings.kinesis_retention_hours),
            encryption=kinesis.StreamEncryption.KMS, encryption_key=data.key)
        NagSuppressions.add_resource_suppressions(self.stream, [{
            "id": "AwsSolutions-KDS3",
            "reason": "Feedback text is customer PII before masking: the stream uses the project's customer-managed key "
                      "like every other store of it, so one key policy and one CloudTrail record cover all access.",
        }])
        self.handler_environment = loop_environment(config, data, settings, loop.kinesis_stream)
        """FBRAIN__ variables of both functions."""
        metadata = data.tables["feedback_metadata_table"]

        # --- POST /feedback: the zip-packaged submit Lambda ---
        self.submit_function = self._zip_function("Submit", submit_package, settings, data)
        self.stream.grant_write(self.submit_function)
        # api_handler: a conditional PutItem decides accepted / duplicate, GetItem tells a duplicate from a conflict.
        self.submit_function.add_to_role_policy(iam.PolicyStatement(
            sid="ReceiveFeedback", actions=["dynamodb:PutItem", "dynamodb:GetItem"], resources=[metadata.table_arn]))
        data.key.grant_encrypt_decrypt(self.submit_function)

        # --- the consumer: the loop image ---
        self.consume_function = container_function(
            self, "ConsumeFunction", function_name=f"{settings.project}-consume", handler=CONSUME_HANDLER,
            settings=settings, key=data.key, environment=self.handler_environment, memory_mb=settings.loop_lambda_memory_mb,
            timeout_s=settings.consumer_timeout_s, description="Kinesis consumer (operations.aws_lambda.consumer_handler)")
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
        # consumer_handler: stage and predictions on FeedbackMetadata, items of CustomerInsights, counters of
        # ModelPerformance; the endpoint scores; the salt pseudonymises customer ids.
        self.consume_function.add_to_role_policy(iam.PolicyStatement(
            sid="WriteLoopTables", actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[data.tables[field].table_arn for field in ("feedback_metadata_table", "customer_insights_table",
                                                                  "model_performance_table")]))
        self.consume_function.add_to_role_policy(iam.PolicyStatement(
            sid="ScoreOnEndpoint", actions=["sagemaker:InvokeEndpoint"],
            resources=[self.format_arn(service="sagemaker", resource="endpoint", resource_name=config.aws.endpoint_name.lower())]))
        self.consume_function.add_to_role_policy(iam.PolicyStatement(
            sid="PseudonymSalt", actions=["secretsmanager:GetSecretValue"],
            resources=[secret_arn_pattern(self, config.aws.pseudonym_salt_secret_id)]))
        data.key.grant_encrypt_decrypt(self.consume_function)
        # ... and writes the lake: bronze, quarantine, silver and gold through the Glue catalog.
        data.grant_lake(self.consume_function, self, config.loop.namespace, settings.lake_prefix)

        # --- the API ---
        self.api, validator = secured_rest_api(self, "FeedbackApi", name=f"{settings.project}-feedback", settings=settings,
                                               key=data.key, description="feedback-brain: POST /feedback")
        # The body contract of operations.intake.parse_body: one record or {"items": [...]} (objects), or a JSON list;
        # JSON lines come as application/x-ndjson and are parsed by the handler, line by line.
        body_model = self.api.add_model("FeedbackBody", content_type="application/json", schema=apigateway.JsonSchema(
            schema=apigateway.JsonSchemaVersion.DRAFT4,
            type=[apigateway.JsonSchemaType.OBJECT, apigateway.JsonSchemaType.ARRAY]))
        feedback = self.api.root.add_resource("feedback")
        feedback.add_method("POST", apigateway.LambdaIntegration(self.submit_function), api_key_required=True,
                            request_validator=validator, request_models={"application/json": body_model})
        suppress_api_key_findings(self, "services pushing feedback")
        for function in (self.submit_function, self.consume_function):
            NagSuppressions.add_resource_suppressions(function.role, [{
                "id": "AwsSolutions-IAM5",
                "reason": "Log streams are created per container; X-Ray PutTraceSegments has no resource type; the salt's "
                          "ARN ends in the 6 characters Secrets Manager appends; the consumer writes any key under the lake "
                          "prefix and any Iceberg table of the lake's Glue database; KMS and S3 action wildcards "
                          "(ReEncrypt*, GenerateDataKey*, GetObject*) and Kinesis / ECR pulls are CDK's grant sets.",
            }], apply_to_children=True)

    def _zip_function(self, name: str, package: LambdaPackage, settings: InfrastructureConfig,
                      data: DataStack) -> lambda_.Function:
        check_environment_size(f"{settings.project}-{name.lower()}", self.handler_environment)
        log_group = logs.LogGroup(self, f"{name}FunctionLogs", retention=log_retention(settings.log_retention_days),
                                  encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN)
        function = lambda_.Function(
            self, f"{name}Function", function_name=f"{settings.project}-{name.lower()}",
            description=f"POST /feedback ({package.handler})",
            runtime=lambda_runtime(settings.lambda_runtime), handler=package.handler,
            code=lambda_.Code.from_asset(str(package.directory)), memory_size=settings.lambda_memory_mb,
            timeout=cdk.Duration.seconds(settings.api_timeout_s), tracing=lambda_.Tracing.ACTIVE,
            environment=self.handler_environment, environment_encryption=data.key, log_group=log_group,
            role=lambda_role(self, f"{name}FunctionRole", log_group, f"feedback-brain {name.lower()} Lambda"))
        suppress_runtime_finding(function)
        return function

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
            ("FeedbackApi5xx", self.api.metric_server_error(period=FIVE_MINUTES),
             settings.api_5xx_threshold - 0.5, "POST /feedback answered 5XX"),
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
