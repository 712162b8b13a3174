"""Operations stack: secrets, the CloudWatch dashboard of the loop, and alarms to an SNS topic."""
from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from cdk_nag import NagSuppressions
from constructs import Construct

from pipelines.infrastructure_config import InfrastructureConfig
from infrastructure.stacks.data import DataStack
from infrastructure.stacks.ml import MlStack
from pipelines.config import FeedbackBrainConfig

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
PIPELINE_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"
"""Namespace of SageMaker Pipelines execution metrics (its spelling)."""
EMBEDDING_DRIFT_METRIC = "embedding_drift_roc_auc"
VIOLATIONS_METRIC = "constraint_violations_count"
"""Metric names of monitoring.metrics.window_metrics (dimensions Endpoint, MonitoringSchedule)."""
FIVE_MINUTES = cdk.Duration.minutes(5)


class OperationsStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: FeedbackBrainConfig, settings: InfrastructureConfig,
                 data: DataStack, ml: MlStack, ingest=None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.notification_secrets = {channel: secretsmanager.Secret(
            self, f"{channel.capitalize()}Secret", secret_name=f"{settings.project}/notifications/{channel}",
            description=f"{channel} webhook / API credentials of feedback-brain alerts (JSON; set after deploy)",
            encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN,
        ) for channel in settings.notification_secrets}
        self.pseudonym_salt = secretsmanager.Secret(
            self, "PseudonymSalt", secret_name=config.aws.pseudonym_salt_secret_id,
            description="Salt of customer / order pseudonyms (processing jobs read it: PseudonymSaltSecretId)",
            encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN,
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=48, exclude_punctuation=True),
        )
        # A policy of this stack (not the role's default policy in the ML stack) keeps the stacks acyclic.
        iam.Policy(self, "PipelineReadsSalt", roles=[ml.pipeline_role], statements=[iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[self.pseudonym_salt.secret_arn])])
        for secret in [self.pseudonym_salt, *self.notification_secrets.values()]:
            NagSuppressions.add_resource_suppressions(secret, [{
                "id": "AwsSolutions-SMG4",
                "reason": "Third-party webhook URLs / API tokens and the pseudonym salt cannot be rotated by a Lambda "
                          "(rotating the salt would re-key every pseudonym in the lake); rotation is a documented "
                          "manual procedure in docs/deploy.md.",
            }])

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
        if ingest is not None:
            alarm_specs += ingest.alarm_specs(settings)
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
        if ingest is not None:
            dashboard.add_widgets(*ingest.dashboard_widgets())
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
