"""Metric arithmetic: hand-checked values, SageMaker's layout and orientation, edge cases."""
import numpy as np
import pytest

from training.metrics import (
    expected_calibration_error,
    multi_label_report,
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
    report = multi_label_report(truth, probabilities, aspects, threshold=0.5, calibration_bins=10)
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
