"""CI/CD stack: GitHub (CodeStar connection) -> CodePipeline -> CodeBuild running buildspec.yml, stage by stage."""
from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_codestarconnections as codestarconnections
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from cdk_nag import NagSuppressions
from constructs import Construct

from pipelines.infrastructure_config import InfrastructureConfig
from infrastructure.stacks.common import log_retention
from infrastructure.stacks.data import DataStack
from infrastructure.stacks.ml import MlStack
from pipelines.config import FeedbackBrainConfig

BUILDSPEC = "buildspec.yml"


class CiCdStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: FeedbackBrainConfig, settings: InfrastructureConfig,
                 data: DataStack, ml: MlStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        aws = config.aws
        if settings.codestar_connection_arn:
            connection_arn = settings.codestar_connection_arn
        else:
            connection = codestarconnections.CfnConnection(
                self, "GitHubConnection", connection_name=f"{settings.project}-github"[:32], provider_type="GitHub")
            connection_arn = connection.attr_connection_arn

        build_logs = logs.LogGroup(self, "BuildLogs", retention=log_retention(settings.log_retention_days),
                                   encryption_key=data.key, removal_policy=cdk.RemovalPolicy.RETAIN)
        # The variables buildspec.yml documents as required / optional, all from resources of this app.
        environment = {
            "AWS_ACCOUNT_ID": self.account,
            "FBRAIN_ROLE_ARN": ml.pipeline_role.role_arn,
            "FBRAIN_BUCKET": data.buckets["artifacts"].bucket_name,
            "FBRAIN_DEPLOY_LAMBDA_ARN": ml.deploy_function.function_arn,
            "FBRAIN_PIPELINE_NAME": aws.pipeline_name,
            "FBRAIN_MODEL_PACKAGE_GROUP": aws.model_package_group,
            "FBRAIN_MLFLOW_TRACKING_ARN": aws.mlflow_tracking_arn,
            # CI's upsert builds the same definition as the one deployed here: the same job roles and key.
            **{f"FBRAIN_{job.upper()}_ROLE_ARN": role.role_arn for job, role in ml.job_roles.items()},
            "FBRAIN_KMS_KEY_ID": data.key.key_arn,
        }
        self.project = codebuild.PipelineProject(
            self, "Build", project_name=f"{settings.project}-build",
            description="make test, build and push the three images, upsert and start the SageMaker pipeline",
            build_spec=codebuild.BuildSpec.from_source_filename(BUILDSPEC),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType[settings.codebuild_compute_type],
                privileged=True),  # docker build of the images
            environment_variables={name: codebuild.BuildEnvironmentVariable(value=value) for name, value in environment.items()},
            encryption_key=data.key,
            timeout=cdk.Duration.minutes(settings.codebuild_timeout_minutes),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=build_logs)),
        )
        self._grant_build(config, data, ml)

        source_output = codepipeline.Artifact("Source")
        self.pipeline = codepipeline.Pipeline(
            self, "Pipeline", pipeline_name=f"{settings.project}-cicd", artifact_bucket=data.buckets["artifacts"],
            pipeline_type=codepipeline.PipelineType.V2, restart_execution_on_update=False)
        self.pipeline.add_stage(stage_name="Source", actions=[actions.CodeStarConnectionsSourceAction(
            action_name="GitHub", owner=settings.github_owner, repo=settings.github_repository,
            branch=settings.github_branch, connection_arn=connection_arn, output=source_output)])
        for stage in settings.stages:
            stage_actions: list[codepipeline.IAction] = []
            if stage.manual_approval:
                stage_actions.append(actions.ManualApprovalAction(
                    action_name=f"Approve-{stage.name}", run_order=1,
                    additional_information=f"Promote this commit to {stage.name}"))
            stage_actions.append(actions.CodeBuildAction(
                action_name=f"Build-{stage.name}", project=self.project, input=source_output,
                run_order=2 if stage.manual_approval else 1,
                environment_variables={
                    "FBRAIN_STAGE": codebuild.BuildEnvironmentVariable(value=stage.name),
                    "FBRAIN_SKIP_EXECUTION": codebuild.BuildEnvironmentVariable(
                        value="false" if stage.start_execution else "true"),
                }))
            self.pipeline.add_stage(stage_name=stage.name, actions=stage_actions)

        NagSuppressions.add_resource_suppressions(self.project, [
            {"id": "AwsSolutions-IAM5",
             "reason": "CodeBuild report groups and log streams are created per build id; ECR GetAuthorizationToken has "
                       "no resource type; S3/KMS action wildcards are CDK's grant sets on one bucket and one key."},
        ], apply_to_children=True)
        NagSuppressions.add_resource_suppressions(self.pipeline, [{
            "id": "AwsSolutions-IAM5",
            "reason": "CodePipeline writes its artifacts under generated keys of the artifacts bucket; S3/KMS action "
                      "wildcards are CDK's grant sets.",
        }], apply_to_children=True)

    def _grant_build(self, config: FeedbackBrainConfig, data: DataStack, ml: MlStack) -> None:
        """What buildspec.yml's build role must do (its header lists these calls)."""
        aws = config.aws
        for repository in ml.repositories.values():
            repository.grant_pull_push(self.project)
            self.project.add_to_role_policy(iam.PolicyStatement(
                actions=["ecr:DescribeRepositories"], resources=[repository.repository_arn]))
        def sm(resource, name):
            return self.format_arn(service="sagemaker", resource=resource, resource_name=name)
        self.project.add_to_role_policy(iam.PolicyStatement(
            sid="UpsertPipeline",
            actions=["sagemaker:DescribePipeline", "sagemaker:CreatePipeline", "sagemaker:UpdatePipeline",
                     "sagemaker:StartPipelineExecution", "sagemaker:AddTags"],
            resources=[ml.pipeline_arn]))
        self.project.add_to_role_policy(iam.PolicyStatement(
            sid="ModelPackageGroup",
            actions=["sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackageGroup"],
            resources=[sm("model-package-group", aws.model_package_group)]))
        self.project.add_to_role_policy(iam.PolicyStatement(
            sid="DeployRules", actions=["events:PutRule", "events:PutTargets", "events:ListTargetsByRule"],
            resources=[ml.approval_rule.attr_arn, ml.endpoint_rule.attr_arn]))
        self.project.add_to_role_policy(iam.PolicyStatement(
            sid="DeployLambdaPermission", actions=["lambda:AddPermission"], resources=[ml.deploy_function.function_arn]))
        self.project.add_to_role_policy(iam.PolicyStatement(
            sid="PassPipelineRole", actions=["iam:PassRole"], resources=[ml.pipeline_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        data.buckets["artifacts"].grant_read_write(self.project)
        data.key.grant_encrypt_decrypt(self.project)
