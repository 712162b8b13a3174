"""`fbrain loop ...`: the live loop's commands (serve, work, keys create, replay, forget).

Mounted on `fbrain` by pipelines.cli; the effective configuration comes from its global options
(`--config`, `--set loop.port=...`). Heavy imports happen inside the commands.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="The live loop: feedback service, worker, lake, replay.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the feedback service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _root_config(ctx: typer.Context) -> Any:
    obj = ctx.find_root().obj or {}
    if "config" not in obj:
        raise typer.BadParameter("run through `fbrain loop ...` (the configuration comes from fbrain's options)")
    return obj["config"]


def _workspace(config: Any, workspace: Optional[Path]) -> Path:
    if workspace is not None:
        config.local.workspace = str(workspace)
    return Path(config.local.workspace)


def _champion(ctx: typer.Context, config: Any, workspace: Path,
              model_dir: Optional[Path]) -> tuple[Optional[Path], Optional[str], Optional[str]]:
    """(model directory, name, version): --model-dir as given, else the local registry's champion."""
    if model_dir is not None:
        return model_dir, None, None
    if config.loop.scorer != "onnx":
        return None, None, None
    # The registry lives with the local runner (pipelines/, a layer above): fbrain hands its lookup down.
    found = ctx.find_root().obj["find_champion"](workspace)
    if found is None:
        typer.echo(f"error: no champion model in {workspace}: run `fbrain pipeline run --local` first, "
                   "or pass --model-dir", err=True)
        raise typer.Exit(2)
    version, directory = found
    return directory, config.aws.model_package_group, str(version)


def _worker(ctx: typer.Context, config: Any, workspace: Path, model_dir: Optional[Path], context: Any) -> Any:
    from operations.scoring import make_scorer
    from operations.worker import Worker

    directory, name, version = _champion(ctx, config, workspace, model_dir)
    scorer = make_scorer(config.loop, config.serving, directory, name, version)
    return Worker(config.loop, config.processing, context.store, context.lake, scorer)


@app.command("serve")
def serve(ctx: typer.Context,
          port: Optional[int] = typer.Option(None, help="Port (default: loop.port, 8090)."),
          host: Optional[str] = typer.Option(None, help="Bind address (default: loop.host)."),
          workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace)."),
          model_dir: Optional[Path] = typer.Option(None, help="Model directory; default: the registry's champion."),
          worker: bool = typer.Option(True, help="Run the micro-batch worker in the service process.")) -> None:
    """Serve POST /feedback, GET /feedback/{id}, /insights, /metrics and /health, with the worker."""
    import uvicorn

    from operations.service import create_app, open_loop

    config = _root_config(ctx)
    root = _workspace(config, workspace)
    context = open_loop(config.loop, config.processing, root)
    context.pipeline_erasers = _pipeline_erasers(config, root)
    alerting = _alerting(config, context)  # the alerting section's settings, before the routes are made
    if worker:
        context.worker = _worker(ctx, config, root, model_dir, context)
        alerting.follow(context.worker)  # immediate flags alert within their micro-batch
        context.worker.start_thread()
        alerting.start_thread()  # detection on its cadence (alerting.detect_every_s)
    host, port = host or config.loop.host, port or config.loop.port
    typer.echo(f"feedback service and dashboard on http://{host}:{port}/ (workspace {root}); "
               f"create a key with `fbrain loop keys create --scopes submit,read`")
    uvicorn.run(create_app(context), host=host, port=port, log_level="warning")


@app.command("work")
def work(ctx: typer.Context,
         workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace)."),
         model_dir: Optional[Path] = typer.Option(None, help="Model directory; default: the registry's champion."),
         drain: bool = typer.Option(False, help="Process what has arrived, then exit (default: run until stopped).")) -> None:
    """Run the micro-batch worker alone (the service runs one itself unless --no-worker)."""
    from operations.service import open_loop

    config = _root_config(ctx)
    root = _workspace(config, workspace)
    context = open_loop(config.loop, config.processing, root)
    runner = _worker(ctx, config, root, model_dir, context)
    alerting = _alerting(config, context)
    alerting.follow(runner)  # immediate flags alert within their micro-batch
    if not drain:
        alerting.start_thread()
    if drain:
        batches = runner.drain()
        typer.echo(json.dumps({"batches": batches, "funnel": context.store.funnel()}))
        return
    runner.run_forever()


