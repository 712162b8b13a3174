"""Training metrics as SageMaker-parsable log lines and, when configured, MLflow runs.

SageMaker reads metrics by matching `MetricDefinitions` regexes against the job's log, so
every metric is printed as one line `metric: <name>=<value> step=<n>` on stdout; the same
numbers go to MLflow when `MLFLOW_TRACKING_URI` is set (local SQLite store, or the SageMaker
managed MLflow tracking server ARN). A tracking server that fails mid-run is logged as a
warning and training goes on: the metrics still reach the log and the summary file.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

logger = logging.getLogger(__name__)

METRIC_LINE_PREFIX = "metric: "
LOCAL_ARTIFACTS_DIR = "mlartifacts"
"""Artifacts of a local (SQLite) MLflow store live in this folder beside the database."""
NUMBER_REGEX = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

TRAINING_METRICS = (
    "epoch",
    "train_loss",
    "train_sentiment_loss",
    "train_intent_loss",
    "train_aspects_loss",
    "learning_rate",
    "samples_per_second",
    "val_loss",
    "val_macro_f1",
    "val_sentiment_macro_f1",
    "val_intent_macro_f1",
    "val_aspect_micro_f1",
    "val_aspect_macro_f1",
    "best_val_macro_f1",
)
"""Every metric training reports (names as in the log lines and MLflow)."""

METRIC_DEFINITIONS = [
    {"Name": name.replace("_", ":", 1) if name.startswith(("train_", "val_")) else name,
     "Regex": rf"{METRIC_LINE_PREFIX}{name}={NUMBER_REGEX}"}
    for name in TRAINING_METRICS
]
"""`AlgorithmSpecification.MetricDefinitions` for the TrainModel step (e.g. `val:macro_f1`)."""


def metric_line(name: str, value: float, step: int | None = None) -> str:
    suffix = f" step={step}" if step is not None else ""
    return f"{METRIC_LINE_PREFIX}{name}={value:.6g}{suffix}"


class Tracker:
    """Fan-out of metrics to stdout lines and MLflow; a no-op on non-zero DDP ranks."""

    def __init__(self, experiment: str, run_name: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_id: str | None = None
        self._mlflow = None
        if not enabled or not os.environ.get("MLFLOW_TRACKING_URI"):
            return
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            import mlflow

            uri = os.environ["MLFLOW_TRACKING_URI"]
            if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(experiment) is None:
                # MLflow's default artifact root for a database store is ./mlruns in the *current* folder;
                # keep a local store's artifacts beside its database instead (where the registry puts them).
                database = Path(uri[len("sqlite:///"):])
                mlflow.create_experiment(
                    experiment, artifact_location=(database.parent / LOCAL_ARTIFACTS_DIR / experiment).resolve().as_uri())
            mlflow.set_experiment(experiment)
            run = mlflow.start_run(run_name=run_name)
            self.run_id = run.info.run_id
            self._mlflow = mlflow
            logger.info("MLflow run %s in experiment %s at %s", self.run_id, experiment, os.environ["MLFLOW_TRACKING_URI"])
        except Exception as exc:  # noqa: BLE001 - a tracking outage must not kill a paid training job
            logger.warning("MLflow tracking disabled, could not start a run: %s", exc)

    def _mlflow_call(self, what: str, *args: Any, **kwargs: Any) -> None:
        if self._mlflow is None:
            return
        try:
            getattr(self._mlflow, what)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            logger.warning("MLflow %s failed (metrics stay in the log): %s", what, exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.enabled:
            self._mlflow_call("log_params", {k: str(v)[:500] for k, v in params.items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled:
            self._mlflow_call("set_tags", {k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled:
            return
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        for name, value in finite.items():
            sys.stdout.write(metric_line(name, value, step) + "\n")
        sys.stdout.flush()
        self._mlflow_call("log_metrics", finite, step=step)

    def log_artifact(self, path: str) -> None:
        if self.enabled:
            self._mlflow_call("log_artifact", path)

    def end(self, status: str = "FINISHED") -> None:
        if self._mlflow is not None:
            self._mlflow_call("end_run", status=status)
            self._mlflow = None
