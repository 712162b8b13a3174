"""The feedback service through its HTTP routes: POST /feedback, GET /feedback/{id}, /insights, /health, /metrics."""
from __future__ import annotations

import json
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from operations_support import make_loop, record


@pytest.fixture
def loop(tmp_path, tiny_model_dir):
    from operations.service import create_app

    context, worker = make_loop(tmp_path / "ws", tiny_model_dir)
    client = TestClient(create_app(context))
    keys = {"submit": context.store.create_key(["submit"]), "read": context.store.create_key(["read"]),
            "all": context.store.create_key(["submit", "read"])}
    return client, worker, keys, context


def _post(client, key, body, **kwargs):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return client.post("/feedback", content=body, headers={"x-api-key": key, **kwargs.pop("headers", {})}, **kwargs)


def test_a_record_is_accepted_scored_masked_and_counted(loop):
    client, worker, keys, _ = loop
    text = "The sole came off after a week, email me at jane.doe@example.com please."
    answer = _post(client, keys["submit"], record("fb-1", text))
    assert answer.status_code == 202, answer.text
    assert answer.json()["items"] == [{"feedback_id": "fb-1", "status": "accepted"}]
    held = client.get("/feedback/fb-1", headers={"x-api-key": keys["read"]}).json()
    assert held["stage"] == "received" and held["timestamps"]["received"]

    assert worker.drain() == 1
    held = client.get("/feedback/fb-1", headers={"x-api-key": keys["read"]}).json()
    assert held["stage"] == "scored"
    assert "jane.doe@example.com" not in held["text"] and "[EMAIL]" in held["text"]
    assert held["language"] == "en"
    assert held["predictions"]["model"] == {"name": "tiny", "version": "7"}
    assert held["predictions"]["sentiment"]["label"] in {"negative", "neutral", "positive"}
    assert all(held["timestamps"][s] for s in ("created", "received", "enriched", "scored"))

    insights = client.get("/insights", params={"sku": "SKU-1", "since": "2026-11-28T00:00:00Z",
                                               "until": "2026-12-05T00:00:00Z"},
                          headers={"x-api-key": keys["read"]}).json()
    assert insights["volume"] == 1
    assert sum(v["count"] for v in insights["sentiment"].values()) == 1
    assert insights["examples"][0]["feedback_id"] == "fb-1"
    assert "jane.doe" not in json.dumps(insights)
    other = client.get("/insights", params={"sku": "SKU-2", "since": "2026-11-28T00:00:00Z",
                                            "until": "2026-12-05T00:00:00Z"}, headers={"x-api-key": keys["read"]})
    assert other.json()["volume"] == 0
    previous = client.get("/insights", params={"sku": "SKU-1", "since": "2026-12-05T00:00:00Z",
                                               "until": "2026-12-12T00:00:00Z"}, headers={"x-api-key": keys["read"]})
    assert previous.json()["change"]["volume_previous"] == 1 and previous.json()["volume"] == 0


def test_same_id_same_content_is_a_duplicate_and_other_content_is_409(loop):
    client, _, keys, _ = loop
    assert _post(client, keys["submit"], record("fb-1", "Great shoes.")).status_code == 202
    again = _post(client, keys["submit"], record("fb-1", "Great shoes."))
    assert again.status_code == 202 and again.json()["items"][0]["status"] == "duplicate"
    clash = _post(client, keys["submit"], record("fb-1", "Terrible shoes."))
    assert clash.status_code == 409 and clash.json()["items"][0]["reason"] == "conflict"


def test_bad_input_gets_a_code_and_a_reason_per_item(loop):
    client, worker, keys, context = loop
    key = keys["submit"]
    assert _post(client, key, b'{"feedback_id": "x", ').status_code == 400
    assert _post(client, key, b'{"text": "caf\xe9"}').json()["detail"]["reason"] == "invalid_utf8"
    batch = {"items": [record("ok-1", "Fine product."), {"feedback_id": "bad-1", "channel": "review"},
                       record("bad-2", "x", colour="red"), record("bad-3", "a" * 1_000_000)]}
    answer = _post(client, key, batch)
    assert answer.status_code == 202
    statuses = {i["feedback_id"]: (i["status"], i.get("reason")) for i in answer.json()["items"]}
    assert statuses == {"ok-1": ("accepted", None), "bad-1": ("rejected", "missing_field"),
                        "bad-2": ("rejected", "invalid_value"), "bad-3": ("rejected", "text_too_long")}
    held = client.get("/feedback/bad-1", headers={"x-api-key": keys["read"]}).json()
    assert held["stage"] == "quarantined" and held["reason"] == "missing_field" and held["field"] == "text"
    all_bad = _post(client, key, [{"feedback_id": "bad-4"}])
    assert all_bad.status_code == 422 and all_bad.json()["items"][0]["reason"] == "missing_field"
    lines = "\n".join([json.dumps(record("jl-1", "One.")), "{not json", json.dumps(record("jl-2", "Two."))])
    jsonl = _post(client, key, lines, headers={"content-type": "application/x-ndjson"})
    assert [i["status"] for i in jsonl.json()["items"]] == ["accepted", "rejected", "accepted"]
    # nothing rejected is dropped: the worker lands every rejected item in the quarantine with its reason
    worker.drain()
    from operations import lake

    quarantine = context.lake.scan(lake.QUARANTINE).to_pylist()
    assert sorted(q["reason"] for q in quarantine) == ["invalid_json", "invalid_value", "missing_field",
                                                         "missing_field", "text_too_long"]
    assert _post(client, key, record("ok-9", "Still serving.")).status_code == 202


