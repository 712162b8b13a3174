"""`fbrain`: the one command line of feedback-brain.

Global options pick the configuration (`--config FILE`, `--set section.field=value`);
sub-commands build, check, ship and run the pipeline, serve the model, monitor it and draft
replies. Heavy imports happen inside commands so `fbrain --help` stays instant.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from pipelines.config import ConfigError, FeedbackBrainConfig, load_config
from pipelines.local.settings import OFFLINE_ENV


app = typer.Typer(help="feedback-brain: customer feedback intelligence on SageMaker, runnable whole on a laptop.",
                  no_args_is_help=True)
pipeline_app = typer.Typer(help="Build, validate, ship and run the SageMaker pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
model_app = typer.Typer(help="Model versions in the registry (local MLflow, or SageMaker with --aws): list, "
                             "approve, reject.", no_args_is_help=True)
app.add_typer(model_app, name="model")
features_app = typer.Typer(help="The SageMaker Feature Store feature group of the processing features.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")


def _config(ctx: typer.Context) -> FeedbackBrainConfig:
    return ctx.obj["config"]


def _parse_params(params: list[str]) -> dict[str, str]:
    from pipelines.local.parameters import ParameterError, parse_assignments

    try:
        return parse_assignments(params)
    except ParameterError as error:
        raise typer.BadParameter(str(error)) from None


def _lake_input(config: FeedbackBrainConfig, params: dict[str, str], workspace: Path, local: bool) -> dict[str, str]:
    """`InputDataUri=lake:silver[@SNAPSHOT]` exported and replaced by its URI (pipelines.lake_input)."""
    from pipelines.lake_input import resolve_lake_input
    from pipelines.local.parameters import ParameterError

    try:
        params, exported = resolve_lake_input(config, params, workspace, local)
    except ParameterError as error:
        raise typer.BadParameter(str(error)) from None
    if exported:
        typer.echo(f"InputDataUri: silver snapshot {exported['snapshot_id']} ({exported['records']} records) "
                   f"exported to {exported['input_data_uri']}", err=True)
    return params


@app.callback()
def main(
    ctx: typer.Context,
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON or YAML file of settings by section."),
    settings: list[str] = typer.Option([], "--set", help="Override one setting: section.field=value (repeatable)."),
) -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:
        config = load_config(config_file, settings)
    except (ConfigError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    os.environ.setdefault("AWS_DEFAULT_REGION", config.aws.region)
    # The champion lookup goes to sub-commands of lower layers (`respond draft`), which may not import pipelines/.
    ctx.obj = {"config": config, "champion_model_dir": lambda workspace=None: _champion_model_dir(config, workspace),
               "find_champion": lambda workspace: _find_champion(config, Path(workspace))}


def _find_champion(config: FeedbackBrainConfig, workspace: Path):
    """(version, model directory) of the registry's champion in workspace, or None (for `fbrain loop ...`)."""
    from pipelines.local.registry import resolve_champion

    return resolve_champion(workspace, config.aws.model_package_group, config.runner)


def _champion_model_dir(config: FeedbackBrainConfig, workspace: Optional[Path]) -> Path:
    """The registry's champion model directory in workspace (default local.workspace), or exit with the how-to."""
    from pipelines.local_run import champion_model_dir

    return champion_model_dir(config, Path(workspace) if workspace else Path(config.local.workspace))


