"""Training steps: the CreateTrainingJob request run as a local subprocess under SageMaker's
training-container contract (hyperparameters.json, channels, SM_* variables, model.tar.gz)."""
from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

from pipelines.local.expressions import to_text
from pipelines.local.jobs import (StepContext, StepFailure, StepResult, arn, entrypoint_for_image, env_strings,
                                  make_tar_gz)
from pipelines.local.object_store import ObjectStoreError
from pipelines.local.process import container_path, python_command, remap_opt_ml, run_command

LOG = logging.getLogger("fbrain.runner")
CURRENT_HOST = "algo-1"
DEFAULT_CHECKPOINT_PATH = "/opt/ml/checkpoints"
CHECKPOINTS_DIR = "checkpoints"
"""`<execution>/checkpoints/<step>`: SM_CHECKPOINT_DIR of a training step without CheckpointConfig."""
FAILURE_FILE = "/opt/ml/output/failure"
"""SageMaker reports this file's content as the training job's FailureReason."""


def model_artifact_uri(arguments: dict, job: str) -> str:
    return f"{to_text(arguments['OutputDataConfig']['S3OutputPath']).rstrip('/')}/{job}/output/model.tar.gz"


def output_artifact_uri(arguments: dict, job: str) -> str:
    return f"{to_text(arguments['OutputDataConfig']['S3OutputPath']).rstrip('/')}/{job}/output/output.tar.gz"


def predicted_training_properties(arguments: dict, job: str) -> dict:
    """The properties a training step will have, known before it runs (for planning)."""
    if "S3OutputPath" not in (arguments.get("OutputDataConfig") or {}):
        raise StepFailure("training step needs OutputDataConfig.S3OutputPath")
    return {**arguments, "TrainingJobName": job, "TrainingJobArn": arn("training-job", job),
            "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": model_artifact_uri(arguments, job)},
            "FinalMetricDataList": []}


def _typed(value: str):
    """SM_HPS carries JSON-typed values (what the SageMaker training toolkit does)."""
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def _prepare_channels(ctx: StepContext, data_dir: Path) -> list[str]:
    channels = []
    for channel in ctx.arguments.get("InputDataConfig", []) or []:
        name = channel["ChannelName"]
        source = (channel.get("DataSource") or {}).get("S3DataSource")
        if not source:
            raise StepFailure(f"channel {name}: only S3DataSource is supported locally")
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise StepFailure(f"channel {name}: S3DataType {source['S3DataType']} is not supported locally")
        if channel.get("InputMode", "File") not in ("File", "FastFile"):
            raise StepFailure(f"channel {name}: InputMode {channel['InputMode']} is not supported locally")
        try:
            ctx.store.download(to_text(source["S3Uri"]), data_dir / name)
        except ObjectStoreError as error:
            raise StepFailure(f"channel {name}: {error}") from None
        channels.append(name)
    return channels


def _write_config(config_dir: Path, hyperparameters: dict[str, str], arguments: dict) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2), encoding="utf-8")
    data_config = {c["ChannelName"]: {k: v for k, v in c.items() if k not in ("ChannelName", "DataSource")}
                   for c in arguments.get("InputDataConfig", []) or []}
    (config_dir / "inputdataconfig.json").write_text(json.dumps(data_config, indent=2), encoding="utf-8")
    resources = {"current_host": CURRENT_HOST, "hosts": [CURRENT_HOST], "network_interface_name": "lo"}
    (config_dir / "resourceconfig.json").write_text(json.dumps(resources, indent=2), encoding="utf-8")


