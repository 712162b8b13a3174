"""Processing steps: the CreateProcessingJob request run as a local subprocess."""
from __future__ import annotations

import json
import shutil

from pipelines.local.expressions import to_text
from pipelines.local.jobs import StepContext, StepFailure, StepResult, arn, entrypoint_for_image, env_strings
from pipelines.local.object_store import ObjectStoreError
from pipelines.local.process import container_path, python_command, remap_opt_ml, run_command


def _download_inputs(ctx: StepContext) -> None:
    for item in ctx.arguments.get("ProcessingInputs", []) or []:
        name = item.get("InputName", "?")
        s3_input = item.get("S3Input")
        if not s3_input:
            raise StepFailure(f"input {name}: only S3Input is supported locally (got {sorted(item)})")
        if s3_input.get("S3InputMode", "File") != "File":
            raise StepFailure(f"input {name}: S3InputMode {s3_input['S3InputMode']} is not supported locally; use File")
        if s3_input.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise StepFailure(f"input {name}: S3DataType {s3_input['S3DataType']} is not supported locally")
        uri = to_text(s3_input["S3Uri"])
        try:
            ctx.store.download(uri, container_path(s3_input["LocalPath"], ctx.step_dir))
        except ObjectStoreError as error:
            raise StepFailure(f"input {name}: {error}") from None


def _outputs(ctx: StepContext) -> list[dict]:
    outputs = (ctx.arguments.get("ProcessingOutputConfig") or {}).get("Outputs", []) or []
    for item in outputs:
        if "S3Output" not in item:
            raise StepFailure(f"output {item.get('OutputName')}: only S3Output is supported locally")
    return outputs


def run_processing(ctx: StepContext) -> StepResult:
    arguments = ctx.arguments
    app = arguments.get("AppSpecification") or {}
    entry = app.get("ContainerEntrypoint") or entrypoint_for_image(app.get("ImageUri"), ctx.settings, ctx.spec.name)
    remap = lambda text: remap_opt_ml(to_text(text), ctx.step_dir)  # noqa: E731
    command = python_command([remap(part) for part in [*entry, *(app.get("ContainerArguments") or [])]])
    outputs = _outputs(ctx)
    _download_inputs(ctx)
    for item in outputs:
        container_path(item["S3Output"]["LocalPath"], ctx.step_dir).mkdir(parents=True, exist_ok=True)
    env = {**ctx.base_env, **env_strings(arguments.get("Environment"), remap)}
    limit = (arguments.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or ctx.settings.step_timeout_seconds
    result = run_command(command, env, ctx.step_dir, ctx.log_path, ctx.spec.name,
                         ctx.settings.progress_every_seconds, float(limit or 0), ctx.settings.forward_output_lines)
    if result.timed_out:
        raise StepFailure(f"processing job {ctx.job_name} exceeded MaxRuntimeInSeconds={limit}")
    if result.exit_code != 0:
        raise StepFailure(f"processing job {ctx.job_name} failed: command exited with code {result.exit_code} "
                          f"(log: {ctx.log_path})")
    uploaded = {}
    for item in outputs:
        s3_output = item["S3Output"]
        uri = to_text(s3_output["S3Uri"])
        local = container_path(s3_output["LocalPath"], ctx.step_dir)
        # EndOfJob and Continuous both end with every file of LocalPath under S3Uri; locally
        # there is no one to read the objects while the job runs, so one upload at the end is enough.
        if any(local.rglob("*")):
            ctx.store.upload(local, uri)
        uploaded[item["OutputName"]] = uri
    property_files = _check_property_files(ctx, uploaded)
    return StepResult(properties=predicted_processing_properties(arguments, ctx.job_name), outputs=uploaded, property_files=property_files)


def _check_property_files(ctx: StepContext, uploaded: dict[str, str]) -> dict[str, str]:
    """SageMaker reads a step's property files when the job ends; a missing or invalid one fails the step."""
    found = {}
    for entry in ctx.spec.definition.get("PropertyFiles", []) or []:
        name, output, file_path = entry["PropertyFileName"], entry["OutputName"], entry["FilePath"]
        if output not in uploaded:
            raise StepFailure(f"property file {name}: step has no output named {output!r}")
        uri = uploaded[output].rstrip("/") + "/" + file_path.lstrip("/")
        try:
            json.loads(ctx.store.read_text(uri))
        except (ObjectStoreError, json.JSONDecodeError) as error:
            raise StepFailure(f"property file {name} ({uri}) is missing or not JSON: {error}") from None
        found[name] = uri
    return found


def predicted_processing_properties(arguments: dict, job: str) -> dict:
    """The properties a processing step will have, known before it runs (for planning)."""
    return {**arguments, "ProcessingJobName": job, "ProcessingJobArn": arn("processing-job", job),
            "ProcessingJobStatus": "Completed", "ExitMessage": ""}


def clean_container(ctx: StepContext) -> None:
    """A job starts in an empty container (a resumed step does not see its failed attempt's files)."""
    if ctx.step_dir.exists():
        shutil.rmtree(ctx.step_dir)
    ctx.step_dir.mkdir(parents=True)
