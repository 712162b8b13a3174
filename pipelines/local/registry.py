"""The local model registry: MLflow Model Registry on `sqlite:///<workspace>/mlflow.db`.

A CreateModelPackage request becomes a version of the registered model named after the
ModelPackageGroupName; the extracted model.tar.gz is the version's artifacts (so `fbrain
serve` can load the directory as is), the ModelMetrics statistics become metrics and
`metric.*` tags, the approval status is the tag `approval_status`, Approved versions get the
alias `champion`, and `<workspace>/registry/<group>/<version>/model_package.json` mimics
DescribeModelPackage. MLflow is imported lazily: it takes seconds.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pipelines.local.expressions import to_text
from pipelines.local.jobs import LOCAL_ACCOUNT_ID, StepFailure, extract_tar_gz
from pipelines.local.object_store import ObjectStore, ObjectStoreError
from pipelines.local.settings import RunnerSettings
from training.tracking import LOCAL_ARTIFACTS_DIR

LOG = logging.getLogger("fbrain.runner")
REGISTRY_DB = "mlflow.db"
ARTIFACTS_DIR = LOCAL_ARTIFACTS_DIR
RECORDS_DIR = "registry"
PACKAGE_RECORD = "model_package.json"
APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")
DEFAULT_APPROVAL = "PendingManualApproval"
MAX_METRIC_KEY_LENGTH = 250
"""MLflow's limit on metric and tag keys."""
_METRIC_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_\-./ ]+")


def tracking_uri(workspace: Path) -> str:
    return f"sqlite:///{(Path(workspace) / REGISTRY_DB).resolve()}"


