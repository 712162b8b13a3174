"""Feature group definition (moto), PutRecord ingestion (Stubber), local store, point-in-time joins."""
import json
import re
from pathlib import Path

import boto3
import botocore.session
import pandas as pd
import pytest
from botocore.stub import Stubber

from processing.config import ProcessingConfig
from processing.feature_store import (
    LOCAL_STORE_ENV, LocalFeatureStore, SageMakerFeatureStoreWriter, create_feature_group_request,
    feature_definitions, open_feature_store, point_in_time_join, to_record,
)
from processing.features import FEATURE_NAMES, compute_features

GROUP = "feedback-features"


def _features(rows=None) -> pd.DataFrame:
    silver = pd.DataFrame(rows or [
        {"feedback_id": "f1", "created_at": "2026-10-01T09:15:00Z", "text": "Broken!", "channel": "review",
         "customer_id": "c1", "sku": "S1", "star_rating": 1, "intent": "complaint"},
        {"feedback_id": "f2", "created_at": "2026-10-02T17:40:30Z", "text": "where is it?", "channel": "chat",
         "customer_id": "c1", "sku": "S1", "star_rating": None, "intent": "delivery_status"},
    ])
    silver["created_at"] = pd.to_datetime(silver["created_at"], utc=True)
    return compute_features(silver)


def test_definitions_use_the_service_model_types():
    model = botocore.session.get_session().get_service_model("sagemaker")
    allowed = set(model.shape_for("FeatureType").enum)
    definitions = feature_definitions()
    assert [d["FeatureName"] for d in definitions] == list(FEATURE_NAMES)
    assert {d["FeatureType"] for d in definitions} <= allowed


def test_create_feature_group_request_is_accepted_by_moto():
    from moto import mock_aws

    config = ProcessingConfig(feature_store_kms_key_id="arn:aws:kms:us-east-1:111122223333:key/abcd")
    request = create_feature_group_request(config)
    assert request["OnlineStoreConfig"] == {"EnableOnlineStore": True, "SecurityConfig": {"KmsKeyId": config.feature_store_kms_key_id}}
    assert request["OfflineStoreConfig"]["S3StorageConfig"]["KmsKeyId"] == config.feature_store_kms_key_id
    with mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        arn = client.create_feature_group(**request)["FeatureGroupArn"]
        described = client.describe_feature_group(FeatureGroupName=GROUP)
    assert arn.endswith(f"feature-group/{GROUP}")
    assert described["RecordIdentifierFeatureName"] == "feedback_id"
    assert described["EventTimeFeatureName"] == "event_time"
    assert described["OfflineStoreConfig"]["S3StorageConfig"]["S3Uri"] == config.feature_store_offline_s3_uri
    assert len(described["FeatureDefinitions"]) == len(FEATURE_NAMES)


def _runtime_client():
    return boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1")


