"""What every step handler receives and returns, and helpers shared by the job steps."""
from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.local.graph import StepSpec
from pipelines.local.object_store import ObjectStore
from pipelines.local.settings import RunnerSettings

LOCAL_ACCOUNT_ID = "000000000000"
"""Account id in the ARNs the runner makes up (no AWS account is involved)."""
MAX_JOB_NAME_LENGTH = 63
"""SageMaker's limit on processing and training job names."""


class StepFailure(RuntimeError):
    """A step that ran and failed; `reason` becomes the step's and the execution's FailureReason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class StepContext:
    spec: StepSpec
    arguments: dict[str, Any]
    """The step's Arguments with every expression resolved."""
    execution_id: str
    pipeline_name: str
    job_name: str
    step_dir: Path
    """Root of the step's emulated container: `/opt/ml/x` lives at `step_dir/opt/ml/x`."""
    log_path: Path
    store: ObjectStore
    base_env: dict[str, str]
    """Process environment for jobs: the runner's own, offline flags and local-emulation variables."""
    settings: RunnerSettings
    workspace: Path


@dataclass
class StepResult:
    properties: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    property_files: dict[str, str] = field(default_factory=dict)


def job_name(execution_id: str, step_name: str) -> str:
    """`pipelines-<execution>-<step>`, trimmed to a valid SageMaker job name."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", f"pipelines-{execution_id}-{step_name}").strip("-")
    return name[:MAX_JOB_NAME_LENGTH].rstrip("-")


def arn(resource: str, name: str) -> str:
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    return f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT_ID}:{resource}/{name}"


def entrypoint_for_image(image_uri: str | None, settings: RunnerSettings, step_name: str) -> list[str]:
    """The command a container image would run, from its ECR repository name."""
    repository = (image_uri or "").rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    if repository in settings.image_entrypoints:
        return list(settings.image_entrypoints[repository])
    raise StepFailure(f"step {step_name}: the job names no ContainerEntrypoint and image {image_uri!r} "
                      f"(repository {repository!r}) is not one the runner knows "
                      f"({sorted(settings.image_entrypoints)}); add ContainerEntrypoint to the definition")


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def make_tar_gz(source_dir: Path, archive: Path) -> Path:
    """Archive a folder's content at the archive root (SageMaker's model.tar.gz layout).

    Byte-for-byte reproducible (sorted entries, zeroed times and owners), so an unchanged
    model gives an unchanged archive and downstream caches still hit."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(Path(source_dir).rglob("*")):
            tar.add(path, arcname=path.relative_to(source_dir).as_posix(), recursive=False, filter=_normalized)
    with archive.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
        compressed.write(buffer.getvalue())
    return archive


def extract_tar_gz(archive: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode="r:*") as tar:
        tar.extractall(target, filter="data")
    return target


def env_strings(values: dict[str, Any] | None, remap) -> dict[str, str]:
    """A job's Environment map as strings, `/opt/ml` prefixes remapped."""
    from pipelines.local.expressions import to_text

    return {str(k): remap(to_text(v)) for k, v in (values or {}).items()}