@app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Print the effective configuration (defaults + file + --set) as JSON."""
    typer.echo(json.dumps(_config(ctx).to_dict(), indent=2))


# ---------------------------------------------------------------- pipeline definition / AWS
@pipeline_app.command("definition")
def pipeline_definition(ctx: typer.Context, out: Optional[Path] = typer.Option(None, help="Write to FILE.")) -> None:
    """Print (or write) the pipeline definition JSON, deterministic and built offline."""
    from pipelines.definition import definition_json
    from pipelines.definition_commands import print_or_write

    print_or_write(definition_json(_config(ctx)), out)


@pipeline_app.command("validate")
def pipeline_validate(ctx: typer.Context) -> None:
    """Check every step's Arguments against botocore's SageMaker service model."""
    from pipelines.definition import definition_json
    from pipelines.definition_commands import report_validation

    report_validation(definition_json(_config(ctx)), "training pipeline")


@pipeline_app.command("upsert")
def pipeline_upsert(ctx: typer.Context) -> None:
    """Create or update the pipeline on SageMaker (needs AWS credentials); also creates the model package
    group and the feature group when missing, and wires deploy-on-approval."""
    from pipelines.aws import upsert_pipeline

    typer.echo(json.dumps(upsert_pipeline(_config(ctx)), indent=2, default=str))


@pipeline_app.command("start")
def pipeline_start(ctx: typer.Context, param: list[str] = typer.Option([], help="Parameter override Name=Value.")) -> None:
    """Start a SageMaker pipeline execution and return at once with its ARN."""
    from pipelines.aws import start_execution

    config = _config(ctx)
    params = _lake_input(config, _parse_params(param), Path(config.local.workspace), local=False)
    typer.echo(start_execution(config, params))


@features_app.command("create-group")
def features_create_group(
    ctx: typer.Context,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the group is Created (PutRecord fails before)."),
) -> None:
    """Create the feature group processing.feature_group_name on SageMaker unless it exists (idempotent).

    Locally nothing is needed: jobs write the local Feature Store under the workspace."""
    from pipelines.aws import PipelineAwsError, ensure_feature_group

    try:
        result = ensure_feature_group(_config(ctx), wait=wait)
    except PipelineAwsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2))


# ---------------------------------------------------------------- local execution
def _workspace(ctx: typer.Context, workspace: Optional[Path]) -> Path:
    config = _config(ctx)
    if workspace is not None:
        config.local.workspace = str(workspace)
    return Path(config.local.workspace)


@pipeline_app.command("run")
def pipeline_run(
    ctx: typer.Context,
    local: bool = typer.Option(False, "--local", help="Run the definition here, without Docker or AWS."),
    workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace)."),
    param: list[str] = typer.Option([], help="Parameter override Name=Value (repeatable)."),
    resume: Optional[str] = typer.Option(None, help="Continue this failed execution from its failed step."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step even if a cached result exists."),
) -> None:
    """Execute the pipeline definition (locally with --local; on SageMaker use `pipeline start`)."""
    if not local:
        typer.echo("use `fbrain pipeline start` to run on SageMaker, or pass --local", err=True)
        raise typer.Exit(2)
    from pipelines.local_run import run_locally

    root = _workspace(ctx, workspace)
    params = _lake_input(_config(ctx), _parse_params(param), root, local=True)
    record = run_locally(_config(ctx), root, params, resume, no_cache)
    raise typer.Exit(0 if record.status == "Succeeded" else 1)


@pipeline_app.command("executions")
def pipeline_executions(ctx: typer.Context, workspace: Optional[Path] = typer.Option(None)) -> None:
    """List local executions, newest first."""
    from pipelines.local import list_executions

    records = list_executions(_workspace(ctx, workspace))
    if not records:
        typer.echo("no executions yet: run `fbrain pipeline run --local`")
    for record in records:
        typer.echo(f"{record.execution_id}  {record.status:<10} {record.start_time}  "
                   f"steps: {', '.join(f'{s.name}={s.status}' for s in record.steps)}")


@pipeline_app.command("describe")
def pipeline_describe(ctx: typer.Context, execution_id: str, workspace: Optional[Path] = typer.Option(None)) -> None:
    """Show one local execution: parameters, steps, outputs, logs."""
    from pipelines.local import load_execution

    record = load_execution(_workspace(ctx, workspace), execution_id)
    typer.echo(json.dumps(record.to_dict(), indent=2, default=str))


# ---------------------------------------------------------------- serving, demo
@app.command("serve")
def serve(
    ctx: typer.Context,
    model_dir: Optional[Path] = typer.Option(None, help="Model directory; default: the registry's champion."),
    workspace: Optional[Path] = typer.Option(None),
    host: Optional[str] = typer.Option(None),
    port: Optional[int] = typer.Option(None),
    runtime: Optional[str] = typer.Option(None, help="onnx-int8 (default), onnx or torch."),
    capture: bool = typer.Option(True, help="Write SageMaker-format data capture to the local object store."),
) -> None:
    """Serve /ping, /invocations and /responses (SageMaker's container contract) with a model."""
    from pipelines.local_run import serving_setup
    from inference.serve import serve_model_dir

    config = _config(ctx)
    for name, value in (("host", host), ("port", port), ("runtime", runtime)):
        if value:
            setattr(config.serving, name, value)
    directory, name, version = serving_setup(config, _workspace(ctx, workspace), model_dir, capture)
    serve_model_dir(directory, config.serving, model_name=name, model_version=version, generative=config.generative)


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    workspace: Optional[Path] = typer.Option(None),
    aws: bool = typer.Option(False, "--aws", help="Deploy to a SageMaker endpoint (aws.endpoint_name) instead of "
                                                  "serving locally; needs AWS credentials."),
    model_package_arn: Optional[str] = typer.Option(
        None, help="With --aws: the Approved model package to deploy (default: the newest Approved package of "
                   "aws.model_package_group)."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="With --aws: wait for InService and apply auto "
                                                             "scaling here (default: the endpoint-InService rule does)."),
) -> None:
    """Locally: serve the approved champion version. With --aws: create or update the SageMaker endpoint
    (data capture, rollback alarms, blue/green update) from an Approved model package."""
    if not aws:
        if model_package_arn:
            raise typer.BadParameter("--model-package-arn needs --aws (locally the registry's champion is served)")
        ctx.invoke(serve, ctx=ctx, model_dir=None, workspace=workspace, host=None, port=None, runtime=None,
                   capture=True)
        return
    import dataclasses

    from pipelines.aws import PipelineAwsError, deploy_endpoint

    try:
        result = deploy_endpoint(_config(ctx), model_package_arn, wait=wait)
    except PipelineAwsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(dataclasses.asdict(result), indent=2))


