"""`fbrain respond ...`: draft replies and cluster summaries from the command line.

Uses the same ResponseService as POST /responses, so the CLI and the API behave the same
with Bedrock on (`--set generative.use_bedrock=true`) or off (template fallback).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


def _generative(ctx: typer.Context):
    return ctx.obj["config"].generative


@app.command("draft")
def draft(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="The customer's feedback text."),
    scores: Optional[str] = typer.Option(None, help="The endpoint's prediction as JSON."),
    language: Optional[str] = typer.Option(None, help="ISO 639-1 code of the customer's language."),
) -> None:
    """Draft a reply (pending human approval) for one piece of feedback."""
    from inference.replies.drafting import ResponseService

    service = ResponseService(_generative(ctx))
    result = service.draft_reply({"text": text, "language": language}, json.loads(scores) if scores else None)
    typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))


@app.command("summarise")
def summarise(
    ctx: typer.Context,
    aspect: str = typer.Argument(..., help="Aspect the cluster is about, e.g. shipping_delivery."),
    jsonl: Path = typer.Argument(..., help="JSON lines with a 'text' field per feedback item."),
) -> None:
    """Summarise a cluster of feedback for the team that owns its aspect."""
    from inference.replies.bedrock import BedrockClient
    from inference.replies.summaries import summarise_cluster

    config = _generative(ctx)
    items = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    summary = summarise_cluster(items, aspect, config, BedrockClient(config) if config.use_bedrock else None)
    typer.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
