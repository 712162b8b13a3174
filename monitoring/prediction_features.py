"""Prediction columns the monitor baselines: predicted classes, confidence, aspect scores.

Baseline predictions come from scoring training texts; monitored ones from the endpoint's
captured output. Both end as the same columns so their distributions can be compared.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

SENTIMENT = "prediction_sentiment"
INTENT = "prediction_intent"
SENTIMENT_CONFIDENCE = "prediction_sentiment_confidence"
INTENT_CONFIDENCE = "prediction_intent_confidence"
ASPECT_SCORE_PREFIX = "prediction_aspect_score_"


def aspect_feature(aspect: str) -> str:
    return f"{ASPECT_SCORE_PREFIX}{aspect}"


def categorical_prediction_features() -> tuple[str, ...]:
    return (SENTIMENT, INTENT)


def numeric_prediction_features(label_maps: dict[str, list[str]]) -> tuple[str, ...]:
    return (SENTIMENT_CONFIDENCE, INTENT_CONFIDENCE, *(aspect_feature(a) for a in label_maps["aspects"]))


def columns_from_probabilities(
    label_maps: dict[str, list[str]],
    sentiment_probabilities: np.ndarray,
    intent_probabilities: np.ndarray,
    aspect_scores: np.ndarray,
) -> dict[str, list[Any]]:
    """Prediction columns from probability matrices whose columns follow label_maps."""
    columns: dict[str, list[Any]] = {}
    for task, name, confidence, probabilities in (
        ("sentiment", SENTIMENT, SENTIMENT_CONFIDENCE, sentiment_probabilities),
        ("intent", INTENT, INTENT_CONFIDENCE, intent_probabilities),
    ):
        labels = label_maps[task]
        if probabilities.shape[1] != len(labels):
            raise ValueError(f"{task}: {probabilities.shape[1]} probabilities but {len(labels)} labels")
        columns[name] = [labels[i] for i in probabilities.argmax(axis=1)]
        columns[confidence] = probabilities.max(axis=1).astype(float).tolist()
    for index, aspect in enumerate(label_maps["aspects"]):
        columns[aspect_feature(aspect)] = aspect_scores[:, index].astype(float).tolist()
    return columns


def columns_from_records(
    label_maps: dict[str, list[str]], predictions: Sequence[dict[str, Any]]
) -> dict[str, list[Optional[Any]]]:
    """Prediction columns from parsed endpoint outputs (see capture_reader.ParsedPrediction fields).

    A value the endpoint did not return stays None, which counts against completeness.
    """
    columns: dict[str, list[Optional[Any]]] = {
        name: [] for name in (*categorical_prediction_features(), *numeric_prediction_features(label_maps))
    }
    for prediction in predictions:
        for task, name, confidence in (
            ("sentiment", SENTIMENT, SENTIMENT_CONFIDENCE),
            ("intent", INTENT, INTENT_CONFIDENCE),
        ):
            probabilities: dict[str, float] = prediction.get(f"{task}_probabilities") or {}
            label = prediction.get(f"{task}_label")
            if label is None and probabilities:
                label = max(probabilities, key=probabilities.get)
            columns[name].append(label)
            columns[confidence].append(max(probabilities.values()) if probabilities else None)
        scores: dict[str, float] = prediction.get("aspect_scores") or {}
        for aspect in label_maps["aspects"]:
            columns[aspect_feature(aspect)].append(scores.get(aspect) if scores else None)
    return columns
