"""statistics.json, constraints.json and constraint_violations.json in SageMaker Model Monitor's layout.

Layout as Model Monitor's data-quality container writes it: statistics carry `version`,
`dataset.item_count` and `features` (`name`, `inferred_type` Integral/Fractional/String,
`numerical_statistics` or `string_statistics` with `common.num_present/num_missing` and a
`distribution`: KLL-style `buckets` of equal mass for numbers, `categorical.buckets` of
value counts for strings). Constraints carry `version`, `features` (`name`, `inferred_type`,
`completeness`, `num_constraints`/`string_constraints`) and `monitoring_config`. Our drift
thresholds live in `monitoring_config.distribution_constraints` (and the embedding check in
`monitoring_config.embedding_drift`), so a baseline can be tuned by editing constraints.json,
exactly as with Model Monitor.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from monitoring.config import MonitoringConfig

FORMAT_VERSION = 0.0
INTEGRAL = "Integral"
FRACTIONAL = "Fractional"
STRING = "String"


def _present(values: Sequence[Any]) -> list[Any]:
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _common(values: Sequence[Any], present: Sequence[Any]) -> dict[str, int]:
    return {"num_present": len(present), "num_missing": len(values) - len(present)}


def equal_mass_edges(values: np.ndarray, bucket_count: int) -> list[float]:
    """[min, inner boundaries..., max] splitting values into about equal-mass buckets.

    Each inner boundary sits halfway between two neighbouring distinct values, never on a
    value: a tie group stays in one bucket, and values that jitter slightly (int8
    activations depend on the batch, responses are rounded) do not change bucket.
    """
    ordered = np.sort(np.asarray(values, dtype=float))
    distinct = np.unique(ordered)
    inner: list[float] = []
    for position in range(1, bucket_count):
        value = ordered[min(int(round(position * len(ordered) / bucket_count)), len(ordered) - 1)]
        below = distinct[distinct < value]
        if len(below):
            inner.append(float((below[-1] + value) / 2.0))
    return [float(ordered[0]), *sorted(set(inner)), float(ordered[-1])]


def bucket_counts(inner_edges: Sequence[float], values: Iterable[float]) -> list[int]:
    """Counts per bucket, where bucket i holds inner_edges[i-1] <= v < inner_edges[i] (open at both ends)."""
    array = np.asarray(list(values), dtype=float)
    indices = np.searchsorted(np.asarray(inner_edges, dtype=float), array, side="right")
    return np.bincount(indices, minlength=len(inner_edges) + 1).astype(int).tolist()


def compare_with_buckets(
    buckets: Sequence[dict[str, float]], values: Iterable[float], range_margin: float
) -> tuple[list[float], list[float]]:
    """(baseline, current) counts over the baseline's buckets plus one below its min and one above its max.

    The two outer buckets hold no baseline mass, so values the training data never reached
    (longer texts, non-ASCII where there was none) register as a shift even when the baseline
    was constant and has a single bucket. Values within range_margin x (max - min) of the
    baseline's range still count as inside it.
    """
    array = np.asarray(list(values), dtype=float)
    margin = range_margin * (float(buckets[-1]["upper_bound"]) - float(buckets[0]["lower_bound"]))
    lowest, highest = float(buckets[0]["lower_bound"]) - margin, float(buckets[-1]["upper_bound"]) + margin
    inside = array[(array >= lowest) & (array <= highest)]
    counts = bucket_counts([float(b["upper_bound"]) for b in buckets[:-1]], inside)
    expected = [0.0, *(float(b["count"]) for b in buckets), 0.0]
    observed = [float((array < lowest).sum()), *map(float, counts), float((array > highest).sum())]
    return expected, observed


def numeric_feature_statistics(name: str, values: Sequence[Any], bucket_count: int, integral: bool) -> dict:
    present = _present(values)
    array = np.asarray(present, dtype=float)
    statistics: dict[str, Any] = {"common": _common(values, present)}
    if len(array):
        edges = equal_mass_edges(array, bucket_count)
        inner = edges[1:-1]
        counts = bucket_counts(inner, array)
        bounds = [edges[0], *inner, edges[-1]]
        statistics.update(
            mean=float(array.mean()), sum=float(array.sum()), std_dev=float(array.std()),
            min=float(array.min()), max=float(array.max()),
            distribution={"kll": {"buckets": [
                {"lower_bound": bounds[i], "upper_bound": bounds[i + 1], "count": float(count)}
                for i, count in enumerate(counts)
            ]}},
        )
    return {"name": name, "inferred_type": INTEGRAL if integral else FRACTIONAL, "numerical_statistics": statistics}


def string_feature_statistics(name: str, values: Sequence[Any]) -> dict:
    present = [str(v) for v in _present(values)]
    counts = Counter(present)
    return {
        "name": name,
        "inferred_type": STRING,
        "string_statistics": {
            "common": _common(values, present),
            "distinct_count": float(len(counts)),
            "distribution": {"categorical": {"buckets": [
                {"value": value, "count": float(count)} for value, count in sorted(counts.items())
            ]}},
        },
    }


def build_statistics(
    columns: dict[str, Sequence[Any]],
    numeric: Sequence[str],
    integral: Sequence[str],
    categorical: Sequence[str],
    bucket_count: int,
    dataset_name: str,
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Model Monitor statistics of the named columns (all columns have one entry per record)."""
    item_count = len(next(iter(columns.values()), []))
    features = [
        numeric_feature_statistics(name, columns[name], bucket_count, name in integral) for name in numeric
    ] + [string_feature_statistics(name, columns[name]) for name in categorical]
    statistics: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "dataset": {"item_count": item_count, "name": dataset_name},
        "features": features,
    }
    if extra:
        statistics.update(extra)
    return statistics


