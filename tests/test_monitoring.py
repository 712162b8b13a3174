"""Model Monitor for text end to end: baseline from training texts, then captured traffic.

Traffic is scored by the real predictor (tiny model, int8 ONNX) and written in SageMaker's
capture format by inference.capture, in small requests like the endpoint receives. The
held-out sample comes from the same generator as the training texts; the shifted one brings
a new complaint theme (app crashes, double charges, counterfeits) and other languages.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.stub import ANY, Stubber

from monitoring.baseline import compute_baseline
from monitoring.config import MonitoringConfig
from monitoring.monitor import MonitorInputs, main as monitor_main, run_monitor

PRODUCTS = ["shoes", "dress", "jacket", "backpack", "lamp", "headphones", "mug", "sofa", "jeans", "blender",
            "watch", "kettle", "scarf", "desk chair", "phone case", "rug", "toaster", "sneakers", "coat", "pillow"]
OPENERS = ["", "Hi,", "Hello team,", "Honestly,", "Well,", "To be fair,", "Quick note:", "Update:", "So", "Ugh,"]
USUAL_THEMES = [
    "the {p} arrived {d} late and the box was crushed",
    "I love this {p}, the quality is {q}",
    "the {p} runs small, can I exchange it for a larger size",
    "where is my {p}? It has been {n} days since I ordered",
    "support never answered my emails about the {p} refund",
    "the colour of the {p} does not match the photos on the listing",
    "the {p} is way too expensive for such {q} quality",
    "my {p} broke after {n} days and I want my money back",
    "fast delivery and the {p} fits perfectly",
    "the packaging of the {p} was torn and one part was missing",
    "the {p} looks {q} but feels smaller than described",
    "I ordered the {p} in blue and received it in grey",
]
NEW_THEME = [
    "the mobile app crashes every time I try to pay with my saved card",
    "I was charged twice for my subscription renewal this month",
    "the {p} I received is counterfeit and the serial number is fake",
    "your website login keeps rejecting my password after the update",
    "the {p} battery overheated and started smoking while charging",
]
OTHER_LANGUAGES = [
    "die {p} kam viel zu spät an und der Karton war völlig zerdrückt",
    "ich möchte mein Geld zurück, die Qualität ist miserabel",
    "el pedido llegó tarde y el paquete estaba roto, quiero un reembolso",
    "la talla es demasiado pequeña, quiero cambiarla por otra más grande",
    "der Kundenservice hat nie auf meine E-Mails geantwortet, ich bin sehr enttäuscht",
]
DETAILS = ["", " again", " this time", " for the second order", " even after the update", " as a gift", " for my sister"]
CLOSINGS = ["", " Thanks.", " Please help.", " Not happy.", " Will order again.", " Very disappointed.", " Cheers!"]
QUALITY = ["great", "poor", "excellent", "cheap", "amazing", "terrible", "decent", "average"]
DAYS = ["two days", "a week", "three days", "ten days", "a month"]
TRAIN_TEXTS, WINDOW_TEXTS, REQUEST_SIZE = 400, 200, 4
CAPTURE_START = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def feedback(rng: random.Random, themes: list[str]) -> str:
    core = rng.choice(themes).format(p=rng.choice(PRODUCTS), d=rng.choice(DAYS), q=rng.choice(QUALITY), n=rng.randint(2, 40))
    text = f"{rng.choice(OPENERS)} {core}{rng.choice(DETAILS)}.{rng.choice(CLOSINGS)}".strip()
    return text[0].upper() + text[1:]


def usual(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [feedback(rng, USUAL_THEMES) for _ in range(count)]


def shifted(seed: int, count: int, language_share: float) -> list[str]:
    rng = random.Random(seed)
    return [feedback(rng, OTHER_LANGUAGES if rng.random() < language_share else NEW_THEME) for _ in range(count)]


def write_capture(root: Path, texts: list[str], predictor) -> Path:
    """Requests of REQUEST_SIZE texts with the predictor's real responses, in SageMaker's capture layout."""
    from inference.capture import capture_prefix, capture_record

    for number, begin in enumerate(range(0, len(texts), REQUEST_SIZE)):
        when = CAPTURE_START + timedelta(minutes=number)
        chunk = texts[begin:begin + REQUEST_SIZE]
        body = json.dumps({"instances": [{"text": t} for t in chunk]}).encode()
        response = json.dumps({"predictions": predictor.predict(chunk)}).encode()
        folder = capture_prefix(root, "feedback-brain", "AllTraffic", when)
        folder.mkdir(parents=True, exist_ok=True)
        record = capture_record(body, "application/json", response, "application/json", f"event-{number}", when)
        with open(folder / "capture.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    return root


@pytest.fixture(scope="module")
def monitored(tiny_model_dir, tmp_path_factory):
    """A baseline of usual feedback and three captured windows: held-out, shifted, new theme only."""
    from inference.config import ServingConfig
    from inference.predictor import load_predictor

    root = tmp_path_factory.mktemp("monitoring")
    train = root / "train"
    train.mkdir()
    with open(train / "examples.jsonl", "w", encoding="utf-8") as handle:
        for number, text in enumerate(usual(seed=1, count=TRAIN_TEXTS)):
            handle.write(json.dumps({"feedback_id": f"f{number}", "text": text}) + "\n")
        handle.write("{not json\n")
        handle.write(json.dumps({"feedback_id": "blank", "text": "  "}) + "\n")
    result = compute_baseline(str(tiny_model_dir), str(train), str(root / "baseline"))
    predictor = load_predictor(tiny_model_dir, ServingConfig(runtime="onnx-int8"))
    captures = {
        "held_out": write_capture(root / "capture_held_out", usual(seed=2, count=WINDOW_TEXTS), predictor),
        "shifted": write_capture(root / "capture_shifted", shifted(seed=3, count=WINDOW_TEXTS, language_share=0.5), predictor),
        "new_theme": write_capture(root / "capture_new_theme", shifted(seed=4, count=WINDOW_TEXTS, language_share=0.0), predictor),
    }
    return {"root": root, "baseline": result, "captures": captures, "model": tiny_model_dir}


def run_window(monitored, name: str, **kwargs):
    inputs = MonitorInputs.from_baseline_dir(
        str(monitored["baseline"].output_dir), str(monitored["captures"][name]),
        str(monitored["root"] / f"out_{name}"), model_dir=str(monitored["model"]), **kwargs,
    )
    return run_monitor(inputs, MonitoringConfig())


def checks(result) -> set[tuple[str, str]]:
    return {(v["feature_name"], v["constraint_check_type"]) for v in result.violations}


def test_baseline_reads_example_files_without_torch():
    """The monitor runs where torch may not be installed: its example reader is torch-free."""
    import subprocess
    import sys

    code = "import sys, monitoring.baseline; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_baseline_writes_model_monitor_statistics_and_constraints(monitored):
    baseline = monitored["baseline"]
    out = baseline.output_dir
    assert baseline.records == TRAIN_TEXTS and baseline.quarantined == 2
    reasons = [json.loads(line)["reason"] for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(reasons) == ["invalid_json", "text_empty"]

    statistics = json.loads((out / "statistics.json").read_text())
    assert statistics["dataset"]["item_count"] == TRAIN_TEXTS
    features = {f["name"]: f for f in statistics["features"]}
    for name in ("text_char_length", "text_oov_rate", "text_pii_placeholder_rate", "text_non_ascii_share",
                 "prediction_sentiment_confidence", "prediction_aspect_score_packaging"):
        numeric = features[name]["numerical_statistics"]
        assert numeric["common"] == {"num_present": TRAIN_TEXTS, "num_missing": 0}
        buckets = numeric["distribution"]["kll"]["buckets"]
        assert sum(b["count"] for b in buckets) == TRAIN_TEXTS
        assert buckets[0]["lower_bound"] == numeric["min"] and buckets[-1]["upper_bound"] == numeric["max"]
    assert features["text_char_length"]["inferred_type"] == "Integral"
    assert features["prediction_intent_confidence"]["inferred_type"] == "Fractional"
    languages = features["text_language"]["string_statistics"]["distribution"]["categorical"]["buckets"]
    assert max(languages, key=lambda b: b["count"])["value"] == "en"
    intents = {b["value"] for b in features["prediction_intent"]["string_statistics"]["distribution"]["categorical"]["buckets"]}
    assert intents <= set(statistics["label_maps"]["intent"])

    constraints = json.loads((out / "constraints.json").read_text())
    assert {f["name"] for f in constraints["features"]} == set(features)
    language = next(f for f in constraints["features"] if f["name"] == "text_language")
    assert language["completeness"] == 1.0 and "en" in language["string_constraints"]["domains"]
    assert constraints["monitoring_config"]["evaluate_constraints"] == "Enabled"
    assert constraints["monitoring_config"]["embedding_drift"]["auc_threshold"] == MonitoringConfig().drift_auc_threshold

    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.shape == (min(TRAIN_TEXTS, MonitoringConfig().embedding_reference_size), 32)
    assert (out / "tokenizer.json").exists()


def test_held_out_traffic_of_the_same_distribution_is_not_flagged(monitored):
    result = run_window(monitored, "held_out")
    assert result.texts == WINDOW_TEXTS and result.quarantined == 0
    assert result.violations == [], result.violations
    assert result.comparison.embedding.roc_auc < MonitoringConfig().drift_auc_threshold
    assert max(d.psi for d in result.comparison.drift) < MonitoringConfig().psi_threshold
    written = json.loads((result.output_dir / "constraint_violations.json").read_text())
    assert written == {"violations": []}


def test_shifted_traffic_new_theme_and_other_languages_is_flagged(monitored):
    result = run_window(monitored, "shifted")
    found = checks(result)
    assert ("text_language", "categorical_values_check") in found
    assert ("text_language", "baseline_drift_check") in found
    assert ("text_non_ascii_share", "baseline_drift_check") in found
    assert ("embedding", "baseline_drift_check") in found
    assert result.comparison.embedding.roc_auc > MonitoringConfig().drift_auc_threshold

    written = json.loads((result.output_dir / "constraint_violations.json").read_text())["violations"]
    assert {(v["feature_name"], v["constraint_check_type"]) for v in written} == found
    assert all(v["description"] for v in written)
    window = json.loads((result.output_dir / "statistics.json").read_text())
    assert window["dataset"]["item_count"] == WINDOW_TEXTS
    request = json.loads((result.output_dir / "metrics.json").read_text())
    metrics = {m["MetricName"]: m for m in request["MetricData"]}
    assert metrics["embedding_drift_roc_auc"]["Value"] == pytest.approx(result.comparison.embedding.roc_auc)
    assert metrics["constraint_violations_count"]["Value"] == len(written)
    assert {"Name": "Endpoint", "Value": "local"} in metrics["captured_texts_count"]["Dimensions"]
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    with Stubber(cloudwatch) as stubber:  # metrics.json is a valid PutMetricData request as written
        stubber.add_response("put_metric_data", {}, request)
        cloudwatch.put_metric_data(**request)


def test_a_new_complaint_theme_in_english_is_caught_by_embedding_drift(monitored):
    result = run_window(monitored, "new_theme")
    assert ("embedding", "baseline_drift_check") in checks(result)
    assert ("text_language", "categorical_values_check") not in checks(result)


def test_monitor_entry_point_follows_the_sagemaker_container_contract(monitored, tmp_path, monkeypatch):
    baseline = monitored["baseline"].output_dir
    environment = {
        "dataset_source": str(monitored["captures"]["shifted"]),
        "output_path": str(tmp_path / "resultdata"),
        "baseline_statistics": str(baseline / "statistics.json"),
        "baseline_constraints": str(baseline / "constraints.json"),
        "baseline_tokenizer": str(baseline / "tokenizer.json"),
        "sagemaker_endpoint_name": "feedback-brain",
        "sagemaker_monitoring_schedule_name": "feedback-brain-text-monitor",
        # A window that holds only the first 10 requests (40 texts).
        "start_time": CAPTURE_START.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_time": (CAPTURE_START + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # ... of which a seeded sample of 30 is monitored.
        "FBRAIN__MONITORING__WINDOW_MAX_RECORDS": "30",
        "FBRAIN__MONITORING__CLOUDWATCH_METRICS_DIR": str(tmp_path / "cw"),
        "publish_cloudwatch_metrics": "Enabled",
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert monitor_main([]) == 0
    statistics = json.loads((tmp_path / "resultdata" / "statistics.json").read_text())
    assert statistics["dataset"]["item_count"] == 30 and statistics["window"]["captured_texts"] == 10 * REQUEST_SIZE
    assert statistics["window"]["outside_window"] == WINDOW_TEXTS - 10 * REQUEST_SIZE
    assert any("embedding drift" in s for s in statistics["skipped_checks"])  # no model_dir given
    violations = json.loads((tmp_path / "resultdata" / "constraint_violations.json").read_text())["violations"]
    assert ("text_language", "categorical_values_check") in {(v["feature_name"], v["constraint_check_type"]) for v in violations}
    metrics = json.loads((tmp_path / "resultdata" / "metrics.json").read_text())["MetricData"]
    assert {"Name": "MonitoringSchedule", "Value": "feedback-brain-text-monitor"} in metrics[0]["Dimensions"]
    published = (tmp_path / "cw" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in published] == metrics


def test_aspect_rates_decide_aspects_with_the_thresholds_of_the_baselined_model(monitored, tmp_path):
    """The baseline records the served model's aspect thresholds (training.metrics); the monitor's
    `prediction_aspect_rate_*` metrics decide captured aspect scores with them."""
    import shutil

    from inference.predictor import ModelCard

    statistics = json.loads((monitored["baseline"].output_dir / "statistics.json").read_text())
    aspects = statistics["label_maps"]["aspects"]
    assert statistics["aspect_thresholds"] == ModelCard.from_model_dir(monitored["model"]).aspect_thresholds
    rates = {}
    for threshold in (0.001, 0.999):
        baseline = tmp_path / f"baseline-{threshold}"
        shutil.copytree(monitored["baseline"].output_dir, baseline)
        statistics["aspect_thresholds"] = dict.fromkeys(aspects, threshold)
        (baseline / "statistics.json").write_text(json.dumps(statistics))
        inputs = MonitorInputs.from_baseline_dir(str(baseline), str(monitored["captures"]["held_out"]),
                                                 str(tmp_path / f"out-{threshold}"))
        result = run_monitor(inputs, MonitoringConfig())
        rates[threshold] = {m["MetricName"]: m["Value"] for m in result.metrics
                            if m["MetricName"].startswith("prediction_aspect_rate_")}
        assert set(rates[threshold]) == {f"prediction_aspect_rate_{aspect}" for aspect in aspects}
    assert set(rates[0.001].values()) == {1.0} and set(rates[0.999].values()) == {0.0}


def test_malformed_capture_lines_are_quarantined_not_dropped(monitored, tmp_path):
    capture = tmp_path / "capture" / "feedback-brain" / "AllTraffic" / "2026" / "11" / "23" / "08"
    capture.mkdir(parents=True)
    good = (next(monitored["captures"]["held_out"].rglob("*.jsonl"))).read_text().splitlines()[0]
    mismatched = json.loads(good)
    mismatched["captureData"]["endpointOutput"]["data"] = json.dumps({"predictions": []})
    (capture / "c.jsonl").write_text("\n".join([good, "{broken", json.dumps(mismatched)]) + "\n")
    inputs = MonitorInputs.from_baseline_dir(str(monitored["baseline"].output_dir), str(tmp_path / "capture"),
                                             str(tmp_path / "out"))
    result = run_monitor(inputs)
    assert result.texts == REQUEST_SIZE and result.quarantined == 2
    quarantine = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 2 and all(item["reason"] for item in quarantine)
    assert any("too few records" in s for s in result.comparison.skipped)


@pytest.mark.slow  # ~9 s: one job subprocess scoring 200 texts
def test_monitoring_pipeline_runs_locally_and_its_drift_fires_the_local_trigger(monitored, tmp_path):
    """`fbrain monitor pipeline run --local`: the monitoring pipeline's own definition, run by the embedded
    runner on a capture folder in the local object store; its violations reach `fbrain monitor triggers check`."""
    import shutil
    import tarfile

    from typer.testing import CliRunner

    from pipelines.cli import app

    workspace = tmp_path / "ws"
    bucket = workspace / "s3" / "feedback-brain-artifacts"
    shutil.copytree(monitored["captures"]["shifted"], bucket / "datacapture")
    shutil.copytree(monitored["baseline"].output_dir, bucket / "champion" / "baseline")
    (bucket / "champion" / "model").mkdir(parents=True)
    with tarfile.open(bucket / "champion" / "model" / "model.tar.gz", "w:gz") as archive:
        for path in Path(monitored["model"]).iterdir():
            archive.add(path, arcname=path.name)
    result = CliRunner().invoke(app, [
        "--set", "monitoring.window_hours=0", "monitor", "pipeline", "run", "--local", "--workspace", str(workspace),
        "--param", "BaselineUri=s3://feedback-brain-artifacts/champion/baseline/",
        "--param", "ModelDataUri=s3://feedback-brain-artifacts/champion/model/model.tar.gz",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = (workspace / "monitoring" / "runs").iterdir()
    statistics = json.loads((run_dir / "statistics.json").read_text())
    assert statistics["window"]["captured_texts"] == WINDOW_TEXTS  # CaptureUri's default: the endpoint's capture
    assert not any("embedding drift" in s for s in statistics["skipped_checks"])  # the model came through ModelDataUri
    violations = json.loads((run_dir / "constraint_violations.json").read_text())["violations"]
    assert ("text_language", "categorical_values_check") in {(v["feature_name"], v["constraint_check_type"])
                                                               for v in violations}
    triggered = CliRunner().invoke(app, ["monitor", "triggers", "check", "--workspace", str(workspace)])
    decision = json.loads(triggered.output)
    assert decision["fire"] is True and decision["violations_run"] == str(run_dir)


def test_the_window_metrics_go_to_cloudwatch_when_put_metric_data_is_on(monitored, monkeypatch):
    """The monitoring pipeline's PublishMetrics: the job sends metrics.json's request itself (Stubber)."""
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    real_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda service, *a, **k: cloudwatch if service == "cloudwatch"
                        else real_client(service, *a, **k))
    config = MonitoringConfig(put_metric_data=True, window_max_records=40)
    inputs = MonitorInputs.from_baseline_dir(str(monitored["baseline"].output_dir), str(monitored["captures"]["held_out"]),
                                             str(monitored["root"] / "out_metrics"))
    with Stubber(cloudwatch) as stub:
        stub.add_response("put_metric_data", {}, {"Namespace": "feedback-brain/TextMonitor", "MetricData": ANY})
        result = run_monitor(inputs, config)
        stub.assert_no_pending_responses()
    names = {m["MetricName"] for m in result.metrics}
    assert {"constraint_violations_count", "monitored_texts_count"} <= names
