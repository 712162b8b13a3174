"""ML stack: images, roles, the SageMaker pipeline, registry, Feature Store, deploy-on-approval, retraining."""
from __future__ import annotations

import copy
import dataclasses
import json

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as lambda_destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagSuppressions
from constructs import Construct

from pipelines.infrastructure_config import InfrastructureConfig
from infrastructure.lambda_packages import LambdaPackage
from infrastructure.stacks.common import lambda_role, log_retention, suppress_runtime_finding
from infrastructure.stacks.data import DataStack
from pipelines.config import FeedbackBrainConfig
from processing.settings import environment_variables

DEPLOY_HANDLER = "inference.deploy.handler"
SERVING_DEPLOY_FIELDS = (
    "variant_name", "deploy_instance_count", "capture_sampling_percentage",
    "autoscaling_min_instances", "autoscaling_max_instances", "autoscaling_target_invocations",
    "autoscaling_scale_in_cooldown_s", "autoscaling_scale_out_cooldown_s",
    "rollout_mode", "rollout_step_percent", "rollout_wait_s", "rollout_termination_wait_s",
    "rollback_5xx_errors", "rollback_p99_latency_ms", "rollback_evaluation_minutes",
)
"""ServingConfig fields the deploy Lambda uses, passed as FBRAIN__SERVING__<FIELD> (inference.serve.config_from_env)."""


def lambda_runtime(name: str) -> lambda_.Runtime:
    return lambda_.Runtime(name, lambda_.RuntimeFamily.PYTHON)


def s3_uri_bucket(uri: str) -> str:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    return uri.removeprefix("s3://").split("/", 1)[0]


PLACEHOLDER_ACCOUNT = "444455556666"
"""Account of the stand-in values the definition is built with (the SDK checks that an ARN looks like one)."""


JOB_ROLES = ("processing", "training", "monitoring", "model")
"""Job types with their own execution role (aws.<job>_role_arn, AwsConfig.job_role_arn)."""


def deployed_definition(config: FeedbackBrainConfig, *, role_arn: str, ecr_registry: str, kms_key_arn: str,
                        feature_store_role_arn: str, job_role_arns: dict[str, str] | None = None,
                        monitoring: bool = False) -> str:
    """The definition `fbrain pipeline definition` (or, with `monitoring`, `fbrain monitor pipeline definition`)
    builds, with the values only a deployment knows (roles, registry, key) as CodeBuild would pass them. Those are
    CloudFormation tokens here, and the SDK validates what it is given, so the definition is built with stand-ins
    of the right shape which are then replaced by the tokens (resolved at deploy time). `job_role_arns` gives a
    job type (JOB_ROLES) its own role, as `--set aws.<job>_role_arn=...` does."""
    from pipelines.definition import definition_json
    from pipelines.monitoring_definition import monitoring_definition_json

    region = config.aws.region
    job_role_arns = job_role_arns or {}
    unknown = sorted(set(job_role_arns) - set(JOB_ROLES))
    if unknown:
        raise ValueError(f"no job type {unknown}; job roles: {JOB_ROLES}")
    stand_ins = {
        f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/fbrain-deployment-pipeline-role": role_arn,
        f"{PLACEHOLDER_ACCOUNT}.dkr.ecr.{region}.amazonaws.com": ecr_registry,
        f"arn:aws:kms:{region}:{PLACEHOLDER_ACCOUNT}:key/00000000-0000-0000-0000-000000000000": kms_key_arn,
        f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/fbrain-deployment-feature-store-role": feature_store_role_arn,
    }
    role, registry, key, feature_store_role = stand_ins
    job_stand_ins = {}
    for job, arn in job_role_arns.items():
        stand_in = f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/fbrain-deployment-{job}-role"
        stand_ins[stand_in] = arn
        job_stand_ins[f"{job}_role_arn"] = stand_in
    built = copy.deepcopy(config)
    built.aws = dataclasses.replace(built.aws, role_arn=role, ecr_registry=registry, kms_key_id=key, **job_stand_ins)
    # The processing jobs get their whole section: the Feature Store role and key are this deployment's too.
    built.processing = dataclasses.replace(built.processing, feature_store_role_arn=feature_store_role,
                                           feature_store_kms_key_id=key)
    definition = monitoring_definition_json(built) if monitoring else definition_json(built)
    for stand_in, value in stand_ins.items():
        definition = definition.replace(stand_in, value)
    if PLACEHOLDER_ACCOUNT in definition:
        raise ValueError("the pipeline definition names the stand-in account in a place no deployment value replaces")
    return definition


class MlStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: FeedbackBrainConfig,
                 settings: InfrastructureConfig, data: DataStack, deploy_package: LambdaPackage, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self._data = data
        from pipelines.aws import DEPLOY_TARGET_ID, approval_event_pattern, endpoint_in_service_event_pattern
        from pipelines.definition import IMAGE_KINDS, IMAGE_REPOSITORY_PREFIX

        aws = config.aws
        artifacts = data.buckets["artifacts"]
        self.pipeline_arn = self.format_arn(service="sagemaker", resource="pipeline", resource_name=aws.pipeline_name.lower())
        group_arn = self.format_arn(service="sagemaker", resource="model-package-group", resource_name=aws.model_package_group)
        packages_arn = self.format_arn(service="sagemaker", resource="model-package", resource_name=f"{aws.model_package_group}/*")

        # --- images (buildspec.yml pushes <prefix><kind>:<commit>) ---
        self.repositories = {kind: ecr.Repository(
            self, f"{kind.capitalize()}Images", repository_name=f"{IMAGE_REPOSITORY_PREFIX}{kind}",
            # Mutable: every CodePipeline stage runs buildspec.yml, which pushes the same commit tag again.
            image_scan_on_push=True, image_tag_mutability=ecr.TagMutability.MUTABLE,
            encryption=ecr.RepositoryEncryption.KMS, encryption_key=data.key,
            lifecycle_rules=[ecr.LifecycleRule(max_image_count=50, description="keep the 50 newest images")],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        ) for kind in IMAGE_KINDS}
        registry = f"{self.account}.dkr.ecr.{self.region}.{self.url_suffix}"

        # --- one role per job type (aws.<job>_role_arn in the definitions), each with only what its jobs use ---
        job_arns = {kind: self.format_arn(service="sagemaker", resource=kind, resource_name="*")
                    for kind in ("processing-job", "training-job")}
        self.processing_role = self._job_role("ProcessingRole", "FeatureEngineering, EvaluateModel, ComputeMonitorBaseline")
        artifacts.grant_read_write(self.processing_role)
        data.buckets["raw"].grant_read(self.processing_role)  # InputDataUri may name the raw bucket
        # EvaluateModel's no-regression gate reads the champion: the newest Approved package and its recorded metrics
        # (training.champion.registered_champion).
        self.processing_role.add_to_policy(iam.PolicyStatement(
            sid="ReadChampion", actions=["sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"],
            resources=[group_arn, packages_arn]))
        self.training_role = self._job_role("TrainingRole", "TrainModel")
        artifacts.grant_read_write(self.training_role)  # features in; model, checkpoints out
        self.monitoring_role = self._job_role("MonitoringRole", "the monitoring pipeline's MonitorCapturedTraffic")
        artifacts.grant_read_write(self.monitoring_role)  # capture, baseline and model in; results out
        self.monitoring_role.add_to_policy(iam.PolicyStatement(
            sid="MonitorMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": config.monitoring.put_metric_data_namespace}}))
        self.monitoring_role.add_to_policy(iam.PolicyStatement(
            sid="DriftEvents", actions=["events:PutEvents"],
            resources=[self.format_arn(service="events", resource="event-bus", resource_name="default")]))
        if aws.mlflow_tracking_arn:
            for role in (self.processing_role, self.training_role):  # TrainModel and EvaluateModel log to MLflow
                role.add_to_policy(iam.PolicyStatement(
                    sid="TrackExperiments", actions=["sagemaker-mlflow:*"], resources=[aws.mlflow_tracking_arn]))

        # --- the pipelines' own role: starts the jobs with their roles, registers models, reads step outputs ---
        self.pipeline_role = iam.Role(
            self, "PipelineRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="feedback-brain SageMaker pipelines (training and monitoring): start jobs, register models",
        )
        self.pipeline_role.add_to_policy(iam.PolicyStatement(
            sid="RunPipelineJobs",
            actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                     "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                     "sagemaker:AddTags"],
            resources=list(job_arns.values())))
        self.pipeline_role.add_to_policy(iam.PolicyStatement(
            sid="RegisterModels",
            actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages",
                     "sagemaker:DescribeModelPackageGroup", "sagemaker:AddTags"],
            resources=[group_arn, packages_arn]))
        artifacts.grant_read(self.pipeline_role)  # the gate's JsonGet reads the evaluation report
        data.key.grant_decrypt(self.pipeline_role)

        # --- the endpoint's model role ---
        # --- the endpoint's model role ---
        self.model_role = iam.Role(self, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                   description="feedback-brain endpoint: pulls the inference image, reads model data")
        self._grant_image_pull(self.model_role)
        self._grant_job_logs(self.model_role, "EndpointLogs")
        artifacts.grant_read(self.model_role)
        data.key.grant_decrypt(self.model_role)
        self.job_roles = {"processing": self.processing_role, "training": self.training_role,
                          "monitoring": self.monitoring_role, "model": self.model_role}
        """Execution role by job type (JOB_ROLES); the pipeline role may pass each to SageMaker and nothing else."""
        self.pipeline_role.add_to_policy(iam.PolicyStatement(
            sid="PassJobRoles", actions=["iam:PassRole"], resources=[r.role_arn for r in self.job_roles.values()],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))

        # --- Feature Store ---
        offline_uri = config.processing.feature_store_offline_s3_uri
        offline_bucket = self._our_bucket(data, s3_uri_bucket(offline_uri))
        self.feature_store_role = iam.Role(self, "FeatureStoreRole",
                                           assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                           description="feedback-brain Feature Store: writes the offline store")
        offline_bucket.grant_read_write(self.feature_store_role)
        data.key.grant_encrypt_decrypt(self.feature_store_role)
        self.feature_group = self._feature_group(config, data, offline_uri)
        self.feature_group.node.add_dependency(self.feature_store_role)
        feature_group_arn = self.format_arn(service="sagemaker", resource="feature-group",
                                            resource_name=config.processing.feature_group_name.lower())
        self.processing_role.add_to_policy(iam.PolicyStatement(
            sid="WriteFeatures", actions=["sagemaker:PutRecord", "sagemaker:GetRecord", "sagemaker:DescribeFeatureGroup"],
            resources=[feature_group_arn]))

        # --- registry and pipeline (the definition `fbrain pipeline definition` builds) ---
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self, "ModelPackageGroup", model_package_group_name=aws.model_package_group,
            model_package_group_description="Candidates of the feedback-brain multi-task model")
        from pipelines.aws import PIPELINE_DESCRIPTION
        from pipelines.monitoring_definition import PIPELINE_DESCRIPTION as MONITORING_DESCRIPTION

        deployment_values = {
            "role_arn": self.pipeline_role.role_arn, "ecr_registry": registry, "kms_key_arn": data.key.key_arn,
            "feature_store_role_arn": self.feature_store_role.role_arn,
            "job_role_arns": {job: role.role_arn for job, role in self.job_roles.items()}}
        self.pipeline = sagemaker.CfnPipeline(
            self, "Pipeline", pipeline_name=aws.pipeline_name, role_arn=self.pipeline_role.role_arn,
            pipeline_description=PIPELINE_DESCRIPTION,
            pipeline_definition={"PipelineDefinitionBody": deployed_definition(config, **deployment_values)})
        self.pipeline.node.add_dependency(self.pipeline_role, self.model_package_group, *self.job_roles.values())

        # --- the monitoring pipeline (`fbrain monitor pipeline definition`) and its schedule ---
        self.monitoring_pipeline_arn = self.format_arn(service="sagemaker", resource="pipeline",
                                                       resource_name=config.monitoring.pipeline_name.lower())
        self.monitoring_pipeline = sagemaker.CfnPipeline(
            self, "MonitoringPipeline", pipeline_name=config.monitoring.pipeline_name,
            role_arn=self.pipeline_role.role_arn, pipeline_description=MONITORING_DESCRIPTION,
            pipeline_definition={"PipelineDefinitionBody": deployed_definition(config, monitoring=True,
                                                                               **deployment_values)})
        self.monitoring_pipeline.node.add_dependency(self.pipeline_role, *self.job_roles.values())

        # --- deploy Lambda + the approval and endpoint-InService rules ---
        self.deploy_function = self._deploy_function(config, settings, data, deploy_package, group_arn, packages_arn)
        self.rule_dead_letters = sqs.Queue(
            self, "DeployEventsDeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=data.key,
            enforce_ssl=True, retention_period=cdk.Duration.days(14))
        NagSuppressions.add_resource_suppressions(self.rule_dead_letters, [{
            "id": "AwsSolutions-SQS3", "reason": "This queue is itself the dead-letter queue of the deploy rules."}])
        self.deploy_function.configure_async_invoke(
            retry_attempts=2, max_event_age=cdk.Duration.hours(6),
            on_failure=lambda_destinations.SqsDestination(self.rule_dead_letters))
        self.approval_rule = self._deploy_rule("ApprovalRule", aws.approval_rule_name, approval_event_pattern(config),
                                               f"Deploy approved model packages of {aws.model_package_group}",
                                               DEPLOY_TARGET_ID)
        self.endpoint_rule = self._deploy_rule("EndpointInServiceRule", aws.endpoint_rule_name,
                                               endpoint_in_service_event_pattern(config),
                                               f"Apply auto scaling when {aws.endpoint_name} is InService", DEPLOY_TARGET_ID)

        # --- retraining: schedule, drift violation, N corrections (monitoring.triggers) ---
        self.retraining_rules = self._retraining_rules(config)
        self.monitoring_schedule = self._monitoring_schedule(config)

        self._suppress_wildcards()

    # ------------------------------------------------------------------ helpers
    def _job_role(self, construct_id: str, jobs: str) -> iam.Role:
        """A SageMaker job execution role: pull the project's images, write the job's logs and metrics, use the key."""
        role = iam.Role(self, construct_id, assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description=f"feedback-brain SageMaker jobs: {jobs}")
        self._grant_image_pull(role)
        self._grant_job_logs(role, "JobLogs")
        self._data.key.grant_encrypt_decrypt(role)
        return role

    def _monitoring_schedule(self, config: FeedbackBrainConfig) -> scheduler.CfnSchedule:
        """EventBridge Scheduler starts the monitoring pipeline (the request `fbrain monitor rules apply` makes).

        The champion's BaselineUri / ModelDataUri are passed when configured (monitoring.baseline_uri and
        monitoring.model_data_uri); otherwise `fbrain monitor rules apply` sets them once a model is approved."""
        from pipelines.aws import monitoring_schedule_request
        from pipelines.monitoring_definition import configured_champion_parameters

        request = monitoring_schedule_request(config, self.monitoring_pipeline_arn, self.events_role.role_arn,
                                              configured_champion_parameters(config) or {})
        target = request["Target"]
        parameters = target["SageMakerPipelineParameters"]["PipelineParameterList"]
        group = None
        if request["GroupName"] != "default":
            group = scheduler.CfnScheduleGroup(self, "MonitoringScheduleGroup", name=request["GroupName"])
        schedule = scheduler.CfnSchedule(
            self, "MonitoringSchedule", name=request["Name"], group_name=request["GroupName"],
            description=request["Description"], schedule_expression=request["ScheduleExpression"],
            flexible_time_window={"mode": request["FlexibleTimeWindow"]["Mode"]}, state=request["State"],
            target=scheduler.CfnSchedule.TargetProperty(
                arn=target["Arn"], role_arn=target["RoleArn"],
                sage_maker_pipeline_parameters=scheduler.CfnSchedule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[scheduler.CfnSchedule.SageMakerPipelineParameterProperty(
                        name=p["Name"], value=p["Value"]) for p in parameters]) if parameters else None))
        schedule.node.add_dependency(self.monitoring_pipeline)
        if group is not None:
            schedule.node.add_dependency(group)
        return schedule

    def _our_bucket(self, data: DataStack, name: str):
        for kind, bucket_name in data.bucket_names.items():
            if bucket_name == name:
                return data.buckets[kind]
        raise ValueError(f"processing.feature_store_offline_s3_uri names bucket {name!r}, which this app does not create "
                         f"(put it under s3://{data.bucket_names['artifacts']}/)")

    def _grant_image_pull(self, role: iam.Role) -> None:
        for repository in self.repositories.values():
            repository.grant_pull(role)

    def _grant_job_logs(self, role: iam.Role, sid: str) -> None:
        role.add_to_policy(iam.PolicyStatement(
            sid=sid, actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[self.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/*",
                                       arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]))
        role.add_to_policy(iam.PolicyStatement(
            sid=f"{sid}Metrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}}))

    def _feature_group(self, config: FeedbackBrainConfig, data: DataStack, offline_uri: str) -> sagemaker.CfnFeatureGroup:
        from processing.feature_store import create_feature_group_request

        request = create_feature_group_request(config.processing)
        return sagemaker.CfnFeatureGroup(
            self, "FeatureGroup",
            feature_group_name=request["FeatureGroupName"],
            record_identifier_feature_name=request["RecordIdentifierFeatureName"],
            event_time_feature_name=request["EventTimeFeatureName"],
            feature_definitions=[sagemaker.CfnFeatureGroup.FeatureDefinitionProperty(
                feature_name=item["FeatureName"], feature_type=item["FeatureType"]) for item in request["FeatureDefinitions"]],
            online_store_config={"EnableOnlineStore": True, "SecurityConfig": {"KmsKeyId": data.key.key_arn}},
            offline_store_config={
                "S3StorageConfig": {"S3Uri": offline_uri, "KmsKeyId": data.key.key_arn},
                "DisableGlueTableCreation": request["OfflineStoreConfig"]["DisableGlueTableCreation"],
                "TableFormat": request["OfflineStoreConfig"]["TableFormat"],
            },
            role_arn=self.feature_store_role.role_arn,
            description=request["Description"],
            tags=[cdk.CfnTag(key=tag["Key"], value=tag["Value"]) for tag in request["Tags"]],
        )

    def _deploy_function(self, config, settings, data, package, group_arn, packages_arn) -> lambda_.Function:
        aws, serving = config.aws, config.serving
        environment = {
            "ENDPOINT_NAME": aws.endpoint_name,
            "MODEL_EXECUTION_ROLE_ARN": self.model_role.role_arn,
            "DATA_CAPTURE_S3_URI": data.data_capture_uri(settings),
            "ENDPOINT_INSTANCE_TYPE": aws.endpoint_instance_type,
            "KMS_KEY_ID": data.key.key_arn,
        }
        environment.update(environment_variables("serving", serving, SERVING_DEPLOY_FIELDS))
        log_group = logs.LogGroup(self, "DeployFunctionLogs", retention=log_retention(settings.log_retention_days),
                                  encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN)
        function = lambda_.Function(
            self, "DeployFunction",
            function_name=f"{settings.project}-deploy",
            description="Deploys approved model packages (inference.deploy.handler)",
            runtime=lambda_runtime(settings.lambda_runtime),
            handler=package.handler,
            code=lambda_.Code.from_asset(str(package.directory)),
            memory_size=settings.lambda_memory_mb,
            timeout=cdk.Duration.seconds(settings.lambda_timeout_s),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            environment_encryption=data.key,
            log_group=log_group,
            role=lambda_role(self, "DeployFunctionRole", log_group, "feedback-brain deploy Lambda"),
            # No reserved concurrency: a new account's limit of 10 cannot spare any, and a second deployment
            # while the endpoint is updating is refused by the handler (BUSY_STATES), retried by Lambda's
            # asynchronous invocation, and finally kept in the dead-letter queue.
        )
        suppress_runtime_finding(function)
        endpoint_name = aws.endpoint_name
        def sm(resource, name):
            return self.format_arn(service="sagemaker", resource=resource, resource_name=name)
        function.add_to_role_policy(iam.PolicyStatement(
            sid="ReadPackages", actions=["sagemaker:DescribeModelPackage"], resources=[packages_arn, group_arn]))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="DeployEndpoint",
            actions=["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:CreateEndpointConfig",
                     "sagemaker:DescribeEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
                     "sagemaker:DescribeEndpoint", "sagemaker:AddTags"],
            resources=[sm("model", f"{endpoint_name}-*"), sm("endpoint-config", f"{endpoint_name}-*"),
                       sm("endpoint", endpoint_name)]))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="PassModelRole", actions=["iam:PassRole"], resources=[self.model_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="RollbackAlarms", actions=["cloudwatch:PutMetricAlarm"],
            resources=[self.format_arn(service="cloudwatch", resource="alarm", resource_name=f"{endpoint_name}-*",
                                       arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="AutoScaling",
            actions=["application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
                     "application-autoscaling:DeregisterScalableTarget"],
            resources=[self.format_arn(service="application-autoscaling", resource="scalable-target", resource_name="*")]))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="AutoScalingServiceRole", actions=["iam:CreateServiceLinkedRole"],
            resources=[(f"arn:{self.partition}:iam::{self.account}:role/aws-service-role/"
                       "sagemaker.application-autoscaling.amazonaws.com/*")],
            conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}}))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="ScaleVariant", actions=["sagemaker:UpdateEndpointWeightsAndCapacities"],
            resources=[sm("endpoint", endpoint_name)]))
        data.key.grant_encrypt_decrypt(function)
        return function

    def _deploy_rule(self, construct_id: str, name: str, pattern: dict, description: str, target_id: str) -> events.CfnRule:
        from pipelines.aws import DEPLOY_TARGET_RETRY_POLICY

        rule = events.CfnRule(
            self, construct_id, name=name, description=description, state="ENABLED",
            event_pattern=pattern,
            targets=[events.CfnRule.TargetProperty(
                # The id `fbrain pipeline upsert` uses too, so its PutTargets replaces this target, never adds one
                # (and keeps this dead-letter queue and retry policy).
                id=target_id, arn=self.deploy_function.function_arn,
                retry_policy=events.CfnRule.RetryPolicyProperty(
                    maximum_retry_attempts=DEPLOY_TARGET_RETRY_POLICY["MaximumRetryAttempts"],
                    maximum_event_age_in_seconds=DEPLOY_TARGET_RETRY_POLICY["MaximumEventAgeInSeconds"]),
                dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.rule_dead_letters.queue_arn))])
        self.deploy_function.add_permission(
            f"{construct_id}Invoke", principal=iam.ServicePrincipal("events.amazonaws.com"), source_arn=rule.attr_arn)
        self.rule_dead_letters.add_to_resource_policy(iam.PolicyStatement(
            actions=["sqs:SendMessage"], principals=[iam.ServicePrincipal("events.amazonaws.com")],
            resources=[self.rule_dead_letters.queue_arn], conditions={"ArnEquals": {"aws:SourceArn": rule.attr_arn}}))
        return rule

    def _retraining_rules(self, config: FeedbackBrainConfig) -> list[events.CfnRule]:
        from monitoring.triggers import events_role_policies, retraining_rules

        trust, permissions = events_role_policies(self.pipeline_arn, self.monitoring_pipeline_arn)
        services = trust["Statement"][0]["Principal"]["Service"]
        services = [services] if isinstance(services, str) else services
        self.events_role = iam.Role(
            self, "RetrainingEventsRole", role_name=config.monitoring.events_role_name,
            # EventBridge rules and EventBridge Scheduler (the monitoring pipeline's schedule) assume it.
            assumed_by=iam.CompositePrincipal(*[iam.ServicePrincipal(service) for service in services]),
            inline_policies={"start-pipeline": iam.PolicyDocument.from_json(permissions)},
            description="EventBridge starts the retraining pipeline (schedule, drift, corrections)")
        rules = []
        for rule in retraining_rules(config.monitoring, self.pipeline_arn, self.events_role.role_arn):
            put = rule.put_rule
            target = rule.put_targets["Targets"][0]
            cfn_rule = events.CfnRule(
                self, "".join(part.capitalize() for part in rule.name.split("-")) + "Rule",
                name=rule.name, description=put["Description"], state=put["State"],
                schedule_expression=put.get("ScheduleExpression"),
                event_pattern=json.loads(put["EventPattern"]) if "EventPattern" in put else None,
                event_bus_name=put.get("EventBusName"),
                targets=[events.CfnRule.TargetProperty(
                    id=target["Id"], arn=target["Arn"], role_arn=target["RoleArn"],
                    sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                        pipeline_parameter_list=[events.CfnRule.SageMakerPipelineParameterProperty(name=p["Name"], value=p["Value"])
                                                 for p in target["SageMakerPipelineParameters"]["PipelineParameterList"]]))])
            cfn_rule.node.add_dependency(self.pipeline)
            rules.append(cfn_rule)
        return rules

    def _suppress_wildcards(self) -> None:
        NagSuppressions.add_resource_suppressions(self.pipeline_role, [{
            "id": "AwsSolutions-IAM5",
            "reason": "Processing and training job names are generated by SageMaker Pipelines per execution "
                      "(pipelines-<id>-<step>), model package versions are numbered by the registry, and the "
                      "pipeline's condition step reads step outputs under any execution's prefix of its artifacts "
                      "bucket; each wildcard is confined to one resource type of this account or one bucket; s3 and "
                      "KMS action wildcards (GetObject*, List*) are CDK's read grant set.",
        }], apply_to_children=True)
        for role, what in ((self.processing_role, "the processing jobs read the raw bucket and read and write any "
                            "execution's prefix of the artifacts bucket"),
                           (self.training_role, "the training job reads features and writes the model and checkpoints "
                            "under any execution's prefix of the artifacts bucket"),
                           (self.monitoring_role, "the monitoring job reads captured data, the baseline and the model "
                            "and writes results under generated prefixes of the artifacts bucket")):
            NagSuppressions.add_resource_suppressions(role, [{
                "id": "AwsSolutions-IAM5",
                "reason": f"Key prefixes are generated per pipeline execution: {what}; job log groups are "
                          "/aws/sagemaker/<job type>/* per job; cloudwatch:PutMetricData and ecr:GetAuthorizationToken "
                          "have no resource type (metrics conditioned on their namespace); s3 and KMS action "
                          "wildcards (GetObject*, GenerateDataKey*, ReEncrypt*) are CDK's grant sets.",
            }], apply_to_children=True)
        NagSuppressions.add_resource_suppressions(self.model_role, [{
            "id": "AwsSolutions-IAM5",
            "reason": "The endpoint reads model.tar.gz under any execution's output prefix of the artifacts bucket and "
                      "writes its own /aws/sagemaker/Endpoints log groups; PutMetricData has no resource type.",
        }], apply_to_children=True)
        NagSuppressions.add_resource_suppressions(self.feature_store_role, [{
            "id": "AwsSolutions-IAM5",
            "reason": "The offline store writes partitioned objects (year=/month=/day=/hour=) anywhere under its prefix "
                      "of one bucket; the s3 and KMS action wildcards are CDK's read/write grant sets.",
        }], apply_to_children=True)
        NagSuppressions.add_resource_suppressions(self.deploy_function.role, [{
            "id": "AwsSolutions-IAM5",
            "reason": "Model and endpoint-config names are derived per package version (<endpoint>-v<n>-<digest>), "
                      "rollback alarms are named <endpoint>-*; scalable targets have generated ids; log streams of "
                      "its own log group are created per container; X-Ray PutTraceSegments / PutTelemetryRecords "
                      "have no resource type; KMS action wildcards are CDK's encrypt/decrypt grant set.",
        }], apply_to_children=True)
