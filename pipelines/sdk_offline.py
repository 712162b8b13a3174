"""A SageMaker SDK v3 session that builds pipeline definitions without touching the network.

Building a definition only needs the SDK to *describe* requests, yet several SDK code paths
reach out to AWS unless told otherwise (see docs FINDINGS, SDK section):
- an import-time boto3 client needs a region, so one is set before `sagemaker` is imported;
- `Session.default_bucket()` lists/creates S3 buckets even when a bucket name is given, so
  the bucket is pinned on the session object;
- role validation calls IAM unless `SAGEMAKER_VALIDATE_ROLE=false`;
- every telemetry-decorated SDK call starts a thread that calls STS and an HTTPS endpoint.

Telemetry: the documented opt-out (`TelemetryOptOut` in the SDK's `sagemaker_config`) is
honoured, but the SDK re-validates the whole config JSON schema on *every* config lookup,
which makes a build several times slower. So the session here carries no sagemaker_config
and telemetry sending is replaced, for this process, by a no-op that only logs at debug
level. `disable_sdk_telemetry()` is idempotent.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

DEFAULT_REGION = "us-east-1"
"""Region used when neither the caller nor the environment names one."""

logger = logging.getLogger(__name__)


def prepare_environment(region: str | None = None) -> str:
    """Set the environment the SDK needs for offline building; returns the region in force.

    Must run before the first `import sagemaker...`; setdefault keeps what the caller set.
    """
    chosen = region or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    os.environ.setdefault("AWS_DEFAULT_REGION", chosen)
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    return chosen


_telemetry_disabled = False


def disable_sdk_telemetry() -> None:
    """Replace the SDK's telemetry sender with a no-op for this process."""
    global _telemetry_disabled
    if _telemetry_disabled:
        return
    prepare_environment()
    from sagemaker.core.telemetry import telemetry_logging

    def _drop_telemetry_event(*_args, **_kwargs):
        logger.debug("SageMaker SDK telemetry event dropped (offline build)")
        return None

    telemetry_logging._send_telemetry_request = _drop_telemetry_event
    telemetry_logging._send_telemetry_request_sync = _drop_telemetry_event
    _telemetry_disabled = True


MINIMAL_SDK_CONFIG = {"SchemaVersion": "1.0"}
"""Smallest valid SDK-defaults document; given to the session so no defaults file is read."""

_sessions: dict[tuple[str, str], object] = {}


def offline_pipeline_session(region: str, bucket: str):
    """A `PipelineSession` that resolves its region, bucket and telemetry without AWS calls.

    `boto3.Session(region_name=...)` makes no call (botocore clients only send on a request)
    and PipelineSession only records requests, it never sends them. One session per
    (region, bucket) is kept: creating one builds five botocore clients (~1 s here), and a
    PipelineSession holds no state between steps that outlives a `run()`/`train()` call.
    """
    key = (region, bucket)
    if key in _sessions:
        return _sessions[key]
    prepare_environment(region)
    disable_sdk_telemetry()
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    boto_session = boto3.Session(region_name=region)
    # A minimal config keeps the SDK from reading SDK-defaults files (which may name S3).
    session = PipelineSession(
        boto_session=boto_session,
        default_bucket=bucket,
        sagemaker_config=MINIMAL_SDK_CONFIG,
    )
    # default_bucket() would otherwise check (and maybe create) the bucket through S3.
    session._default_bucket = bucket
    # No config from here on: the SDK re-validates it on every lookup (slow), and a user's
    # defaults must not change the definition (determinism across machines).
    session.sagemaker_config = None
    _sessions[key] = session
    return session


class _LocalClientMethodNames:
    """Stands in for `LocalSagemakerClient` where the SDK only reads its method names."""

    def create_processing_job(self):  # pragma: no cover - only the name is read
        raise NotImplementedError

    def create_transform_job(self):  # pragma: no cover - only the name is read
        raise NotImplementedError


@contextlib.contextmanager
def quiet_fast_build() -> Iterator[None]:
    """Build-time adjustments to the SDK, undone on exit.

    - `ProcessingStep.__init__` instantiates a whole `LocalSagemakerClient` (a new boto3
      session and clients, ~0.4 s each time) only to read `create_processing_job.__name__`
      for its step_args check; a stand-in with the same method names keeps the check.
    - The SDK logs expected notices at INFO/WARNING for every step (job names popped,
      "no wait in a PipelineSession"); records below ERROR are dropped while building.
    """
    import warnings

    from sagemaker.mlops.workflow import steps as workflow_steps

    original_client = workflow_steps.LocalSagemakerClient
    # SDK modules set their own logger levels, so a parent level would not hold them.
    original_disable = logging.root.manager.disable
    workflow_steps.LocalSagemakerClient = _LocalClientMethodNames
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            yield
    finally:
        workflow_steps.LocalSagemakerClient = original_client
        logging.disable(original_disable)
