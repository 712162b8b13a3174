"""The one scoring module: every quality number of a feedback-brain model is defined here.

Training's epoch selection (training.train), evaluation and its gate (training.evaluate,
training.gate), ONNX export parity (training.export), serving's aspect decisions
(inference.predictor), the monitor's aspect rates and the benchmarks all call these
functions, so a model is selected, gated, exported and served on one definition:

- macro-F1 of a single-label task (`macro_f1`): the unweighted mean of per-class F1 over the
  classes present in the truth or the predictions (sklearn's own choice of labels), so a
  class absent from a small split neither scores 0 nor hides a wrongly predicted class;
- aspects (`multi_label_f1`): micro-F1 over every (row, aspect) decision, macro-F1 over the
  aspects with at least one positive in the truth;
- an aspect is predicted when its sigmoid probability reaches the model's aspect threshold
  (`aspect_decisions`). The threshold is the training setting `TrainingConfig.aspect_threshold`,
  stored with the model in fbrain_model.json and read back by `model_aspect_thresholds`;
- each task's headline metric (`HEADLINE_METRIC`) and the model score (`model_score`): the
  mean headline over the scored tasks that have labeled rows. The validation model score picks
  the saved epoch; the test model score is the gate metric (`gate.macro_f1` in evaluation.json);
- calibration: expected calibration error over equal-width confidence bins.

Torch-free, and scikit-learn is imported only where a metric is computed, so the server and the
monitor can import the threshold logic without paying for it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from training.config import TrainingConfig

MULTI_LABEL_TASK = "aspects"
HEADLINE_METRIC = {"sentiment": "macro_f1", "intent": "macro_f1", "aspects": "micro_f1"}
"""The one number per task that selection, the gate and the baseline/champion deltas compare."""
SCORED_TASKS = ("sentiment", "intent", "aspects")
"""Tasks whose headline metric enters the model score (epoch selection and the gate alike).
Aspects are in: the served model routes feedback by them, and selecting epochs on sentiment
and intent alone kept an epoch whose aspect head was worse (quality benchmark, 2026-11-23:
SemEval aspect micro-F1 0.64 with the larger mix)."""
DEFAULT_ASPECT_THRESHOLD: float = next(
    f.default for f in dataclasses.fields(TrainingConfig) if f.name == "aspect_threshold"
)
"""The training setting's default: used for a model saved before its threshold was stored."""
METADATA_ASPECT_THRESHOLD = "aspect_threshold"
"""fbrain_model.json key of the model's aspect threshold (written by training)."""
METADATA_ASPECT_THRESHOLDS = "aspect_thresholds"
"""Optional fbrain_model.json key: per-aspect thresholds that override the model's one."""


# ----------------------------------------------------------------------------- decisions
def model_aspect_thresholds(metadata: Mapping[str, Any], aspects: Sequence[str]) -> np.ndarray:
    """Per-aspect decision thresholds of a model, in `aspects` order, from its fbrain_model.json."""
    overrides = metadata.get(METADATA_ASPECT_THRESHOLDS) or {}
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{METADATA_ASPECT_THRESHOLDS} must map aspect names to numbers, got {overrides!r}")
    unknown = sorted(set(overrides) - set(aspects))
    if unknown:
        raise ValueError(f"{METADATA_ASPECT_THRESHOLDS} names aspects the model does not have: {unknown}")
    try:
        base = float(metadata.get(METADATA_ASPECT_THRESHOLD, DEFAULT_ASPECT_THRESHOLD))
        thresholds = np.asarray([float(overrides.get(aspect, base)) for aspect in aspects], dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"{METADATA_ASPECT_THRESHOLD} / {METADATA_ASPECT_THRESHOLDS} must be numbers, got "
            f"{metadata.get(METADATA_ASPECT_THRESHOLD)!r} / {overrides!r}"
        ) from None
    if ((thresholds <= 0.0) | (thresholds >= 1.0)).any():
        raise ValueError(f"aspect thresholds must lie strictly between 0 and 1, got {thresholds.tolist()}")
    return thresholds


def aspect_decisions(probabilities: np.ndarray, thresholds: float | np.ndarray) -> np.ndarray:
    """0/1 matrix: an aspect is predicted when its sigmoid probability reaches its threshold."""
    return (np.asarray(probabilities, dtype=float) >= np.asarray(thresholds, dtype=float)).astype(int)


def class_decisions(probabilities: np.ndarray) -> np.ndarray:
    """Class indices of a single-label (softmax) task: the most probable class."""
    return np.asarray(probabilities).argmax(axis=-1)


