"""Drift measures: population stability index, Jensen-Shannon distance, embedding domain classifier."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def shares(counts: Sequence[float], floor: float) -> np.ndarray:
    """Counts as shares, each at least floor (renormalised), so logs and ratios stay finite."""
    array = np.asarray(counts, dtype=float)
    total = array.sum()
    if total <= 0:
        raise ValueError("cannot compare an empty distribution")
    floored = np.maximum(array / total, floor)
    return floored / floored.sum()


def population_stability_index(expected_counts: Sequence[float], actual_counts: Sequence[float], floor: float) -> float:
    """PSI = sum((a - e) * ln(a / e)) over aligned buckets."""
    if len(expected_counts) != len(actual_counts):
        raise ValueError(f"bucket counts differ: {len(expected_counts)} vs {len(actual_counts)}")
    expected, actual = shares(expected_counts, floor), shares(actual_counts, floor)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def jensen_shannon_distance(expected_counts: Sequence[float], actual_counts: Sequence[float]) -> float:
    """Square root of the base-2 Jensen-Shannon divergence, in [0, 1]."""
    from scipy.spatial.distance import jensenshannon

    expected = np.asarray(expected_counts, dtype=float)
    actual = np.asarray(actual_counts, dtype=float)
    if expected.sum() <= 0 or actual.sum() <= 0:
        raise ValueError("cannot compare an empty distribution")
    return float(jensenshannon(expected / expected.sum(), actual / actual.sum(), base=2))


@dataclass
class DomainClassifierResult:
    roc_auc: float
    reference_rows: int
    current_rows: int
    folds: int


def domain_classifier_auc(
    reference: np.ndarray, current: np.ndarray, folds: int, regularisation_c: float, max_per_side: int, seed: int
) -> DomainClassifierResult:
    """Cross-validated ROC AUC of a logistic regression telling reference from current embeddings.

    About 0.5 when both come from one distribution; near 1.0 when the current window is
    separable from the reference (new themes, another language). Both sides are sampled to
    the same size, so the AUC does not reward predicting the larger class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if reference.ndim != 2 or current.ndim != 2 or reference.shape[1] != current.shape[1]:
        raise ValueError(f"embedding shapes do not match: reference {reference.shape}, current {current.shape}")
    per_side = min(len(reference), len(current), max_per_side)
    if per_side < folds:
        raise ValueError(f"need at least {folds} embeddings on each side, have {len(reference)} and {len(current)}")
    rng = np.random.default_rng(seed)
    reference = reference[rng.choice(len(reference), per_side, replace=False)]
    current = current[rng.choice(len(current), per_side, replace=False)]
    features = np.vstack([reference, current]).astype(np.float64)
    labels = np.concatenate([np.zeros(per_side), np.ones(per_side)])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation_c, max_iter=1000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(model, features, labels, cv=splitter, scoring="roc_auc")
    logger.info("domain classifier: ROC AUC %.3f over %d+%d embeddings (%d folds)", scores.mean(), per_side, per_side, folds)
    return DomainClassifierResult(float(scores.mean()), per_side, per_side, folds)
