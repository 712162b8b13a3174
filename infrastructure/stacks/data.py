"""Data stack: the KMS key, the lake and pipeline buckets, the Glue database and the DynamoDB tables."""
from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cdk_nag import NagSuppressions
from constructs import Construct

from operations.aws_tables import ALERTING_TABLE_KEYS, LOOP_TABLE_KEYS, TableKeys
from pipelines.infrastructure_config import InfrastructureConfig
from pipelines.config import FeedbackBrainConfig

BUCKET_KINDS = ("raw", "processed", "features", "models")
"""Data buckets besides the pipeline's own (`aws.bucket`, the artifacts bucket)."""


def table_names(config: FeedbackBrainConfig, settings: InfrastructureConfig) -> dict[str, str]:
    """DynamoDB table name by its key-schema field (operations.aws_tables): the loop's from the `loop` section,
    incidents and review queue from the `alerting` section."""
    names = {field_name: getattr(config.loop, field_name) for field_name in LOOP_TABLE_KEYS}
    names.update({field_name: getattr(config.alerting, field_name) for field_name in ALERTING_TABLE_KEYS})
    return names


def lake_warehouse(data: "DataStack", settings: InfrastructureConfig) -> str:
    """The Iceberg warehouse of the deployed lake (loop.warehouse on AWS)."""
    return f"s3://{data.buckets['processed'].bucket_name}/{settings.lake_prefix}"


