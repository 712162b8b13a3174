"""Reads a window of SageMaker data capture into (text, prediction) pairs for the monitoring job.

Parsing the capture format and the request bodies is inference.capture's job (the same code
that parses live requests, so captured and served texts are read alike); this module keeps
the texts of one time window, pulls out the prediction fields the monitor compares, and keeps
every unusable line or event, with its reason, for the quarantine file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from inference.capture import iter_captured_predictions

logger = logging.getLogger(__name__)


@dataclass
class CapturedPrediction:
    """One text the endpoint scored and what it answered (fields missing from the response stay None)."""

    text: str
    event_id: str
    inference_time: Optional[datetime]
    sentiment_label: Optional[str] = None
    sentiment_probabilities: Optional[dict[str, float]] = None
    intent_label: Optional[str] = None
    intent_probabilities: Optional[dict[str, float]] = None
    aspect_scores: Optional[dict[str, float]] = None

    def as_prediction(self) -> dict[str, Any]:
        return {
            "sentiment_label": self.sentiment_label,
            "sentiment_probabilities": self.sentiment_probabilities,
            "intent_label": self.intent_label,
            "intent_probabilities": self.intent_probabilities,
            "aspect_scores": self.aspect_scores,
        }


@dataclass
class CaptureWindow:
    records: list[CapturedPrediction] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    outside_window: int = 0


def parse_time(value: str) -> datetime:
    """ISO 8601 (SageMaker passes e.g. 2026-11-23T08:00:00Z); naive times are UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _label_and_probabilities(value: Any) -> tuple[Optional[str], Optional[dict[str, float]]]:
    if isinstance(value, str):
        return value, None
    if not isinstance(value, dict):
        return None, None
    probabilities = value.get("probabilities")
    if isinstance(probabilities, dict):
        probabilities = {str(k): float(v) for k, v in probabilities.items()}
    else:
        probabilities = None
    label = value.get("label")
    return (str(label) if label is not None else None), probabilities


def _aspect_scores(value: Any) -> Optional[dict[str, float]]:
    scores = value.get("scores") if isinstance(value, dict) else None
    if isinstance(scores, dict):
        return {str(k): float(v) for k, v in scores.items()}
    return None


def captured_prediction(item: dict[str, Any]) -> CapturedPrediction:
    """A CapturedPrediction from one item of inference.capture.iter_captured_predictions."""
    prediction = item.get("prediction")
    if prediction is not None and not isinstance(prediction, dict):
        raise ValueError(f"prediction is a {type(prediction).__name__}, not an object")
    prediction = prediction or {}
    sentiment_label, sentiment_probabilities = _label_and_probabilities(prediction.get("sentiment"))
    intent_label, intent_probabilities = _label_and_probabilities(prediction.get("intent"))
    return CapturedPrediction(
        text=item["text"],
        event_id=str(item.get("event_id", "")),
        inference_time=parse_time(item["inference_time"]) if item.get("inference_time") else None,
        sentiment_label=sentiment_label,
        sentiment_probabilities=sentiment_probabilities,
        intent_label=intent_label,
        intent_probabilities=intent_probabilities,
        aspect_scores=_aspect_scores(prediction.get("aspects")),
    )


def read_capture_window(
    root: Path, start_time: Optional[datetime] = None, end_time: Optional[datetime] = None
) -> CaptureWindow:
    """Every captured text under root whose inference time is in [start_time, end_time)."""
    if not Path(root).exists():
        raise FileNotFoundError(f"captured data folder {root} does not exist")
    window = CaptureWindow()
    for item in iter_captured_predictions(root, window.quarantined):
        try:
            record = captured_prediction(item)
        except (KeyError, TypeError, ValueError) as error:
            window.quarantined.append({"event_id": item.get("event_id"), "index": item.get("index"), "reason": str(error)})
            continue
        moment = record.inference_time
        if moment is not None and ((start_time and moment < start_time) or (end_time and moment >= end_time)):
            window.outside_window += 1
            continue
        if not record.text.strip():
            window.quarantined.append({"event_id": record.event_id, "index": item.get("index"), "reason": "empty text"})
            continue
        window.records.append(record)
    logger.info(
        "capture under %s: %d texts in the window, %d outside it, %d quarantined",
        root, len(window.records), window.outside_window, len(window.quarantined),
    )
    return window
