"""`fbrain loop ...` commands: keys create, replay against a running service, maintain."""
from __future__ import annotations

import json
from collections import Counter
import socket
import time

import pytest
from typer.testing import CliRunner

from operations_support import make_loop, record, serving


def _cli(*args):
    from pipelines.cli import app

    return CliRunner().invoke(app, ["loop", *args])


def test_keys_create_prints_a_key_once_and_stores_its_hash(tmp_path):
    from operations.store import Store

    result = _cli("keys", "create", "--scopes", "submit,read", "--workspace", str(tmp_path))
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    store = Store(tmp_path / "loop" / "state.db")
    assert store.key_scopes(key) == {"submit", "read"}
    assert key.encode() not in (tmp_path / "loop" / "state.db").read_bytes()
    bad = _cli("keys", "create", "--scopes", "submit,root", "--workspace", str(tmp_path))
    assert bad.exit_code == 2 and "scopes must be" in bad.output


@pytest.fixture
def running_service(tmp_path, tiny_model_dir):
    """The service on a free port (uvicorn in a thread) with its worker."""
    context, worker = make_loop(tmp_path / "ws", tiny_model_dir)
    with serving(context) as url:
        yield url, context, worker


def test_replay_streams_a_file_through_post_feedback(tmp_path, running_service):
    url, context, worker = running_service
    key = context.store.create_key(["submit", "read"])
    stream = tmp_path / "stream.jsonl"
    lines = [json.dumps(record(f"r-{i}", f"Order {i} arrived late.", created_at=f"2026-11-{10 + i}T08:00:00Z"))
             for i in range(5)]
    lines.insert(2, "{not json")
    lines.append(json.dumps(record("r-0", "Order 0 arrived late.", created_at="2026-11-10T08:00:00Z")))
    stream.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = _cli("replay", str(stream), "--rate", "0", "--url", url, "--api-key", key, "--batch-size", "3")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["sent"], report["accepted"], report["duplicates"], report["rejected"]) == (7, 5, 1, 1)
    assert report["rejection_reasons"] == {"invalid_json": 1}
    worker.drain()
    import httpx

    held = httpx.get(f"{url}/feedback/r-3", headers={"x-api-key": key}).json()
    assert held["stage"] == "scored" and held["timestamps"]["created"].startswith("2026-11-13T08:00:00")


def test_replay_without_a_service_says_so(tmp_path):
    stream = tmp_path / "s.jsonl"
    stream.write_text(json.dumps(record("x", "y")) + "\n")
    result = _cli("replay", str(stream), "--url", "http://127.0.0.1:9", "--api-key", "fbk_a_b")
    assert result.exit_code == 1 and "replay to http://127.0.0.1:9 failed" in result.output


