"""Metric log lines match the SageMaker MetricDefinitions; MLflow receives the same numbers."""
import re

import pytest

from training.tracking import METRIC_DEFINITIONS, TRAINING_METRICS, Tracker, metric_line


def test_every_metric_definition_parses_its_log_line():
    names = {d["Name"] for d in METRIC_DEFINITIONS}
    assert {"train:loss", "val:macro_f1", "samples_per_second"} <= names
    for definition, metric in zip(METRIC_DEFINITIONS, TRAINING_METRICS):
        line = metric_line(metric, 0.000123456, step=3)
        match = re.search(definition["Regex"], "2026-11-23 INFO " + line)
        assert match and float(match.group(1)) == pytest.approx(0.000123456, rel=1e-4)
    assert not re.search(METRIC_DEFINITIONS[TRAINING_METRICS.index("train_loss")]["Regex"],
                         metric_line("train_sentiment_loss", 1.0))


def test_tracker_logs_to_mlflow_when_a_tracking_uri_is_set(tmp_path, monkeypatch, capsys):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = Tracker("test-experiment", run_name="unit")
    tracker.log_params({"epochs": 3})
    tracker.log_metrics({"val_macro_f1": 0.75, "nan_is_skipped": float("nan")}, step=1)
    tracker.end()
    assert "metric: val_macro_f1=0.75 step=1" in capsys.readouterr().out
    run = mlflow.MlflowClient(uri).get_run(tracker.run_id)
    assert run.data.metrics == {"val_macro_f1": 0.75} and run.data.params["epochs"] == "3"


def test_local_store_artifacts_stay_beside_the_database(tmp_path, monkeypatch):
    # MLflow's own default would be ./mlruns in whatever folder the job happens to run from.
    store, elsewhere = tmp_path / "store", tmp_path / "cwd"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    artifact = tmp_path / "parity.json"
    artifact.write_text("{}")
    tracker = Tracker("artifact-experiment", run_name="unit")
    tracker.log_artifact(str(artifact))
    tracker.end()
    assert not (elsewhere / "mlruns").exists()
    assert list((store / "mlartifacts").rglob("parity.json"))


def test_tracker_on_other_ranks_is_silent(monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    Tracker("x", "y", enabled=False).log_metrics({"val_macro_f1": 1.0})
    assert capsys.readouterr().out == ""
