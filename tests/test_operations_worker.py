"""The worker is exactly once: killed with SIGKILL after any of its writes, a restart loses nothing and
counts nothing twice (bronze = silver + duplicates + quarantine, per id; gold = scored records)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from operations_support import make_loop, record

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["The heel broke after two days.", "Love the colour, fits well.", "Where is my parcel? Ten days now.",
         "Refund me, the box arrived empty.", "Great value for the price.", "The strap is shorter than listed."]


def _admit(context, prefix: str) -> None:
    entries = [(record(f"{prefix}-{i}", text, customer_id=f"{prefix}-c{i}"),) for i, text in enumerate(TEXTS)]
    entries = [(r, r, None) for (r,) in entries]
    copy = record(f"{prefix}-copy", TEXTS[0], customer_id=f"{prefix}-c0")
    entries.append((copy, copy, None))
    entries.append((None, {"feedback_id": f"{prefix}-bad"},
                    {"reason": "missing_field", "field": "text", "message": "text: Field required"}))
    assert [a.status for a in context.store.admit(entries)] == ["accepted"] * 7 + ["rejected"]


def _drain_in_child(workspace: str, model_dir: str, crash_after: str) -> None:
    os.environ["FBRAIN_LOOP_CRASH_AFTER"] = crash_after
    from operations.config import LoopConfig

    _, worker = make_loop(Path(workspace), Path(model_dir), LoopConfig(micro_batch_max_records=5))
    worker.drain()
    os._exit(0)


def _books(context) -> dict:
    from operations import lake
    from operations.config import LoopConfig

    tables = lake.Lake(LoopConfig(), context.lake.workspace)  # fresh: the worker process committed, not this one
    bronze = tables.scan(lake.BRONZE).to_pylist()
    silver = tables.scan(lake.SILVER).to_pylist()
    quarantine = tables.scan(lake.QUARANTINE).to_pylist()
    gold = tables.scan(lake.GOLD).to_pylist()
    return {"bronze": Counter(r["seq"] for r in bronze), "silver": Counter(r["feedback_id"] for r in silver),
            "quarantine": Counter(r["seq"] for r in quarantine),
            "gold_records": sum(r["count"] for r in gold if r["aspect"] == lake.ALL_RECORDS),
            "scored": sum(1 for r in silver if r["sentiment"] is not None)}


@pytest.mark.parametrize("crash_after", ["bronze", "quarantine", "silver", "gold", "commit"])
def test_a_kill_after_any_write_loses_nothing_and_counts_nothing_twice(tmp_path, tiny_model_dir, crash_after):
    from operations.config import LoopConfig

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir, LoopConfig(micro_batch_max_records=5))
    _admit(context, "early")
    worker.drain()  # a first stream already in the lake: gold must be recomputed, not overwritten
    _admit(context, "late")

    child = multiprocessing.get_context("fork").Process(
        target=_drain_in_child, args=(str(workspace), str(tiny_model_dir), crash_after))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL, f"the worker was meant to die after {crash_after}"

    context, worker = make_loop(workspace, tiny_model_dir, LoopConfig(micro_batch_max_records=5))
    worker.drain()
    books = _books(context)
    assert set(books["bronze"]) == set(range(1, 17)) and max(books["bronze"].values()) == 1
    expected_silver = {f"{p}-{i}" for p in ("early", "late") for i in range(len(TEXTS))}
    assert set(books["silver"]) == expected_silver and max(books["silver"].values()) == 1
    assert len(books["quarantine"]) == 2 and max(books["quarantine"].values()) == 1
    assert books["gold_records"] == books["scored"] == len(expected_silver)
    funnel = context.store.funnel()
    assert funnel["pending"] == 0 and funnel["watermark"] == 16
    # bronze = silver + duplicates + quarantine
    assert funnel["stages"] == {"scored": 12, "enriched": 2}
    assert context.store.stage("late-copy")["duplicate_of"] == "late-0"


@pytest.mark.slow
def test_the_worker_command_recovers_after_kill_9(tmp_path, tiny_model_dir):
    """The same, through `fbrain loop work --drain`, killed by the injected SIGKILL after its silver write."""
    workspace = tmp_path / "ws"
    context, _ = make_loop(workspace, tiny_model_dir)
    _admit(context, "cli")
    command = [sys.executable, "-m", "pipelines.cli", "loop", "work", "--drain", "--workspace", str(workspace),
               "--model-dir", str(tiny_model_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FBRAIN_LOOP_CRASH_AFTER": "silver"}
    crashed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    env.pop("FBRAIN_LOOP_CRASH_AFTER")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    books = _books(context)
    assert len(books["silver"]) == 6 and max(books["silver"].values()) == 1
    assert books["gold_records"] == 6 and max(books["bronze"].values()) == 1


def test_the_worker_keeps_few_snapshots_and_still_counts_once(tmp_path, tiny_model_dir):
    """`loop.expire_every_batches` / `loop.snapshot_keep_last` through `fbrain --set ... loop work --drain`: every
    commit copies a table's snapshot list, so the worker expires old ones; the books stay exact."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    workspace = tmp_path / "ws"
    context, _ = make_loop(workspace, tiny_model_dir)
    _admit(context, "snap")
    result = CliRunner().invoke(app, [
        "--set", "loop.micro_batch_max_records=1", "--set", "loop.expire_every_batches=3",
        "--set", "loop.snapshot_keep_last=2", "loop", "work", "--drain", "--workspace", str(workspace),
        "--model-dir", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert '"batches": 8' in result.output
    from operations import lake
    from operations.config import LoopConfig

    tables = lake.Lake(LoopConfig(), workspace)
    # 8 batches wrote 8 snapshots to bronze; expiry after batches 3 and 6 kept 2, batches 7 and 8 added 2
    assert len(tables.table(lake.BRONZE).snapshots()) == 2 + 2
    assert all(len(tables.table(name).snapshots()) <= 2 + 2 for name in lake.SCHEMAS)
    books = _books(context)
    assert set(books["bronze"]) == set(range(1, 9)) and max(books["bronze"].values()) == 1
    assert len(books["silver"]) == 6 and max(books["silver"].values()) == 1
    assert books["gold_records"] == books["scored"] == 6


def test_a_bad_snapshot_setting_is_refused(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, ["--set", "loop.snapshot_keep_last=0", "loop", "work", "--drain",
                                      "--workspace", str(tmp_path)])
    assert result.exit_code != 0 and "snapshot_keep_last" in result.output


def test_the_worker_compacts_one_table_at_a_time(tmp_path, tiny_model_dir):
    """With compact_every_batches=4 each batch is followed by one table's compaction, in turn (bronze, quarantine,
    silver, gold), so no step stalls the stream for all four; the books stay exact."""
    from operations import lake
    from operations.config import LoopConfig

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir, LoopConfig(
        micro_batch_max_records=1, compact_every_batches=4, expire_every_batches=0))
    _admit(context, "turn")
    assert worker.drain() == 8
    tables = lake.Lake(LoopConfig(), workspace)
    # bronze was compacted after batches 1 and 5, then batches 6-8 each added a file
    assert len(tables.table(lake.BRONZE).inspect.files()) == 1 + 3
    # gold after batch 8: one row per key (its counts summed), so it holds as many rows as distinct keys
    gold = tables.scan(lake.GOLD).to_pylist()
    assert len({tuple(r[k] for k in lake.GOLD_KEYS) for r in gold}) == len(gold)
    books = _books(context)
    assert set(books["bronze"]) == set(range(1, 9)) and max(books["bronze"].values()) == 1
    assert len(books["silver"]) == 6 and max(books["silver"].values()) == 1
    assert books["gold_records"] == books["scored"] == 6


def test_a_safety_report_alerts_within_its_micro_batch(tmp_path, tiny_model_dir):
    """`fbrain loop work --drain` with no detection run: the flag the taxonomy escalates immediately opens its alert
    right after the micro-batch that scored it (Alerting.follow), owner and playbook included; other items do not."""
    from typer.testing import CliRunner

    from operations.alerting.config import AlertingConfig
    from operations.alerting.store import AlertStore
    from pipelines.cli import app

    workspace = tmp_path / "ws"
    context, _ = make_loop(workspace, tiny_model_dir)
    report = record("fire-1", "The charger overheated and caught fire, my hand got burned.", sku="SKU-9",
                    customer_id="cust-fire")
    calm = record("calm-1", "Lovely colour, quick delivery.", sku="SKU-2")
    assert [a.status for a in context.store.admit([(report, report, None), (calm, calm, None)])] == ["accepted"] * 2
    result = CliRunner().invoke(app, ["--set", "alerting.detect_every_s=0", "loop", "work", "--drain",
                                      "--workspace", str(workspace), "--model-dir", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    alerts = AlertStore(workspace / AlertingConfig().state_db).alerts()
    assert [(a["signal"], a["value"], a["owner"], a["playbook"]["id"]) for a in alerts] == [
        ("flag:safety_concern", "SKU-9", "product-safety", "safety")]
    assert alerts[0]["opened_at"].startswith("2026-12-01T10:00:00")  # the report's own event time
