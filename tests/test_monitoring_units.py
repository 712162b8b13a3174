"""Unit tests of the monitor's parts: drift measures, Model Monitor formats, descriptors, schedule request."""
from __future__ import annotations

from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

from monitoring.capture_reader import captured_prediction
from monitoring.compare import compare_window
from monitoring.config import MonitoringConfig
from monitoring.drift import domain_classifier_auc, jensen_shannon_distance, population_stability_index
from monitoring.model_monitor_format import build_constraints, build_statistics, compare_with_buckets, equal_mass_edges
from monitoring.schedule import create_monitoring_schedule_request, monitor_image_uri
from monitoring.text_descriptors import OovCounter, TextDescriber, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer_file():
    from training.backbone import packaged_tokenizer_path

    return Path(packaged_tokenizer_path()) / "tokenizer.json"


def test_psi_and_js_are_zero_for_equal_distributions_and_grow_with_shift():
    same = [50, 30, 20]
    assert population_stability_index(same, [5, 3, 2], floor=1e-4) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon_distance(same, [5, 3, 2]) == pytest.approx(0.0, abs=1e-7)
    small = population_stability_index(same, [45, 33, 22], floor=1e-4)
    large = population_stability_index(same, [10, 30, 60], floor=1e-4)
    assert 0 < small < 0.1 < large
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        population_stability_index([1, 2], [1, 2, 3], floor=1e-4)


def test_domain_classifier_separates_shifted_embeddings_only():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 16))
    assert domain_classifier_auc(reference, rng.normal(size=(300, 16)), 5, 1.0, 1000, seed=0).roc_auc < 0.62
    moved = rng.normal(size=(300, 16)) + np.r_[1.0, np.zeros(15)]
    assert domain_classifier_auc(reference, moved, 5, 1.0, 1000, seed=0).roc_auc > 0.75
    capped = domain_classifier_auc(reference, moved, 5, 1.0, 100, seed=0)
    assert capped.reference_rows == capped.current_rows == 100
    with pytest.raises(ValueError, match="shapes"):
        domain_classifier_auc(reference, rng.normal(size=(10, 8)), 5, 1.0, 100, seed=0)


def test_bucket_boundaries_sit_between_values_and_outer_buckets_catch_new_ranges():
    values = np.array([0.1, 0.1, 0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.5, 0.9])
    edges = equal_mass_edges(values, 4)
    assert edges[0] == 0.1 and edges[-1] == 0.9
    assert not set(edges[1:-1]) & set(values.tolist()), "inner boundaries must not sit on observed values"
    statistics = build_statistics({"x": values.tolist()}, numeric=["x"], integral=[], categorical=[],
                                  bucket_count=4, dataset_name="t")
    buckets = statistics["features"][0]["numerical_statistics"]["distribution"]["kll"]["buckets"]
    expected, observed = compare_with_buckets(buckets, [0.1 + 1e-6, 0.0, 5.0], range_margin=0.0)
    assert expected[0] == expected[-1] == 0 and sum(expected) == len(values)
    assert observed[0] == 1 and observed[-1] == 1 and observed[1] == 1  # jitter stays in its bucket
    constant = build_statistics({"x": [0.0] * 5}, numeric=["x"], integral=[], categorical=[], bucket_count=10, dataset_name="t")
    flat = constant["features"][0]["numerical_statistics"]["distribution"]["kll"]["buckets"]
    assert len(flat) == 1 and compare_with_buckets(flat, [0.0, 0.3], 0.05)[1] == [0.0, 1.0, 1.0]


def test_constraints_checks_flag_completeness_unknown_categories_and_missing_columns():
    config = MonitoringConfig(min_window_records=1)
    base = {"lang": ["en"] * 90 + ["fr"] * 10, "n": list(range(100))}
    statistics = build_statistics(base, numeric=["n"], integral=["n"], categorical=["lang"], bucket_count=10, dataset_name="b")
    constraints = build_constraints(statistics, config)
    window = {"lang": ["en"] * 40 + ["de"] * 30 + [None] * 30}
    found = {(v["feature_name"], v["constraint_check_type"])
             for v in compare_window(window, statistics, constraints, enough_records=True).violations}
    assert found == {("lang", "completeness_check"), ("lang", "categorical_values_check"),
                     ("lang", "baseline_drift_check"), ("n", "missing_column_check")}
    calm = {"lang": ["en"] * 45 + ["fr"] * 5, "n": list(range(0, 100, 2))}
    assert compare_window(calm, statistics, constraints, enough_records=True).violations == []


