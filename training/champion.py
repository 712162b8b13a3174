"""The champion on SageMaker: the newest Approved model package of a group, and its recorded evaluation.

The RegisterModel step stores the candidate's evaluation.json as the package's
`ModelMetrics.ModelQuality.Statistics`; the EvaluateModel step of a later execution reads it
back here, so the no-regression gate compares the candidate with the champion's recorded
metrics (no model download, no second scoring pass). Locally the runner passes the champion's
model directory instead (FBRAIN_CHAMPION_MODEL_DIR), and evaluation scores it on the same rows.

boto3 is imported inside the functions: this module is imported by the evaluation job, which
must start without AWS on a laptop.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

log = logging.getLogger(__name__)

APPROVED = "Approved"


class ChampionLookupError(RuntimeError):
    """The registry could not be read, or the champion's recorded metrics are missing or unreadable."""


@dataclass(frozen=True)
class ApprovedPackage:
    """What DescribeModelPackage says about the newest Approved package of a group."""

    arn: str
    group: str
    version: str
    model_data_url: Optional[str]
    statistics_uri: Optional[str]
    """ModelMetrics.ModelQuality.Statistics.S3Uri: the evaluation.json recorded at registration."""
    description: dict[str, Any]
    """The whole DescribeModelPackage response (drift-check baselines, approval, ...)."""


@dataclass(frozen=True)
class RegisteredChampion:
    package: ApprovedPackage
    evaluation: dict[str, Any]
    """The champion's evaluation.json as recorded (its `tasks` hold the per-task metrics)."""

    @property
    def name(self) -> str:
        return f"v{self.package.version}"


def _client_error():
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def latest_approved_package(sagemaker_client: Any, model_package_group: str) -> Optional[ApprovedPackage]:
    """The newest Approved package of the group (what the deploy rule deploys), or None when there is none."""
    try:
        listing = sagemaker_client.list_model_packages(
            ModelPackageGroupName=model_package_group, ModelApprovalStatus=APPROVED,
            SortBy="CreationTime", SortOrder="Descending", MaxResults=1,
        )
        summaries = listing.get("ModelPackageSummaryList", [])
        if not summaries:
            return None
        arn = summaries[0]["ModelPackageArn"]
        described = sagemaker_client.describe_model_package(ModelPackageName=arn)
    except _client_error() as error:
        raise ChampionLookupError(
            f"cannot read Approved packages of model package group {model_package_group!r}: {error} "
            "(the job's role needs sagemaker:ListModelPackages and sagemaker:DescribeModelPackage)") from error
    containers = (described.get("InferenceSpecification") or {}).get("Containers") or []
    statistics = ((described.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
    return ApprovedPackage(
        arn=arn,
        group=described.get("ModelPackageGroupName", model_package_group),
        version=str(described.get("ModelPackageVersion", "")),
        model_data_url=next((c["ModelDataUrl"] for c in containers if c.get("ModelDataUrl")), None),
        statistics_uri=statistics.get("S3Uri"),
        description=described,
    )


def read_s3_json(s3_client: Any, uri: str) -> dict[str, Any]:
    """The JSON document at s3://bucket/key."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ChampionLookupError(f"not an S3 object URI: {uri!r}")
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except _client_error() as error:
        raise ChampionLookupError(f"cannot read {uri}: {error} (the job's role needs s3:GetObject on it)") from error
    try:
        document = json.loads(body)
    except ValueError as error:
        raise ChampionLookupError(f"{uri} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ChampionLookupError(f"{uri} holds a {type(document).__name__}, not an evaluation report")
    return document


def registered_champion(model_package_group: str, sagemaker_client: Any = None,
                        s3_client: Any = None) -> Optional[RegisteredChampion]:
    """The group's champion with its recorded evaluation, or None when no package is Approved.

    An Approved package without recorded metrics is an error, not "no champion": the gate would
    otherwise wave through any candidate."""
    if sagemaker_client is None or s3_client is None:
        import boto3

        try:
            sagemaker_client = sagemaker_client or boto3.client("sagemaker")
            s3_client = s3_client or boto3.client("s3")
        except _client_error() as error:
            raise ChampionLookupError(
                f"cannot reach the model registry for group {model_package_group!r}: {error}. On SageMaker the job's "
                "region and role apply; by hand, set AWS credentials and AWS_DEFAULT_REGION, or leave out "
                "--model-package-group to evaluate without a champion") from error
    package = latest_approved_package(sagemaker_client, model_package_group)
    if package is None:
        log.info("no Approved model package in group %s: no champion", model_package_group)
        return None
    if not package.statistics_uri:
        raise ChampionLookupError(
            f"champion {package.arn} has no ModelMetrics.ModelQuality.Statistics: its evaluation was not recorded "
            "at registration, so the no-regression gate has nothing to compare with")
    log.info("champion %s (version %s): recorded metrics %s", package.arn, package.version, package.statistics_uri)
    return RegisteredChampion(package, read_s3_json(s3_client, package.statistics_uri))
