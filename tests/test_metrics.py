"""Metric arithmetic: hand-checked values, SageMaker's layout and orientation, edge cases; and
the promise of the one scoring module: epoch selection, evaluation and its gate, export parity,
the endpoint, the monitor and the benchmarks score with the same definitions and threshold."""
import json
import shutil

import numpy as np
import pytest

from training.metrics import (
    DEFAULT_ASPECT_THRESHOLD,
    SCORED_TASKS,
    aspect_decisions,
    expected_calibration_error,
    headline_score,
    macro_f1,
    model_aspect_thresholds,
    model_score,
    multi_label_f1,
    multi_label_report,
    predicted_labels,
    sagemaker_multiclass_metrics,
    single_label_report,
)

LABELS = ["negative", "neutral", "positive"]


def one_hot(indices, width=3, confidence=1.0):
    rest = (1.0 - confidence) / (width - 1)
    out = np.full((len(indices), width), rest)
    out[np.arange(len(indices)), indices] = confidence
    return out


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    # 10 predictions at confidence 0.8, 8 correct: perfectly calibrated.
    assert expected_calibration_error(np.full(10, 0.8), np.array([1] * 8 + [0] * 2), 10) == pytest.approx(0.0)
    # Confidence 1.0 but half wrong: ECE 0.5 (confidence 1.0 must land in the last bin).
    assert expected_calibration_error(np.ones(4), np.array([1, 0, 1, 0]), 10) == pytest.approx(0.5)
    # Two bins with different gaps, weighted by their share of rows.
    confidence = np.array([0.15, 0.15, 0.95, 0.95])
    correct = np.array([0, 0, 1, 1])
    assert expected_calibration_error(confidence, correct, 10) == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)
    assert expected_calibration_error(np.zeros(0), np.zeros(0), 10) == 0.0


