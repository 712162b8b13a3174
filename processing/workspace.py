"""Where a job runs: inside a SageMaker job, or locally in a workspace folder.

A job module behaves locally unless it runs in a SageMaker job, so that `python -m
processing.feature_engineering ...` run by hand needs no AWS account: secrets come from
`<workspace>/secrets/`, features go to a local Feature Store under the workspace. The embedded
runner (and `fbrain loop serve`) name the workspace in `FBRAIN_WORKSPACE`; by hand it is `.fbrain`.
SageMaker is recognised by the job configuration file it writes into every processing and
training container (its documented contract), so nothing has to be set there; a Lambda function (the live
loop's handlers on AWS) by the AWS_LAMBDA_FUNCTION_NAME variable its runtime sets. Neither has a workspace:
their secrets come from Secrets Manager, and their file system is read-only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

WORKSPACE_ENV = "FBRAIN_WORKSPACE"
DEFAULT_WORKSPACE = ".fbrain"
LOCAL_STORE_FOLDER = "featurestore"
"""The local Feature Store's folder inside a workspace (processing.feature_store; the embedded runner too)."""
SAGEMAKER_JOB_CONFIG_FILES = ("/opt/ml/config/processingjobconfig.json", "/opt/ml/input/config/trainingjobconfig.json")
"""Written by SageMaker into processing and training containers."""
LAMBDA_FUNCTION_ENV = "AWS_LAMBDA_FUNCTION_NAME"
"""Set by the AWS Lambda runtime in every function (a reserved variable)."""


def in_sagemaker_job() -> bool:
    """True inside a SageMaker processing or training job."""
    return any(Path(path).is_file() for path in SAGEMAKER_JOB_CONFIG_FILES)


def in_lambda_function() -> bool:
    """True inside an AWS Lambda function."""
    return bool(os.environ.get(LAMBDA_FUNCTION_ENV))


def local_workspace() -> Optional[Path]:
    """The workspace of a local run: `$FBRAIN_WORKSPACE`, else `.fbrain` unless this is a SageMaker job or a
    Lambda function (None)."""
    named = os.environ.get(WORKSPACE_ENV)
    if named:
        return Path(named)
    return None if in_sagemaker_job() or in_lambda_function() else Path(DEFAULT_WORKSPACE)
