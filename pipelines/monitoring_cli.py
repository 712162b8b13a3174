"""`fbrain monitor pipeline ...` and `fbrain monitor rules apply`: the monitoring pipeline and its schedule.

They live in `pipelines/` (they build pipeline definitions and call AWS for the whole system) and
pipelines/cli.py attaches them under `fbrain monitor`, beside the monitoring layer's own commands.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

pipeline_app = typer.Typer(help="The monitoring pipeline (the text monitor as a SageMaker Pipeline, started by an "
                                "EventBridge Scheduler schedule).", no_args_is_help=True)
rules_app = typer.Typer(help="The monitoring schedule and the retraining rules on AWS.", no_args_is_help=True)


def _config(ctx: typer.Context):
    return ctx.obj["config"]


def _aws_error(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


@pipeline_app.command("definition")
def definition(ctx: typer.Context, out: Optional[Path] = typer.Option(None, help="Write to FILE.")) -> None:
    """Print (or write) the monitoring pipeline's definition JSON (offline, deterministic)."""
    from pipelines.definition_commands import print_or_write
    from pipelines.monitoring_definition import monitoring_definition_json

    print_or_write(monitoring_definition_json(_config(ctx)), out)


@pipeline_app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Check the monitoring pipeline's step against botocore's SageMaker service model."""
    from pipelines.definition_commands import report_validation
    from pipelines.monitoring_definition import monitoring_definition_json

    report_validation(monitoring_definition_json(_config(ctx)), "monitoring pipeline")


@pipeline_app.command("upsert")
def upsert(ctx: typer.Context) -> None:
    """Create or update the monitoring pipeline on SageMaker (needs AWS credentials)."""
    from pipelines.aws import PipelineAwsError, upsert_monitoring_pipeline

    try:
        typer.echo(json.dumps(upsert_monitoring_pipeline(_config(ctx)), indent=2))
    except PipelineAwsError as error:
        raise _aws_error(error) from None


@pipeline_app.command("run")
def run(
    ctx: typer.Context,
    local: bool = typer.Option(False, "--local", help="Run the definition here, without Docker or AWS."),
    workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace)."),
    param: list[str] = typer.Option([], help="Parameter override Name=Value, e.g. CaptureUri=s3://... (repeatable)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run the step even if a cached result exists."),
) -> None:
    """Monitor the captured traffic once: locally with --local (champion's baseline and model from the local
    registry); on AWS the schedule from `fbrain monitor rules apply` starts it."""
    if not local:
        typer.echo("on SageMaker the schedule starts the monitoring pipeline (`fbrain monitor rules apply`); "
                   "pass --local to run it here", err=True)
        raise typer.Exit(2)
    from pipelines.local.parameters import ParameterError, parse_assignments
    from pipelines.local_run import run_monitoring_locally

    try:
        parameters = parse_assignments(param)
    except ParameterError as error:
        raise typer.BadParameter(str(error)) from None
    config = _config(ctx)
    folder = Path(workspace) if workspace is not None else Path(config.local.workspace)
    record = run_monitoring_locally(config, folder, parameters, no_cache=no_cache)
    raise typer.Exit(0 if record.status == "Succeeded" else 1)


@rules_app.command("apply")
def apply(
    ctx: typer.Context,
    model_monitor_schedule: bool = typer.Option(
        False, "--model-monitor-schedule",
        help="Also create/update a SageMaker Model Monitor schedule (only for accounts that still have Model Monitor)."),
) -> None:
    """Create or update the EventBridge Scheduler schedule of the monitoring pipeline and the retraining rules
    (schedule, drift event, N corrections -> training pipeline). Run after `fbrain pipeline upsert`,
    `fbrain monitor pipeline upsert`, and again after approving a new model (the schedule passes its baseline)."""
    from pipelines.aws import PipelineAwsError, apply_monitoring_rules

    try:
        result = apply_monitoring_rules(_config(ctx), model_monitor_schedule=model_monitor_schedule)
    except PipelineAwsError as error:
        raise _aws_error(error) from None
    typer.echo(json.dumps(result, indent=2, default=str))