# ---------------------------------------------------------------- model registry
@model_app.command("list")
def model_list(
    ctx: typer.Context,
    aws: bool = typer.Option(False, "--aws", help="List the SageMaker model package group instead of the local registry."),
    workspace: Optional[Path] = typer.Option(None),
) -> None:
    """Versions of aws.model_package_group, newest first, with their approval status (and the local champion)."""
    config = _config(ctx)
    if aws:
        from pipelines.aws import PipelineAwsError, list_model_packages

        try:
            versions = list_model_packages(config)
        except PipelineAwsError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
    else:
        from pipelines.local.registry import list_model_versions

        versions = list_model_versions(_workspace(ctx, workspace), config.aws.model_package_group)
    if not versions:
        how = "`fbrain pipeline start` registers one on SageMaker" if aws else "run `fbrain pipeline run --local`"
        typer.echo(f"no versions of {config.aws.model_package_group} yet: {how}", err=True)
    typer.echo(json.dumps(versions, indent=2))


def _set_approval(ctx: typer.Context, version: int, status: str, aws: bool, workspace: Optional[Path],
                  description: str) -> None:
    config = _config(ctx)
    if aws:
        from pipelines.aws import PipelineAwsError, set_model_approval

        try:
            result = set_model_approval(config, version, status, description)
        except PipelineAwsError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(result, indent=2))
        return
    from pipelines.local.registry import list_model_versions, update_approval_status

    folder = _workspace(ctx, workspace)
    try:
        update_approval_status(folder, config.aws.model_package_group, version, status)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    listed = {v["version"]: v for v in list_model_versions(folder, config.aws.model_package_group)}
    typer.echo(json.dumps(listed[version], indent=2))


@model_app.command("approve")
def model_approve(
    ctx: typer.Context,
    version: int = typer.Argument(..., help="Model version (ModelPackageVersion) to approve."),
    aws: bool = typer.Option(False, "--aws", help="Approve the SageMaker model package (the approval rule deploys it)."),
    workspace: Optional[Path] = typer.Option(None),
    description: str = typer.Option("", help="With --aws: ApprovalDescription (why it was approved)."),
) -> None:
    """Approve VERSION: locally it becomes the champion (`fbrain deploy` serves it, evaluation compares with it)."""
    _set_approval(ctx, version, "Approved", aws, workspace, description)


@model_app.command("reject")
def model_reject(
    ctx: typer.Context,
    version: int = typer.Argument(..., help="Model version (ModelPackageVersion) to reject."),
    aws: bool = typer.Option(False, "--aws", help="Reject the SageMaker model package."),
    workspace: Optional[Path] = typer.Option(None),
    description: str = typer.Option("", help="With --aws: ApprovalDescription (why it was rejected)."),
) -> None:
    """Reject VERSION; a rejected champion loses the champion alias locally."""
    _set_approval(ctx, version, "Rejected", aws, workspace, description)


@app.command("demo")
def demo(ctx: typer.Context, workspace: Optional[Path] = typer.Option(None)) -> None:
    """After a local run: where things are, a few texts scored by the live endpoint, drafted replies."""
    from pipelines.local_run import print_demo

    print_demo(_config(ctx), _workspace(ctx, workspace))


def _mount_optional(module: str, name: str, help_text: str):
    try:
        sub_app = __import__(module, fromlist=["app"]).app
    except ImportError as exc:  # a layer without commands yet must not break the CLI
        print(f"warning: `fbrain {name}` unavailable: {exc}", file=sys.stderr)
        return None
    app.add_typer(sub_app, name=name, help=help_text)
    return sub_app


def _mount_monitoring_pipeline(monitor_app) -> None:
    """`fbrain monitor pipeline ...` and `fbrain monitor rules ...` (pipelines/monitoring_cli.py)."""
    from pipelines.monitoring_cli import pipeline_app as monitoring_pipeline_app
    from pipelines.monitoring_cli import rules_app

    monitor_app.add_typer(monitoring_pipeline_app, name="pipeline")
    monitor_app.add_typer(rules_app, name="rules")


_monitor_app = _mount_optional("monitoring.cli", "monitor", "The text monitor (a scheduled monitoring pipeline), "
                                                             "corrections, retraining triggers and rules.")
if _monitor_app is not None:
    _mount_monitoring_pipeline(_monitor_app)
_mount_optional("inference.replies.cli", "respond", "Draft replies, summaries and second-stage judgements.")
_mount_optional("processing.cli", "data", "Demo data: the labeled corpus, or a multi-day stream to replay.")
_mount_optional("operations.cli", "loop", "The live loop: POST /feedback, the worker, the lake, GET /insights.")

if __name__ == "__main__":
    app()
