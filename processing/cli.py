"""`fbrain data ...`: the demo data generator (processing.demo_data).

Mounted on `fbrain` by pipelines.cli.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Demo data: the labeled corpus, or a multi-day stream to replay.", no_args_is_help=True)


@app.command("generate")
def generate_command(
    out: Path = typer.Option(..., help="JSON lines file to write."),
    seed: int = typer.Option(2026, help="Random seed (the same seed writes the same file)."),
    n: int = typer.Option(720, help="Without --days: the number of records of a corpus spread over 60 days."),
    days: Optional[int] = typer.Option(None, help="Write a stream of this many days instead: realistic daily volume "
                                                  "per SKU, weekday seasonality, Poisson noise."),
    start: str = typer.Option("2026-11-02", help="With --days: first day of the stream (ISO date, UTC)."),
    skus: int = typer.Option(30, help="With --days: SKUs in the catalogue."),
    per_sku_daily: float = typer.Option(20.0, help="With --days: typical records per SKU per day (log-normal across SKUs)."),
) -> None:
    """Write demo feedback as JSON lines (with the dirt a real feed has): a corpus of --n records, or with --days a
    multi-day stream in arrival order, for `fbrain loop replay FILE` (records keep their created_at)."""
    from processing.demo_data import generate_records, generate_stream, json_lines_of

    try:
        if days is not None:
            try:
                first = datetime.fromisoformat(start)
            except ValueError:
                raise ValueError(f"--start must be an ISO date (YYYY-MM-DD), got {start!r}") from None
            first = first if first.tzinfo else first.replace(tzinfo=timezone.utc)
            records = generate_stream(days, first, skus, per_sku_daily, seed)
        else:
            records = generate_records(n, seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with out.open("w", encoding="utf-8") as handle:
            for line in json_lines_of(records, seed):
                handle.write(line + "\n")
                written += 1
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    summary = {"out": str(out), "records": written, "seed": seed}
    if days is not None:
        summary.update(days=days, start=first.date().isoformat(), skus=skus, per_sku_daily=per_sku_daily)
    typer.echo(json.dumps(summary))