class DataStack(cdk.Stack):
    """Everything that holds data; other stacks receive these constructs, never names."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FeedbackBrainConfig,
                 settings: InfrastructureConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = kms.Key(
            self, "DataKey",
            alias=f"alias/{settings.project}-data",
            description="feedback-brain: buckets, tables, streams, secrets, SageMaker volumes and outputs",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self._key_policy_for_services()

        # Server access logs cannot be delivered to a bucket encrypted with a customer-managed key
        # (S3 log delivery writes with SSE-S3), so this one bucket uses S3-managed keys.
        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            bucket_name=f"{settings.bucket_name_prefix}-access-logs-{self.account}-{self.region}",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=cdk.Duration.days(settings.access_log_expiry_days),
                                              noncurrent_version_expiration=cdk.Duration.days(settings.noncurrent_version_expiry_days))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        NagSuppressions.add_resource_suppressions(self.access_logs, [{
            "id": "AwsSolutions-S1",
            "reason": "This is the server access log bucket itself; logging it into itself would loop.",
        }])

        self.bucket_names = {kind: f"{settings.bucket_name_prefix}-{kind}-{self.account}-{self.region}"
                             for kind in BUCKET_KINDS}
        self.bucket_names["artifacts"] = config.aws.bucket
        """Bucket name by kind as given to CloudFormation (the artifacts bucket's is a plain string)."""
        self.buckets: dict[str, s3.Bucket] = {
            kind: self._bucket(kind, name, self._lifecycle(kind, settings)) for kind, name in self.bucket_names.items()}

        self.glue_database = glue.CfnDatabase(
            self, "LakeDatabase", catalog_id=self.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=config.loop.namespace,
                description="feedback-brain lake: Iceberg tables bronze / silver / gold / quarantine",
                location_uri=f"s3://{self.buckets['processed'].bucket_name}/{settings.lake_prefix}/",
            ),
        )

        self.table_names = table_names(config, settings)
        self.tables: dict[str, dynamodb.Table] = {
            field_name: self._table(field_name, self.table_names[field_name], keys, settings)
            for field_name, keys in {**LOOP_TABLE_KEYS, **ALERTING_TABLE_KEYS}.items()}
        """Table by its name field (`feedback_metadata_table`, ...)."""

    def _key_policy_for_services(self) -> None:
        """Services that use the key on our behalf, each limited to this account's resources."""
        def account_arn(service, resource):
            return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"
        encrypt = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
        # Log groups created with this key (Lambda, CodeBuild, API access logs, CloudTrail's copy).
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchLogGroups", actions=encrypt, resources=["*"],  # in a key policy "*" means this key
            principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": account_arn("logs", "log-group:*")}}))
        # CloudWatch alarms publishing to the encrypted topic; EventBridge sending to encrypted dead-letter queues.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AlarmsAndEvents", actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com"), iam.ServicePrincipal("events.amazonaws.com")],
            conditions={"StringEquals": {"aws:SourceAccount": self.account}}))
        # CloudTrail encrypts its log files with this key (trails of this account only).
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailLogFiles", actions=["kms:GenerateDataKey*"], resources=["*"],
            principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
            conditions={"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                       f"arn:{self.partition}:cloudtrail:*:{self.account}:trail/*"},
                        "StringEquals": {"aws:SourceAccount": self.account}}))
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailDescribeKey", actions=["kms:DescribeKey"], resources=["*"],
            principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")]))
        # Macie reads the raw bucket's objects through its service-linked role, which exists only once Macie is
        # enabled: named by condition, because a key policy may not name a principal that does not exist yet.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="MacieServiceLinkedRole", actions=["kms:Decrypt"], resources=["*"],
            principals=[iam.AccountRootPrincipal()],
            conditions={"StringEquals": {"aws:PrincipalArn": f"arn:{self.partition}:iam::{self.account}:role/"
                                         "aws-service-role/macie.amazonaws.com/AWSServiceRoleForAmazonMacie"}}))

    def _bucket(self, kind: str, name: str, lifecycle: list[s3.LifecycleRule]) -> s3.Bucket:
        return s3.Bucket(
            self, f"{kind.capitalize()}Bucket",
            bucket_name=name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,  # one KMS data key per bucket-object batch: ~99% fewer KMS requests
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{kind}/",
            lifecycle_rules=lifecycle,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    @staticmethod
    def _lifecycle(kind: str, settings: InfrastructureConfig) -> list[s3.LifecycleRule]:
        rules = [s3.LifecycleRule(
            id="old-versions-and-uploads",
            noncurrent_version_expiration=cdk.Duration.days(settings.noncurrent_version_expiry_days),
            abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
        )]
        if kind == "raw":
            rules.append(s3.LifecycleRule(id="raw-to-cold-storage", transitions=[
                s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                              transition_after=cdk.Duration.days(settings.raw_infrequent_access_days)),
                s3.Transition(storage_class=s3.StorageClass.GLACIER,
                              transition_after=cdk.Duration.days(settings.raw_glacier_days)),
            ]))
        if kind == "artifacts":
            rules.append(s3.LifecycleRule(id="expire-data-capture", prefix=f"{settings.capture_prefix}/",
                                          expiration=cdk.Duration.days(settings.capture_expiry_days)))
        return rules

    def _table(self, field_name: str, name: str, keys: TableKeys, settings: InfrastructureConfig) -> dynamodb.Table:
        construct_id = "".join(part.capitalize() for part in field_name.removesuffix("_table").split("_")) + "Table"
        return dynamodb.Table(
            self, construct_id,
            table_name=name,
            partition_key=dynamodb.Attribute(name=keys.partition, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=keys.sort, type=dynamodb.AttributeType.STRING) if keys.sort else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            stream=dynamodb.StreamViewType[settings.stream_view_type] if field_name == "feedback_metadata_table" else None,
            deletion_protection=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    def grant_lake(self, function, stack: cdk.Stack, namespace: str, lake_prefix: str) -> None:
        """Read and write the Iceberg lake through the Glue catalog (operations.lake.Lake): its data and metadata
        files under the processed bucket's lake prefix, and the catalog calls pyiceberg makes. Opening the lake
        calls CreateDatabase / CreateTable even when they exist (pyiceberg's *_if_not_exists catch AlreadyExists),
        and a commit is an UpdateTable."""
        self.buckets["processed"].grant_read_write(function, f"{lake_prefix}/*")
        self.buckets["processed"].grant_read(function)  # pyiceberg lists the bucket when it plans a scan
        self.key.grant_encrypt_decrypt(function)
        function.add_to_role_policy(iam.PolicyStatement(
            sid="LakeCatalog", actions=["glue:GetDatabase", "glue:CreateDatabase", "glue:GetTable", "glue:GetTables",
                                        "glue:CreateTable", "glue:UpdateTable"],
            resources=[stack.format_arn(service="glue", resource="catalog"),
                       stack.format_arn(service="glue", resource="database", resource_name=namespace),
                       stack.format_arn(service="glue", resource="table", resource_name=f"{namespace}/*")]))

    def data_capture_uri(self, settings: InfrastructureConfig) -> str:
        return f"s3://{self.buckets['artifacts'].bucket_name}/{settings.capture_prefix}"