def test_put_record_requests_are_exact_and_throttling_is_retried_with_backoff():
    features = _features()
    client = _runtime_client()
    sleeps = []
    writer = SageMakerFeatureStoreWriter(GROUP, client=client, config=ProcessingConfig(feature_store_max_workers=1),
                                         sleep=sleeps.append, jitter=lambda: 1.0)
    first = {"FeatureGroupName": GROUP, "Record": [
        {"FeatureName": "feedback_id", "ValueAsString": "f1"},
        {"FeatureName": "event_time", "ValueAsString": "2026-10-01T09:15:00.000Z"},
        {"FeatureName": "channel", "ValueAsString": "review"},
        {"FeatureName": "customer_id", "ValueAsString": "c1"},
        {"FeatureName": "sku", "ValueAsString": "S1"},
        {"FeatureName": "text_chars", "ValueAsString": "7"},
        {"FeatureName": "text_words", "ValueAsString": "1"},
        {"FeatureName": "exclamation_count", "ValueAsString": "1"},
        {"FeatureName": "question_count", "ValueAsString": "0"},
        {"FeatureName": "uppercase_ratio", "ValueAsString": "0.16666666666666666"},
        {"FeatureName": "pii_placeholder_count", "ValueAsString": "0"},
        {"FeatureName": "star_rating", "ValueAsString": "1.0"},
        {"FeatureName": "customer_prior_feedback_count", "ValueAsString": "0"},
        {"FeatureName": "customer_prior_complaint_count", "ValueAsString": "0"},
        {"FeatureName": "sku_prior_feedback_count", "ValueAsString": "0"},
        {"FeatureName": "sku_prior_complaint_count", "ValueAsString": "0"},
    ]}  # missing values (no prior mean rating yet) are left out, as PutRecord allows
    second = {"FeatureGroupName": GROUP, "Record": to_record(features.iloc[1].to_dict())}
    assert {"FeatureName": "star_rating", "ValueAsString": "1.0"} not in second["Record"]
    assert {"FeatureName": "customer_prior_mean_rating", "ValueAsString": "1.0"} in second["Record"]
    with Stubber(client) as stub:
        stub.add_response("put_record", {}, first)
        stub.add_client_error("put_record", "ThrottlingException", "Rate exceeded", 400, expected_params=second)
        stub.add_client_error("put_record", "ServiceUnavailable", "try later", 503, expected_params=second)
        stub.add_response("put_record", {}, second)
        report = writer.put(features)
        stub.assert_no_pending_responses()
    assert (report.attempted, report.succeeded, report.failed, report.retries) == (2, 2, 0, 2)
    assert sleeps == [0.2, 0.4]  # exponential backoff


def test_records_that_keep_failing_are_reported_not_dropped():
    features = _features()
    client = _runtime_client()
    config = ProcessingConfig(feature_store_max_attempts=2, feature_store_max_workers=1)
    writer = SageMakerFeatureStoreWriter(GROUP, client=client, config=config, sleep=lambda s: None)
    with Stubber(client) as stub:
        stub.add_client_error("put_record", "ValidationError", "bad event time", 400)  # not retryable
        stub.add_client_error("put_record", "ThrottlingException", "slow down", 400)
        stub.add_client_error("put_record", "ThrottlingException", "slow down", 400)
        report = writer.put(features)
        stub.assert_no_pending_responses()
    assert report.succeeded == 0 and report.failed == 2
    assert [(f.feedback_id, f.error_code, f.attempts) for f in report.failures] == [
        ("f1", "ValidationError", 1), ("f2", "ThrottlingException", 2)]
    assert report.to_dict()["failures"][0]["message"] == "bad event time"


def test_concurrent_batches_put_every_record_once(caplog):
    rows = [{"feedback_id": f"f{i}", "created_at": f"2026-10-01T{i % 24:02d}:00:00Z", "text": "ok"} for i in range(250)]
    features = _features(rows)
    client = _runtime_client()
    config = ProcessingConfig(feature_store_batch_size=100, feature_store_max_workers=4)
    writer = SageMakerFeatureStoreWriter(GROUP, client=client, config=config, sleep=lambda s: None)
    with Stubber(client) as stub, caplog.at_level("INFO"):
        for _ in range(250):
            stub.add_response("put_record", {})
        report = writer.ingest(features)
        stub.assert_no_pending_responses()
    assert (report.attempted, report.succeeded, report.failed) == (250, 250, 0)
    assert sum("records/s" in m for m in caplog.messages) == 3  # a progress line per batch


