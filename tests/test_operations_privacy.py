"""Erasure requests (POST /admin/forget, fbrain loop forget) and the raw-text retention of bronze."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from operations_support import make_loop, record

SUBJECT = "customer-erase-me-4711"


def _everything_on_disk(workspace) -> bytes:
    return b"".join(p.read_bytes() for p in workspace.rglob("*") if p.is_file())


def test_forget_removes_every_trace_of_the_customer(tmp_path, tiny_model_dir):
    from operations import lake
    from operations.service import create_app

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir)
    client = TestClient(create_app(context))
    submit, admin = context.store.create_key(["submit", "read"]), context.store.create_key(["admin"])
    items = [record("keep-1", "Lovely soft fabric.", customer_id="someone-else"),
             record("gone-1", "The zip broke, call me on 0044 7911 123456.", customer_id=SUBJECT),
             record("gone-2", "Second note from the same customer, great fit.", customer_id=SUBJECT),
             {"feedback_id": "gone-3", "customer_id": SUBJECT, "channel": "review"}]  # rejected: in quarantine
    client.post("/feedback", json={"items": items}, headers={"x-api-key": submit})
    worker.drain()
    before = sum(r["count"] for r in context.lake.scan(lake.GOLD).to_pylist() if r["aspect"] == "*")
    assert before == 3 and SUBJECT.encode() in _everything_on_disk(workspace)

    assert client.post("/admin/forget", json={"customer_id": SUBJECT}, headers={"x-api-key": submit}).status_code == 403
    answer = client.post("/admin/forget", json={"customer_id": SUBJECT}, headers={"x-api-key": admin})
    assert answer.status_code == 200, answer.text
    audit = answer.json()
    assert audit["counts"]["silver"] == 2 and audit["counts"]["bronze"] == 3 and audit["counts"]["quarantine"] == 1
    assert SUBJECT not in json.dumps(audit)

    assert client.get("/feedback/gone-1", headers={"x-api-key": submit}).status_code == 404
    assert client.get("/feedback/keep-1", headers={"x-api-key": submit}).json()["stage"] == "scored"
    after = sum(r["count"] for r in context.lake.scan(lake.GOLD).to_pylist() if r["aspect"] == "*")
    assert after == 1
    for name in lake.SCHEMAS:  # no snapshot left to time-travel back to
        table = context.lake.table(name)
        for snapshot in table.snapshots():
            rows = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow().to_pylist()
            assert not any(str(r.get("feedback_id", "")).startswith("gone-") for r in rows), name
    context.store.close()
    assert SUBJECT.encode() not in _everything_on_disk(workspace)
    assert b"gone-1" not in _everything_on_disk(workspace)


def test_forget_command(tmp_path, tiny_model_dir):
    from pipelines.cli import app

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir)
    entry = record("cli-1", "Too small.", customer_id=SUBJECT)
    context.store.admit([(entry, entry, None)])
    worker.drain()
    result = CliRunner().invoke(app, ["loop", "forget", "--customer-id", SUBJECT, "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["silver"] == 1
    assert context.store.received_row("cli-1") is None


def test_raw_text_in_bronze_is_purged_after_the_retention_period(tmp_path, tiny_model_dir):
    from operations import lake
    from operations.privacy import purge_raw_text

    context, worker = make_loop(tmp_path / "ws", tiny_model_dir)
    entry = record("old-1", "Raw words with jane@example.com.")
    context.store.admit([(entry, entry, None)])
    worker.drain()
    assert purge_raw_text(context.lake, 30) == 0
    assert purge_raw_text(context.lake, 30, now=datetime.now(timezone.utc) + timedelta(days=31)) == 1
    assert context.lake.scan(lake.BRONZE).column("payload").to_pylist() == [None]
    assert "[EMAIL]" in context.lake.scan(lake.SILVER).column("text")[0].as_py()  # masked silver stays
