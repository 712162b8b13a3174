"""`python -m inference.cli serve`: serve a model directory with serving overrides.

Not mounted in `fbrain`: `fbrain serve` (pipelines/cli.py) serves with the one configuration, and
`fbrain deploy --aws` deploys an approved package to SageMaker (pipelines.aws.deploy_endpoint).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from inference.config import ServingConfig
from inference.predictor import RUNTIMES

app = typer.Typer(help="Serve a model directory over HTTP (SageMaker container contract).", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Keeps `serve` a sub-command (a Typer app with one command would otherwise run it bare)."""


def _apply_sets(config: ServingConfig, sets: list[str]) -> ServingConfig:
    """`--set serving.field=value` items on a copy of config (processing.settings: the one override parser)."""
    from processing.settings import SettingsError, load_sections

    config = dataclasses.replace(config)
    try:
        load_sections({"serving": config}, sets, environ={})
    except SettingsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from None
    return config


@app.command()
def serve(
    model_dir: Path = typer.Option(..., "--model-dir", exists=True, file_okay=False, help="Model directory (HF files + fbrain_model.json + onnx/)."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8080, help="Port (SageMaker uses 8080)."),
    runtime: str = typer.Option("onnx-int8", help=f"One of {', '.join(RUNTIMES)}."),
    capture_dir: str = typer.Option("", help="Write SageMaker-format data capture under this folder (empty: off)."),
    model_name: Optional[str] = typer.Option(None, help="Model name in responses (default from fbrain_model.json or the folder)."),
    model_version: Optional[str] = typer.Option(None, help="Model version in responses."),
    set_: list[str] = typer.Option([], "--set", help="Any serving setting, e.g. --set serving.max_batch_wait_ms=1."),
) -> None:
    """Serve MODEL_DIR on http://HOST:PORT with /ping, /invocations and /metrics (blocks)."""
    from inference.serve import serve_model_dir

    if runtime not in RUNTIMES:
        raise typer.BadParameter(f"{runtime!r}: choose one of {RUNTIMES}", param_hint="--runtime")
    config = _apply_sets(ServingConfig(host=host, port=port, runtime=runtime, capture_dir=capture_dir), set_)
    serve_model_dir(model_dir, config, model_name=model_name, model_version=model_version)


if __name__ == "__main__":
    app()
