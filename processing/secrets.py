"""Secrets by id: AWS Secrets Manager on AWS, a per-workspace secret file locally.

No secret value is ever written in code or configuration, only its id. Where the value comes from:
- a SageMaker job given a secret id reads it with `GetSecretValue`; a missing secret or missing
  permission fails the job with a message naming the secret and what to create (the
  infrastructure app creates it);
- a local run (processing.workspace: the embedded runner names the workspace in `FBRAIN_WORKSPACE`;
  a module run by hand uses `.fbrain`) keeps each secret in `<workspace>/secrets/<id>`, created on
  first use with 32 random bytes and readable by the owner only. Deleting that file rotates it.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import secrets as random_secrets
from pathlib import Path
from typing import Optional

from processing.workspace import WORKSPACE_ENV, local_workspace

log = logging.getLogger(__name__)

SECRETS_FOLDER = "secrets"
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


class SecretUnavailable(RuntimeError):
    """The secret could not be read; the message says which one and what to do."""


def local_secret_path(secret_id: str, workspace: str | os.PathLike) -> Path:
    """Where a local secret lives: `<workspace>/secrets/<id with unsafe characters replaced>`."""
    return Path(workspace) / SECRETS_FOLDER / _SAFE_ID.sub("_", secret_id.strip("/"))


def read_local_secret(secret_id: str, workspace: str | os.PathLike) -> str:
    """The workspace's secret of that id, generated (64 hex characters) the first time it is asked for."""
    path = local_secret_path(secret_id, workspace)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        value = random_secrets.token_hex(32)
        # O_EXCL: two processes creating it at once keep the first one's value.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(value)
            log.info("created local secret %s (random, per workspace)", path)
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise SecretUnavailable(f"local secret file {path} is empty: delete it to generate a new one")
    return value


def read_aws_secret(secret_id: str, client=None) -> str:
    """`SecretString` of a Secrets Manager secret (the AWS SDK's own retries apply)."""
    import botocore.exceptions

    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    try:
        value = client.get_secret_value(SecretId=secret_id).get("SecretString") or ""
    except (botocore.exceptions.ClientError, botocore.exceptions.NoCredentialsError,
            botocore.exceptions.EndpointConnectionError) as exc:
        raise SecretUnavailable(
            f"cannot read secret {secret_id!r} from AWS Secrets Manager ({exc}). Create it (the infrastructure "
            f"app's Operations stack does) and allow the job's role secretsmanager:GetSecretValue on it, or run "
            f"locally with {WORKSPACE_ENV}=DIR set to keep a per-workspace secret file instead") from None
    if not value:
        raise SecretUnavailable(f"secret {secret_id!r} in AWS Secrets Manager has no SecretString")
    return value


def read_secret(secret_id: str, default_id: str, workspace: Optional[Path] = None, client=None) -> str:
    """The value of `secret_id` (`default_id` when empty), from the workspace or from Secrets Manager (module doc).

    `workspace` None means processing.workspace.local_workspace(): None again inside a SageMaker job."""
    workspace = workspace if workspace is not None else local_workspace()
    if workspace is None:
        if not secret_id:
            raise SecretUnavailable("no secret id configured for this SageMaker job (the pipeline passes "
                                    "PseudonymSaltSecretId into processing.pseudonym_salt_secret_id)")
        return read_aws_secret(secret_id, client)
    return read_local_secret(secret_id or default_id, workspace)


@functools.lru_cache(maxsize=32)
def _read_secret_once(secret_id: str, default_id: str, workspace: Optional[Path]) -> str:
    return read_secret(secret_id, default_id, workspace)


def read_secret_cached(secret_id: str, default_id: str) -> str:
    """`read_secret`, once per process, secret and workspace (worker processes read it once, not per chunk)."""
    return _read_secret_once(secret_id, default_id, local_workspace())
