"""Quality metrics of a multi-task feedback model, computed with scikit-learn.

Every function takes ground truth and predicted probabilities already restricted to the rows
labeled for the task, with label order taken from the taxonomy; the caller (evaluate.py)
does the row selection and the per-source breakdown.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    fbeta_score,
    precision_recall_fscore_support,
)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins (Guo et al., 2017)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins so a confidence of exactly 1.0 lands in the last bin.
    bin_index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        in_bin = bin_index == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str], indices: list[int]) -> dict[str, Any]:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=indices, average=None, zero_division=0
    )
    return {
        labels[i]: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k, i in enumerate(indices)
    }


def single_label_report(
    y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], calibration_bins: int
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class scores, confusion matrix and ECE of one softmax task.

    `y_true` holds label indices into `labels`; `probabilities` is (rows, len(labels)).
    Macro averages run over the classes present in the truth or the predictions, so a
    class that never occurs in a small test split does not drag the mean to zero.
    """
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), len(labels)):
        raise ValueError(
            f"probabilities must have shape ({len(y_true)}, {len(labels)}), got {probabilities.shape}"
        )
    y_pred = probabilities.argmax(axis=1)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    confidence = probabilities[np.arange(len(y_pred)), y_pred] if len(y_pred) else np.zeros(0)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))) if len(y_true) else np.zeros(
        (len(labels), len(labels)), dtype=int
    )
    return {
        "rows": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "per_class": _per_class(y_true, y_pred, labels, list(range(len(labels)))),
        "confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()},
        "expected_calibration_error": expected_calibration_error(confidence, y_pred == y_true, calibration_bins),
    }


def multi_label_report(
    y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], threshold: float, calibration_bins: int
) -> dict[str, Any]:
    """Micro/macro F1, per-label scores and ECE of a multi-label (sigmoid) task.

    `y_true` is a 0/1 matrix (rows, len(labels)). Macro-F1 averages over labels with at
    least one positive in the truth (labels a data set never covers are reported per label
    but left out of the mean). ECE treats every (row, label) decision as a binary prediction.
    """
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if y_true.shape != probabilities.shape or y_true.ndim != 2 or y_true.shape[1] != len(labels):
        raise ValueError(f"truth {y_true.shape} and probabilities {probabilities.shape} must be (rows, {len(labels)})")
    y_pred = (probabilities >= threshold).astype(int)
    covered = [i for i in range(len(labels)) if y_true[:, i].any()]
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    binary_confidence = np.where(y_pred == 1, probabilities, 1.0 - probabilities).ravel()
    return {
        "rows": int(len(y_true)),
        "threshold": float(threshold),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean([f1[i] for i in covered])) if covered else 0.0,
        "covered_labels": [labels[i] for i in covered],
        "per_label": {
            labels[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(len(labels))
        },
        "expected_calibration_error": expected_calibration_error(
            binary_confidence, (y_pred == y_true).ravel(), calibration_bins
        ),
    }


def _metric_with_deviation(metric, y_true: np.ndarray, y_pred: np.ndarray, rounds: int, seed: int) -> dict[str, float]:
    value = float(metric(y_true, y_pred))
    if rounds <= 0 or len(y_true) < 2:
        return {"value": value, "standard_deviation": 0.0}
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds):
        pick = rng.integers(0, len(y_true), size=len(y_true))
        samples.append(metric(y_true[pick], y_pred[pick]))
    return {"value": value, "standard_deviation": float(np.std(samples))}


def sagemaker_multiclass_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], bootstrap_rounds: int, seed: int
) -> dict[str, Any]:
    """`multiclass_classification_metrics` in SageMaker Model Monitor's model-quality layout.

    Each metric is `{"value", "standard_deviation"}` (deviation from a bootstrap over test
    rows, as Model Monitor reports it); `confusion_matrix` is `{actual: {predicted: count}}`.
    The `*_best_constant_classifier` entries score always predicting the majority class.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(probabilities).argmax(axis=1)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))

    def averaged(score, average: str, **kwargs):
        return lambda t, p: score(t, p, labels=present, average=average, zero_division=0, **kwargs)

    def precision(average):
        return lambda t, p: precision_recall_fscore_support(t, p, labels=present, average=average, zero_division=0)[0]

    def recall(average):
        return lambda t, p: precision_recall_fscore_support(t, p, labels=present, average=average, zero_division=0)[1]

    metric_functions = {
        "accuracy": accuracy_score,
        "weighted_recall": recall("weighted"),
        "weighted_precision": precision("weighted"),
        "weighted_f0_5": averaged(fbeta_score, "weighted", beta=0.5),
        "weighted_f1": averaged(f1_score, "weighted"),
        "weighted_f2": averaged(fbeta_score, "weighted", beta=2.0),
        "macro_recall": recall("macro"),
        "macro_precision": precision("macro"),
        "macro_f1": averaged(f1_score, "macro"),
    }
    result: dict[str, Any] = {
        "confusion_matrix": {
            labels[a]: {labels[p]: int(count) for p, count in enumerate(row)}
            for a, row in enumerate(confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))))
        }
    }
    for offset, (name, function) in enumerate(metric_functions.items()):
        result[name] = _metric_with_deviation(function, y_true, y_pred, bootstrap_rounds, seed + offset)
    majority = np.full_like(y_true, np.bincount(y_true).argmax()) if len(y_true) else y_true
    for name in ("accuracy", "weighted_recall", "weighted_precision", "weighted_f1"):
        result[f"{name}_best_constant_classifier"] = _metric_with_deviation(
            metric_functions[name], y_true, majority, bootstrap_rounds, seed
        )
    return {"multiclass_classification_metrics": result}
