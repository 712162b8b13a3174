"""CloudWatch-style metrics of a monitoring window (what a custom Model Monitor container emits).

Each metric is a MetricDatum-shaped object (`MetricName`, `Timestamp`, `Dimensions`, `Value`,
`Unit`). metrics.json in the results holds a PutMetricData request (`Namespace`, `MetricData`),
so it can be published as is; when publishing is enabled the same data also goes one object a
line to /opt/ml/output/metrics/cloudwatch/, where SageMaker picks up a custom monitor's metrics.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from monitoring.compare import Comparison

ENDPOINT_DIMENSION = "Endpoint"
SCHEDULE_DIMENSION = "MonitoringSchedule"


def metric(name: str, value: float, timestamp: str, dimensions: list[dict[str, str]], unit: str = "None") -> dict[str, Any]:
    return {"MetricName": name, "Timestamp": timestamp, "Dimensions": dimensions, "Value": float(value), "Unit": unit}


def window_metrics(
    comparison: Comparison,
    summary: dict[str, float],
    endpoint_name: str,
    schedule_name: str,
    timestamp: Optional[datetime] = None,
) -> list[dict[str, Any]]:
    """Drift measures per feature, embedding AUC, volume and prediction summaries as metric data."""
    moment = (timestamp or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    dimensions = [{"Name": ENDPOINT_DIMENSION, "Value": endpoint_name}, {"Name": SCHEDULE_DIMENSION, "Value": schedule_name}]
    metrics = [metric(name, value, moment, dimensions, "Count" if name.endswith("_count") else "None")
               for name, value in summary.items()]
    for drift in comparison.drift:
        metrics.append(metric(f"feature_baseline_drift_psi_{drift.feature}", drift.psi, moment, dimensions))
        metrics.append(metric(f"feature_baseline_drift_js_{drift.feature}", drift.js_distance, moment, dimensions))
    if comparison.embedding is not None:
        metrics.append(metric("embedding_drift_roc_auc", comparison.embedding.roc_auc, moment, dimensions))
    metrics.append(metric("constraint_violations_count", len(comparison.violations), moment, dimensions, "Count"))
    return metrics


def put_metric_data_request(namespace: str, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Namespace": namespace, "MetricData": metrics}


MAX_METRICS_PER_REQUEST = 1000
"""PutMetricData's limit on MetricData items per call."""


def send_metric_data(request: dict[str, Any], client: Any = None) -> int:
    """PutMetricData of a put_metric_data_request (in calls of at most 1000 metrics); returns the calls made."""
    if client is None:
        import boto3

        client = boto3.client("cloudwatch")
    metrics = request["MetricData"]
    calls = 0
    for start in range(0, len(metrics), MAX_METRICS_PER_REQUEST):
        client.put_metric_data(Namespace=request["Namespace"], MetricData=metrics[start:start + MAX_METRICS_PER_REQUEST])
        calls += 1
    return calls


def write_cloudwatch_lines(metrics: list[dict[str, Any]], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "metrics.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(m) + "\n" for m in metrics)
    return path
