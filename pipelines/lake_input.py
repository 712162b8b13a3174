"""`--param InputDataUri=lake:silver[@SNAPSHOT]`: train on the live loop's silver table.

The processing image reads files, not Iceberg (pyiceberg and catalog permissions stay out of it), so the
CLI resolves the table before the execution starts: it exports the snapshot (the current one, or
SNAPSHOT) with the corrections applied (operations.training_export) under
`s3://<aws.bucket>/lake-exports/silver-snapshot-<id>/` (the local object store for `pipeline run --local`,
S3 for `pipeline start`) and passes that URI. The execution's InputDataUri therefore names the snapshot
it read, in `fbrain pipeline describe` locally and in the SageMaker execution's parameters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pipelines.config import FeedbackBrainConfig
from pipelines.local.parameters import ParameterError

LAKE_PREFIX = "lake:"
INPUT_PARAMETER = "InputDataUri"


def lake_snapshot(uri: str) -> Optional[int]:
    """`lake:silver@123` -> 123; `lake:silver` -> None (the current snapshot); another table is refused."""
    table, _, snapshot = uri[len(LAKE_PREFIX):].partition("@")
    if table != "silver":
        raise ParameterError(f"{INPUT_PARAMETER}={uri!r}: only the silver table is training input "
                             "(lake:silver or lake:silver@SNAPSHOT_ID)")
    try:
        return int(snapshot) if snapshot else None
    except ValueError:
        raise ParameterError(f"{INPUT_PARAMETER}={uri!r}: the snapshot after @ must be an Iceberg snapshot id") from None


def resolve_lake_input(config: FeedbackBrainConfig, params: dict[str, str], workspace: Path,
                       local: bool, s3: Any = None) -> tuple[dict[str, str], Optional[dict[str, Any]]]:
    """The parameters with a `lake:` InputDataUri replaced by its export's URI, and what was exported (None when
    InputDataUri names no table)."""
    uri = params.get(INPUT_PARAMETER, "")
    if not uri.startswith(LAKE_PREFIX):
        return params, None
    snapshot = lake_snapshot(uri)
    from operations.lake import Lake
    from operations.training_export import export_to_bucket

    lake = Lake(config.loop, workspace)
    try:
        if local:
            exported = export_to_bucket(lake, config.aws.bucket, snapshot, local_store=config.local.object_store)
        else:
            if s3 is None:
                import boto3

                s3 = boto3.client("s3", region_name=config.aws.region)
            exported = export_to_bucket(lake, config.aws.bucket, snapshot, s3=s3)
    except ValueError as exc:  # silver empty, or no such snapshot
        raise ParameterError(f"{INPUT_PARAMETER}={uri!r}: {exc}") from None
    return {**params, INPUT_PARAMETER: exported["input_data_uri"]}, exported
