"""Model Monitor for text: `python3 -m monitoring.monitor`, the custom monitoring container's entry.

It runs as the Processing step of the monitoring pipeline (pipelines/monitoring_definition.py, which
passes the flags below and `--end-time` = the execution's start; `window_hours` sets the window), or
as a Model Monitor schedule's container where an account still has Model Monitor.

Follows SageMaker's custom-monitor container contract: captured data under `dataset_source`
(default /opt/ml/processing/input/endpoint), results to `output_path` (default
/opt/ml/processing/resultdata), baseline files from `baseline_statistics` /
`baseline_constraints`, optional `start_time` / `end_time` (ISO 8601) bounding the window,
`publish_cloudwatch_metrics`, `sagemaker_endpoint_name`, `sagemaker_monitoring_schedule_name`.
Ours adds `baseline_embeddings`, `baseline_tokenizer` and `model_dir` (paths or s3:// URIs);
every variable also has a command-line flag (`--capture-dir`, `--baseline-dir`, ...) for
local runs (`fbrain monitor run`).

Writes to the output folder: constraint_violations.json and statistics.json (Model Monitor's
formats), metrics.json (a CloudWatch PutMetricData request), and quarantine.jsonl for unusable capture
lines. Exit code 0 whether or not drift was found (violations are results, not failures).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import numpy as np

from monitoring.artifacts import local_path, resolve_model_dir
from monitoring.baseline import BASELINE_ASPECT_THRESHOLDS
from monitoring.capture_reader import CaptureWindow, parse_time, read_capture_window
from monitoring.compare import Comparison, add_embedding_check, compare_window
from monitoring.config import MonitoringConfig
from processing.settings import add_settings_argument, load_sections, set_field
from monitoring.drift import domain_classifier_auc
from monitoring.features import monitored_statistics
from monitoring.metrics import put_metric_data_request, send_metric_data, window_metrics, write_cloudwatch_lines
from monitoring.prediction_features import ASPECT_SCORE_PREFIX, SENTIMENT_CONFIDENCE, INTENT_CONFIDENCE, columns_from_records
from monitoring.results import (METRICS_FILE, QUARANTINE_FILE, VIOLATIONS_FILE, WINDOW_STATISTICS_FILE, MonitorInputs,
                                MonitorResult)
from monitoring.text_descriptors import TOKENIZER_FILE, TextDescriber
from monitoring.triggers import emit_drift_event
from inference.predictor import MODEL_CARD_FILE
from training.metrics import METADATA_ASPECT_THRESHOLDS, aspect_decisions, model_aspect_thresholds

logger = logging.getLogger(__name__)

DEFAULT_DATASET_SOURCE = "/opt/ml/processing/input/endpoint"
DEFAULT_OUTPUT_PATH = "/opt/ml/processing/resultdata"


def _read_json(location: str, scratch: Path) -> dict[str, Any]:
    return json.loads(local_path(location, scratch).read_text(encoding="utf-8"))


def served_aspect_thresholds(
    statistics: dict[str, Any], model_path: Optional[Path], aspects: list[str]
) -> dict[str, float]:
    """The monitored model's aspect thresholds: recorded in the baseline, else stored with the model."""
    if statistics.get(BASELINE_ASPECT_THRESHOLDS):
        metadata = {METADATA_ASPECT_THRESHOLDS: statistics[BASELINE_ASPECT_THRESHOLDS]}
    elif model_path is not None:
        metadata = json.loads((model_path / MODEL_CARD_FILE).read_text(encoding="utf-8"))
    else:
        metadata = {}  # a model saved before thresholds were stored: the endpoint uses the default too
    return dict(zip(aspects, model_aspect_thresholds(metadata, aspects).tolist()))