def test_local_store_uses_sagemaker_offline_layout_and_latest_online_record(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCAL_STORE_ENV, str(tmp_path))
    store = open_feature_store(GROUP)
    assert isinstance(store, LocalFeatureStore)
    features = _features()
    assert store.ingest(features).succeeded == 2  # ingest is put (the job calls ingest)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    pattern = (r"offline/\d{12}/sagemaker/us-east-1/offline-store/feedback-features-\d+/data/"
               r"year=2026/month=10/day=0[12]/hour=(09|17)/\d{8}T\d{6}Z_[0-9a-f]{12}\.parquet")
    assert len(files) == 2 and all(re.fullmatch(pattern, f) for f in files), files
    offline = store.read_offline()
    assert {"write_time", "api_invocation_time", "is_deleted"} <= set(offline.columns)

    older = features.iloc[[0]].assign(event_time=pd.Timestamp("2026-09-01T00:00Z"), text_chars=999)
    newer = features.iloc[[1]].assign(event_time=pd.Timestamp("2026-11-01T00:00Z"), text_chars=555)
    store.put(pd.concat([older, newer]))
    assert store.get_record("f1")["text_chars"] == "7"  # an older event does not replace the online record
    assert store.get_record("f2")["text_chars"] == "555"
    assert store.get_record("nope") is None
    assert len(store.read_offline()) == 4  # the offline store keeps every version
    store.close()
    reopened = LocalFeatureStore(tmp_path, GROUP)
    assert reopened.offline_dir == store.offline_dir  # same group folder across runs
    reopened.close()


def test_without_the_env_the_sagemaker_writer_is_used_inside_a_sagemaker_job(monkeypatch):
    import processing.feature_store as feature_store_module

    monkeypatch.delenv(LOCAL_STORE_ENV, raising=False)
    monkeypatch.setattr(feature_store_module, "local_workspace", lambda: None)  # what a SageMaker job sees
    assert isinstance(open_feature_store(GROUP, client=_runtime_client()), SageMakerFeatureStoreWriter)


def test_point_in_time_join_does_not_leak_future_values(tmp_path):
    """A naive latest-value join would hand each label the customer's newest history."""
    store = LocalFeatureStore(tmp_path, GROUP)
    silver = pd.DataFrame({
        "feedback_id": ["a", "b", "c", "d"],
        "created_at": pd.to_datetime(["2026-10-01", "2026-10-05", "2026-10-09", "2026-10-12"], utc=True),
        "text": ["bad", "worse", "awful", "still bad"],
        "customer_id": ["c1"] * 4,
        "star_rating": [1, 2, 1, 1],
        "intent": ["complaint"] * 4,
    })
    store.put(compute_features(silver))
    labels = pd.DataFrame({
        "customer_id": ["c1", "c1", "c1"],
        "event_time": pd.to_datetime(["2026-10-06", "2026-09-01", "2026-10-09"], utc=True),
        "label": ["churned", "active", "churned"],
    })
    feature = "customer_prior_complaint_count"
    joined = point_in_time_join(labels, store, [feature], key="customer_id")

    latest = store.read_offline().sort_values("event_time").groupby("customer_id").tail(1)
    naive = labels.merge(latest[["customer_id", feature]], on="customer_id")
    assert naive[feature].tolist() == [3, 3, 3]  # leaks events from after each label's time

    assert joined["label"].tolist() == ["churned", "active", "churned"]  # input order kept
    assert joined.loc[0, feature] == 1  # as of 10-06: snapshot of 'b' (one earlier complaint)
    assert pd.isna(joined.loc[1, feature])  # before any record: missing, not a later value
    assert joined.loc[2, feature] == 2  # a record at exactly the label time is known
    assert (joined["feature_event_time"].dropna() <= labels["event_time"][joined["feature_event_time"].notna()]).all()
    from_folder = point_in_time_join(labels, store.offline_dir, [feature], key="customer_id")
    assert from_folder[feature].fillna(-1).tolist() == joined[feature].fillna(-1).tolist()
    store.close()


def test_point_in_time_join_by_record_id_picks_the_version_valid_at_label_time():
    versions = pd.DataFrame({
        "feedback_id": ["f1", "f1"],
        "event_time": pd.to_datetime(["2026-10-01", "2026-10-20"], utc=True),
        "star_rating": [2.0, 5.0],  # edited by the customer on 10-20
        "is_deleted": [False, False],
    })
    labels = pd.DataFrame({"feedback_id": ["f1"], "event_time": pd.to_datetime(["2026-10-10"], utc=True)})
    assert point_in_time_join(labels, versions, ["star_rating"])["star_rating"].tolist() == [2.0]
    with pytest.raises(ValueError, match="not in the store"):
        point_in_time_join(labels, versions, ["nope"])
    with pytest.raises(ValueError, match="labels need"):
        point_in_time_join(labels.drop(columns=["event_time"]), versions, ["star_rating"])


