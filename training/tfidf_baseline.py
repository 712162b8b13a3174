"""TF-IDF (word 1-2 grams) + logistic regression per task: the bar the transformer must beat.

Trained on the same training split and scored on the same test rows as the candidate, in the
same run, so the delta in evaluation.json is an honest like-for-like comparison. Each task
is fitted only on rows labeled for it; aspects are one-vs-rest.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from processing.schema import example_model_input
from training.config import EvaluationConfig

log = logging.getLogger(__name__)


def rows_labeled_for(examples: Sequence[Mapping[str, Any]], task: str) -> list[int]:
    """Indices of the examples whose `labeled_tasks` names `task`."""
    return [i for i, example in enumerate(examples) if task in (example.get("labeled_tasks") or [])]


class TfidfBaseline:
    """One TF-IDF vectoriser and one logistic-regression model per task.

    `predict_proba(texts)` returns `{task: (rows, len(labels))}` in the taxonomy's label
    order, the same shape `training.predict` returns for the transformer, so both are scored
    by the same code. A task with no labeled training rows is absent from the result.
    """

    def __init__(self, label_maps: Mapping[str, Sequence[str]], config: Optional[EvaluationConfig] = None):
        self.label_maps = {task: list(labels) for task, labels in label_maps.items()}
        self.config = config or EvaluationConfig()
        self._models: dict[str, tuple[TfidfVectorizer, Any]] = {}

    def _vectoriser(self) -> TfidfVectorizer:
        return TfidfVectorizer(
            ngram_range=(1, self.config.baseline_ngram_max),
            min_df=self.config.baseline_min_df,
            max_features=self.config.baseline_max_features,
            sublinear_tf=True,
        )

    def _logistic_regression(self) -> LogisticRegression:
        weighting = None if self.config.baseline_class_weight == "none" else self.config.baseline_class_weight
        return LogisticRegression(
            C=self.config.baseline_c, max_iter=self.config.baseline_max_iter, class_weight=weighting
        )

    def fit(self, examples: Sequence[Mapping[str, Any]]) -> "TfidfBaseline":
        for task, labels in self.label_maps.items():
            rows = rows_labeled_for(examples, task)
            if not rows:
                log.info("baseline: no training rows labeled for %s; task skipped", task)
                continue
            started = time.perf_counter()
            texts = [example_model_input(examples[i]) for i in rows]
            vectoriser = self._vectoriser()
            features = vectoriser.fit_transform(texts)
            if task == "aspects":
                index = {name: k for k, name in enumerate(labels)}
                targets = np.zeros((len(rows), len(labels)), dtype=int)
                for r, i in enumerate(rows):
                    for aspect in examples[i].get("aspects") or []:
                        targets[r, index[aspect]] = 1
                constant = [labels[k] for k in range(len(labels)) if targets[:, k].min() == targets[:, k].max()]
                if constant:
                    log.info("baseline: aspects %s are constant in training; predicted as constants", constant)
                with warnings.catch_warnings():
                    # OneVsRest fits a constant estimator for those (logged above) and warns per label.
                    warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
                    model = OneVsRestClassifier(self._logistic_regression()).fit(features, targets)
            else:
                targets = np.array([labels.index(examples[i][task]) for i in rows])
                if len(set(targets.tolist())) < 2:
                    model = _ConstantClassifier(int(targets[0]))
                else:
                    model = self._logistic_regression().fit(features, targets)
            self._models[task] = (vectoriser, model)
            log.info(
                "baseline: fitted %s on %d rows, %d n-grams in %.1fs",
                task, len(rows), len(vectoriser.vocabulary_), time.perf_counter() - started,
            )
        return self

    @property
    def tasks(self) -> list[str]:
        return list(self._models)

    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for task, (vectoriser, model) in self._models.items():
            features = vectoriser.transform(list(texts))
            n_labels = len(self.label_maps[task])
            if task == "aspects":
                out[task] = np.asarray(model.predict_proba(features), dtype=float).reshape(len(texts), n_labels)
                continue
            probabilities = np.zeros((len(texts), n_labels))
            # Classes never seen in training keep probability 0 in their taxonomy column.
            probabilities[:, model.classes_] = model.predict_proba(features)
            out[task] = probabilities
        return out


class _ConstantClassifier:
    """Stand-in when a task's training rows all carry one label (logistic regression needs two)."""

    def __init__(self, label_index: int):
        self.classes_ = np.array([label_index])

    def predict_proba(self, features) -> np.ndarray:
        return np.ones((features.shape[0], 1))
