"""Operations stack: alert detection on a schedule, the operations API, notification secrets, the CloudWatch
dashboard of the loop, and alarms to an SNS topic.

- Detection: an EventBridge Scheduler schedule (every `alerting.detect_every_s`) invokes a container-image Lambda
  running `operations.alerting_aws_lambda.detect_handler` from the loop image.
- The operations API (REST, API keys): GET /insights, GET /alerts, GET /alerts/{id}, POST /alerts/{id}/{action},
  GET /review, POST /review/{feedback_id}, GET /notifications -> `operations.alerting_aws_lambda.operations_api_handler`
  (proxy integration).
Both read FBRAIN__LOOP__* / FBRAIN__ALERTING__* variables and the notification channels' FBRAIN_*_SECRET_ID variables.
"""
from __future__ import annotations

import math

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagSuppressions
from constructs import Construct

from infrastructure.stacks.common import container_function, section_environment, secured_rest_api, suppress_api_key_findings
from infrastructure.stacks.data import DataStack
from infrastructure.stacks.ingest import IngestStack, loop_environment
from infrastructure.stacks.ml import MlStack
from pipelines.config import FeedbackBrainConfig
from pipelines.infrastructure_config import InfrastructureConfig

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
PIPELINE_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"
"""Namespace of SageMaker Pipelines execution metrics (its spelling)."""
EMBEDDING_DRIFT_METRIC = "embedding_drift_roc_auc"
VIOLATIONS_METRIC = "constraint_violations_count"
"""Metric names of monitoring.metrics.window_metrics (dimensions Endpoint, MonitoringSchedule)."""
FIVE_MINUTES = cdk.Duration.minutes(5)
DETECT_HANDLER = "operations.alerting_aws_lambda.detect_handler"
OPERATIONS_API_HANDLER = "operations.alerting_aws_lambda.operations_api_handler"
MAINTAIN_HANDLER = "operations.aws_lambda.maintain_handler"
OPERATIONS_ROUTES = (
    ("GET", "insights"), ("GET", "alerts"), ("GET", "alerts/{id}"), ("POST", "alerts/{id}/{action}"),
    ("GET", "review"), ("POST", "review/{feedback_id}"), ("GET", "notifications"),
)
"""(method, path) of each route of the operations API, all proxied to OPERATIONS_API_HANDLER."""
ALERTING_DEPLOYED_TABLES = ("incidents_table", "review_queue_table")


def detection_rate(detect_every_s: float) -> str | None:
    """EventBridge Scheduler rate expression of `alerting.detect_every_s` (None: 0 turns the cadence off)."""
    if detect_every_s == 0:
        return None
    minutes = detect_every_s / 60
    if detect_every_s < 60 or not math.isclose(minutes, round(minutes)):
        raise ValueError(f"alerting.detect_every_s={detect_every_s}: the deployed schedule runs in whole minutes "
                         "(EventBridge Scheduler's finest rate is 1 minute): use a multiple of 60, or 0 for none")
    minutes = round(minutes)
    return f"rate({minutes} minute{'s' if minutes > 1 else ''})"


def notification_secret_variables(channels: list[str]) -> dict[str, str]:
    """Environment variable (operations.alerting.channels.SETTINGS) -> the secret name suffix holding its value,
    for each configured channel: the channel reads `<VARIABLE>_SECRET_ID` from its environment."""
    from operations.alerting.channels import SETTINGS

    unknown = sorted(set(channels) - set(SETTINGS))
    if unknown:
        raise ValueError(f"infrastructure.notification_secrets names channels {unknown}; known: {sorted(SETTINGS)}")
    return {variable: variable.removeprefix("FBRAIN_").lower().replace("_", "-")
            for channel in channels for variable in SETTINGS[channel]}


class OperationsStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: FeedbackBrainConfig, settings: InfrastructureConfig,
                 data: DataStack, ml: MlStack, ingest: IngestStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        secret_variables = notification_secret_variables(settings.notification_secrets)
        self.notification_secret_names = {variable: f"{settings.project}/notifications/{suffix}"
                                          for variable, suffix in secret_variables.items()}
        """Secret name by the environment variable whose value it holds (a literal: Secrets Manager takes names)."""
        self.notification_secrets = {variable: secretsmanager.Secret(
            self, "".join(part.capitalize() for part in suffix.split("-")) + "Secret",
            secret_name=self.notification_secret_names[variable],
            description=f"{variable} of feedback-brain alert notifications (set the value after deploy)",
            encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN,
        ) for variable, suffix in secret_variables.items()}
        """Secret by the environment variable whose value it holds (the channel reads <VARIABLE>_SECRET_ID)."""
        self.pseudonym_salt = secretsmanager.Secret(
            self, "PseudonymSalt", secret_name=config.aws.pseudonym_salt_secret_id,
            description="Salt of customer / order pseudonyms (processing jobs read it: PseudonymSaltSecretId)",
            encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN,
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=48, exclude_punctuation=True),
        )
        # A policy of this stack (not the role's default policy in the ML stack) keeps the stacks acyclic.
        iam.Policy(self, "ProcessingReadsSalt", roles=[ml.processing_role], statements=[iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[self.pseudonym_salt.secret_arn])])
        for secret in [self.pseudonym_salt, *self.notification_secrets.values()]:
            NagSuppressions.add_resource_suppressions(secret, [{
                "id": "AwsSolutions-SMG4",
                "reason": "Third-party webhook URLs / API tokens and the pseudonym salt cannot be rotated by a Lambda "
                          "(rotating the salt would re-key every pseudonym in the lake); rotation is a documented "
                          "manual procedure in docs/deploy.md.",
            }])

        self._alerting(config, settings, data)

        self.topic = sns.Topic(self, "AlarmTopic", topic_name=f"{settings.project}-alarms", master_key=data.key,
                               enforce_ssl=True)
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))

        aws, serving, monitoring = config.aws, config.serving, config.monitoring
        endpoint_dims = {"EndpointName": aws.endpoint_name, "VariantName": serving.variant_name}
        monitor_dims = {"Endpoint": aws.endpoint_name, "MonitoringSchedule": monitoring.schedule_name}
        def metric(namespace, name, dims, statistic="Sum", period=FIVE_MINUTES):
            return cloudwatch.Metric(namespace=namespace, metric_name=name, dimensions_map=dims, statistic=statistic,
                                     period=period)

        latency_p99 = metric(SAGEMAKER_NAMESPACE, "ModelLatency", endpoint_dims, "p99")
        errors_5xx = metric(SAGEMAKER_NAMESPACE, "Invocation5XXErrors", endpoint_dims)
        invocations = metric(SAGEMAKER_NAMESPACE, "Invocations", endpoint_dims)
        pipeline_failed = metric(PIPELINE_NAMESPACE, "ExecutionFailed", {"PipelineName": aws.pipeline_name},
                                 period=cdk.Duration.hours(1))
        pipeline_succeeded = metric(PIPELINE_NAMESPACE, "ExecutionSucceeded", {"PipelineName": aws.pipeline_name},
                                    period=cdk.Duration.hours(1))
        drift_auc = metric(monitoring.put_metric_data_namespace, EMBEDDING_DRIFT_METRIC, monitor_dims, "Maximum",
                           cdk.Duration.hours(1))
        violations = metric(monitoring.put_metric_data_namespace, VIOLATIONS_METRIC, monitor_dims, "Maximum", cdk.Duration.hours(1))

        alarm_specs = [
            ("EndpointLatencyP99", latency_p99, serving.rollback_p99_latency_ms * 1000,  # ModelLatency is in microseconds
             f"{aws.endpoint_name} p99 model latency above {serving.rollback_p99_latency_ms} ms"),
            ("Endpoint5xx", errors_5xx, serving.rollback_5xx_errors, f"{aws.endpoint_name} 5XX errors"),
            ("PipelineFailures", pipeline_failed, settings.pipeline_failure_threshold - 0.5,
             f"{aws.pipeline_name} executions failed"),
            ("EmbeddingDrift", drift_auc, monitoring.drift_auc_threshold,
             f"embedding drift ROC AUC above {monitoring.drift_auc_threshold}"),
            ("ConstraintViolations", violations, 0, "text monitor reported constraint violations"),
            ("DeployFunctionErrors", ml.deploy_function.metric_errors(period=FIVE_MINUTES),
             settings.lambda_error_threshold - 0.5, "deploy Lambda errors"),
            ("DeployEventsDeadLetters", ml.rule_dead_letters.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES),
             settings.dlq_depth_threshold - 0.5, "deploy events that could not be delivered"),
        ]
        alarm_specs += ingest.alarm_specs(settings) + self._alerting_alarm_specs(settings)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, watched, threshold, description in alarm_specs:
            alarm = cloudwatch.Alarm(
                self, f"{name}Alarm", alarm_name=f"{settings.project}-{name}", alarm_description=description,
                metric=watched, threshold=threshold, evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
            self.alarms[name] = alarm

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{settings.project}-loop")
        dashboard.add_widgets(*ingest.dashboard_widgets())
        dashboard.add_widgets(*self._alerting_widgets(config.alerting))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Endpoint invocations and 5XX", left=[invocations], right=[errors_5xx], width=8),
            cloudwatch.GraphWidget(title="Endpoint p99 model latency (us)", left=[latency_p99], width=8),
            cloudwatch.GraphWidget(title="Pipeline executions", left=[pipeline_succeeded, pipeline_failed], width=8),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Drift: embedding ROC AUC", left=[drift_auc],
                                   left_annotations=[cloudwatch.HorizontalAnnotation(value=monitoring.drift_auc_threshold)],
                                   width=8),
            cloudwatch.GraphWidget(title="Constraint violations", left=[violations], width=8),
            cloudwatch.GraphWidget(title="Deploy Lambda", left=[ml.deploy_function.metric_invocations(),
                                                               ml.deploy_function.metric_errors()], width=8),
        )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24))

    # ------------------------------------------------------------------ alerts, review queue, operations API
    def _alerting(self, config: FeedbackBrainConfig, settings: InfrastructureConfig, data: DataStack) -> None:
        alerting = config.alerting
        deployed = {field: data.table_names[field] for field in ALERTING_DEPLOYED_TABLES}
        # Reviews write their corrections where the retraining trigger counts them: the pipeline's bucket.
        deployed["corrections_bucket"] = data.buckets["artifacts"].bucket_name
        # API Gateway checked the caller's key; without scopes the handler would refuse every request (403).
        deployed["api_key_scopes"] = alerting.api_key_scopes or settings.operations_api_scopes
        environment = {
            **loop_environment(config, data, settings, config.loop.kinesis_stream),
            **section_environment("alerting", alerting, deployed),
            **{f"{variable}_SECRET_ID": name for variable, name in self.notification_secret_names.items()},
        }
        common = {"settings": settings, "key": data.key, "environment": environment,
                  "memory_mb": settings.loop_lambda_memory_mb}
        self.detect_function = container_function(
            self, "DetectFunction", function_name=f"{settings.project}-detect", handler=DETECT_HANDLER,
            timeout_s=settings.detect_timeout_s, description=f"alert detection ({DETECT_HANDLER})", **common)
        self.operations_api_function = container_function(
            self, "OperationsApiFunction", function_name=f"{settings.project}-operations-api",
            handler=OPERATIONS_API_HANDLER, timeout_s=settings.api_timeout_s,
            description=f"operations API ({OPERATIONS_API_HANDLER})", **common)
        for function in (self.detect_function, self.operations_api_function):
            self._grant_alerting(function, config, settings, data)
        if alerting.metrics_namespace:  # the run's alert volume (detect_handler); PutMetricData has no resource type
            self.detect_function.add_to_role_policy(iam.PolicyStatement(
                sid="DetectionMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": alerting.metrics_namespace}}))

        # --- the schedules (EventBridge Scheduler -> the loop image's Lambdas) ---
        self.schedule_dead_letters = sqs.Queue(self, "ScheduleDeadLetters", encryption=sqs.QueueEncryption.KMS,
                                               encryption_master_key=data.key, enforce_ssl=True,
                                               retention_period=cdk.Duration.days(14))
        NagSuppressions.add_resource_suppressions(self.schedule_dead_letters, [{
            "id": "AwsSolutions-SQS3", "reason": "This queue is itself the schedules' dead-letter queue."}])
        rate = detection_rate(alerting.detect_every_s)
        self.detection_schedule = self._schedule(
            "Detection", self.detect_function, rate, f"{settings.project}-detect-alerts",
            f"Alert detection every {alerting.detect_every_s:g} s (alerting.detect_every_s)") if rate else None

        # --- the lake's upkeep on AWS: raw-text retention, compaction, snapshot expiry (as `fbrain loop maintain`) ---
        self.maintain_function = container_function(
            self, "MaintainFunction", function_name=f"{settings.project}-maintain-lake", handler=MAINTAIN_HANDLER,
            timeout_s=settings.lake_maintenance_timeout_s, description=f"lake maintenance ({MAINTAIN_HANDLER})",
            settings=settings, key=data.key, environment=loop_environment(config, data, settings,
                                                                         config.loop.kinesis_stream),
            memory_mb=settings.loop_lambda_memory_mb)
        data.grant_lake(self.maintain_function, self, config.loop.namespace, settings.lake_prefix)
        NagSuppressions.add_resource_suppressions(self.maintain_function.role, [{
            "id": "AwsSolutions-IAM5",
            "reason": "Log streams are created per container; X-Ray PutTraceSegments has no resource type; the lake is "
                      "rewritten under any key of the processed bucket's lake prefix and any Iceberg table of its Glue "
                      "database; KMS and S3 action wildcards and ECR pulls are CDK's grant sets.",
        }], apply_to_children=True)
        self.maintenance_schedule = self._schedule(
            "LakeMaintenance", self.maintain_function, settings.lake_maintenance_schedule,
            f"{settings.project}-maintain-lake",
            "Raw-text retention, compaction and snapshot expiry of the lake (infrastructure.lake_maintenance_schedule)")

        # --- the operations API ---
        self.operations_api, _ = secured_rest_api(
            self, "OperationsApi", name=f"{settings.project}-operations", settings=settings, key=data.key,
            description="feedback-brain: insights, alerts, review queue, notifications")
        integration = apigateway.LambdaIntegration(self.operations_api_function)  # proxy: the handler routes
        for method, path in OPERATIONS_ROUTES:
            resource = self.operations_api.root
            for part in path.split("/"):
                resource = resource.get_resource(part) or resource.add_resource(part)
            resource.add_method(method, integration, api_key_required=True)
        suppress_api_key_findings(self, "the operations console and on-call tooling")
        for function in (self.detect_function, self.operations_api_function):
            NagSuppressions.add_resource_suppressions(function.role, [{
                "id": "AwsSolutions-IAM5",
                "reason": "Log streams are created per container; X-Ray PutTraceSegments has no resource type; the lake "
                          "is read under any key of the processed bucket's lake prefix and any Iceberg table of its "
                          "Glue database; KMS and S3 action wildcards (GetObject*, GenerateDataKey*) and DynamoDB / "
                          "ECR grants are CDK's grant sets.",
            }], apply_to_children=True)

    def _schedule(self, name: str, function, expression: str, schedule_name: str, description: str):
        """An EventBridge Scheduler schedule invoking `function`, with retries and the schedules' dead-letter queue."""
        role = iam.Role(self, f"{name}SchedulerRole",
                        assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com",
                                                        conditions={"StringEquals": {"aws:SourceAccount": self.account}}),
                        description=f"EventBridge Scheduler invokes {schedule_name}")
        function.grant_invoke(role)
        NagSuppressions.add_resource_suppressions(role, [{
            "id": "AwsSolutions-IAM5",
            "reason": "lambda:InvokeFunction on the function's versions and aliases (<arn>:*) is CDK's invoke grant.",
        }], apply_to_children=True)
        self.schedule_dead_letters.grant_send_messages(role)
        return scheduler.CfnSchedule(
            self, f"{name}Schedule", name=schedule_name, description=description,
            schedule_expression=expression, flexible_time_window={"mode": "OFF"}, state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=function.function_arn, role_arn=role.role_arn,
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=2,
                                                                      maximum_event_age_in_seconds=600),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(arn=self.schedule_dead_letters.queue_arn)))

    def _grant_alerting(self, function, config: FeedbackBrainConfig, settings: InfrastructureConfig,
                        data: DataStack) -> None:
        """Incidents and review tables, notification secrets, the lake (read and write), the corrections store."""
        for field in ALERTING_DEPLOYED_TABLES:
            data.tables[field].grant_read_write_data(function)
        # An identity statement (Secret.grant_read would add the role to the data key's policy: a stack cycle);
        # decrypting goes through the data key grant that data.grant_lake below makes.
        function.add_to_role_policy(iam.PolicyStatement(
            sid="ReadNotificationSecrets", actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[secret.secret_arn for secret in self.notification_secrets.values()]))
        # Detection reads the lake; a review overrides the item's predictions in silver and gold.
        data.grant_lake(function, self, config.loop.namespace, settings.lake_prefix)
        # A review's correction (operations.review -> S3CorrectionStore) and its threshold event (the retraining rule).
        data.buckets["artifacts"].grant_read_write(function, f"{config.monitoring.corrections_prefix}/*")
        function.add_to_role_policy(iam.PolicyStatement(
            sid="CorrectionsEvents", actions=["events:PutEvents"],
            resources=[self.format_arn(service="events", resource="event-bus",
                                       resource_name=config.monitoring.event_bus_name)]))

    def _alerting_alarm_specs(self, settings: InfrastructureConfig) -> list[tuple]:
        return [
            ("DetectFunctionErrors", self.detect_function.metric_errors(period=FIVE_MINUTES),
             settings.lambda_error_threshold - 0.5, "alert-detection Lambda errors"),
            ("MaintainFunctionErrors", self.maintain_function.metric_errors(period=FIVE_MINUTES),
             settings.lambda_error_threshold - 0.5, "lake maintenance Lambda errors"),
            ("DetectionScheduleDeadLetters",
             self.schedule_dead_letters.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES),
             settings.dlq_depth_threshold - 0.5, "detection or maintenance runs the scheduler could not deliver"),
            ("OperationsApiFunctionErrors", self.operations_api_function.metric_errors(period=FIVE_MINUTES),
             settings.lambda_error_threshold - 0.5, "operations API Lambda errors"),
            ("OperationsApi5xx", self.operations_api.metric_server_error(period=FIVE_MINUTES),
             settings.api_5xx_threshold - 0.5, "operations API answered 5XX"),
        ]

    def _alerting_widgets(self, alerting) -> list[cloudwatch.IWidget]:
        from operations.alerting_aws_lambda import DETECTION_METRICS

        volume = [cloudwatch.Metric(namespace=alerting.metrics_namespace, metric_name=name, statistic="Sum",
                                    period=FIVE_MINUTES) for name in DETECTION_METRICS if name != "ItemsRead"]
        return [
            cloudwatch.GraphWidget(title="Alert detection: runs and errors", left=[
                self.detect_function.metric_invocations(period=FIVE_MINUTES),
                self.detect_function.metric_errors(period=FIVE_MINUTES)], width=8),
            cloudwatch.GraphWidget(title="Alert volume: findings, alerts opened or updated, notifications",
                                   left=volume, width=8),
            cloudwatch.GraphWidget(title="Operations API: requests, 4XX, 5XX", left=[
                self.operations_api.metric_count(period=FIVE_MINUTES),
                self.operations_api.metric_client_error(period=FIVE_MINUTES),
                self.operations_api.metric_server_error(period=FIVE_MINUTES)], width=8),
        ]
