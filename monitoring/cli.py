"""`fbrain monitor ...`: run the text monitor locally, record corrections, check retraining triggers.

pipelines/cli.py mounts `app`: `fbrain monitor run`, `fbrain monitor corrections add|count`,
`fbrain monitor triggers check`, and attaches the commands that need the pipeline layer
(pipelines/monitoring_cli.py): `fbrain monitor pipeline definition|validate|upsert|run --local`
and `fbrain monitor rules apply`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import typing
from pathlib import Path
from typing import Optional

import typer

from monitoring.config import MonitoringConfig
from monitoring.corrections import (Correction, CorrectionError, LocalCorrectionStore, Watermark, count_corrections,
                                    count_new_corrections, last_training_marker, marker_time, record_correction)
from monitoring.triggers import check_local_triggers, new_run_dir

DEFAULT_WORKSPACE = ".fbrain"
DEFAULT_BUCKET = "feedback-brain-artifacts"
"""AwsConfig.bucket's default; the local object store keeps corrections under <workspace>/s3/<bucket>/."""

app = typer.Typer(help="Model Monitor for text, human corrections and retraining triggers.", no_args_is_help=True)
corrections_app = typer.Typer(help="Human-labelled corrections in the local object store.", no_args_is_help=True)
triggers_app = typer.Typer(help="Retraining triggers (drift violations, corrections).", no_args_is_help=True)
app.add_typer(corrections_app, name="corrections")
app.add_typer(triggers_app, name="triggers")


def monitoring_config(overrides: list[str]) -> MonitoringConfig:
    """MonitoringConfig with FIELD=VALUE overrides, converted to each field's type."""
    config = MonitoringConfig()
    hints = typing.get_type_hints(MonitoringConfig)
    names = {f.name for f in dataclasses.fields(MonitoringConfig)}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("monitoring.")
        if not sep or key not in names:
            raise typer.BadParameter(f"{item!r}: expected FIELD=VALUE with FIELD in {sorted(names)}")
        kind = hints[key]
        if kind is bool:
            converted: object = value.strip().lower() in ("1", "true", "yes")
        elif kind in (int, float, str):
            try:
                converted = kind(value)
            except ValueError:
                raise typer.BadParameter(f"{item!r}: {key} needs a {kind.__name__}") from None
        else:
            converted = json.loads(value)
        setattr(config, key, converted)
    return config


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("run")
def run(
    capture_dir: Path = typer.Option(..., help="Captured data (SageMaker capture layout)."),
    baseline_dir: Path = typer.Option(..., help="Output of the ComputeMonitorBaseline step."),
    output_dir: Optional[Path] = typer.Option(None, help="Default: <workspace>/monitoring/runs/<UTC time>/"),
    model_dir: Optional[Path] = typer.Option(None, help="Model dir or model.tar.gz; needed for embedding drift."),
    workspace: Path = typer.Option(Path(DEFAULT_WORKSPACE)),
    start_time: Optional[str] = typer.Option(None, help="ISO 8601; only texts captured at or after it."),
    end_time: Optional[str] = typer.Option(None, help="ISO 8601; only texts captured before it."),
    set_: list[str] = typer.Option([], "--set", help="MonitoringConfig FIELD=VALUE (repeatable)."),
) -> None:
    """Compare captured traffic with the baseline; write violations, statistics and metrics."""
    from monitoring.capture_reader import parse_time
    from monitoring.monitor import MonitorInputs, run_monitor

    _logging()
    config = monitoring_config(set_)
    output = output_dir or new_run_dir(workspace, config)
    inputs = MonitorInputs.from_baseline_dir(
        str(baseline_dir), str(capture_dir), str(output),
        model_dir=str(model_dir) if model_dir else "",
        start_time=parse_time(start_time) if start_time else None,
        end_time=parse_time(end_time) if end_time else None,
    )
    result = run_monitor(inputs, config)
    typer.echo(json.dumps({
        "output_dir": str(result.output_dir), "texts": result.texts, "quarantined": result.quarantined,
        "violations": [f"{v['feature_name']}: {v['constraint_check_type']}" for v in result.violations],
        "embedding_roc_auc": result.comparison.embedding.roc_auc if result.comparison.embedding else None,
        "skipped": result.comparison.skipped,
    }, indent=2))


def _store(workspace: Path, bucket: str, config: MonitoringConfig) -> LocalCorrectionStore:
    return LocalCorrectionStore(workspace / "s3" / bucket / config.corrections_prefix)


@corrections_app.command("add")
def corrections_add(
    feedback_id: str = typer.Option(...),
    reviewer: str = typer.Option(...),
    sentiment: Optional[str] = typer.Option(None),
    intent: Optional[str] = typer.Option(None),
    aspect: list[str] = typer.Option([], help="Corrected aspect (repeatable); --no-aspects for none."),
    no_aspects: bool = typer.Option(False, help="The text is about none of the aspects."),
    note: str = typer.Option(""),
    workspace: Path = typer.Option(Path(DEFAULT_WORKSPACE)),
    bucket: str = typer.Option(DEFAULT_BUCKET),
) -> None:
    """Record one reviewer's corrected labels for a feedback item."""
    config = MonitoringConfig()
    labels: dict[str, object] = {k: v for k, v in (("sentiment", sentiment), ("intent", intent)) if v}
    if aspect or no_aspects:
        labels["aspects"] = list(aspect)
    try:
        receipt = record_correction(_store(workspace, bucket, config),
                                    Correction(feedback_id=feedback_id, reviewer=reviewer, labels=labels, note=note), config)
    except CorrectionError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(dataclasses.asdict(receipt)))


@corrections_app.command("count")
def corrections_count(
    workspace: Path = typer.Option(Path(DEFAULT_WORKSPACE)),
    bucket: str = typer.Option(DEFAULT_BUCKET),
) -> None:
    """Corrections in total and since the last training (those its marker's watermark does not cover)."""
    store = _store(workspace, bucket, MonitoringConfig())
    marker = last_training_marker(store)
    since = marker_time(marker)
    watermark = Watermark.from_marker(marker)
    typer.echo(json.dumps({
        "total": count_corrections(store), "since_last_training": count_new_corrections(store, marker),
        "last_training": since.isoformat() if since else None,
        "watermark": watermark.through.isoformat() if watermark and watermark.through else None,
    }))


@triggers_app.command("check")
def triggers_check(
    workspace: Path = typer.Option(Path(DEFAULT_WORKSPACE)),
    bucket: Optional[str] = typer.Option(None, help="Default: every bucket of the local object store."),
    set_: list[str] = typer.Option([], "--set", help="MonitoringConfig FIELD=VALUE (repeatable)."),
    run: bool = typer.Option(False, "--run", help="Start the local pipeline run when a trigger fires."),
) -> None:
    """Say whether a local retraining should start (and record it, so it fires once); --run starts it."""
    _logging()
    decision = check_local_triggers(workspace, monitoring_config(set_), bucket=bucket)
    typer.echo(json.dumps(dataclasses.asdict(decision), indent=2))
    if run and decision.fire:
        command = [*decision.command, "--workspace", str(workspace)]
        typer.echo(f"retraining: {' '.join(command)}")
        raise typer.Exit(subprocess.run(command, check=False).returncode)
