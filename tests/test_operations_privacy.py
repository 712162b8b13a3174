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


def _pseudonym(customer_id: str) -> str:
    from processing.config import ProcessingConfig
    from processing.pii import pseudonym_salt, pseudonymise

    config = ProcessingConfig()
    return pseudonymise(customer_id, pseudonym_salt(config), config.pseudonym_hex_chars)


def _feature_store_with(workspace, rows: list[tuple[str, str]]) -> None:
    """The workspace's local Feature Store (where `fbrain pipeline run --local` writes) holding (id, customer) rows."""
    import pandas as pd

    from processing.feature_store import LocalFeatureStore
    from processing.workspace import LOCAL_STORE_FOLDER

    store = LocalFeatureStore(workspace / LOCAL_STORE_FOLDER, "feedback-features")
    store.put(pd.DataFrame({"feedback_id": [r[0] for r in rows], "event_time": ["2026-12-01T10:00:00Z"] * len(rows),
                            "customer_id": [r[1] for r in rows], "sku": ["SKU-1"] * len(rows),
                            "text_chars": [10 + i for i in range(len(rows))]}))
    store.close()


def _capture(capture_root, requests: list[list[str]]) -> None:
    """The local endpoint's data capture of requests scoring these texts (inference.capture's writer)."""
    from inference.capture import CaptureWriter
    from inference.codec import JSON, render

    writer = CaptureWriter(capture_root)
    writer.start()
    for texts in requests:
        predictions = [{"sentiment": {"label": "negative", "score": 0.9}, "index": i} for i in range(len(texts))]
        writer.capture(json.dumps({"instances": texts}).encode(), JSON, render(predictions, JSON), JSON)
    writer.close()


def _captured_texts(capture_root) -> list[str]:
    from inference.capture import iter_captured_predictions

    return [item["text"] for item in iter_captured_predictions(capture_root)]


def test_forget_removes_every_trace_of_the_customer(tmp_path, tiny_model_dir):
    from operations import lake
    from operations.erasure import pipeline_erasers
    from operations.service import create_app
    from processing.feature_store import LocalFeatureStore
    from processing.workspace import LOCAL_STORE_FOLDER

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
    # The batch pipeline's Feature Store (an id only it has, "batch-9") and the endpoint's data capture of the
    # masked texts the worker scored, and of a raw text someone scored directly.
    pseudonym = _pseudonym(SUBJECT)
    _feature_store_with(workspace, [("gone-1", pseudonym), ("batch-9", pseudonym), ("keep-1", _pseudonym("someone-else"))])
    silver = {r["feedback_id"]: r["text"] for r in context.lake.scan(lake.SILVER).to_pylist()}
    capture_root = workspace / "s3" / "bucket" / "datacapture"
    _capture(capture_root, [[silver["gone-1"], silver["keep-1"]], [silver["gone-2"]],
                            ["The zip broke, call me on 0044 7911 123456."]])
    assert pseudonym.encode() in _everything_on_disk(workspace) and b"7911 123456" in _everything_on_disk(workspace)
    context.pipeline_erasers = pipeline_erasers("local", workspace, "feedback-features", "s3://unused/fs", capture_root, "")

    assert client.post("/admin/forget", json={"customer_id": SUBJECT}, headers={"x-api-key": submit}).status_code == 403
    answer = client.post("/admin/forget", json={"customer_id": SUBJECT}, headers={"x-api-key": admin})
    assert answer.status_code == 200, answer.text
    audit = answer.json()
    assert audit["counts"]["silver"] == 2 and audit["counts"]["bronze"] == 3 and audit["counts"]["quarantine"] == 1
    assert SUBJECT not in json.dumps(audit) and pseudonym not in json.dumps(audit)
    assert audit["counts"]["feature_store_online"] == 2 and audit["counts"]["feature_store_offline_rows"] == 2
    assert audit["counts"]["capture_texts"] == 3 and audit["counts"]["capture_records"] == 2
    # What is not the customer's stays: the other record in the Feature Store, the other text in the capture.
    store = LocalFeatureStore(workspace / LOCAL_STORE_FOLDER, "feedback-features")
    assert store.read_offline()["feedback_id"].tolist() == ["keep-1"]
    assert store.get_record("keep-1") is not None and store.get_record("batch-9") is None
    store.close()
    assert _captured_texts(capture_root) == [silver["keep-1"]]

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
    on_disk = _everything_on_disk(workspace)
    assert SUBJECT.encode() not in on_disk and pseudonym.encode() not in on_disk
    assert b"gone-1" not in on_disk and b"batch-9" not in on_disk
    assert b"7911 123456" not in on_disk and b"zip broke" not in on_disk and b"Second note" not in on_disk


def test_forget_command(tmp_path, tiny_model_dir):
    from pipelines.cli import app

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir)
    entry = record("cli-1", "Too small.", customer_id=SUBJECT)
    context.store.admit([(entry, entry, None)])
    worker.drain()
    # Where `fbrain pipeline run --local` and the local endpoint write: the workspace's Feature Store and capture.
    _feature_store_with(workspace, [("cli-1", _pseudonym(SUBJECT)), ("other-1", _pseudonym("other"))])
    capture_root = workspace / "s3" / "feedback-brain-artifacts" / "datacapture"
    _capture(capture_root, [["Too small.", "Fits well."]])
    result = CliRunner().invoke(app, ["loop", "forget", "--customer-id", SUBJECT, "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)["counts"]
    assert counts["silver"] == 1 and counts["feature_store_online"] == 1 and counts["capture_texts"] == 1
    assert context.store.received_row("cli-1") is None
    assert _captured_texts(capture_root) == ["Fits well."]
    assert b"cli-1" not in _everything_on_disk(workspace / "featurestore")


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
