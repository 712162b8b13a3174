"""Playbooks (schema, coverage, routing) and `fbrain loop detect`; detection on the worker's cadence."""
from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerting_support import START, generate, make_loop, post_records, small_scenario
from operations.alerting.config import AlertingConfig
from operations.alerting.playbooks import BUNDLED_DIR, PlaybookError, all_signals, load_playbooks


def test_every_signal_has_exactly_one_valid_playbook_owned_by_the_taxonomy_owner():
    config = AlertingConfig()
    books = load_playbooks(config)
    assert set(all_signals(config)) <= set(books.by_signal)
    domains = {b["domain"] for b in books.by_id.values()}
    assert {"product quality", "sizing/fit", "shipping/delivery", "packaging", "listing accuracy",
            "support experience", "pricing/value", "safety"} <= domains
    for book in books.by_id.values():
        assert book["validation"]["within_days"] > 0 and book["stop_conditions"] and book["escalation"]
    # machine-readable detection criteria reach the detector
    assert books.thresholds(__import__("operations.alerting.detection", fromlist=["x"]).Thresholds(5, 2.0, 1e-6))[
        "aspect:product_quality"].min_count == 5


@pytest.mark.parametrize("edit, message", [
    (lambda b: b.pop("validation"), "'validation' is a required property"),
    (lambda b: b["detection"].update(max_p_value=2), "max_p_value"),
    (lambda b: b.update(owner="someone-else"), "the taxonomy routes"),
    (lambda b: b["detection"].update(signals=["aspect:teleportation"]), "names no owner_team"),
])
def test_a_broken_playbook_is_refused_with_the_file_and_reason(tmp_path, edit, message):
    for path in BUNDLED_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    book = json.loads((tmp_path / "packaging.json").read_text())
    edit(book)
    (tmp_path / "packaging.json").write_text(json.dumps(book))
    with pytest.raises(PlaybookError, match="packaging.json") as raised:
        load_playbooks(AlertingConfig(playbooks_dir=str(tmp_path)))
    assert message in str(raised.value)


def _cli(*args):
    from pipelines.cli import app

    return CliRunner().invoke(app, [*args])


@pytest.mark.slow
def test_fbrain_loop_detect_at_an_event_time_and_the_worker_cadence(tmp_path):
    context, client, keys = make_loop(tmp_path / "ws")
    scenario = small_scenario(days=9, defect_day=8)
    post_records(client, keys["submit"], generate(scenario))
    context.worker.drain()
    hot = scenario.incidents[0].sku
    bad = _cli("loop", "detect", "--at", "not-a-time", "--workspace", str(tmp_path / "ws"))
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
    result = _cli("loop", "detect", "--at", (START + timedelta(days=8, hours=20)).isoformat(),
                  "--workspace", str(tmp_path / "ws"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert f"sku={hot}|aspect:product_quality" in summary["keys"] and summary["notifications"] >= 1
    # the service sees what the command wrote (same alert database)
    alerts = client.get("/alerts", headers={"x-api-key": keys["read"]}).json()["alerts"]
    assert f"sku={hot}|aspect:product_quality" in {a["dedup_key"] for a in alerts}

    # on a cadence: a detection thread evaluates at `now` every alerting.detect_every_s
    context.alerting.config.detect_every_s = 0.2
    thread = context.alerting.start_thread()
    try:
        deadline = time.monotonic() + 30
        while context.alerting.store.get_state("last_evaluation_at") < "2026-12" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        context.alerting.stop_event.set()
        thread.join(10)
    assert context.alerting.store.get_state("last_evaluation_at") >= "2026-12"
    assert context.alerting.last_error is None


@pytest.mark.slow
def test_fbrain_loop_serve_shows_the_dashboard_and_the_alert_routes(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    import httpx

    from operations.store import Store

    workspace = tmp_path / "ws"
    key = Store(workspace / "loop" / "state.db").create_key(["read", "review"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--set", "alerting.detect_every_s=0", "loop",
                                "serve", "--no-worker", "--port", str(port), "--workspace", str(workspace)],
                               cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "feedback-brain" in page.text
        assert httpx.get(url + "/alerts", headers={"x-api-key": key}).json() == {"alerts": [], "count": 0}
        assert httpx.get(url + "/review", headers={"x-api-key": key}).status_code == 200
    finally:
        process.terminate()
        process.wait(20)
