"""The whole product, locally: the README's `make run` path on the demo corpus, asserted.

One real pipeline execution (packaged MiniLM, CPU) is shared by these tests through the
session fixture `local_run`; each test checks one promise of the spine issue.
"""
from __future__ import annotations

import json
import re
import time

import pytest
from fastapi.testclient import TestClient

from e2e_support import fbrain, run_pipeline_locally
from pipelines.local_run import DEMO_CORPUS

EXPECTED_STEPS = {"FeatureEngineering": "Succeeded", "MergeFeatureShards": "Succeeded", "TrainModel": "Succeeded", "EvaluateModel": "Succeeded",
                  "CheckModelGate": "Succeeded", "ComputeMonitorBaseline": "Succeeded", "RegisterModel": "Succeeded",
                  "ModelGateFailed": "NotExecuted"}


def test_every_step_succeeds_and_is_recorded(local_run):
    from pipelines.local import list_executions, load_execution

    assert local_run.returncode == 0, local_run.output[-3000:]
    record = load_execution(local_run.workspace, local_run.execution_id)
    assert record.status == "Succeeded"
    assert {step.name: step.status for step in record.steps} == EXPECTED_STEPS
    for step in record.steps:
        if step.status == "Succeeded" and step.type in ("Processing", "Training"):
            assert step.log_file and step.duration_seconds > 0
    assert [r.execution_id for r in list_executions(local_run.workspace)][0] == local_run.execution_id
    listed = fbrain(local_run.workspace, "pipeline", "executions", "--workspace", str(local_run.workspace))
    assert local_run.execution_id in listed.stdout and "Succeeded" in listed.stdout


def test_lake_books_balance_and_pii_never_reaches_the_examples(local_run):
    reports = list(local_run.workspace.rglob("run_report.json"))
    assert reports, "the feature-engineering job wrote no run report"
    from processing.lake import read_report

    counts = read_report(reports[0]).counts()
    assert counts["bronze"] == 720
    assert counts["bronze"] == (counts["silver"] + counts["duplicates"] + counts["near_duplicates"]
                                + counts["spam"] + counts["quarantine"])
    assert counts["quarantine"] >= 5 and counts["spam"] > 0 and counts["duplicates"] > 0
    examples = "".join(p.read_text() for p in local_run.workspace.rglob("examples.jsonl"))
    assert "[EMAIL]" in examples and "[CARD]" in examples
    corpus = DEMO_CORPUS.read_text(encoding="utf-8", errors="replace")
    planted = set(re.findall(r"[\w.+-]+@[\w-]+\.[a-z]{2,}|\b(?:\d{4}[ -]){3}\d{4}\b", corpus))
    assert planted, "the demo corpus should carry emails and card numbers to mask"
    assert not {secret for secret in planted if secret in examples}


def test_model_is_registered_with_metrics_and_champion_alias(local_run):
    from mlflow import MlflowClient

    from pipelines.local.registry import resolve_champion, tracking_uri

    version, model_dir = resolve_champion(local_run.workspace, "feedback-brain-models")
    assert (model_dir / "fbrain_model.json").exists() and (model_dir / "onnx" / "model.int8.onnx").exists()
    details = MlflowClient(tracking_uri(local_run.workspace)).get_model_version("feedback-brain-models", str(version))
    assert details.tags["approval_status"] == "Approved"
    evaluation = json.loads(next(local_run.workspace.rglob("evaluation.json")).read_text())
    assert evaluation["gate"]["passed"] is True and evaluation["gate"]["macro_f1"] >= 0.6
    assert "baseline" in evaluation and "multiclass_classification_metrics" in evaluation


def test_local_endpoint_answers_with_the_registered_model(local_run):
    from inference.app import create_app
    from inference.config import ServingConfig
    from pipelines.local.registry import resolve_champion

    version, model_dir = resolve_champion(local_run.workspace, "feedback-brain-models")
    app = create_app(model_dir, ServingConfig(), model_name="feedback-brain-models", model_version=str(version))
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/ping").status_code != 200:
            assert time.monotonic() < deadline, "endpoint never became healthy"
            time.sleep(0.2)
        response = client.post("/invocations", json={"text": "My parcel is two weeks late and nobody answers."})
        assert response.status_code == 200
        prediction = response.json()["predictions"][0]
        assert prediction["sentiment"]["label"] == "negative"
        assert "shipping_delivery" in prediction["aspects"]["labels"]
        assert prediction["model"]["version"] == str(version)


def test_second_run_reuses_cached_steps(local_run):
    again = run_pipeline_locally(local_run.workspace)
    assert again.returncode == 0, again.output[-3000:]
    from pipelines.local import load_execution

    record = load_execution(local_run.workspace, again.execution_id)
    hits = {step.name for step in record.steps if step.cache_hit}
    assert {"FeatureEngineering", "MergeFeatureShards", "TrainModel", "ComputeMonitorBaseline"} <= hits, hits


@pytest.mark.parametrize("command", [["pipeline", "definition"], ["pipeline", "validate"]])
def test_definition_commands(tmp_path, command):
    first = fbrain(tmp_path, *command)
    assert first.returncode == 0, first.stderr[-2000:]
    if command[-1] == "definition":
        assert fbrain(tmp_path, *command).stdout == first.stdout
        steps = {s["Name"]: s["Type"] for s in json.loads(first.stdout)["Steps"]}
        assert steps["TrainModel"] == "Training" and steps["CheckModelGate"] == "Condition"
    else:
        assert "0 errors" in first.stdout