def test_vectorised_online_records_equal_to_record_per_row(tmp_path):
    """The local store builds online records column-wise: same strings as to_record, missing values left out."""

    import numpy as np

    from processing.feature_store import format_event_time, format_event_times

    features = _features([
        {"feedback_id": f"f{i}", "created_at": f"2026-10-0{1 + i % 3}T0{i % 10}:15:00.{i:03d}Z", "text": "ok \"quoted\" é",
         "channel": "review", "customer_id": None if i % 4 == 0 else f"c{i % 3}", "sku": "S\"1",
         "star_rating": None if i % 2 else (i % 5) + 1, "intent": "complaint"} for i in range(12)])
    store = LocalFeatureStore(tmp_path, GROUP)
    store.put(features)
    for row in features.to_dict("records"):
        expected = {item["FeatureName"]: item["ValueAsString"] for item in to_record(row)}
        assert store.get_record(row["feedback_id"]) == expected
    store.close()
    stamps = pd.Series(pd.to_datetime(np.arange(1.75e18, 1.76e18, 7.77e13).astype("int64"), utc=True))
    assert format_event_times(stamps).tolist() == [format_event_time(t) for t in stamps]


def test_online_records_survive_values_that_look_like_json_members():
    from processing.feature_store import _online_record_json

    values = pd.DataFrame({"feedback_id": ["a\u2028b", "c"], "sku": [None, 'x/y\n"sku":null,'],
                           "channel": ["review", None]})
    records = [json.loads(r) for r in _online_record_json(values)]
    # Missing features are left out (as GetRecord does); a value holding `"sku":null,` is kept whole.
    assert records == [{"feedback_id": "a\u2028b", "channel": "review"}, {"feedback_id": "c", "sku": 'x/y\n"sku":null,'}]


# ---------------------------------------------------------------- the group exists before ingestion
def test_fbrain_features_create_group_creates_once_with_our_definitions():
    from moto import mock_aws
    from typer.testing import CliRunner

    from moto_support import missing_feature_groups_are_not_found
    from pipelines.cli import app

    with mock_aws(), missing_feature_groups_are_not_found():
        first = CliRunner().invoke(app, ["features", "create-group"], catch_exceptions=False)
        assert first.exit_code == 0, first.output
        created = json.loads(first.output)
        assert created["created"] is True and created["status"] == "Created"
        again = json.loads(CliRunner().invoke(app, ["features", "create-group"]).output)
        assert again["created"] is False and again["feature_group_arn"] == created["feature_group_arn"]
        described = boto3.client("sagemaker", region_name="us-east-1").describe_feature_group(
            FeatureGroupName=ProcessingConfig().feature_group_name)
    assert [d["FeatureName"] for d in described["FeatureDefinitions"]] == list(FEATURE_NAMES)
    assert described["RecordIdentifierFeatureName"] == "feedback_id"


def _describe(status: str, reason: str | None = None) -> dict:
    response = {"FeatureGroupArn": f"arn:aws:sagemaker:us-east-1:111122223333:feature-group/{GROUP}",
                "FeatureGroupName": GROUP, "RecordIdentifierFeatureName": "feedback_id",
                "EventTimeFeatureName": "event_time",
                "FeatureDefinitions": [{"FeatureName": "feedback_id", "FeatureType": "String"}],
                "CreationTime": "2026-12-01T00:00:00Z", "FeatureGroupStatus": status, "NextToken": ""}
    if reason:
        response["FailureReason"] = reason
    return response