def test_descriptors_measure_oov_pii_non_ascii_and_language(tokenizer_file):
    describer = TextDescriber(tokenizer_file, MonitoringConfig())
    columns = describer.describe([
        "The parcel arrived late.",
        "Contact me at [EMAIL] or [PHONE] please",
        "Die Lieferung kam viel zu spät und der Karton war beschädigt.",
        "xqzvkw pfrtlmn",
    ]).columns
    assert columns["text_word_count"] == [4, 7, 11, 2]
    assert columns["text_pii_placeholder_rate"][1] == pytest.approx(2 / 7)
    assert columns["text_non_ascii_share"][0] == 0 and columns["text_non_ascii_share"][2] > 0
    assert columns["text_oov_rate"][0] == 0.0 and columns["text_oov_rate"][3] == 1.0
    assert columns["text_language"][0] == "en" and columns["text_language"][2] == "de"
    counter = OovCounter(load_tokenizer(tokenizer_file), min_word_pieces=3)
    assert counter.rates(["\u2603\u2603 snow"])[0] > 0  # a symbol the vocabulary lacks counts as [UNK]


def test_captured_prediction_reads_the_endpoint_response_layout():
    item = {"event_id": "e1", "index": 0, "text": "late parcel", "inference_time": "2026-11-23T08:00:00Z",
            "prediction": {"sentiment": {"label": "negative", "score": 0.8,
                                         "probabilities": {"negative": 0.8, "neutral": 0.15, "positive": 0.05}},
                           "intent": {"label": "complaint", "probabilities": {"complaint": 0.6, "other": 0.4}},
                           "aspects": {"labels": ["shipping_delivery"], "scores": {"shipping_delivery": 0.9}}}}
    record = captured_prediction(item)
    assert record.sentiment_label == "negative" and record.sentiment_probabilities["neutral"] == 0.15
    assert record.aspect_scores == {"shipping_delivery": 0.9} and record.inference_time.tzinfo is not None
    with pytest.raises(ValueError):
        captured_prediction({**item, "prediction": ["not", "an", "object"]})


def test_monitoring_schedule_request_is_valid_for_the_sagemaker_api():
    config = MonitoringConfig()
    image = monitor_image_uri("111122223333.dkr.ecr.us-east-1.amazonaws.com", config, "abc123")
    request = create_monitoring_schedule_request(
        config, endpoint_name="feedback-brain", image_uri=image,
        role_arn="arn:aws:iam::111122223333:role/feedback-brain-sagemaker",
        baseline_s3_uri="s3://feedback-brain-artifacts/pipeline/baseline/",
        output_s3_uri="s3://feedback-brain-artifacts/monitoring/feedback-brain",
        model_data_uri="s3://feedback-brain-artifacts/pipeline/model/model.tar.gz",
        kms_key_id="arn:aws:kms:us-east-1:111122223333:key/abcd", tags={"project": "feedback-brain"},
    )
    definition = request["MonitoringScheduleConfig"]["MonitoringJobDefinition"]
    assert definition["BaselineConfig"]["StatisticsResource"]["S3Uri"] == "s3://feedback-brain-artifacts/pipeline/baseline/statistics.json"
    assert definition["MonitoringAppSpecification"]["ContainerEntrypoint"] == ["python3", "-m", "monitoring.monitor"]
    assert definition["MonitoringInputs"][0]["EndpointInput"]["LocalPath"] == "/opt/ml/processing/input/endpoint"
    assert definition["Environment"]["baseline_embeddings"].endswith("/baseline/embeddings.npy")
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:  # the stubber validates the request against botocore's service model
        stubber.add_response("create_monitoring_schedule", {"MonitoringScheduleArn": "arn:aws:sagemaker:us-east-1:111122223333:monitoring-schedule/x"}, request)
        client.create_monitoring_schedule(**request)
        stubber.assert_no_pending_responses()
    broken = {**request, "MonitoringScheduleConfig": {**request["MonitoringScheduleConfig"], "ScheduleConfig": {}}}
    with Stubber(client) as stubber, pytest.raises(Exception, match="ScheduleExpression"):
        stubber.add_response("create_monitoring_schedule", {"MonitoringScheduleArn": "x"})
        client.create_monitoring_schedule(**broken)
    with pytest.raises(ValueError, match="256"):
        create_monitoring_schedule_request(config, endpoint_name="e", image_uri=image, role_arn="r",
                                           baseline_s3_uri="s3://b/" + "k" * 300, output_s3_uri="s3://b/o",
                                           model_data_uri="s3://b/m.tar.gz")


def test_model_dir_resolves_from_a_directory_holding_model_tar_gz(tmp_path):
    import tarfile

    from monitoring.artifacts import ArtifactError, resolve_model_dir

    model = tmp_path / "model"
    (model / "onnx").mkdir(parents=True)
    (model / "onnx" / "model.onnx").write_bytes(b"onnx")
    (model / "fbrain_model.json").write_text("{}")
    channel = tmp_path / "channel"
    channel.mkdir()
    with tarfile.open(channel / "model.tar.gz", "w:gz") as archive:
        for path in model.rglob("*"):
            archive.add(path, arcname=str(path.relative_to(model)))
    extracted = resolve_model_dir(str(channel), scratch=tmp_path / "scratch")
    assert (extracted / "onnx" / "model.onnx").read_bytes() == b"onnx"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no onnx/ folder"):
        resolve_model_dir(str(tmp_path / "empty"))
    with pytest.raises(ArtifactError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "nowhere"))