def _final_metrics(arguments: dict, log_path: Path) -> list[dict]:
    """FinalMetricDataList from the job log and AlgorithmSpecification.MetricDefinitions (last match wins)."""
    definitions = (arguments.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    if not definitions or not log_path.is_file():
        return []
    text = log_path.read_text(encoding="utf-8", errors="replace")
    metrics = []
    for definition in definitions:
        matches = re.findall(definition["Regex"], text)
        if matches:
            last = matches[-1][0] if isinstance(matches[-1], tuple) else matches[-1]
            try:
                metrics.append({"MetricName": definition["Name"], "Value": float(last), "Timestamp": time.time()})
            except ValueError:
                LOG.warning("metric %s: %r is not a number", definition["Name"], last)
    return metrics


def run_training(ctx: StepContext) -> StepResult:
    arguments = ctx.arguments
    properties = predicted_training_properties(arguments, ctx.job_name)
    algorithm = arguments.get("AlgorithmSpecification") or {}
    root = ctx.step_dir
    remap = lambda text: remap_opt_ml(to_text(text), root)  # noqa: E731
    opt_ml = container_path("/opt/ml", root)
    config_dir, data_dir = opt_ml / "input" / "config", opt_ml / "input" / "data"
    model_dir, output_data_dir = opt_ml / "model", opt_ml / "output" / "data"
    for folder in (data_dir, model_dir, output_data_dir):
        folder.mkdir(parents=True, exist_ok=True)
    hyperparameters = {str(k): to_text(v) for k, v in (arguments.get("HyperParameters") or {}).items()}
    _write_config(config_dir, hyperparameters, arguments)
    channels = _prepare_channels(ctx, data_dir)

    checkpoint = arguments.get("CheckpointConfig")
    if checkpoint:
        checkpoint_dir = container_path(checkpoint.get("LocalPath") or DEFAULT_CHECKPOINT_PATH, root)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if not ctx.store.is_empty(to_text(checkpoint["S3Uri"])):
            ctx.store.download(to_text(checkpoint["S3Uri"]), checkpoint_dir)
            LOG.info("[%s] restored checkpoints from %s", ctx.spec.name, checkpoint["S3Uri"])
    else:
        # Without CheckpointConfig SageMaker gives an unsynced /opt/ml/checkpoints. Locally it is a
        # folder of the execution that outlives the step's container, so a resumed step continues
        # from its failed attempt's checkpoints (same execution, same inputs), and the job never
        # writes to the host's real /opt/ml.
        checkpoint_dir = ctx.step_dir.parent / CHECKPOINTS_DIR / ctx.spec.name
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    entry = algorithm.get("ContainerEntrypoint") or entrypoint_for_image(
        algorithm.get("TrainingImage"), ctx.settings, ctx.spec.name)
    command = python_command([remap(part) for part in [*entry, *(algorithm.get("ContainerArguments") or [])]])
    sm_env = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DIR": str(opt_ml / "output"),
        "SM_OUTPUT_DATA_DIR": str(output_data_dir),
        "SM_INPUT_DIR": str(opt_ml / "input"),
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_INPUT_DATA_CONFIG": (config_dir / "inputdataconfig.json").read_text(encoding="utf-8"),
        "SM_CHANNELS": json.dumps(channels),
        "SM_HPS": json.dumps({k: _typed(v) for k, v in hyperparameters.items()}),
        "SM_HOSTS": json.dumps([CURRENT_HOST]),
        "SM_CURRENT_HOST": CURRENT_HOST,
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "TRAINING_JOB_NAME": ctx.job_name,
        **{f"SM_CHANNEL_{name.upper()}": str(data_dir / name) for name in channels},
        **{f"SM_HP_{k.upper()}": v for k, v in hyperparameters.items()},
    }
    sm_env["SM_CHECKPOINT_DIR"] = str(checkpoint_dir)
    env = {**ctx.base_env, **sm_env, **env_strings(arguments.get("Environment"), remap)}
    limit = (arguments.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or ctx.settings.step_timeout_seconds
    try:
        result = run_command(command, env, root, ctx.log_path, ctx.spec.name, ctx.settings.progress_every_seconds,
                             float(limit or 0), ctx.settings.forward_output_lines)
    finally:
        if checkpoint and any(checkpoint_dir.rglob("*")):
            # Uploaded on failure too: that is what lets a resumed job continue from them.
            ctx.store.upload(checkpoint_dir, to_text(checkpoint["S3Uri"]))
    if result.timed_out:
        raise StepFailure(f"training job {ctx.job_name} exceeded MaxRuntimeInSeconds={limit}")
    if result.exit_code != 0:
        failure_file = container_path(FAILURE_FILE, root)
        detail = failure_file.read_text(encoding="utf-8", errors="replace").strip() if failure_file.is_file() else ""
        raise StepFailure(f"training job {ctx.job_name} failed: exit code {result.exit_code}"
                          + (f": {detail}" if detail else "") + f" (log: {ctx.log_path})")
    if not any(model_dir.iterdir()):
        raise StepFailure(f"training job {ctx.job_name} wrote nothing to SM_MODEL_DIR ({model_dir})")

    archives = opt_ml / "output" / "archives"
    model_uri = model_artifact_uri(arguments, ctx.job_name)
    ctx.store.upload(make_tar_gz(model_dir, archives / "model.tar.gz"), model_uri)
    outputs = {"model": model_uri}
    if any(output_data_dir.iterdir()):
        output_uri = output_artifact_uri(arguments, ctx.job_name)
        ctx.store.upload(make_tar_gz(output_data_dir, archives / "output.tar.gz"), output_uri)
        outputs["output"] = output_uri
    properties["FinalMetricDataList"] = _final_metrics(arguments, ctx.log_path)
    properties["TrainingTimeInSeconds"] = round(result.duration_seconds)
    return StepResult(properties=properties, outputs=outputs)