def test_creation_waits_until_created_and_reports_a_failed_creation():
    from processing.feature_store import FeatureGroupError, ensure_feature_group

    client = boto3.client("sagemaker", region_name="us-east-1")
    request = create_feature_group_request(ProcessingConfig(), GROUP)
    sleeps = []
    with Stubber(client) as stub:
        stub.add_client_error("describe_feature_group", "ResourceNotFound", f"Resource Not Found: {GROUP}", 400)
        stub.add_response("create_feature_group", {"FeatureGroupArn": _describe("Creating")["FeatureGroupArn"]}, request)
        stub.add_response("describe_feature_group", _describe("Creating"))
        stub.add_response("describe_feature_group", _describe("Created"))
        result = ensure_feature_group(client, request, ProcessingConfig(feature_group_poll_s=0.5), sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert result["created"] is True and result["status"] == "Created" and sleeps == [0.5]
    with Stubber(client) as stub:
        stub.add_response("describe_feature_group", _describe("CreateFailed", "role cannot write the offline store"))
        with pytest.raises(FeatureGroupError, match="CreateFailed: role cannot write the offline store"):
            ensure_feature_group(client, request)


def _processing_job_input(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = [{"feedback_id": f"fs-{i}", "text": f"Order {i} arrived late and the {thing} was damaged in transit.",
             "channel": "review", "created_at": "2026-10-01T09:00:00Z", "customer_id": f"c-{i}"}
            for i, thing in enumerate(["kettle", "jacket", "lamp", "blender"])]
    (folder / "feedback.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_processing_job_fails_when_the_group_is_missing_or_records_fail(tmp_path, monkeypatch, caplog):
    """FeatureEngineering's entry point on SageMaker's path (no local store): PutRecord stubbed."""
    from processing import feature_engineering

    monkeypatch.delenv("FBRAIN_LOCAL_FEATURE_STORE", raising=False)
    monkeypatch.setenv("FBRAIN_FEATURE_STORE", "sagemaker")  # PutRecord, as inside a SageMaker job
    monkeypatch.setenv("FBRAIN_WORKSPACE", str(tmp_path / "ws"))  # the local salt secret lives there
    client = _runtime_client()
    real_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda service, *a, **k: client if service == "sagemaker-featurestore-runtime"
                        else real_client(service, *a, **k))
    raw = _processing_job_input(tmp_path / "raw")
    argv = ["--input-dir", str(raw), "--output-dir", str(tmp_path / "out")]
    with Stubber(client) as stub, caplog.at_level("ERROR"):
        stub.add_client_error("put_record", "ResourceNotFound", f"Resource Not Found: {GROUP}", 400)
        assert feature_engineering.main(argv) == 1
    assert "does not exist" in caplog.text and "fbrain features create-group" in caplog.text
    assert not (tmp_path / "out" / "corrections_state").exists()

    caplog.clear()
    with Stubber(client) as stub, caplog.at_level("ERROR"):
        stub.add_client_error("put_record", "ValidationError", "event_time is in the future", 400)
        for _ in range(3):
            stub.add_response("put_record", {})
        assert feature_engineering.main(argv + ["--output-dir", str(tmp_path / "out2")]) == 1
        stub.assert_no_pending_responses()
    assert "1 of 4 feature records failed PutRecord" in caplog.text and "event_time is in the future" in caplog.text
    report = json.loads((tmp_path / "out2" / "lake" / "run_report.json").read_text())
    assert report["features"]["ingest"]["failed"] == 1  # the report lists the failure before the job fails


def test_a_configured_tolerance_lets_a_few_failures_through():
    from processing.feature_store import FeatureStoreIngestionError, check_ingest_failures

    ingest = {"feature_group_name": GROUP, "attempted": 10, "failed": 2,
              "failures": [{"error_code": "ValidationError", "message": "bad"}]}
    check_ingest_failures(ingest, ProcessingConfig(feature_store_max_failed_records=2))
    with pytest.raises(FeatureStoreIngestionError, match="tolerated: 1"):
        check_ingest_failures(ingest, ProcessingConfig(feature_store_max_failed_records=1))
