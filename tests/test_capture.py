"""Data capture: SageMaker's record format and key layout, sampling, bounded queue, reader."""
from __future__ import annotations

import base64
import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inference.app import create_app
from inference.capture import CaptureFormatError, CaptureWriter, iter_captured_predictions, iter_captured_records
from inference.config import ServingConfig
from inference.serve import capture_writer_for

FIXED_TIME = datetime(2026, 11, 23, 9, 41, 7, tzinfo=timezone.utc)


def writer(root: Path, **kwargs) -> CaptureWriter:
    return CaptureWriter(root=root, endpoint_name="fb-endpoint", variant_name="AllTraffic", clock=lambda: FIXED_TIME, **kwargs)


def test_records_follow_sagemaker_format_and_key_layout(tmp_path: Path):
    w = writer(tmp_path)
    w.start()
    output = json.dumps({"predictions": [{"sentiment": {"label": "negative"}}]}).encode()
    assert w.capture(b'{"text": "late again"}', "application/json", output, "application/json")
    assert w.capture(b'"a, b"\n', "text/csv", b'{"predictions": [{}]}', "application/json")
    assert w.capture(b"\x00\xff", "application/octet-stream", b"{}", "application/json")
    w.close()
    files = list(tmp_path.rglob("*.jsonl"))
    assert len(files) == 1
    relative = files[0].relative_to(tmp_path)
    assert relative.parts[:6] == ("fb-endpoint", "AllTraffic", "2026", "11", "23", "09")
    assert len(relative.stem) == 36  # a uuid
    records = list(iter_captured_records(tmp_path))
    assert len(records) == 3
    first = records[0]
    assert first["eventVersion"] == "0"
    assert first["eventMetadata"]["inferenceTime"] == "2026-11-23T09:41:07Z" and first["eventMetadata"]["eventId"]
    assert first["captureData"]["endpointInput"] == {
        "observedContentType": "application/json", "mode": "INPUT", "data": '{"text": "late again"}', "encoding": "JSON"}
    assert first["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    assert json.loads(first["captureData"]["endpointOutput"]["data"])["predictions"][0]["sentiment"]["label"] == "negative"
    assert records[1]["captureData"]["endpointInput"]["encoding"] == "CSV"
    binary = records[2]["captureData"]["endpointInput"]
    assert binary["encoding"] == "BASE64" and base64.b64decode(binary["data"]) == b"\x00\xff"
    assert w.written == 3 and w.dropped == 0


def test_files_rotate_after_max_records(tmp_path: Path):
    w = writer(tmp_path, max_records_per_file=2)
    w.start()
    for _ in range(5):
        w.capture(b'{"text": "x"}', "application/json", b"{}", "application/json")
    w.close()
    assert sorted(sum(1 for _ in f.open()) for f in tmp_path.rglob("*.jsonl")) == [1, 2, 2]


@pytest.mark.parametrize("percentage,expected", [(0, (0, 0)), (100, (400, 400)), (25, (70, 130))])
def test_sampling_percentage(tmp_path: Path, percentage, expected):
    w = writer(tmp_path, sampling_percentage=percentage, queue_size=1000, rng=random.Random(7))
    w.start()
    for _ in range(400):
        w.capture(b'{"text": "x"}', "application/json", b"{}", "application/json")
    w.close()
    written = len(list(iter_captured_records(tmp_path)))
    assert expected[0] <= written <= expected[1]
    assert written + w.sampled_out == 400


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path):
    w = writer(tmp_path, queue_size=3)  # not started: nothing drains the queue
    started = time.perf_counter()
    queued = [w.capture(b'{"text": "x"}', "application/json", b"{}", "application/json") for _ in range(5)]
    assert time.perf_counter() - started < 1.0
    assert queued == [True, True, True, False, False] and w.dropped == 2
    w.start()
    w.close()
    assert w.written == 3


def test_reader_reports_malformed_lines(tmp_path: Path):
    folder = tmp_path / "ep" / "AllTraffic" / "2026" / "11" / "23" / "09"
    folder.mkdir(parents=True)
    good = {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "data": "{}", "encoding": "JSON"}},
            "eventMetadata": {"eventId": "e1", "inferenceTime": "2026-11-23T09:00:00Z"}, "eventVersion": "0"}
    (folder / "a.jsonl").write_text(json.dumps(good) + "\nnot json\n" + json.dumps({"eventVersion": "0"}) + "\n")
    with pytest.raises(CaptureFormatError, match=r"a.jsonl:2"):
        list(iter_captured_records(tmp_path))
    errors: list = []
    assert [r["eventMetadata"]["eventId"] for r in iter_captured_records(tmp_path, errors)] == ["e1"]
    assert [e["line"] for e in errors] == [2, 3]


def test_local_endpoint_captures_into_the_object_store_layout(tiny_model_dir: Path, tmp_path: Path):
    capture_root = tmp_path / "s3" / "feedback-brain-artifacts" / "datacapture"
    config = ServingConfig(capture_dir=str(capture_root), endpoint_name="feedback-brain")
    with TestClient(create_app(tiny_model_dir, config, capture=capture_writer_for(config))) as c:
        deadline = time.monotonic() + 30
        while c.get("/ping").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.post("/invocations", json={"instances": [{"text": "late parcel"}, {"text": "great fit"}]}).status_code == 200
        csv = c.post("/invocations", content=b'"cheap, but broke"\n', headers={"content-type": "text/csv", "accept": "application/jsonlines"})
        assert csv.status_code == 200
        assert c.post("/invocations", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    hour = datetime.now(timezone.utc)
    files = list((capture_root / "feedback-brain" / "AllTraffic").rglob("*.jsonl"))
    assert files and all(f.parent.parent.parent.parent.name == f"{hour:%Y}" for f in files)
    assert len(list(iter_captured_records(capture_root))) == 2  # the bad request is not captured
    pairs = list(iter_captured_predictions(capture_root))
    assert [p["text"] for p in pairs] == ["late parcel", "great fit", "cheap, but broke"]
    assert all(p["prediction"]["sentiment"]["label"] for p in pairs)
