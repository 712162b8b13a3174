"""Finding the monitor's inputs: a model dir or model.tar.gz, local or on S3, and baseline files."""
from __future__ import annotations

import logging
import tarfile
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_ARCHIVE = "model.tar.gz"


class ArtifactError(ValueError):
    """An input the monitor needs is missing or unreadable."""


def download_s3(uri: str, destination_dir: Path) -> Path:
    """Copy s3://bucket/key to destination_dir/<basename> (inside a SageMaker job the role grants read)."""
    import boto3

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ArtifactError(f"not an S3 object URI: {uri!r}")
    destination = destination_dir / Path(key).name
    destination_dir.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s -> %s", uri, destination)
    boto3.client("s3").download_file(bucket, key, str(destination))
    return destination


def local_path(location: str, scratch: Path | None = None) -> Path:
    """A local path for location (a path, or an s3:// URI downloaded into scratch)."""
    if location.startswith("s3://"):
        return download_s3(location, scratch or Path(tempfile.mkdtemp(prefix="fbrain-monitor-")))
    path = Path(location)
    if not path.exists():
        raise ArtifactError(f"{location} does not exist")
    return path


def resolve_model_dir(location: str, scratch: Path | None = None) -> Path:
    """An extracted model directory from a directory, a model.tar.gz, or a directory holding one."""
    path = local_path(location, scratch)
    if path.is_dir() and not (path / "config.json").exists() and (path / MODEL_ARCHIVE).exists():
        path = path / MODEL_ARCHIVE
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ArtifactError(f"{path} is neither a model directory nor a tar archive")
        if scratch is not None:
            scratch.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix="fbrain-model-", dir=scratch))
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="data")
        logger.info("extracted %s into %s", path, target)
        path = target
    if not (path / "onnx").is_dir():
        raise ArtifactError(
            f"{path} has no onnx/ folder: expected a model directory as written by training "
            "(config.json, tokenizer files, fbrain_model.json, onnx/model.onnx)"
        )
    return path
