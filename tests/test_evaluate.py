"""The EvaluateModel step end to end on a tiny model: report layout, per-source detail,
baseline, quarantine, archives, and champion lookup (local directory, and the registry's recorded metrics with moto)."""
import json
import tarfile
from pathlib import Path

import boto3
import numpy as np
import pytest

from processing.schema import example_model_input
from processing.taxonomy import load_taxonomy
from training import evaluate as evaluate_module
from training.config import EvaluationConfig
from training.data import read_examples as read_training_examples
from training.evaluate import build_report, evaluate, main
from training.example_rows import read_example_records as read_examples
from training.predict import ModelDirError, resolve_model_dir

LABEL_MAPS = load_taxonomy().label_maps()
FAST = EvaluationConfig(bootstrap_rounds=5, prediction_batch_size=16)

SENTIMENT_TEXTS = {
    "positive": "I love this {p}, it works great",
    "negative": "This {p} is terrible and broke after a day",
    "neutral": "The {p} is okay, nothing special",
}
INTENT_TEXTS = {
    "refund_request": "I want my money back for the {p}",
    "delivery_status": "Where is my {p}, when will it arrive",
    "cancellation": "Please cancel my order for the {p}",
}
ASPECT_TEXTS = {
    "shipping_delivery": "The {p} arrived two weeks late",
    "sizing_fit": "The {p} runs small, order a size up",
    "pricing_value": "The {p} is far too expensive",
}
PRODUCTS = ["dress", "laptop", "shoe", "jacket", "kettle", "phone"]


def make_examples(n_per_label: int, offset: int = 0) -> list[dict]:
    rows = []
    for k in range(n_per_label):
        product = PRODUCTS[(k + offset) % len(PRODUCTS)]
        for label, template in SENTIMENT_TEXTS.items():
            source = "reviews" if k % 2 else "app_store"
            rows.append({"feedback_id": f"s-{label}-{k}-{offset}", "text": template.format(p=product),
                         "source": source, "sentiment": label, "intent": None, "aspects": None,
                         "labeled_tasks": ["sentiment"]})
        for label, template in INTENT_TEXTS.items():
            rows.append({"feedback_id": f"i-{label}-{k}-{offset}", "text": template.format(p=product),
                         "source": "support", "sentiment": None, "intent": label, "aspects": None,
                         "labeled_tasks": ["intent"]})
        for label, template in ASPECT_TEXTS.items():
            rows.append({"feedback_id": f"a-{label}-{k}-{offset}", "text": template.format(p=product),
                         "source": "absa", "sentiment": "negative", "intent": None, "aspects": [label],
                         "labeled_tasks": ["sentiment", "aspects"]})
    return rows


def write_jsonl(path: Path, rows, extra_lines=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def weakened_copy(model_dir: Path, destination: Path) -> Path:
    """The model at model_dir with all three heads zeroed: uniform outputs, one class for every text."""
    import torch

    from training.model import MultiTaskClassifier

    model = MultiTaskClassifier.from_pretrained(model_dir)
    with torch.no_grad():
        for parameter in model.head_parameters():
            parameter.zero_()
    return model.save_pretrained(destination)


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir) -> Path:
    return Path(tiny_model_dir)


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("splits")
    bad_lines = ['{"text": "", "labeled_tasks": []}', "this is not json",
                 json.dumps({"text": "fine text", "labeled_tasks": ["sentiment"], "sentiment": "ecstatic"})]
    return {
        "train": write_jsonl(root / "train" / "examples.jsonl", make_examples(8)).parent,
        "test": write_jsonl(root / "test" / "examples.jsonl", make_examples(4, offset=3), bad_lines).parent,
    }


def test_read_examples_quarantines_bad_rows_with_reasons(splits):
    examples, quarantined = read_examples(splits["test"], LABEL_MAPS)
    assert len(examples) == len(make_examples(4))
    assert [row["reason"] for row in quarantined] == ["text_empty", "invalid_json", "unknown_label"]
    assert all(row["line"] > len(examples) and row["raw"] for row in quarantined)


def test_read_examples_refuses_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.jsonl"):
        read_examples(tmp_path, LABEL_MAPS)