@keys_app.command("create")
def keys_create(ctx: typer.Context,
                scopes: str = typer.Option(..., help="Comma-separated: submit, read, review, admin."),
                workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace).")) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from operations.store import Store

    config = _root_config(ctx)
    root = _workspace(config, workspace)
    store = Store(config.loop.path(root, config.loop.state_db))
    try:
        key = store.create_key([s.strip() for s in scopes.split(",") if s.strip()])
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(key)


@app.command("replay")
def replay_command(ctx: typer.Context,
                   file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL, CSV or Parquet file of feedback."),
                   rate: float = typer.Option(100.0, help="Records per second (0: as fast as the service answers)."),
                   url: Optional[str] = typer.Option(None, help="Service base URL (default: http://loop.host:loop.port)."),
                   api_key: Optional[str] = typer.Option(None, envvar="FBRAIN_API_KEY",
                                                         help="Key with the submit scope (or FBRAIN_API_KEY)."),
                   batch_size: int = typer.Option(100, help="Records per POST /feedback.")) -> None:
    """Send FILE through POST /feedback as a stream (records keep their created_at); print the outcome."""
    from operations.replay import http_poster, replay

    config = _root_config(ctx)
    if not api_key:
        typer.echo("error: pass --api-key or set FBRAIN_API_KEY (`fbrain loop keys create --scopes submit`)", err=True)
        raise typer.Exit(2)
    url = url or f"http://{config.loop.host}:{config.loop.port}"
    try:
        report = replay(file, http_poster(url, api_key), rate, batch_size)
    except Exception as exc:  # noqa: BLE001  (connection refused, timeouts: say where and why)
        typer.echo(f"error: replay to {url} failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.http_errors and not report.accepted:
        raise typer.Exit(1)


@app.command("forget")
def forget_command(ctx: typer.Context,
                   customer_id: str = typer.Option(..., help="The data subject's customer id, as submitted."),
                   workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace).")) -> None:
    """Erase every record of one customer: the loop (receive log, lake, dedup index, review queue), the pipeline's
    Feature Store and endpoint data capture (loop.forget_pipeline_data: local or aws); prints the audit record.
    With the service running, use its POST /admin/forget instead (it waits for the worker's batch)."""
    from operations.privacy import forget_customer
    from operations.service import open_loop

    config = _root_config(ctx)
    root = _workspace(config, workspace)
    context = open_loop(config.loop, config.processing, root)
    try:
        audit = forget_customer(context.store, context.lake, config.processing, customer_id, config.loop.gold_window,
                                erasers=[_alerting(config, context).forget_feedback, *_pipeline_erasers(config, root)])
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(audit, indent=2))


@app.command("maintain")
def maintain_command(ctx: typer.Context,
                     workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace).")) -> None:
    """Purge bronze raw text past its retention, compact the lake's tables, expire old snapshots."""
    from operations.service import open_loop
    from operations.worker import maintain_lake

    config = _root_config(ctx)
    context = open_loop(config.loop, config.processing, _workspace(config, workspace))
    typer.echo(json.dumps(maintain_lake(context.lake, config.loop)))


@app.command("export")
def export_command(ctx: typer.Context,
                   workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace)."),
                   snapshot_id: Optional[int] = typer.Option(None, help="Silver snapshot to export (default: the current one)."),
                   out: Optional[Path] = typer.Option(None, help="Folder for silver-snapshot-<id>/ (default: the local "
                                                                  "object store's lake-exports/ prefix).")) -> None:
    """Export a silver snapshot as training input (corrections applied) and print the InputDataUri to train on it."""
    from operations.service import open_loop
    from operations.training_export import export_silver, export_to_bucket

    config = _root_config(ctx)
    root = _workspace(config, workspace)
    context = open_loop(config.loop, config.processing, root)
    try:
        if out is None:
            exported = export_to_bucket(context.lake, config.aws.bucket, snapshot_id, local_store=config.local.object_store)
        else:
            folder, snapshot, written = export_silver(context.lake, out, snapshot_id)
            exported = {"snapshot_id": snapshot, "records": written, "folder": str(folder), "input_data_uri": str(folder)}
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(exported))
    typer.echo(f"train on it: fbrain pipeline run --local --param InputDataUri={exported['input_data_uri']} "
               "(or --param InputDataUri=lake:silver, which exports the current snapshot itself)", err=True)


