"""`fbrain respond ...`: draft replies and cluster summaries from the command line.

`respond draft TEXT` scores TEXT with the model first (the workspace's champion, or `--model-dir`),
so the reply addresses the predicted sentiment, aspects and flags, then answers what
`POST /responses` answers (inference.replies.reply): the draft and the second-stage judgement.
Bedrock is on with `--set generative.use_bedrock=true`, templates otherwise.

The champion is looked up by the command line that mounts this app (pipelines/cli.py puts a
`champion_model_dir(workspace)` function into the context), since the registry belongs to the
pipelines layer, above this one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer

app = typer.Typer(no_args_is_help=True)

CHAMPION_LOOKUP = "champion_model_dir"
"""Key of the context object holding `(workspace: Path | None) -> Path`, the champion's model directory."""


def _generative(ctx: typer.Context):
    return ctx.obj["config"].generative


def _scores_option(scores: str) -> dict[str, Any]:
    try:
        parsed = json.loads(scores)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc.msg} at column {exc.colno}", param_hint="--scores") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("expected a JSON object, the endpoint's prediction for the text", param_hint="--scores")
    return parsed


def score_text(model_dir: Path, text: str, serving) -> dict[str, Any]:
    """The endpoint's prediction for one text: the same predictor and runtime the endpoint loads."""
    from inference.predictor import ModelLoadError, load_predictor

    try:
        predictor = load_predictor(model_dir, serving)
    except ModelLoadError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model-dir") from None
    return predictor.predict([text])[0]


def _model_dir(ctx: typer.Context, model_dir: Optional[Path], workspace: Optional[Path]) -> Path:
    if model_dir is not None:
        return model_dir
    lookup: Callable[[Optional[Path]], Path] | None = (ctx.obj or {}).get(CHAMPION_LOOKUP)
    if lookup is None:
        raise typer.BadParameter("no model registry here: pass --model-dir (or --scores)", param_hint="--model-dir")
    return lookup(workspace)


@app.command("draft")
def draft(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="The customer's feedback text."),
    scores: Optional[str] = typer.Option(None, help="The endpoint's prediction as JSON; default: score TEXT with the model."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", file_okay=False,
                                             help="Model directory that scores TEXT; default: the workspace's champion."),
    workspace: Optional[Path] = typer.Option(None, help="Workspace whose champion scores TEXT (default: local.workspace)."),
    language: Optional[str] = typer.Option(None, help="ISO 639-1 code of the customer's language."),
    channel: str = typer.Option("unknown", help="Where the feedback came from (review, email, chat, ...)."),
    order_value: Optional[float] = typer.Option(None, min=0, help="Order value (USD): high values get a second look."),
) -> None:
    """Score TEXT, then draft a reply (pending human approval) and the second-stage judgement."""
    from inference.replies.drafting import ResponseService
    from inference.replies.reply import reply_to

    config = ctx.obj["config"]
    if not text.strip():
        raise typer.BadParameter("the text is empty", param_hint="TEXT")
    if scores is not None:
        prediction, source = _scores_option(scores), "option"
    else:
        directory = _model_dir(ctx, model_dir, workspace)
        prediction, source = score_text(directory, text, config.serving), f"model:{directory}"
    record = {"text": text, "language": language, "channel": channel}
    result = reply_to(ResponseService(config.generative), record, prediction, order_value)
    typer.echo(json.dumps({"scores": prediction, "scores_source": source} | result, indent=2, ensure_ascii=False))


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
