"""A forget request reaching the pipeline's data on AWS (moto S3; botocore Stubber for featurestore-runtime, which
moto does not cover), and the capture rewrite keeping each body's format."""
from __future__ import annotations

import io
import json

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from typer.testing import CliRunner

from operations_support import make_loop, record

SUBJECT = "aws-customer-0815"
BUCKET = "feedback-brain-artifacts"
OFFLINE = "feature-store/000000000000/sagemaker/us-east-1/offline-store/feedback-features-1733000000/data/year=2026/month=12/day=01/hour=10"
CAPTURE = "datacapture/feedback-brain/AllTraffic/2026/12/01/10/capture.jsonl"


def _pseudonym(customer_id: str) -> str:
    from processing.config import ProcessingConfig
    from processing.pii import pseudonym_salt, pseudonymise

    config = ProcessingConfig()
    return pseudonymise(customer_id, pseudonym_salt(config), config.pseudonym_hex_chars)


def _parquet(rows: list[tuple[str, str]]) -> bytes:
    table = pa.table({"feedback_id": [r[0] for r in rows], "customer_id": [r[1] for r in rows],
                      "event_time": ["2026-12-01T10:00:00.000Z"] * len(rows), "is_deleted": [False] * len(rows)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _capture_line(texts: list[str]) -> str:
    from datetime import datetime, timezone

    from inference.capture import capture_record
    from inference.codec import JSON, render

    predictions = [{"sentiment": {"label": "positive", "score": 0.8}, "n": i} for i in range(len(texts))]
    return json.dumps(capture_record(json.dumps({"instances": texts}).encode(), JSON, render(predictions, JSON), JSON,
                                     f"event-{len(texts)}", datetime(2026, 12, 1, 10, tzinfo=timezone.utc))) + "\n"


def _all_versions(s3) -> list[tuple[str, bytes]]:
    out = []
    for version in s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
        body = s3.get_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
        out.append((version["Key"], body))
    return out


def test_forget_on_aws_deletes_online_records_and_rewrites_offline_store_and_capture(tmp_path, tiny_model_dir,
                                                                                      monkeypatch):
    from pipelines.cli import app

    workspace = tmp_path / "ws"
    context, worker = make_loop(workspace, tiny_model_dir)
    items = [record("aws-1", "The heel came off after a week.", customer_id=SUBJECT),
             record("aws-2", "Refund still not here.", customer_id=SUBJECT),
             record("keep-1", "Comfortable and light.", customer_id="someone-else")]
    context.store.admit([(item, item, None) for item in items])
    worker.drain()
    pseudonym, other = _pseudonym(SUBJECT), _pseudonym("someone-else")

    runtime = boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1")
    stubber = Stubber(runtime)
    for record_id in ("aws-1", "aws-2", "batch-9"):  # batch-9: a record only the batch pipeline wrote
        expected = {"FeatureGroupName": "feedback-features", "RecordIdentifierValueAsString": record_id,
                    "EventTime": ANY, "TargetStores": ["OnlineStore"], "DeletionMode": "HardDelete"}
        if record_id == "aws-2":  # never reached the Feature Store
            stubber.add_client_error("delete_record", "ResourceNotFound", "no such record", 404, expected_params=expected)
        else:
            stubber.add_response("delete_record", {}, expected)
    real_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda name, *args, **kwargs:
                        runtime if name == "sagemaker-featurestore-runtime" else real_client(name, *args, **kwargs))

    with mock_aws(), stubber:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=BUCKET, Key=f"{OFFLINE}/mixed.parquet", Body=_parquet([("keep-1", other), ("aws-1", pseudonym)]))
        s3.put_object(Bucket=BUCKET, Key=f"{OFFLINE}/mixed.parquet", Body=_parquet([("keep-1", other), ("aws-1", pseudonym)]))
        s3.put_object(Bucket=BUCKET, Key=f"{OFFLINE}/subject-only.parquet", Body=_parquet([("batch-9", pseudonym)]))
        s3.put_object(Bucket=BUCKET, Key=f"{OFFLINE}/untouched.parquet", Body=_parquet([("keep-2", other)]))
        s3.put_object(Bucket=BUCKET, Key=CAPTURE, Body=(_capture_line(["The heel came off after a week.",
                                                                       "Comfortable and light."])
                                                        + _capture_line(["Refund still not here."])).encode())

        result = CliRunner().invoke(app, ["--set", "loop.forget_pipeline_data=aws", "loop", "forget",
                                          "--customer-id", SUBJECT, "--workspace", str(workspace)])
        assert result.exit_code == 0, result.output
        counts = json.loads(result.output)["counts"]
        stubber.assert_no_pending_responses()
        assert counts["feature_store_online"] == 2 and counts["feature_store_offline_rows"] == 2
        assert counts["feature_store_offline_files"] == 2
        assert counts["capture_texts"] == 2 and counts["capture_records"] == 1

        versions = _all_versions(s3)
        keys = sorted(key for key, _ in versions)  # one version per key left: no older copy, no deleted file
        assert keys == [CAPTURE, f"{OFFLINE}/mixed.parquet", f"{OFFLINE}/untouched.parquet"]
        assert not s3.list_object_versions(Bucket=BUCKET).get("DeleteMarkers")
        mixed = pq.read_table(pa.BufferReader(dict(versions)[f"{OFFLINE}/mixed.parquet"]))
        assert mixed.column("feedback_id").to_pylist() == ["keep-1"]
        capture = dict(versions)[CAPTURE].decode()
        assert "Comfortable and light." in capture
        for _, body in versions:
            assert pseudonym.encode() not in body and b"heel came off" not in body and b"Refund" not in body


@pytest.mark.parametrize("content_type,body,texts_left", [
    ("application/json", json.dumps({"instances": ["drop me", {"text": "keep me", "title": "Nice"}]}).encode(),
     ["Nice. keep me"]),  # the title in front, as the model reads it
    ("application/jsonlines", b'{"text": "drop me"}\n{"text": "keep me"}\n', ["keep me"]),
    ("text/csv", b'drop me\n"keep, me"\n', ["keep, me"]),
])
def test_captured_request_loses_only_the_subjects_items_and_their_predictions(content_type, body, texts_left):
    from datetime import datetime, timezone

    from inference.capture import capture_record, decode_payload, drop_captured_texts
    from inference.codec import JSON, parse_predictions, parse_texts, request_format, render

    output = render([{"n": 0}, {"n": 1}], JSON)
    captured = capture_record(body, content_type, output, JSON, "e1", datetime(2026, 12, 1, tzinfo=timezone.utc))
    kept, removed = drop_captured_texts(captured, frozenset({"drop me"}))
    assert removed == 1
    request = kept["captureData"]["endpointInput"]
    assert request["observedContentType"] == content_type
    assert parse_texts(decode_payload(request), request_format(content_type)) == texts_left
    assert parse_predictions(decode_payload(kept["captureData"]["endpointOutput"]), JSON) == [{"n": 1}]
    assert drop_captured_texts(captured, frozenset({"other"})) == (captured, 0)
    assert drop_captured_texts(captured, frozenset({"drop me", *texts_left}))[0] is None