def test_evaluation_and_training_quarantine_the_same_rows_for_the_same_reasons(tmp_path):
    good = {**make_examples(1)[-1], "title": "Late again", "channel": "review", "star_rating": 2}
    malformed = {
        b"{not json": "invalid_json",
        b'{"text": "caf\xe9", "labeled_tasks": []}': "invalid_utf8",
        b'["a", "list"]': "wrong_type",
        json.dumps({**good, "text": None}).encode(): "missing_field",
        json.dumps({**good, "text": 7}).encode(): "wrong_type",
        json.dumps({**good, "text": "   "}).encode(): "text_empty",
        json.dumps({**good, "title": 5}).encode(): "wrong_type",
        json.dumps({**good, "labeled_tasks": "sentiment"}).encode(): "wrong_type",
        json.dumps({**good, "labeled_tasks": ["sentiment", "mood"]}).encode(): "unknown_label",
        json.dumps({**good, "sentiment": None}).encode(): "missing_field",
        json.dumps({**good, "sentiment": "ecstatic"}).encode(): "unknown_label",
        json.dumps({**good, "aspects": "shipping_delivery"}).encode(): "wrong_type",
        json.dumps({**good, "aspects": ["teleportation"]}).encode(): "unknown_label",
    }
    unlabeled = {**good, "feedback_id": "no-task", "labeled_tasks": [], "sentiment": None, "aspects": None}
    lines = [json.dumps(good).encode(), *malformed, b"", json.dumps(unlabeled).encode(), json.dumps(good).encode()]
    (tmp_path / "examples.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    training = read_training_examples(tmp_path, LABEL_MAPS)
    rows, quarantined = read_examples(tmp_path, LABEL_MAPS)

    evaluation_view = [(q["line"], q["reason"], q["message"]) for q in quarantined]
    assert [reason for _, reason, _ in evaluation_view] == list(malformed.values())
    # Training quarantines the same rows with the same reasons and messages, plus the repeated feedback_id;
    # evaluation keeps that row and the row labeled for no task (predicted, not scored).
    duplicate_line = len(lines)
    assert [(q.line, q.reason, q.message) for q in training.quarantined] == evaluation_view + [
        (duplicate_line, "duplicate_id", f"feedback_id {good['feedback_id']} seen before")]
    assert len(training.examples) == 1 and training.unlabeled == 1
    # The baseline is fitted on the training split read the way training read it: the same rows.
    baseline_rows, baseline_quarantined = read_examples(tmp_path, LABEL_MAPS, as_training_reads=True)
    assert [row["feedback_id"] for row in baseline_rows] == [e.feedback_id for e in training.examples]
    assert [(q["line"], q["reason"]) for q in baseline_quarantined] == [(q.line, q.reason) for q in training.quarantined]
    assert [row["feedback_id"] for row in rows] == [good["feedback_id"], "no-task", good["feedback_id"]]
    # Both read the title in front of the text; evaluation keeps every column of the row.
    assert training.examples[0].text == example_model_input(rows[0]) == f"Late again. {good['text']}"
    assert rows[0]["star_rating"] == 2 and rows[0]["channel"] == "review" and rows[0]["title"] == "Late again"
    assert {q["file"] for q in quarantined} == {str(tmp_path / "examples.jsonl")}
    assert all(q["raw"] for q in quarantined)


def test_evaluation_report_layout_per_source_baseline_and_quarantine(tiny_dir, splits, tmp_path, monkeypatch):
    monkeypatch.delenv(evaluate_module.CHAMPION_DIR_ENV, raising=False)
    report = evaluate(tiny_dir, splits["test"], tmp_path / "out", splits["train"], config=FAST)
    on_disk = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert on_disk["gate"] == report["gate"]

    quality = on_disk["multiclass_classification_metrics"]
    assert set(quality["confusion_matrix"]) == set(LABEL_MAPS["sentiment"])
    n_sentiment_rows = sum(sum(row.values()) for row in quality["confusion_matrix"].values())
    assert n_sentiment_rows == 4 * 3 + 4 * 3  # sentiment rows + aspect rows that also carry sentiment
    assert {"value", "standard_deviation"} <= set(quality["macro_f1"])

    tasks = on_disk["tasks"]
    assert set(tasks["sentiment"]["by_source"]) == {"app_store", "reviews", "absa"}
    assert set(tasks["intent"]["by_source"]) == {"support"}
    assert tasks["intent"]["rows"] == 12 and tasks["aspects"]["rows"] == 12
    assert set(tasks["aspects"]["overall"]["covered_labels"]) == set(ASPECT_TEXTS)
    for task in ("sentiment", "intent"):
        overall = tasks[task]["overall"]
        assert {"macro_f1", "per_class", "confusion_matrix", "expected_calibration_error"} <= set(overall)

    # The baseline learns these templates perfectly; the untrained tiny model cannot.
    baseline = on_disk["baseline"]
    assert baseline["tasks"]["intent"]["overall"]["macro_f1"] == pytest.approx(1.0)
    assert baseline["delta"]["intent"]["delta"] == pytest.approx(
        tasks["intent"]["overall"]["macro_f1"] - 1.0)
    assert on_disk["champion"] is None
    gate = on_disk["gate"]
    # The gate metric is the model score (training.metrics): every task's headline, aspects included.
    assert gate["tasks"] == ["sentiment", "intent", "aspects"]
    assert gate["macro_f1"] == pytest.approx((tasks["sentiment"]["overall"]["macro_f1"]
                                              + tasks["intent"]["overall"]["macro_f1"]
                                              + tasks["aspects"]["overall"]["micro_f1"]) / 3)

    quarantine = [json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 3 and on_disk["evaluation"]["quarantined_rows"] == 3


def test_model_archive_is_extracted_and_bad_dirs_are_explained(tiny_dir, tmp_path):
    holder = tmp_path / "model"
    holder.mkdir()
    with tarfile.open(holder / "model.tar.gz", "w:gz") as tar:
        for path in tiny_dir.iterdir():
            tar.add(path, arcname=path.name)
    extracted = resolve_model_dir(holder, tmp_path / "scratch")
    assert (extracted / "fbrain_model.json").is_file() and extracted != holder
    with pytest.raises(ModelDirError, match="neither"):
        resolve_model_dir(tmp_path / "scratch" / "nothing-here", tmp_path / "scratch2")


def test_local_champion_is_scored_on_the_same_rows(tiny_dir, splits, tmp_path, monkeypatch):
    weak = weakened_copy(tiny_dir, tmp_path / "weak")
    monkeypatch.setenv(evaluate_module.CHAMPION_DIR_ENV, str(weak))
    exit_code = main(["--model-dir", str(tiny_dir), "--test-dir", str(splits["test"]),
                      "--output-dir", str(tmp_path / "out"), "--set", "evaluation.bootstrap_rounds=0",
                      "--set", "evaluation.macro_f1_threshold=0.0"])
    assert exit_code == 0
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    champion = report["champion"]
    assert champion["name"] == "weak"
    assert champion["tasks"]["intent"]["rows"] == report["tasks"]["intent"]["rows"]
    expected = (champion["tasks"]["sentiment"]["overall"]["macro_f1"]
                + champion["tasks"]["intent"]["overall"]["macro_f1"]
                + champion["tasks"]["aspects"]["overall"]["micro_f1"]) / 3
    assert report["gate"]["champion_macro_f1"] == pytest.approx(expected)
    assert report["baseline"] is None  # no --train-dir


GROUP = "feedback-brain-models"
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-inference:abc"


def _register(sagemaker, status: str, statistics_uri: str | None) -> str:
    request = {"ModelPackageGroupName": GROUP, "ModelApprovalStatus": status, "InferenceSpecification": {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://artifacts/models/model.tar.gz"}],
        "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]}}
    if statistics_uri:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": statistics_uri}}}
    return sagemaker.create_model_package(**request)["ModelPackageArn"]


@pytest.fixture
def moto_registry(monkeypatch):
    from moto import mock_aws

    monkeypatch.delenv(evaluate_module.CHAMPION_DIR_ENV, raising=False)
    monkeypatch.setattr(evaluate_module, "in_sagemaker_job", lambda: True)  # as if in a SageMaker processing job
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        s3.create_bucket(Bucket="artifacts")
        yield sagemaker, s3


def _evaluate_cli(tiny_dir, splits, out: Path, *extra: str) -> dict:
    assert main(["--model-dir", str(tiny_dir), "--test-dir", str(splits["test"]), "--output-dir", str(out),
                 "--set", "evaluation.bootstrap_rounds=0", "--set", "evaluation.macro_f1_threshold=0.0", *extra]) == 0
    return json.loads((out / "evaluation.json").read_text())


def test_on_sagemaker_the_gate_compares_with_the_newest_approved_packages_recorded_metrics(
        tiny_dir, splits, tmp_path, moto_registry):
    sagemaker, s3 = moto_registry
    own = _evaluate_cli(tiny_dir, splits, tmp_path / "first")
    assert own["champion"] is None  # no --model-package-group: no registry lookup
    # The champion's recorded evaluation: the same report with a perfect headline metric on every task.
    recorded = json.loads(json.dumps(own))
    for task, metric in evaluate_module.HEADLINE_METRIC.items():
        recorded["tasks"][task]["overall"][metric] = 1.0
    s3.put_object(Bucket="artifacts", Key="runs/2/evaluation.json", Body=json.dumps(recorded).encode())
    s3.put_object(Bucket="artifacts", Key="runs/1/evaluation.json", Body=json.dumps(own).encode())
    _register(sagemaker, "Approved", "s3://artifacts/runs/1/evaluation.json")
    arn = _register(sagemaker, "Approved", "s3://artifacts/runs/2/evaluation.json")
    _register(sagemaker, "PendingManualApproval", "s3://artifacts/runs/1/evaluation.json")  # newest, not approved

    report = _evaluate_cli(tiny_dir, splits, tmp_path / "second", "--model-package-group", GROUP)
    champion, gate = report["champion"], report["gate"]
    assert champion["name"] == "v2" and champion["model_package_arn"] == arn
    assert champion["statistics_uri"] == "s3://artifacts/runs/2/evaluation.json"
    assert gate["champion_macro_f1"] == pytest.approx(1.0)
    assert gate["no_regression"] is False and "against champion v2 1.000" in gate["message"]
    assert champion["delta"]["intent"]["delta"] == pytest.approx(report["tasks"]["intent"]["overall"]["macro_f1"] - 1.0)


def test_no_approved_package_means_no_champion_and_local_runs_never_ask_aws(
        tiny_dir, splits, tmp_path, moto_registry, monkeypatch):
    sagemaker, _ = moto_registry
    _register(sagemaker, "PendingManualApproval", None)
    assert _evaluate_cli(tiny_dir, splits, tmp_path / "a", "--model-package-group", GROUP)["champion"] is None
    monkeypatch.setattr(evaluate_module, "in_sagemaker_job", lambda: False)  # the local runner, or by hand
    monkeypatch.setattr(evaluate_module, "registered_champion", lambda *a, **k: pytest.fail("registry asked locally"))
    assert _evaluate_cli(tiny_dir, splits, tmp_path / "b", "--model-package-group", GROUP)["champion"] is None


def test_an_approved_package_without_recorded_metrics_fails_the_step_clearly(
        tiny_dir, splits, tmp_path, moto_registry, caplog):
    sagemaker, _ = moto_registry
    argv = ["--model-dir", str(tiny_dir), "--test-dir", str(splits["test"]), "--output-dir", str(tmp_path / "out"),
            "--set", "evaluation.bootstrap_rounds=0", "--model-package-group", GROUP]
    _register(sagemaker, "Approved", None)
    with caplog.at_level("ERROR"):
        assert main(argv) == 1
    assert "no ModelMetrics.ModelQuality.Statistics" in caplog.text
    _register(sagemaker, "Approved", "s3://artifacts/missing/evaluation.json")
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert main(argv) == 1
    assert "cannot read s3://artifacts/missing/evaluation.json" in caplog.text
    assert not (tmp_path / "out" / "evaluation.json").exists()  # no verdict without the champion


def test_build_report_leaves_out_tasks_without_test_rows():
    rows = [r for r in make_examples(2) if r["labeled_tasks"] == ["sentiment"]]
    truth = np.array([LABEL_MAPS["sentiment"].index(r["sentiment"]) for r in rows])
    probabilities = {"sentiment": np.eye(3)[truth],
                     "intent": np.full((len(rows), len(LABEL_MAPS["intent"])), 1 / len(LABEL_MAPS["intent"])),
                     "aspects": np.zeros((len(rows), len(LABEL_MAPS["aspects"])))}
    report = build_report(rows, probabilities, LABEL_MAPS, FAST)
    assert report["tasks"]["intent"] == {"rows": 0, "overall": None, "by_source": {}}
    assert report["gate"]["tasks"] == ["sentiment"]
    assert report["gate"]["macro_f1"] == pytest.approx(1.0) and report["gate"]["passed"]
