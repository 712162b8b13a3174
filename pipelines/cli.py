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


def _config(ctx: typer.Context) -> FeedbackBrainConfig:
    return ctx.obj["config"]


def _parse_params(params: list[str]) -> dict[str, str]:
    parsed = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--param {item!r} must look like Name=Value")
        parsed[name.strip()] = value.strip()
    return parsed


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
    ctx.obj = {"config": config}


@app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Print the effective configuration (defaults + file + --set) as JSON."""
    typer.echo(json.dumps(_config(ctx).to_dict(), indent=2))


# ---------------------------------------------------------------- pipeline definition / AWS
@pipeline_app.command("definition")
def pipeline_definition(ctx: typer.Context, out: Optional[Path] = typer.Option(None, help="Write to FILE.")) -> None:
    """Print (or write) the pipeline definition JSON, deterministic and built offline."""
    from pipelines.definition import definition_json

    text = definition_json(_config(ctx))
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {out} ({len(text)} bytes)")
    else:
        typer.echo(text)


@pipeline_app.command("validate")
def pipeline_validate(ctx: typer.Context) -> None:
    """Check every step's Arguments against botocore's SageMaker service model."""
    from pipelines.definition import definition_json
    from pipelines.validate import validate_definition

    definition = json.loads(definition_json(_config(ctx)))
    errors = validate_definition(definition)
    for error in errors:
        typer.echo(f"error: {error}", err=True)
    typer.echo(f"{len(definition['Steps'])} top-level steps checked, {len(errors)} errors")
    raise typer.Exit(1 if errors else 0)


@pipeline_app.command("upsert")
def pipeline_upsert(ctx: typer.Context) -> None:
    """Create or update the pipeline on SageMaker (needs AWS credentials)."""
    from pipelines.aws import upsert_pipeline

    typer.echo(json.dumps(upsert_pipeline(_config(ctx)), indent=2, default=str))


@pipeline_app.command("start")
def pipeline_start(ctx: typer.Context, param: list[str] = typer.Option([], help="Parameter override Name=Value.")) -> None:
    """Start a SageMaker pipeline execution and return at once with its ARN."""
    from pipelines.aws import start_execution

    typer.echo(start_execution(_config(ctx), _parse_params(param)))


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

    record = run_locally(_config(ctx), _workspace(ctx, workspace), _parse_params(param), resume, no_cache)
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
    serve_model_dir(directory, config.serving, model_name=name, model_version=version)


@app.command("deploy")
def deploy(ctx: typer.Context, workspace: Optional[Path] = typer.Option(None)) -> None:
    """Locally: serve the approved champion version (on AWS, approval deploys through EventBridge)."""
    ctx.invoke(serve, ctx=ctx, model_dir=None, workspace=workspace, host=None, port=None, runtime=None, capture=True)


@app.command("demo")
def demo(ctx: typer.Context, workspace: Optional[Path] = typer.Option(None)) -> None:
    """After a local run: where things are, a few texts scored by the live endpoint, drafted replies."""
    from pipelines.local_run import print_demo

    print_demo(_config(ctx), _workspace(ctx, workspace))


def _mount_optional(module: str, name: str, help_text: str) -> None:
    try:
        sub_app = __import__(module, fromlist=["app"]).app
    except ImportError as exc:  # a layer without commands yet must not break the CLI
        print(f"warning: `fbrain {name}` unavailable: {exc}", file=sys.stderr)
        return
    app.add_typer(sub_app, name=name, help=help_text)


_mount_optional("monitoring.cli", "monitor", "Model Monitor for text, corrections and retraining triggers.")
_mount_optional("inference.responses_cli", "respond", "Draft replies, summaries and second-stage judgements.")
_mount_optional("operations.cli", "loop", "The live loop: POST /feedback, the worker, the lake, GET /insights.")

if __name__ == "__main__":
    app()
