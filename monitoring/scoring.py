"""Scores texts with a trained model: class probabilities, aspect scores and embeddings.

The monitor needs the model's own predictions on training data (the baseline) and the
embeddings of training and captured texts (embedding drift). It reuses the serving
predictor's tokenizer and ONNX Runtime forward pass (inference.predictor), so the baseline
sees exactly what the endpoint computes, and keeps the raw matrices rather than the
per-text response dictionaries.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from inference.config import ServingConfig
from inference.predictor import ONNX_FILES, BasePredictor, ModelLoadError, load_predictor
from monitoring.config import MonitoringConfig

logger = logging.getLogger(__name__)

FALLBACK_RUNTIME = "onnx"
LOGIT_OUTPUTS = ("sentiment_logits", "intent_logits", "aspect_logits")
EMBEDDING_OUTPUT = "embedding"


@dataclass
class ModelScores:
    """Model outputs for a batch of texts (rows align with the input texts)."""

    label_maps: dict[str, list[str]]
    sentiment_probabilities: np.ndarray
    intent_probabilities: np.ndarray
    aspect_scores: np.ndarray
    embeddings: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def load_scoring_predictor(model_dir: Path, config: MonitoringConfig) -> BasePredictor:
    runtime = config.scoring_runtime
    if runtime in ONNX_FILES and not (Path(model_dir) / ONNX_FILES[runtime]).is_file():
        logger.warning("%s is missing; scoring with runtime %r instead", ONNX_FILES[runtime], FALLBACK_RUNTIME)
        runtime = FALLBACK_RUNTIME
    return load_predictor(model_dir, ServingConfig(runtime=runtime))


class ModelScorer:
    """Batched scoring over a model directory, with a progress line and rate."""

    def __init__(self, model_dir: Path, config: MonitoringConfig):
        self.model_dir = Path(model_dir)
        self._config = config
        self._predictor = load_scoring_predictor(self.model_dir, config)
        self.label_maps = self._predictor.card.label_maps
        self.aspect_thresholds = dict(self._predictor.card.aspect_thresholds)
        """The model's aspect decision thresholds, as the endpoint applies them."""

    def score(self, texts: Sequence[str]) -> ModelScores:
        if not texts:
            raise ValueError("nothing to score: no texts")
        started = time.monotonic()
        names = (*LOGIT_OUTPUTS, EMBEDDING_OUTPUT)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        batch = self._config.scoring_batch_size
        next_report = self._config.progress_every
        for begin in range(0, len(texts), batch):
            outputs = self._predictor.forward(self._predictor.encoder.encode(texts[begin:begin + batch]).arrays)
            if EMBEDDING_OUTPUT not in outputs:
                raise ModelLoadError(f"the model in {self.model_dir} has no {EMBEDDING_OUTPUT!r} output (docs/contracts.md)")
            for name in names:
                parts[name].append(np.asarray(outputs[name], dtype=np.float32))
            done = min(begin + batch, len(texts))
            if done >= next_report:
                logger.info("scored %d/%d texts (%.0f texts/s)", done, len(texts), done / (time.monotonic() - started))
                next_report += self._config.progress_every
        sentiment, intent, aspects, embedding = (np.concatenate(parts[name]) for name in names)
        return ModelScores(
            label_maps=self.label_maps,
            sentiment_probabilities=softmax(sentiment),
            intent_probabilities=softmax(intent),
            aspect_scores=sigmoid(aspects),
            embeddings=embedding,
        )
