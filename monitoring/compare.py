"""Compares a window's statistics with the baseline's constraints: Model Monitor's checks for text.

Checks (named as Model Monitor names them in constraint_violations.json):
- `completeness_check`: the share of records carrying a feature fell below the constraint.
- `categorical_values_check`: too many values outside the baseline's domain (e.g. a language
  the training data never had).
- `baseline_drift_check`: a distribution moved: PSI or Jensen-Shannon distance above the
  thresholds in constraints' `monitoring_config.distribution_constraints`; for `embedding`,
  the domain classifier's ROC AUC above `monitoring_config.embedding_drift.auc_threshold`.
- `missing_column_check`: a baselined feature is absent from the window.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from monitoring.drift import DomainClassifierResult, jensen_shannon_distance, population_stability_index
from monitoring.model_monitor_format import STRING, compare_with_buckets, features_by_name, violation

EMBEDDING_FEATURE = "embedding"


@dataclass
class FeatureDrift:
    feature: str
    psi: float
    js_distance: float
    drifted: bool


@dataclass
class Comparison:
    violations: list[dict[str, str]] = field(default_factory=list)
    drift: list[FeatureDrift] = field(default_factory=list)
    embedding: Optional[DomainClassifierResult] = None
    embedding_drifted: bool = False
    skipped: list[str] = field(default_factory=list)
    """Checks not run, each with why (too few records, no model for embeddings)."""


def _categorical_counts(baseline: dict[str, Any], values: list[str]) -> tuple[list[float], list[float], list[str]]:
    expected = {b["value"]: b["count"] for b in baseline["string_statistics"]["distribution"]["categorical"]["buckets"]}
    categories = sorted(set(expected) | set(values))
    observed = {c: 0 for c in categories}
    for value in values:
        observed[value] += 1
    return [expected.get(c, 0.0) for c in categories], [observed[c] for c in categories], categories


def compare_window(
    columns: dict[str, list[Any]],
    baseline_statistics: dict[str, Any],
    constraints: dict[str, Any],
    enough_records: bool,
) -> Comparison:
    """Runs every per-feature check of the window's columns against the baseline."""
    result = Comparison()
    monitoring_config = constraints.get("monitoring_config", {})
    distribution = monitoring_config.get("distribution_constraints", {})
    compare_distributions = distribution.get("perform_comparison", "Enabled") == "Enabled" and enough_records
    psi_threshold = float(distribution["psi_threshold"])
    js_threshold = float(distribution["js_distance_threshold"])
    floor = float(distribution["probability_floor"])
    range_margin = float(distribution.get("range_margin", 0.0))
    unknown_share_limit = 1.0 - float(monitoring_config.get("domain_content_threshold", 1.0))
    min_completeness = float(monitoring_config.get("min_completeness", 1.0))
    baseline_features = features_by_name(baseline_statistics)
    if not enough_records:
        result.skipped.append("baseline_drift_check: too few records in the window")

    for constraint in constraints["features"]:
        name = constraint["name"]
        if name not in columns:
            result.violations.append(violation(name, "missing_column_check", f"{name} is baselined but absent from the window"))
            continue
        values = columns[name]
        present = [v for v in values if v is not None]
        completeness = len(present) / len(values) if values else 0.0
        required = min(float(constraint.get("completeness", 1.0)), min_completeness)
        if values and completeness < required:
            result.violations.append(violation(
                name, "completeness_check",
                f"completeness {completeness:.4f} is below the required {required:.4f}",
            ))
        if not present:
            continue
        baseline = baseline_features[name]
        if constraint["inferred_type"] == STRING:
            domain = set(constraint.get("string_constraints", {}).get("domains", []))
            unknown = sum(1 for v in present if v not in domain)
            if unknown / len(present) > unknown_share_limit:
                result.violations.append(violation(
                    name, "categorical_values_check",
                    f"{unknown / len(present):.1%} of values lie outside the baseline domain "
                    f"(limit {unknown_share_limit:.1%}); new values: {sorted(set(present) - domain)[:10]}",
                ))
            expected, observed, _ = _categorical_counts(baseline, [str(v) for v in present])
        else:
            buckets = baseline["numerical_statistics"]["distribution"]["kll"]["buckets"]
            expected, observed = compare_with_buckets(buckets, present, range_margin)
        if not compare_distributions:
            continue
        psi = population_stability_index(expected, observed, floor)
        js = jensen_shannon_distance(expected, observed)
        drifted = psi > psi_threshold or js > js_threshold
        result.drift.append(FeatureDrift(name, psi, js, drifted))
        if drifted:
            result.violations.append(violation(
                name, "baseline_drift_check",
                f"distribution moved from the baseline: PSI {psi:.3f} (threshold {psi_threshold}), "
                f"Jensen-Shannon distance {js:.3f} (threshold {js_threshold})",
            ))
    return result


def add_embedding_check(result: Comparison, embedding: DomainClassifierResult, constraints: dict[str, Any]) -> None:
    threshold = float(constraints["monitoring_config"]["embedding_drift"]["auc_threshold"])
    result.embedding = embedding
    result.embedding_drifted = embedding.roc_auc > threshold
    if result.embedding_drifted:
        result.violations.append(violation(
            EMBEDDING_FEATURE, "baseline_drift_check",
            f"a domain classifier tells current from reference embeddings with ROC AUC {embedding.roc_auc:.3f} "
            f"(threshold {threshold}; {embedding.current_rows} texts per side, {embedding.folds}-fold cross-validation)",
        ))