def build_constraints(statistics: dict[str, Any], config: MonitoringConfig) -> dict[str, Any]:
    """Constraints suggested from baseline statistics, as Model Monitor's suggest_baseline does."""
    features = []
    for feature in statistics["features"]:
        stats = feature.get("numerical_statistics") or feature.get("string_statistics")
        common = stats["common"]
        total = common["num_present"] + common["num_missing"]
        entry: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": feature["inferred_type"],
            "completeness": float(common["num_present"] / total) if total else 0.0,
        }
        if feature["inferred_type"] == STRING:
            buckets = stats["distribution"]["categorical"]["buckets"]
            entry["string_constraints"] = {"domains": [b["value"] for b in buckets]}
        else:
            entry["num_constraints"] = {"is_non_negative": bool(stats.get("min", 0.0) >= 0.0)}
        features.append(entry)
    return {
        "version": FORMAT_VERSION,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0 - config.max_unknown_category_share,
            "min_completeness": config.min_completeness,
            "min_window_records": config.min_window_records,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_method": "PSI_and_JensenShannon",
                "comparison_threshold": config.psi_threshold,
                "psi_threshold": config.psi_threshold,
                "js_distance_threshold": config.js_distance_threshold,
                "probability_floor": config.probability_floor,
                "range_margin": config.bucket_range_margin,
            },
            "embedding_drift": {
                "perform_comparison": "Enabled",
                "method": "domain_classifier_roc_auc",
                "auc_threshold": config.drift_auc_threshold,
                "folds": config.domain_classifier_folds,
                "regularisation_c": config.domain_classifier_c,
                "max_per_side": config.domain_classifier_max_per_side,
            },
        },
    }


def features_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {feature["name"]: feature for feature in document.get("features", [])}


def violation(feature_name: str, check_type: str, description: str) -> dict[str, str]:
    """One entry of constraint_violations.json (check types as Model Monitor names them)."""
    return {"feature_name": feature_name, "constraint_check_type": check_type, "description": description}