def test_body_over_the_limit_is_413(tmp_path, tiny_model_dir):
    from operations.config import LoopConfig
    from operations.service import create_app

    context, _ = make_loop(tmp_path, tiny_model_dir, LoopConfig(max_body_bytes=1_000, max_items_per_request=2))
    client = TestClient(create_app(context))
    key = context.store.create_key(["submit"])
    assert _post(client, key, record("big", "a" * 2_000)).status_code == 413
    assert _post(client, key, [record(f"n{i}", "ok") for i in range(3)]).status_code == 413


def test_keys_and_scopes(loop):
    client, _, keys, _ = loop
    assert client.post("/feedback", content=json.dumps(record("a", "b"))).status_code == 401
    assert _post(client, "fbk_nope_nope", record("a", "b")).status_code == 401
    assert _post(client, keys["read"], record("a", "b")).status_code == 403
    assert client.get("/insights", headers={"x-api-key": keys["submit"]}).status_code == 403
    assert client.get("/health").status_code == 200


def test_content_duplicates_are_caught_against_earlier_batches(loop):
    client, worker, keys, _ = loop
    _post(client, keys["submit"], record("first", "The zip broke on day one and nobody answered my emails."))
    worker.drain()
    _post(client, keys["submit"], record("copy", "The zip broke on day one, and nobody answered my emails!",
                                         created_at="2026-11-01T00:00:00Z"))
    worker.drain()
    held = client.get("/feedback/copy", headers={"x-api-key": keys["read"]}).json()
    assert held["stage"] == "enriched" and held["duplicate_of"] == "first"
    health = client.get("/health").json()
    assert health["funnel"]["stages"] == {"scored": 1, "enriched": 1} and health["funnel"]["pending"] == 0
    assert health["lag"]["created_to_scored"]["count"] == 1
    metrics = client.get("/metrics", headers={"x-api-key": keys["read"]})
    assert metrics.status_code == 200 and 'fbrain_loop_items_total{status="accepted"} 2.0' in metrics.text
    assert 'fbrain_loop_funnel{stage="scored"} 1.0' in metrics.text


def test_the_worker_can_score_through_an_endpoint_url(tmp_path, tiny_model_dir):
    """loop.scorer=url: the worker calls a server with the /invocations contract (here the endpoint app itself)."""
    import time

    from inference.app import create_app as endpoint_app
    from inference.config import ServingConfig
    from operations.config import LoopConfig
    from operations.scoring import UrlScorer, make_scorer
    from operations.service import open_loop
    from operations.worker import Worker
    from processing.config import ProcessingConfig

    config = LoopConfig(scorer="url", scorer_target="http://testserver")
    with pytest.raises(ValueError, match="scorer_target"):
        make_scorer(LoopConfig(scorer="url"), ServingConfig(), None)
    assert isinstance(make_scorer(config, ServingConfig(), None), UrlScorer)
    with TestClient(endpoint_app(tiny_model_dir, ServingConfig(max_batch_wait_ms=0), model_name="ep",
                                 model_version="9")) as endpoint:
        while endpoint.get("/ping").status_code != 200:
            time.sleep(0.02)
        context = open_loop(config, ProcessingConfig(), tmp_path)
        worker = Worker(config, ProcessingConfig(), context.store, context.lake, UrlScorer("", client=endpoint))
        entry = record("u-1", "Scored by the endpoint.")
        context.store.admit([(entry, entry, None)])
        worker.drain()
    row = context.lake.scan("silver").to_pylist()[0]
    assert (row["model_name"], row["model_version"]) == ("ep", "9") and row["sentiment"] is not None


def test_lag_figures_skip_records_whose_created_at_is_not_a_time(loop):
    """A malformed created_at is quarantined; the lag figures count only records with every stage's time."""
    client, worker, keys, _ = loop
    _post(client, keys["submit"], record("good", "The zip broke on day one and nobody answered my emails."))
    for number, created_at in enumerate(["yesterday", "2026-13-45T99:00:00Z"]):
        _post(client, keys["submit"], record(f"bad-{number}", "Fine shoes.", created_at=created_at))
    worker.drain()
    health = client.get("/health")
    assert health.status_code == 200, health.text
    lag = health.json()["lag"]
    assert lag["created_to_scored"]["count"] == 1
    times = client.get("/feedback/good", headers={"x-api-key": keys["read"]}).json()["timestamps"]
    parse = lambda name: datetime.fromisoformat(times[name])  # noqa: E731
    for figure, (start, end) in {"created_to_scored": ("created", "scored"),
                                 "received_to_enriched": ("received", "enriched")}.items():
        assert lag[figure]["p50_s"] == pytest.approx((parse(end) - parse(start)).total_seconds(), abs=2e-3)
    assert client.get("/metrics", headers={"x-api-key": keys["read"]}).status_code == 200