def _prediction_summary(columns: dict[str, list[Any]], aspect_thresholds: dict[str, float]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for name in (SENTIMENT_CONFIDENCE, INTENT_CONFIDENCE):
        present = [v for v in columns[name] if v is not None]
        if present:
            summary[f"{name}_mean"] = float(np.mean(present))
    for name, values in columns.items():
        present = [v for v in values if v is not None]
        if name.startswith(ASPECT_SCORE_PREFIX) and present:
            aspect = name.removeprefix(ASPECT_SCORE_PREFIX)
            decided = aspect_decisions(np.asarray(present), aspect_thresholds[aspect])
            summary[f"prediction_aspect_rate_{aspect}"] = float(np.mean(decided))
    return summary


def _bounded_sample(records: list, config: MonitoringConfig) -> list:
    if len(records) <= config.window_max_records:
        return records
    keep = np.sort(np.random.default_rng(config.sample_seed).choice(len(records), config.window_max_records, replace=False))
    logger.info("window has %d texts: monitoring a seeded sample of %d", len(records), len(keep))
    return [records[i] for i in keep]


def _check_embeddings(
    comparison: Comparison, constraints: dict[str, Any], inputs: MonitorInputs, model_path: Optional[Path],
    texts: list[str], enough: bool, config: MonitoringConfig, scratch: Path,
) -> None:
    """Domain-classifier embedding drift, when the baseline embeddings and the model are at hand."""
    embedding_check = constraints.get("monitoring_config", {}).get("embedding_drift", {})
    if not (inputs.baseline_embeddings and model_path):
        comparison.skipped.append("embedding drift: needs baseline_embeddings and model_dir")
        logger.warning("embedding drift skipped: needs baseline_embeddings and model_dir")
        return
    if not enough or embedding_check.get("perform_comparison", "Enabled") != "Enabled":
        return
    from monitoring.scoring import ModelScorer

    reference = np.load(local_path(inputs.baseline_embeddings, scratch))
    current = ModelScorer(model_path, config).score(texts).embeddings
    add_embedding_check(comparison, domain_classifier_auc(
        reference, current,
        folds=int(embedding_check.get("folds", config.domain_classifier_folds)),
        regularisation_c=float(embedding_check.get("regularisation_c", config.domain_classifier_c)),
        max_per_side=int(embedding_check.get("max_per_side", config.domain_classifier_max_per_side)),
        seed=config.sample_seed,
    ), constraints)


def run_monitor(inputs: MonitorInputs, config: Optional[MonitoringConfig] = None) -> MonitorResult:
    """One monitoring window: read, describe, compare, write results (downloads live in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="fbrain-monitor-") as scratch:
        return _run_monitor(inputs, config or MonitoringConfig(), Path(scratch))


def _run_monitor(inputs: MonitorInputs, config: MonitoringConfig, scratch: Path) -> MonitorResult:
    output = Path(inputs.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    statistics = _read_json(inputs.baseline_statistics, scratch)
    constraints = _read_json(inputs.baseline_constraints, scratch)
    label_maps = statistics.get("label_maps")
    if not label_maps:
        raise ValueError(f"{inputs.baseline_statistics} has no label_maps: was it written by monitoring.baseline?")

    start_time = inputs.start_time
    if start_time is None and inputs.end_time is not None and config.window_hours > 0:
        # A scheduled run passes its own start as end_time: the window is the hours before it.
        start_time = inputs.end_time - timedelta(hours=config.window_hours)
    window: CaptureWindow = read_capture_window(Path(inputs.capture_dir), start_time, inputs.end_time)
    if window.quarantined:
        with (output / QUARANTINE_FILE).open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in window.quarantined)
        logger.warning("%d capture lines quarantined (see %s)", len(window.quarantined), output / QUARANTINE_FILE)
    records = _bounded_sample(window.records, config)
    texts = [record.text for record in records]
    model_path = resolve_model_dir(inputs.model_dir, scratch) if inputs.model_dir else None
    tokenizer_location = inputs.baseline_tokenizer or (str(model_path / TOKENIZER_FILE) if model_path else "")
    if not tokenizer_location:
        raise ValueError("out-of-vocabulary rates need the model's tokenizer: pass baseline_tokenizer or model_dir")

    columns = TextDescriber(local_path(tokenizer_location, scratch), config).describe(texts).columns
    columns.update(columns_from_records(label_maps, [record.as_prediction() for record in records]))
    minimum = int(constraints.get("monitoring_config", {}).get("min_window_records", config.min_window_records))
    enough = len(texts) >= minimum
    if not enough:
        logger.warning("only %d texts in the window (minimum %d): drift checks skipped", len(texts), minimum)
    comparison = compare_window(columns, statistics, constraints, enough)

    _check_embeddings(comparison, constraints, inputs, model_path, texts, enough, config, scratch)

    window_stats = monitored_statistics(columns, label_maps, config, dataset_name="endpoint_capture", extra={
        "window": {
            "start_time": start_time.isoformat() if start_time else None,
            "end_time": inputs.end_time.isoformat() if inputs.end_time else None,
            "captured_texts": len(window.records), "monitored_texts": len(texts),
            "quarantined": len(window.quarantined), "outside_window": window.outside_window,
        },
        "skipped_checks": comparison.skipped,
    }) if texts else {"version": 0.0, "dataset": {"item_count": 0, "name": "endpoint_capture"}, "features": []}
    (output / WINDOW_STATISTICS_FILE).write_text(json.dumps(window_stats, indent=2), encoding="utf-8")
    (output / VIOLATIONS_FILE).write_text(json.dumps({"violations": comparison.violations}, indent=2), encoding="utf-8")

    summary = {"captured_texts_count": len(window.records), "monitored_texts_count": len(texts),
               "quarantined_capture_count": len(window.quarantined)}
    if texts:
        thresholds = served_aspect_thresholds(statistics, model_path, list(label_maps["aspects"]))
        summary.update(_prediction_summary(columns, thresholds))
    metrics = window_metrics(comparison, summary, inputs.endpoint_name, inputs.schedule_name)
    request = put_metric_data_request(config.metric_namespace, metrics)
    (output / METRICS_FILE).write_text(json.dumps(request, indent=2), encoding="utf-8")
    if inputs.publish_cloudwatch_metrics:
        write_cloudwatch_lines(metrics, Path(config.cloudwatch_metrics_dir))
    if config.put_metric_data:
        send_metric_data(put_metric_data_request(config.put_metric_data_namespace, metrics))
    logger.info("monitoring window: %d texts, %d violations -> %s", len(texts), len(comparison.violations), output)
    result = MonitorResult(output, comparison.violations, comparison, len(texts), len(window.quarantined), metrics)
    if result.drift_detected and config.emit_drift_events:
        emit_drift_event(result, inputs, config)
    return result


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


SECTION = "monitoring"
"""The configuration section this job takes whole: `--set monitoring.field=value`, or FBRAIN__MONITORING__FIELD
variables (how a Model Monitor schedule's Environment passes settings)."""


def parse_args(argv: Optional[list[str]] = None) -> tuple[MonitorInputs, MonitoringConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture-dir", default=_env("dataset_source", DEFAULT_DATASET_SOURCE))
    parser.add_argument("--output-dir", default=_env("output_path", DEFAULT_OUTPUT_PATH))
    parser.add_argument("--baseline-dir", default="", help="a folder written by monitoring.baseline (sets the four baseline files)")
    parser.add_argument("--baseline-statistics", default=_env("baseline_statistics"))
    parser.add_argument("--baseline-constraints", default=_env("baseline_constraints"))
    parser.add_argument("--baseline-embeddings", default=_env("baseline_embeddings"))
    parser.add_argument("--baseline-tokenizer", default=_env("baseline_tokenizer"))
    parser.add_argument("--model-dir", default=_env("model_dir"))
    parser.add_argument("--start-time", default=_env("start_time"))
    parser.add_argument("--end-time", default=_env("end_time"))
    parser.add_argument("--endpoint-name", default=_env("sagemaker_endpoint_name", "local"))
    parser.add_argument("--schedule-name", default=_env("sagemaker_monitoring_schedule_name", "local"))
    parser.add_argument("--publish-cloudwatch-metrics", default=_env("publish_cloudwatch_metrics", "Disabled"))
    parser.add_argument("--emit-drift-events", default=_env("emit_drift_events", ""))
    add_settings_argument(parser, [SECTION])
    args = parser.parse_args(argv)
    config = MonitoringConfig()
    load_sections({SECTION: config}, args.settings)
    if args.emit_drift_events:
        set_field(config, "emit_drift_events", args.emit_drift_events, "emit_drift_events")
    common = dict(
        model_dir=args.model_dir,
        start_time=parse_time(args.start_time) if args.start_time else None,
        end_time=parse_time(args.end_time) if args.end_time else None,
        endpoint_name=args.endpoint_name, schedule_name=args.schedule_name,
        # Model Monitor's own variable says Enabled / Disabled.
        publish_cloudwatch_metrics=args.publish_cloudwatch_metrics.lower() in ("enabled", "true"),
    )
    if args.baseline_dir:
        inputs = MonitorInputs.from_baseline_dir(args.baseline_dir, args.capture_dir, args.output_dir, **common)
    else:
        if not (args.baseline_statistics and args.baseline_constraints):
            parser.error("give --baseline-dir, or both baseline_statistics and baseline_constraints")
        inputs = MonitorInputs(
            capture_dir=args.capture_dir, output_dir=args.output_dir,
            baseline_statistics=args.baseline_statistics, baseline_constraints=args.baseline_constraints,
            baseline_embeddings=args.baseline_embeddings, baseline_tokenizer=args.baseline_tokenizer, **common,
        )
    return inputs, config


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inputs, config = parse_args(argv)
    result = run_monitor(inputs, config)
    print(json.dumps({"texts": result.texts, "violations": len(result.violations), "output_dir": str(result.output_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