def test_maintain_compacts_the_lake(tmp_path, tiny_model_dir):
    from operations import lake

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir)
    for i in range(3):
        entry = record(f"m-{i}", f"Note number {i} about the buckle.", customer_id=f"c{i}")
        context.store.admit([(entry, entry, None)])
        worker.drain()
    silver = context.lake.table(lake.SILVER)
    assert len(silver.inspect.files()) == 3
    gold_before = context.lake.scan(lake.GOLD).to_pylist()  # additive: each batch appended its own counts
    records_before = [r for r in gold_before if r["aspect"] == lake.ALL_RECORDS]
    assert len(records_before) == 3 and sum(r["count"] for r in records_before) == 3
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["--set", "loop.snapshot_keep_last=1", "loop", "maintain", "--workspace",
                                      str(workspace)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows_compacted"]["silver"] == 3 and report["snapshots_expired"]["silver"] >= 3
    from operations.config import LoopConfig

    fresh = lake.Lake(LoopConfig(), workspace)  # the worker's Lake caches its own commits; maintain made others
    assert len(fresh.table(lake.SILVER).inspect.files()) == 1
    assert fresh.scan(lake.SILVER).num_rows == 3
    assert all(len(fresh.table(name).snapshots()) == 1 for name in lake.SCHEMAS if fresh.table(name).snapshots())
    # compaction sums gold to one row per key, the totals unchanged
    gold_after = fresh.scan(lake.GOLD).to_pylist()
    summed = Counter()
    for row in gold_before:
        summed[tuple(row[k] for k in lake.GOLD_KEYS)] += row["count"]
    assert {tuple(r[k] for k in lake.GOLD_KEYS): r["count"] for r in gold_after} == summed
    assert len(gold_after) == len(summed)


@pytest.mark.slow
def test_serve_command_scores_a_posted_record(tmp_path, tiny_model_dir):
    """`fbrain loop serve` in its own process: POST /feedback, poll GET /feedback/{id} until scored, /insights counts it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    root = Path(__file__).resolve().parents[1]
    workspace = tmp_path / "ws"
    key = _cli("keys", "create", "--scopes", "submit,read", "--workspace", str(workspace)).output.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    service = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--set", "loop.micro_batch_interval_s=0.1",
                                "loop", "serve", "--port", str(port), "--workspace", str(workspace),
                                "--model-dir", str(tiny_model_dir)], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url, headers = f"http://127.0.0.1:{port}", {"x-api-key": key}
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        answer = httpx.post(f"{url}/feedback", json=record("live-1", "Call me at +44 7911 123456, the box was crushed."),
                            headers=headers)
        assert answer.status_code == 202
        for _ in range(600):
            held = httpx.get(f"{url}/feedback/live-1", headers=headers).json()
            if held["stage"] == "scored":
                break
            time.sleep(0.1)
        assert held["stage"] == "scored" and "7911" not in held["text"]
        insights = httpx.get(f"{url}/insights", params={"sku": "SKU-1", "since": "2026-11-30T00:00:00Z",
                                                         "until": "2026-12-02T00:00:00Z"}, headers=headers).json()
        assert insights["volume"] == 1
    finally:
        service.terminate()
        service.wait(30)


def test_export_writes_a_silver_snapshot_as_training_input(tmp_path, tiny_model_dir):
    from processing.readers import RawRecord, iter_file
    from processing.schema import validate_record

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir)
    labeled = record("t-1", "Arrived broken, mail me at a@b.com", sentiment="negative", labeled_tasks=["sentiment"])
    plain = record("t-2", "Nice enough.", customer_id="c2")
    context.store.admit([(labeled, labeled, None), (plain, plain, None)])
    worker.drain()
    first = context.lake.snapshot_id("silver")
    later = record("t-3", "Another one, later.", customer_id="c3")
    context.store.admit([(later, later, None)])
    worker.drain()

    result = _cli("export", "--workspace", str(workspace), "--snapshot-id", str(first))
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output.splitlines()[0])
    assert answer["snapshot_id"] == first and answer["records"] == 2
    assert answer["input_data_uri"] == f"s3://feedback-brain-artifacts/lake-exports/silver-snapshot-{first}/"
    items = list(iter_file(next((workspace / "s3").rglob("feedback.jsonl"))))
    records = [validate_record(item.record) for item in items if isinstance(item, RawRecord)]
    assert [r.feedback_id for r in records] == ["t-1", "t-2"]  # the snapshot, not what came after
    assert records[0].sentiment == "negative" and records[0].labeled_tasks == ["sentiment"]
    assert records[1].sentiment is None and records[1].labeled_tasks == []  # predictions are not labels
    assert "a@b.com" not in records[0].text and records[0].customer_id.startswith("p_")


def test_input_data_uri_may_name_the_silver_table(tmp_path, tiny_model_dir, monkeypatch):
    """`--param InputDataUri=lake:silver[@SNAPSHOT]`: `pipeline start` exports the snapshot to S3 (moto) and starts
    the execution on its URI; `pipeline run --local` exports into the local object store; a bad name is refused."""
    import boto3
    from moto import mock_aws
    from typer.testing import CliRunner

    from pipelines import aws as pipeline_aws
    from pipelines.cli import app
    from pipelines.config import load_config
    from pipelines.lake_input import resolve_lake_input

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir)
    labeled = record("s-1", "Arrived broken.", sentiment="negative", labeled_tasks=["sentiment"])
    context.store.admit([(labeled, labeled, None)])
    worker.drain()
    snapshot = context.lake.snapshot_id("silver")
    started = {}
    monkeypatch.setattr(pipeline_aws, "start_execution", lambda config, params: started.update(params) or "arn:exec")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="feedback-brain-artifacts")
        result = CliRunner().invoke(app, ["--set", f"local.workspace={workspace}", "pipeline", "start",
                                          "--param", "InputDataUri=lake:silver", "--param", "Epochs=1"])
        assert result.exit_code == 0, result.output
        uri = f"s3://feedback-brain-artifacts/lake-exports/silver-snapshot-{snapshot}/"
        assert started == {"InputDataUri": uri, "Epochs": "1"}
        body = s3.get_object(Bucket="feedback-brain-artifacts",
                             Key=f"lake-exports/silver-snapshot-{snapshot}/feedback.jsonl")["Body"].read()
        assert json.loads(body.splitlines()[0])["sentiment"] == "negative"
    config = load_config(overrides=[f"local.workspace={workspace}"])
    params, exported = resolve_lake_input(config, {"InputDataUri": f"lake:silver@{snapshot}"}, workspace, local=True)
    assert params["InputDataUri"] == uri and exported["records"] == 1
    assert (config.local.object_store / "feedback-brain-artifacts" / "lake-exports" / f"silver-snapshot-{snapshot}"
            / "feedback.jsonl").exists()
    for bad in ("lake:gold", "lake:silver@latest"):
        refused = CliRunner().invoke(app, ["--set", f"local.workspace={workspace}", "pipeline", "run", "--local",
                                           "--param", f"InputDataUri={bad}"])
        assert refused.exit_code == 2 and "InputDataUri" in refused.output


def test_demo_replays_the_corpus_and_prints_insights(tmp_path, tiny_model_dir):
    stream = tmp_path / "demo.jsonl"
    from processing.demo_data import DEMO_CORPUS_PATH

    stream.write_text("".join(DEMO_CORPUS_PATH.read_text(encoding="utf-8").splitlines(keepends=True)[:60]))
    result = _cli("demo", "--file", str(stream), "--workspace", str(tmp_path / "ws"), "--model-dir",
                  str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert '"sent": 60' in result.output and "GET /insights?since=" in result.output
    assert "&sku=" in result.output and "fbrain loop serve --workspace" in result.output


@pytest.mark.slow
def test_demo_scores_with_the_registry_champion(local_run):
    """What `make run` ends with: `fbrain loop demo` on the pipeline's workspace, champion from the registry."""
    from e2e_support import fbrain

    if local_run.returncode != 0:
        pytest.fail(f"the end-to-end pipeline run failed:\n{local_run.output[-3000:]}")
    done = fbrain(local_run.workspace, "loop", "demo", "--workspace", str(local_run.workspace), timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert '"accepted": ' in done.stdout and "GET /insights?since=" in done.stdout
    from operations.config import LoopConfig
    from operations.lake import Lake

    silver = Lake(LoopConfig(), local_run.workspace).scan("silver", columns=("model_name", "model_version")).to_pylist()
    # every scored row names the champion (spam rows stay unscored: model_name is None)
    assert silver and {r["model_name"] for r in silver if r["model_version"] is not None} == {"feedback-brain-models"}


def test_a_generated_multi_day_stream_replays_with_its_created_at(tmp_path, running_service):
    """`fbrain data generate --days 3` then `fbrain loop replay`: each record is held with the created_at it was made with."""
    import httpx

    from pipelines.cli import app

    url, context, worker = running_service
    key = context.store.create_key(["submit", "read"])
    stream = tmp_path / "days.jsonl"
    made = CliRunner().invoke(app, ["data", "generate", "--days", "3", "--start", "2026-11-06", "--skus", "3",
                                    "--per-sku-daily", "6", "--seed", "5", "--out", str(stream)])
    assert made.exit_code == 0, made.output
    result = _cli("replay", str(stream), "--rate", "0", "--url", url, "--api-key", key)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["sent"] == json.loads(made.output)["records"] and report["accepted"] > 0.8 * report["sent"]
    worker.drain()
    sent = [json.loads(line) for line in stream.read_text().splitlines() if line.startswith("{") and line.endswith("}")]
    clean = [r for r in sent if r.get("labeled_tasks") and isinstance(r.get("created_at"), str) and r["created_at"]][:5]
    for item in clean:
        held = httpx.get(f"{url}/feedback/{item['feedback_id']}", headers={"x-api-key": key}).json()
        assert held["timestamps"]["created"][:19] == item["created_at"][:19], item["feedback_id"]
    days = {r["created_at"][:10] for r in clean}
    assert days <= {"2026-11-06", "2026-11-07", "2026-11-08"}