def _client(workspace: Path):
    from mlflow import MlflowClient

    uri = tracking_uri(workspace)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def flatten_metrics(document: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON document as `a.b.c` keys (booleans and non-finite values left out)."""
    found: dict[str, float] = {}
    if isinstance(document, dict):
        for key, value in document.items():
            found.update(flatten_metrics(value, f"{prefix}{key}."))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.update(flatten_metrics(value, f"{prefix}{index}."))
    elif isinstance(document, (int, float)) and not isinstance(document, bool) and math.isfinite(document):
        key = _METRIC_KEY_CHARACTERS.sub("_", prefix.rstrip("."))[:MAX_METRIC_KEY_LENGTH]
        found[key] = float(document)
    return found


def _pip_requirements(settings: RunnerSettings) -> list[str]:
    requirements = []
    for name in settings.model_requirements:
        try:
            requirements.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return requirements


def _metric_files(request: dict[str, Any]) -> dict[str, str]:
    """`ModelQuality.Statistics` -> S3 URI for every MetricsSource in ModelMetrics and DriftCheckBaselines."""
    files = {}
    for section in ("ModelMetrics", "DriftCheckBaselines"):
        for group, sources in (request.get(section) or {}).items():
            for kind, source in (sources or {}).items():
                if isinstance(source, dict) and source.get("S3Uri"):
                    files[f"{section}.{group}.{kind}"] = to_text(source["S3Uri"])
    return files


def _ensure_experiment(client, workspace: Path, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (Path(workspace) / ARTIFACTS_DIR).resolve()
    location.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=location.as_uri())


def register_model_package(workspace: Path, request: dict[str, Any], store: ObjectStore, settings: RunnerSettings,
                           execution_id: str, step_name: str) -> dict[str, Any]:
    """Register a resolved CreateModelPackage request; returns its DescribeModelPackage-like record."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    group = request.get("ModelPackageGroupName")
    if not group:
        raise StepFailure("only versioned model packages are supported: set ModelPackageGroupName")
    approval = request.get("ModelApprovalStatus") or DEFAULT_APPROVAL
    if approval not in APPROVAL_STATUSES:
        raise StepFailure(f"ModelApprovalStatus {approval!r} is not one of {APPROVAL_STATUSES}")
    containers = (request.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers or not containers[0].get("ModelDataUrl"):
        raise StepFailure("InferenceSpecification.Containers[0].ModelDataUrl is required to register a model")
    model_data_url = to_text(containers[0]["ModelDataUrl"])
    try:
        archive = store.path(model_data_url)
        if not archive.is_file():
            raise ObjectStoreError(f"no model archive at {model_data_url}")
        metric_documents = {key: json.loads(store.read_text(uri)) for key, uri in _metric_files(request).items()}
    except (ObjectStoreError, json.JSONDecodeError) as error:
        raise StepFailure(f"cannot register {group}: {error}") from None

    client = _client(workspace)
    experiment_id = _ensure_experiment(client, workspace, settings.registry_experiment)
    statistics = metric_documents.get("ModelMetrics.ModelQuality.Statistics", {})
    metrics = flatten_metrics(statistics)
    with tempfile.TemporaryDirectory(dir=workspace, prefix=".register-") as scratch:
        model_dir = extract_tar_gz(archive, Path(scratch) / "model")
        (model_dir / "requirements.txt").write_text("\n".join(_pip_requirements(settings)) + "\n", encoding="utf-8")
        run = client.create_run(experiment_id, run_name=f"{step_name}-{execution_id}",
                                tags={"fbrain.execution_id": execution_id, "fbrain.step": step_name,
                                      "fbrain.model_data_url": model_data_url})
        run_id = run.info.run_id
        now = int(datetime.now(timezone.utc).timestamp() * 1000)
        items = [Metric(key, value, now, 0) for key, value in sorted(metrics.items())]
        for start in range(0, len(items), settings.metric_batch_size):
            client.log_batch(run_id, metrics=items[start:start + settings.metric_batch_size])
        documents_dir = Path(scratch) / "model_metrics"
        documents_dir.mkdir()
        for key, document in metric_documents.items():
            (documents_dir / f"{key}.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
        client.log_artifacts(run_id, str(documents_dir), "model_metrics")
        logged = client.create_logged_model(experiment_id=experiment_id, name=group, source_run_id=run_id,
                                            tags={"fbrain.model_data_url": model_data_url})
        client.log_model_artifacts(logged.model_id, str(model_dir))
        client.finalize_logged_model(logged.model_id, "READY")
        client.set_terminated(run_id, "FINISHED")
    try:
        client.create_registered_model(group, description="feedback-brain model package group")
    except MlflowException as error:
        if "RESOURCE_ALREADY_EXISTS" not in str(error.error_code):
            raise
    ranked = sorted(metrics, key=lambda key: (not key.startswith("gate."), key))[:settings.max_version_metric_tags]
    tags = {settings.approval_tag: approval, "fbrain.execution_id": execution_id, "fbrain.model_data_url": model_data_url,
            **{f"metric.{key}": str(metrics[key]) for key in ranked}}
    version = client.create_model_version(group, source=logged.artifact_location, run_id=run_id,
                                          model_id=logged.model_id, tags=tags)
    if approval == "Approved":
        client.set_registered_model_alias(group, settings.champion_alias, version.version)
    record = {
        "ModelPackageGroupName": group,
        "ModelPackageVersion": int(version.version),
        "ModelPackageArn": package_arn(group, int(version.version)),
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": approval,
        "CreationTime": datetime.now(timezone.utc).isoformat(),
        **{k: v for k, v in request.items() if k not in ("ModelPackageGroupName", "ModelApprovalStatus")},
        "MlflowModel": {"tracking_uri": tracking_uri(workspace), "name": group, "version": int(version.version),
                        "model_id": logged.model_id, "run_id": run_id, "source": logged.artifact_location,
                        "metrics": len(metrics)},
    }
    path = Path(workspace) / RECORDS_DIR / group / str(version.version) / PACKAGE_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    LOG.info("registered %s version %s (%s, %d metrics)%s", group, version.version, approval, len(metrics),
             f", alias {settings.champion_alias}" if approval == "Approved" else "")
    return record


def package_arn(group: str, version: int) -> str:
    import os

    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    return f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT_ID}:model-package/{group}/{version}"


def _version_dir(workspace: Path, client, version) -> Path:
    local = _local_path(version.source) if not version.source.startswith("models:/") else None
    if local is not None and local.is_dir():
        return local
    import mlflow

    target = Path(workspace) / RECORDS_DIR / version.name / str(version.version) / "model"
    if not target.is_dir():
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source,
                                                              tracking_uri=tracking_uri(workspace)))
        shutil.copytree(downloaded, target)
    return target