def predicted_labels(
    task: str, probabilities: np.ndarray, aspect_thresholds: float | np.ndarray | None = None
) -> np.ndarray:
    """`class_decisions` of a single-label task; `aspect_decisions` (thresholds required) for aspects."""
    if task == MULTI_LABEL_TASK:
        if aspect_thresholds is None:
            raise ValueError("aspect decisions need the model's aspect thresholds (model_aspect_thresholds)")
        return aspect_decisions(probabilities, aspect_thresholds)
    return class_decisions(probabilities)


# ----------------------------------------------------------------------------- F1
def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Macro-F1 over the classes present in the truth or the predictions (indices or names)."""
    from sklearn.metrics import f1_score

    y_true, y_pred = list(y_true), list(y_pred)
    if not y_true:
        return 0.0
    present = sorted(set(y_true) | set(y_pred))
    return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))


def multi_label_f1(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """`micro_f1` over every decision; `macro_f1` over the labels with a positive in the truth (`covered`)."""
    from sklearn.metrics import f1_score

    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    if y_true.size == 0:
        return {"micro_f1": 0.0, "macro_f1": 0.0, "covered": []}
    covered = [i for i in range(y_true.shape[1]) if y_true[:, i].any()]
    per_label = f1_score(y_true, y_pred, average=None, zero_division=0)
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(np.mean([per_label[i] for i in covered])) if covered else 0.0,
        "covered": covered,
    }


def task_f1(task: str, y_true: Any, y_pred: np.ndarray) -> dict[str, Any]:
    """The F1 scores of one task from decisions (`predicted_labels`): what every consumer compares."""
    if task == MULTI_LABEL_TASK:
        return multi_label_f1(y_true, y_pred)
    return {"macro_f1": macro_f1(y_true, y_pred)}


def headline_score(
    task: str, y_true: Any, probabilities: np.ndarray, aspect_thresholds: float | np.ndarray | None = None
) -> float:
    """A task's headline metric from probabilities: the number selection and the gate average."""
    return task_f1(task, y_true, predicted_labels(task, probabilities, aspect_thresholds))[HEADLINE_METRIC[task]]


def model_score(task_scores: Mapping[str, Optional[float]]) -> tuple[Optional[float], list[str]]:
    """Mean headline over the scored tasks that were measured (value not None), and which they were.

    The validation model score chooses the saved epoch; the test model score is the gate metric.
    """
    used = [task for task in SCORED_TASKS if task_scores.get(task) is not None]
    if not used:
        return None, []
    return sum(float(task_scores[task]) for task in used) / len(used), used


# ----------------------------------------------------------------------------- reports
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
    from sklearn.metrics import precision_recall_fscore_support

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
    `macro_f1` is `macro_f1` above (classes present in the truth or the predictions).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), len(labels)):
        raise ValueError(
            f"probabilities must have shape ({len(y_true)}, {len(labels)}), got {probabilities.shape}"
        )
    y_pred = class_decisions(probabilities)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    confidence = probabilities[np.arange(len(y_pred)), y_pred] if len(y_pred) else np.zeros(0)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))) if len(y_true) else np.zeros(
        (len(labels), len(labels)), dtype=int
    )
    return {
        "rows": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": macro_f1(y_true.tolist(), y_pred.tolist()),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0))
        if len(y_true) else 0.0,
        "per_class": _per_class(y_true, y_pred, labels, list(range(len(labels)))),
        "confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()},
        "expected_calibration_error": expected_calibration_error(confidence, y_pred == y_true, calibration_bins),
    }


def multi_label_report(
    y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], thresholds: float | np.ndarray,
    calibration_bins: int,
) -> dict[str, Any]:
    """Micro/macro F1, per-label scores and ECE of a multi-label (sigmoid) task.

    `y_true` is a 0/1 matrix (rows, len(labels)); `thresholds` the model's decision threshold
    (one, or one per label: `model_aspect_thresholds`). Macro-F1 averages over labels with at
    least one positive in the truth (labels a data set never covers are reported per label
    but left out of the mean). ECE treats every (row, label) decision as a binary prediction.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if y_true.shape != probabilities.shape or y_true.ndim != 2 or y_true.shape[1] != len(labels):
        raise ValueError(f"truth {y_true.shape} and probabilities {probabilities.shape} must be (rows, {len(labels)})")
    per_label_threshold = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(labels),))
    y_pred = aspect_decisions(probabilities, per_label_threshold)
    scores = multi_label_f1(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    binary_confidence = np.where(y_pred == 1, probabilities, 1.0 - probabilities).ravel()
    return {
        "rows": int(len(y_true)),
        "thresholds": {label: float(t) for label, t in zip(labels, per_label_threshold)},
        "micro_f1": scores["micro_f1"],
        "macro_f1": scores["macro_f1"],
        "covered_labels": [labels[i] for i in scores["covered"]],
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
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, fbeta_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    y_pred = class_decisions(probabilities)
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