def test_single_label_report_matches_hand_computed_scores():
    truth = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 2, 0])
    report = single_label_report(truth, one_hot(predicted, confidence=0.9), LABELS, calibration_bins=10)
    assert report["rows"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    # per class: negative P=1/2 R=1/2; neutral P=1/2 R=1; positive P=1 R=2/3
    f1 = {"negative": 0.5, "neutral": 2 / 3, "positive": 0.8}
    for label, value in f1.items():
        assert report["per_class"][label]["f1"] == pytest.approx(value)
    assert report["macro_f1"] == pytest.approx(np.mean(list(f1.values())))
    assert report["per_class"]["positive"]["support"] == 3
    # rows = actual, columns = predicted
    assert report["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report["expected_calibration_error"] == pytest.approx(0.9 - 4 / 6)


def test_macro_f1_ignores_classes_absent_from_truth_and_predictions():
    truth = np.array([0, 0, 2, 2])
    report = single_label_report(truth, one_hot(truth), LABELS, calibration_bins=10)
    assert report["macro_f1"] == pytest.approx(1.0)
    assert report["per_class"]["neutral"]["support"] == 0


def test_single_label_report_rejects_misaligned_probabilities():
    with pytest.raises(ValueError, match="shape"):
        single_label_report(np.array([0, 1]), np.ones((3, 3)) / 3, LABELS, calibration_bins=10)


def test_multi_label_report_micro_macro_and_uncovered_labels():
    aspects = ["quality", "shipping", "price"]
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    probabilities = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1], [0.2, 0.7, 0.6], [0.1, 0.1, 0.1]])
    report = multi_label_report(truth, probabilities, aspects, thresholds=0.5, calibration_bins=10)
    # predictions: [1,0,0] [1,0,0] [0,1,1] [0,0,0]: TP=3 FP=1 FN=1
    assert report["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert report["per_label"]["quality"]["f1"] == pytest.approx(1.0)
    assert report["per_label"]["shipping"]["f1"] == pytest.approx(2 / 3)
    # price never occurs in the truth: reported, left out of the macro mean
    assert report["covered_labels"] == ["quality", "shipping"]
    assert report["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert 0.0 <= report["expected_calibration_error"] <= 1.0


def test_sagemaker_layout_orientation_and_best_constant_classifier():
    truth = np.array([0, 0, 0, 1, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 0])
    metrics = sagemaker_multiclass_metrics(truth, one_hot(predicted), LABELS, bootstrap_rounds=20, seed=1)
    body = metrics["multiclass_classification_metrics"]
    # {actual: {predicted: count}}
    assert body["confusion_matrix"]["negative"] == {"negative": 2, "neutral": 1, "positive": 0}
    assert body["confusion_matrix"]["positive"]["negative"] == 1
    for name in ("accuracy", "weighted_recall", "weighted_precision", "weighted_f0_5", "weighted_f1",
                 "weighted_f2", "macro_recall", "macro_precision", "macro_f1", "accuracy_best_constant_classifier"):
        assert set(body[name]) == {"value", "standard_deviation"}, name
        assert 0.0 <= body[name]["value"] <= 1.0
    assert body["accuracy"]["value"] == pytest.approx(4 / 6)
    assert body["accuracy"]["standard_deviation"] > 0.0
    assert body["accuracy_best_constant_classifier"]["value"] == pytest.approx(3 / 6)
    repeat = sagemaker_multiclass_metrics(truth, one_hot(predicted), LABELS, bootstrap_rounds=20, seed=1)
    assert repeat == metrics  # seeded bootstrap: reruns report the same deviations
    no_bootstrap = sagemaker_multiclass_metrics(truth, one_hot(predicted), LABELS, bootstrap_rounds=0, seed=1)
    assert no_bootstrap["multiclass_classification_metrics"]["macro_f1"]["standard_deviation"] == 0.0


# ----------------------------------------------------------------------------- the definitions
def test_macro_f1_counts_a_wrongly_predicted_class_even_when_the_truth_lacks_it():
    # Training's validation once averaged over the truth's classes only (0.8 here); the gate counts
    # "neutral", which only the predictions contain, with F1 0.
    truth, predicted = ["negative", "negative", "positive", "positive"], ["negative", "neutral", "positive", "positive"]
    assert macro_f1(truth, predicted) == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    # ...and a class in neither is left out: it neither scores 0 nor counts.
    assert macro_f1([0, 0, 2], [0, 0, 2]) == 1.0
    assert macro_f1([], []) == 0.0


def test_every_single_label_macro_f1_is_the_same_number():
    truth = np.array([0, 0, 0, 1, 2, 2, 1])
    predicted = np.array([0, 1, 1, 1, 2, 0, 1])
    probabilities = one_hot(predicted, confidence=0.8)
    expected = macro_f1(truth, predicted)
    assert single_label_report(truth, probabilities, LABELS, 10)["macro_f1"] == pytest.approx(expected)
    assert headline_score("sentiment", truth, probabilities) == pytest.approx(expected)
    layout = sagemaker_multiclass_metrics(truth, probabilities, LABELS, bootstrap_rounds=0, seed=1)
    assert layout["multiclass_classification_metrics"]["macro_f1"]["value"] == pytest.approx(expected)
    named = macro_f1([LABELS[i] for i in truth], [LABELS[i] for i in predicted])
    assert named == pytest.approx(expected)  # the serving benchmark scores label names


def test_aspect_thresholds_come_from_the_model_card_with_one_default():
    aspects = ["quality", "shipping", "price"]
    assert model_aspect_thresholds({}, aspects).tolist() == [DEFAULT_ASPECT_THRESHOLD] * 3
    assert model_aspect_thresholds({"aspect_threshold": 0.3}, aspects).tolist() == [0.3] * 3
    stored = {"aspect_threshold": 0.3, "aspect_thresholds": {"price": 0.7}}
    assert model_aspect_thresholds(stored, aspects).tolist() == [0.3, 0.3, 0.7]
    with pytest.raises(ValueError, match="does not have: \\['colour'\\]"):
        model_aspect_thresholds({"aspect_thresholds": {"colour": 0.4}}, aspects)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        model_aspect_thresholds({"aspect_threshold": 1.5}, aspects)
    with pytest.raises(ValueError, match="must be numbers"):
        model_aspect_thresholds({"aspect_threshold": None}, aspects)


def test_per_aspect_thresholds_decide_each_column():
    probabilities = np.array([[0.6, 0.6], [0.4, 0.8]])
    decided = aspect_decisions(probabilities, np.array([0.5, 0.7]))
    assert decided.tolist() == [[1, 0], [0, 1]]
    assert predicted_labels("aspects", probabilities, np.array([0.5, 0.7])).tolist() == decided.tolist()
    with pytest.raises(ValueError, match="aspect thresholds"):
        predicted_labels("aspects", probabilities)
    report = multi_label_report(np.array([[1, 0], [0, 1]]), probabilities, ["a", "b"], np.array([0.5, 0.7]), 10)
    assert report["micro_f1"] == 1.0 and report["thresholds"] == {"a": 0.5, "b": 0.7}
    assert multi_label_f1(np.array([[1, 0], [0, 1]]), decided)["macro_f1"] == 1.0


def test_model_score_averages_the_headlines_of_every_measured_task():
    assert SCORED_TASKS == ("sentiment", "intent", "aspects")
    assert model_score({"sentiment": 0.9, "intent": 0.6, "aspects": 0.3}) == (pytest.approx(0.6), list(SCORED_TASKS))
    assert model_score({"sentiment": 0.9, "intent": None, "aspects": 0.5}) == (pytest.approx(0.7), ["sentiment", "aspects"])
    assert model_score({"sentiment": None}) == (None, [])


# ----------------------------------------------------------------------------- every consumer
def _validation_set(model, examples_dir):
    from training.data import read_examples, tokenize_examples

    examples = read_examples(examples_dir / "test", model.label_maps).examples
    tokenize_examples(examples, model.tokenizer, model.max_seq_length)
    return examples


def _training_validation(model, examples):
    import torch

    from training.config import TrainingConfig
    from training.train import Runtime, evaluate as validate

    config = TrainingConfig(eval_batch_size=4, max_seq_length=model.max_seq_length)
    return validate(model, examples, config, Runtime(torch.device("cpu")))


def _evaluation_report(model, examples_dir, **thresholds):
    import torch

    from processing.schema import example_model_input
    from training.config import EvaluationConfig
    from training.evaluate import build_report
    from training.example_rows import read_example_records

    rows, _ = read_example_records(examples_dir / "test", model.label_maps)
    logits = model.predict_logits([example_model_input(r) for r in rows], batch_size=4)
    probabilities = {
        "sentiment": torch.softmax(logits["sentiment_logits"], -1).numpy(),
        "intent": torch.softmax(logits["intent_logits"], -1).numpy(),
        "aspects": torch.sigmoid(logits["aspect_logits"]).numpy(),
    }
    return build_report(rows, probabilities, model.label_maps, EvaluationConfig(bootstrap_rounds=0), **thresholds)


def test_epoch_selection_scores_validation_exactly_as_the_gate_scores_the_test_split(tiny_examples_dir):
    """The same model on the same rows: training's `val_macro_f1` (what picks the saved epoch) is the
    gate's `gate.macro_f1`, task by task, with the model's own aspect threshold."""
    from conftest import build_tiny_model

    model = build_tiny_model(seed=3)
    examples = _validation_set(model, tiny_examples_dir)
    aspect_probabilities = model.predict_logits([e.text for e in examples])["aspect_logits"].sigmoid().numpy()
    for threshold in (float(np.quantile(aspect_probabilities, 0.3)), float(np.quantile(aspect_probabilities, 0.8))):
        model.aspect_threshold = threshold
        validation = _training_validation(model, examples)
        report = _evaluation_report(model, tiny_examples_dir, aspect_thresholds=model.aspect_thresholds())
        tasks = report["tasks"]
        assert validation["val_sentiment_macro_f1"] == pytest.approx(tasks["sentiment"]["overall"]["macro_f1"])
        assert validation["val_intent_macro_f1"] == pytest.approx(tasks["intent"]["overall"]["macro_f1"])
        assert validation["val_aspect_micro_f1"] == pytest.approx(tasks["aspects"]["overall"]["micro_f1"])
        assert validation["val_aspect_macro_f1"] == pytest.approx(tasks["aspects"]["overall"]["macro_f1"])
        assert report["gate"]["tasks"] == list(SCORED_TASKS)
        assert validation["val_macro_f1"] == pytest.approx(report["gate"]["macro_f1"])
        assert tasks["aspects"]["overall"]["thresholds"] == dict.fromkeys(model.label_maps["aspects"], threshold)


def test_the_stored_threshold_moves_validation_evaluation_export_parity_serving_and_monitoring(
    tiny_model_dir, tiny_examples_dir, tmp_path
):
    """One setting (TrainingConfig.aspect_threshold -> fbrain_model.json): every consumer follows it."""
    from inference.config import ServingConfig
    from inference.predictor import load_predictor
    from monitoring.monitor import served_aspect_thresholds
    from training.evaluate import loaded_aspect_thresholds
    from training.export import compare
    from training.model import MultiTaskClassifier
    from training.predict import load_model

    model = MultiTaskClassifier.from_pretrained(tiny_model_dir)
    examples = _validation_set(model, tiny_examples_dir)
    aspects = model.label_maps["aspects"]
    labeled = [e for e in examples if e.task_mask[2]]
    labels = {"aspects": [e.aspects if e.task_mask[2] else None for e in examples]}
    texts = [e.text for e in examples]
    seen = {}
    for threshold in (0.01, 0.99):  # every aspect predicted / none predicted
        model.aspect_threshold = threshold
        model_dir = tmp_path / f"model-{threshold}"
        shutil.copytree(tiny_model_dir, model_dir)
        model.save_pretrained(model_dir)
        assert json.loads((model_dir / "fbrain_model.json").read_text())["aspect_threshold"] == threshold

        validation = _training_validation(model, examples)
        evaluation = loaded_aspect_thresholds(load_model(model_dir))
        parity = compare(model, model_dir / "onnx" / "model.onnx", texts, labels)
        served = load_predictor(model_dir, ServingConfig(runtime="onnx")).predict(texts)
        monitored = served_aspect_thresholds({}, model_dir, aspects)

        assert evaluation.tolist() == [threshold] * len(aspects)
        assert monitored == dict.fromkeys(aspects, threshold)
        seen[threshold] = (validation["val_aspect_micro_f1"], parity.tasks["aspects"].macro_f1_torch,
                           {len(p["aspects"]["labels"]) for p in served})
    every = multi_label_f1(np.array([e.aspects for e in labeled]), np.ones((len(labeled), len(aspects)), dtype=int))
    assert seen[0.01] == (pytest.approx(every["micro_f1"]), pytest.approx(every["macro_f1"]), {len(aspects)})
    assert seen[0.99] == (0.0, 0.0, {0})


def test_benchmarks_score_with_the_same_functions():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import serving_latency
    from benchmarks import model_quality
    from training import evaluate, metrics

    assert serving_latency.macro_f1 is metrics.macro_f1
    assert model_quality.HEADLINE_METRIC is metrics.HEADLINE_METRIC is evaluate.HEADLINE_METRIC
    assert model_quality.score_tasks is evaluate.score_tasks


def test_the_endpoint_refuses_a_model_card_with_an_unusable_threshold(tiny_model_dir, tmp_path):
    from inference.predictor import ModelCard, ModelLoadError

    card = json.loads((tiny_model_dir / "fbrain_model.json").read_text())
    assert card["aspect_threshold"] == DEFAULT_ASPECT_THRESHOLD  # saved with every model
    (tmp_path / "fbrain_model.json").write_text(json.dumps({**card, "aspect_threshold": 0.0}))
    with pytest.raises(ModelLoadError, match="aspect thresholds must lie strictly between 0 and 1"):
        ModelCard.from_model_dir(tmp_path)