@app.command("demo")
def demo_command(ctx: typer.Context,
                 file: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                                     help="Stream to replay (default: local.demo_data or the demo corpus)."),
                 rate: float = typer.Option(0.0, help="Records per second (0: as fast as the service answers)."),
                 workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace)."),
                 model_dir: Optional[Path] = typer.Option(None, help="Model directory; default: the registry's champion."),
                 port: int = typer.Option(0, help="Port (default 0: any free one; the service stops when the demo ends).")) -> None:
    """The loop end to end, then exit: serve, replay a stream through POST /feedback, wait until it is
    scored, print GET /insights answers (what `make run` ends with)."""
    import threading
    import time
    from datetime import timedelta

    import httpx
    import uvicorn

    from operations.replay import http_poster, replay
    from operations.service import create_app, open_loop
    from processing.demo_data import DEMO_CORPUS_PATH

    config = _root_config(ctx)
    root = _workspace(config, workspace)
    stream = file or (Path(config.local.demo_data) if config.local.demo_data else DEMO_CORPUS_PATH)
    context = open_loop(config.loop, config.processing, root)
    context.worker = _worker(ctx, config, root, model_dir, context)
    context.worker.start_thread()
    host = config.loop.host
    server = uvicorn.Server(uvicorn.Config(create_app(context), host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    if not server.started:
        typer.echo(f"error: the feedback service could not listen on {host}:{port} (choose another --port)", err=True)
        raise typer.Exit(1)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://{host}:{port}"
    key = context.store.create_key(["submit", "read"])
    headers = {"x-api-key": key}
    try:
        report = replay(stream, http_poster(url, key), rate)
        typer.echo(f"replayed {stream.name} through POST {url}/feedback: " + json.dumps(report.as_dict()))
        while True:
            funnel = httpx.get(f"{url}/health").json()["funnel"]
            if funnel["pending"] == 0 and funnel["watermark"] == funnel["last_seq"]:
                break
            time.sleep(0.2)
        health = httpx.get(f"{url}/health").json()
        typer.echo("funnel: " + json.dumps(health["funnel"]["stages"]) +
                   f"; created->scored lag p95 {health['lag']['created_to_scored']['p95_s']} s (records keep their "
                   "created_at, so this is the stream's age, not the loop's delay)")
        silver = context.lake.scan("silver", columns=("sku", "created_at")).to_pandas()
        until = silver["created_at"].max() + timedelta(seconds=1)
        since = until - timedelta(days=7)
        window = {"since": since.isoformat(), "until": until.isoformat()}
        top_skus = silver["sku"].value_counts().head(2).index.tolist()
        for params in [window] + [{**window, "sku": sku} for sku in top_skus]:
            answer = httpx.get(f"{url}/insights", params=params, headers=headers).json()
            typer.echo(f"GET /insights?{'&'.join(f'{k}={v}' for k, v in params.items())}\n  " + json.dumps({
                "volume": answer["volume"], "sentiment": {k: v["count"] for k, v in answer["sentiment"].items()},
                "intents": answer["intents"], "aspects": answer["aspects"],
                "volume_previous_window": answer["change"]["volume_previous"]})
                + "\n  e.g. " + json.dumps(answer["examples"][:1], ensure_ascii=False))
    finally:
        server.should_exit = True
        thread.join(10)
        context.worker.stop_event.set()
    typer.echo(f"the lake is in {root / 'loop'}; keep the service up with `fbrain loop serve --workspace {root}` "
               f"(then `fbrain loop keys create --scopes submit,read --workspace {root}` for a key)")


def _pipeline_erasers(config: Any, root: Path) -> list:
    """Erasers of the pipeline's Feature Store and endpoint data capture for forget (loop.forget_pipeline_data)."""
    from operations.erasure import pipeline_erasers

    return list(pipeline_erasers(config.loop.forget_pipeline_data, root, config.processing.feature_group_name,
                                 config.processing.feature_store_offline_s3_uri, config.local_capture_dir(),
                                 f"s3://{config.aws.bucket}/{config.aws.data_capture_prefix.strip('/')}/"))


def _alerting(config: Any, context: Any) -> Any:
    from operations.alert_routes import ensure_alerting

    return ensure_alerting(context, config.alerting, config.aws.bucket)


@app.command("detect")
def detect_command(ctx: typer.Context,
                   at: Optional[str] = typer.Option(None, help="Event time to evaluate at (ISO 8601; default now)."),
                   workspace: Optional[Path] = typer.Option(None, help="Workspace folder (default: local.workspace).")) -> None:
    """Run detection once over the lake at an event time: alerts, incidents, notifications, review queue."""
    from operations.alerting.detection import parse_at
    from operations.service import open_loop

    config = _root_config(ctx)
    try:
        when = parse_at(at)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    context = open_loop(config.loop, config.processing, _workspace(config, workspace))
    summary = _alerting(config, context).evaluate(when)
    typer.echo(json.dumps(summary, indent=2, default=str))
