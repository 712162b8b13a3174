"""The endpoint app over FastAPI's TestClient: contract, content types, bad requests, metrics."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inference.app import create_app
from inference.config import ServingConfig
from inference.predictor import load_predictor
from processing.schema import model_input_text
from processing.taxonomy import load_taxonomy

READY_TIMEOUT_S = 30


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while client.get("/ping").status_code != 200:
        assert time.monotonic() < deadline, client.get("/ping").text
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path):
    app = create_app(tiny_model_dir, ServingConfig(max_batch_wait_ms=0), model_name="feedback-brain-models", model_version="7")
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def assert_prediction(prediction: dict) -> None:
    taxonomy = load_taxonomy()
    assert prediction["sentiment"]["label"] in taxonomy.sentiments
    assert list(prediction["sentiment"]["probabilities"]) == list(taxonomy.sentiments)
    assert abs(sum(prediction["sentiment"]["probabilities"].values()) - 1) < 1e-4
    assert prediction["intent"]["label"] in taxonomy.intents
    assert prediction["intent"]["score"] == max(prediction["intent"]["probabilities"].values())
    assert list(prediction["aspects"]["scores"]) == list(taxonomy.aspect_names)
    assert all(prediction["aspects"]["scores"][a] >= 0.5 for a in prediction["aspects"]["labels"])
    assert set(prediction["flags"]) == set(taxonomy.flags)
    assert prediction["model"]["name"] == "feedback-brain-models" and prediction["model"]["version"] == "7"
    assert prediction["model"]["runtime"] == "onnx-int8"
    assert isinstance(prediction["truncated"], bool)


def test_ping_is_503_until_the_model_is_loaded(tiny_model_dir: Path):
    release = threading.Event()

    def slow_loader():
        assert release.wait(READY_TIMEOUT_S)
        return load_predictor(tiny_model_dir, ServingConfig())

    with TestClient(create_app(loader=slow_loader)) as c:
        ping = c.get("/ping")
        assert ping.status_code == 503 and ping.json()["status"] == "loading"
        early = c.post("/invocations", json={"text": "hello"})
        assert early.status_code == 503 and early.json()["error"]["code"] == "model_not_ready"
        release.set()
        wait_ready(c)
        assert c.get("/ping").json()["status"] == "healthy"
        assert c.post("/invocations", json={"text": "hello"}).status_code == 200


def test_ping_reports_a_failed_load(tmp_path: Path):
    with TestClient(create_app(tmp_path / "missing", ServingConfig())) as c:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while c.get("/ping").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        ping = c.get("/ping")
        assert ping.status_code == 503 and "does not exist" in ping.json()["error"]


def test_json_single_text_instances_and_list(client: TestClient):
    single = client.post("/invocations", json={"text": "The parcel arrived late and the box was crushed."})
    assert single.status_code == 200 and single.headers["content-type"].startswith("application/json")
    (prediction,) = single.json()["predictions"]
    assert_prediction(prediction)
    texts = ["Love it!", "Where is my order?", "The zip broke on day one."]
    batch = client.post("/invocations", json={"instances": [{"text": t} for t in texts]}).json()["predictions"]
    as_list = client.post("/invocations", json=texts).json()["predictions"]
    assert len(batch) == 3 and batch == as_list
    for item in batch:
        assert_prediction(item)


def test_a_title_is_read_in_front_of_the_text_as_in_training(client: TestClient):
    text, title = "The seams came apart after one wash.", "Disappointed"
    with_title = client.post("/invocations", json={"instances": [{"text": text, "title": title}, {"text": text}]})
    as_one_text = client.post("/invocations", json=[model_input_text(text, title), text])
    assert with_title.status_code == 200, with_title.text
    assert with_title.json() == as_one_text.json()
    # The title reaches the model: the scores differ from the text alone.
    first, second = with_title.json()["predictions"]
    assert first["sentiment"]["probabilities"] != second["sentiment"]["probabilities"]


def test_jsonlines_in_and_out(client: TestClient):
    body = '{"text": "Great value"}\n\n"Too small, returning it"\n'
    response = client.post(
        "/invocations", content=body.encode(), headers={"content-type": "application/jsonlines", "accept": "application/jsonlines"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/jsonlines")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 2
    for item in lines:
        assert_prediction(item)


def test_csv_follows_rfc_4180(client: TestClient):
    texts = ["Fast shipping, great price", 'He said "never again"', "two\nlines", "plain text"]
    body = '"Fast shipping, great price"\r\n"He said ""never again"""\r\n"two\nlines"\r\nplain text\r\n'
    response = client.post("/invocations", content=body.encode(), headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    from_csv = response.json()["predictions"]
    from_json = client.post("/invocations", json=texts).json()["predictions"]
    assert len(from_csv) == 4
    # Same texts in the same batch: the CSV parser found exactly the texts the JSON request sent.
    assert [p["sentiment"] for p in from_csv] == [p["sentiment"] for p in from_json]


TEN_MB = 10 * 1024 * 1024
BAD_REQUESTS = [
    ("malformed_json", b'{"text": "unterminated', "application/json", None, 400, "malformed_json"),
    ("wrong_content_type", b"hello", "text/plain", None, 415, "unsupported_media_type"),
    ("missing_content_type", b'{"text": "hi"}', "", None, 415, "unsupported_media_type"),
    ("empty_text", b'{"text": "   "}', "application/json", None, 400, "empty_text"),
    ("ten_mb_body", b'{"text": "' + b"a" * TEN_MB + b'"}', "application/json", None, 413, "payload_too_large"),
    ("invalid_utf8", b'{"text": "caf\xe9"}', "application/json", None, 400, "invalid_utf8"),
    ("batch_with_one_bad_item", json.dumps({"instances": [{"text": "ok"}, {"text": "fine"}, {"text": 42}]}).encode(),
     "application/json", None, 400, "invalid_text"),
    ("batch_with_one_empty_item", json.dumps(["ok", ""]).encode(), "application/json", None, 400, "empty_text"),
    ("jsonlines_bad_line", b'{"text": "ok"}\n{nope\n', "application/jsonlines", None, 400, "malformed_json"),
    ("csv_two_fields", b"fine\nfast, cheap\n", "text/csv", None, 400, "malformed_csv"),
    ("wrong_accept", b'{"text": "hi"}', "application/json", "text/html", 406, "not_acceptable"),
    ("non_string_title", json.dumps({"text": "ok", "title": ["a"]}).encode(), "application/json", None, 400, "invalid_title"),
    ("empty_text_with_title", json.dumps({"text": " ", "title": "Great"}).encode(), "application/json", None, 400, "empty_text"),
    ("json_without_text", b'{"review": "hi"}', "application/json", None, 400, "invalid_body"),
    ("no_texts", b'{"instances": []}', "application/json", None, 400, "no_texts"),
    ("other_charset", b'{"text": "hi"}', "application/json; charset=latin-1", None, 415, "unsupported_charset"),
]


@pytest.mark.parametrize("name,body,content_type,accept,status,code", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(client, name, body, content_type, accept, status, code):
    headers = {"content-type": content_type} if content_type else {}
    if accept:
        headers["accept"] = accept
    response = client.post("/invocations", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if name == "batch_with_one_bad_item":
        assert error["index"] == 2 and "item 2" in error["message"]
    if name == "batch_with_one_empty_item":
        assert error["index"] == 1
    if name == "csv_two_fields":
        assert error["index"] == 1
    good = client.post("/invocations", json={"text": "Still answering?"})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 1


def test_long_texts_are_truncated_and_say_so(client: TestClient):
    long_text = "The delivery was late again. " * 60
    predictions = client.post("/invocations", json=[long_text, "short"]).json()["predictions"]
    assert predictions[0]["truncated"] is True and predictions[1]["truncated"] is False


def test_overlength_reject_and_character_limit(tiny_model_dir: Path):
    config = ServingConfig(overlength="reject", max_text_chars=2000, max_instances_per_request=3)
    with TestClient(create_app(tiny_model_dir, config)) as c:
        wait_ready(c)
        too_many_tokens = c.post("/invocations", json=["fine", "late " * 200])
        assert too_many_tokens.status_code == 400 and too_many_tokens.json()["error"]["index"] == 1
        assert "tokens" in too_many_tokens.json()["error"]["message"]
        too_many_chars = c.post("/invocations", json=["x" * 2001])
        assert too_many_chars.status_code == 400 and too_many_chars.json()["error"]["code"] == "text_too_long"
        too_many_items = c.post("/invocations", json=["a", "b", "c", "d"])
        assert too_many_items.status_code == 400 and too_many_items.json()["error"]["code"] == "too_many_instances"
        assert c.post("/invocations", json=["fine"]).status_code == 200


def test_rule_based_flags_come_from_the_lexicon(client: TestClient):
    texts = [
        "The charger caught fire and I want my money back.",
        "This is crap, total bullshit.",
        "Lovely scarf, thanks.",
    ]
    fire, rude, calm = (p["flags"] for p in client.post("/invocations", json=texts).json()["predictions"])
    assert fire["safety_concern"] and fire["refund_intent"] and fire["urgency"]  # urgency is implied by safety
    assert rude["profanity"] and not rude["safety_concern"]
    assert not any(calm.values())


def test_embedding_on_request_via_custom_attributes(client: TestClient):
    plain = client.post("/invocations", json={"text": "ok"}).json()["predictions"][0]
    assert "embedding" not in plain
    header = {"X-Amzn-SageMaker-Custom-Attributes": "embedding=true"}
    with_embedding = client.post("/invocations", json={"text": "ok"}, headers=header).json()["predictions"][0]
    assert len(with_embedding["embedding"]) == 32  # the tiny model's hidden size


def test_concurrent_requests_are_micro_batched(tiny_model_dir: Path):
    config = ServingConfig(max_batch_size=16, max_batch_wait_ms=250)
    requests = 8
    with TestClient(create_app(tiny_model_dir, config)) as c:
        wait_ready(c)
        with ThreadPoolExecutor(requests) as pool:
            responses = list(pool.map(lambda i: c.post("/invocations", json={"text": f"order {i} is late"}), range(requests)))
        assert all(r.status_code == 200 for r in responses)
        metrics = c.get("/metrics").text
    batches = metric(metrics, "fbrain_batch_size_count")
    assert metric(metrics, "fbrain_batch_size_sum") == requests
    assert batches < requests, f"{requests} requests ran in {batches} batches: nothing was merged"
    assert metric(metrics, 'fbrain_batch_size_bucket{le="1"}') < batches  # at least one batch held > 1 text


def test_metrics_and_json_access_log(client: TestClient, caplog):
    with caplog.at_level(logging.INFO, logger="fbrain.access"):
        client.post("/invocations", json={"text": "hi"})
        client.post("/invocations", content=b"{", headers={"content-type": "application/json"})
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fbrain.access"]
    assert [e["status"] for e in entries[-2:]] == [200, 400]
    assert entries[-1]["error"] == "malformed_json" and entries[-2]["texts"] == 1 and entries[-2]["latency_ms"] > 0
    text = client.get("/metrics").text
    assert metric(text, 'fbrain_requests_total{path="/invocations",status="400"}') >= 1
    assert metric(text, 'fbrain_requests_total{path="/invocations",status="200"}') >= 1
    assert metric(text, "fbrain_request_latency_ms_count") >= 2
    assert metric(text, "fbrain_model_ready") == 1