def resolve_champion(workspace: Path, model_package_group: str,
                     settings: RunnerSettings | None = None) -> tuple[int, Path] | None:
    """(version, local model directory) of the group's `champion` alias, or None when there is none."""
    settings = settings or RunnerSettings()
    if not (Path(workspace) / REGISTRY_DB).is_file():
        return None
    from mlflow.exceptions import MlflowException

    client = _client(workspace)
    try:
        version = client.get_model_version_by_alias(model_package_group, settings.champion_alias)
    except MlflowException:
        return None
    return int(version.version), _version_dir(workspace, client, version)


def latest_approved_version(workspace: Path, model_package_group: str,
                            settings: RunnerSettings | None = None) -> tuple[int, Path] | None:
    """(version, local model directory) of the newest version tagged Approved (what SageMaker deploys)."""
    settings = settings or RunnerSettings()
    if not (Path(workspace) / REGISTRY_DB).is_file():
        return None
    from mlflow.exceptions import MlflowException

    client = _client(workspace)
    try:
        versions = client.search_model_versions(
            f"name = '{model_package_group}' and tag.{settings.approval_tag} = 'Approved'")
    except MlflowException:
        return None
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    return int(newest.version), _version_dir(workspace, client, newest)


def latest_approved_model_dir(workspace: Path, model_package_group: str,
                              settings: RunnerSettings | None = None) -> Path | None:
    """Local model directory of the newest Approved version, or None."""
    latest = latest_approved_version(workspace, model_package_group, settings)
    return latest[1] if latest else None


def update_approval_status(workspace: Path, model_package_group: str, version: int, status: str,
                           settings: RunnerSettings | None = None) -> None:
    """UpdateModelPackage(ModelApprovalStatus=...) locally: the tag, the champion alias and the record."""
    settings = settings or RunnerSettings()
    if status not in APPROVAL_STATUSES:
        raise ValueError(f"approval status {status!r} is not one of {APPROVAL_STATUSES}")
    known = [v["version"] for v in list_model_versions(workspace, model_package_group, settings)]
    if int(version) not in known:
        raise ValueError(f"{model_package_group} has no version {version} in {workspace} "
                         f"(versions: {known or 'none: run `fbrain pipeline run --local` first'})")
    client = _client(workspace)
    client.set_model_version_tag(model_package_group, str(version), settings.approval_tag, status)
    if status == "Approved":
        client.set_registered_model_alias(model_package_group, settings.champion_alias, str(version))
    else:
        current = resolve_champion(workspace, model_package_group, settings)
        if current and current[0] == int(version):
            client.delete_registered_model_alias(model_package_group, settings.champion_alias)
    path = Path(workspace) / RECORDS_DIR / model_package_group / str(version) / PACKAGE_RECORD
    if path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
        record["ModelApprovalStatus"] = status
        path.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")


def list_model_versions(workspace: Path, model_package_group: str,
                        settings: RunnerSettings | None = None) -> list[dict[str, Any]]:
    """Every registered version of the group, newest first: approval status, champion or not, gate metric."""
    settings = settings or RunnerSettings()
    if not (Path(workspace) / REGISTRY_DB).is_file():
        return []
    from mlflow.exceptions import MlflowException

    client = _client(workspace)
    try:
        versions = client.search_model_versions(f"name = '{model_package_group}'")
    except MlflowException:
        return []
    champion = resolve_champion(workspace, model_package_group, settings)
    listed = []
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = version.tags or {}
        macro_f1 = tags.get("metric.gate.macro_f1")
        listed.append({
            "version": int(version.version),
            "approval_status": tags.get(settings.approval_tag, DEFAULT_APPROVAL),
            "champion": bool(champion and champion[0] == int(version.version)),
            "gate_macro_f1": float(macro_f1) if macro_f1 is not None else None,
            "created": datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc).isoformat(),
            "arn": package_arn(model_package_group, int(version.version)),
        })
    return listed


def champion_package_record(workspace: Path, model_package_group: str,
                            settings: RunnerSettings | None = None) -> dict[str, Any] | None:
    """The DescribeModelPackage-like record of the group's champion, or None when there is no champion."""
    champion = resolve_champion(workspace, model_package_group, settings)
    if champion is None:
        return None
    path = Path(workspace) / RECORDS_DIR / model_package_group / str(champion[0]) / PACKAGE_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
