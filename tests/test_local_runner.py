"""The embedded runner executes a SageMaker-shaped definition end to end with tiny jobs."""
from __future__ import annotations

import copy
import json
import logging
import sys
import tarfile
from pathlib import Path

import pytest

from pipelines.local import (RunnerError, latest_approved_model_dir, list_executions, load_execution, plan_pipeline,
                             resolve_champion, run_pipeline)
from pipelines.local.object_store import ObjectStore
from test_local_runner_support import definition, write_raw_input, write_scripts

RAW_URI = "s3://bucket/input/raw"


def _store(workspace: Path) -> ObjectStore:
    return ObjectStore(workspace / "s3")


def _statuses(record) -> dict[str, str]:
    return {step.name: step.status for step in record.steps}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> dict[str, Path]:
    return write_scripts(tmp_path_factory.mktemp("scripts"))


@pytest.fixture(scope="module")
def approved(tmp_path_factory, scripts):
    """One workspace, two identical runs (the second should hit the cache), models Approved."""
    workspace = tmp_path_factory.mktemp("approved")
    raw = write_raw_input(workspace.parent / f"{workspace.name}-raw.jsonl", lines=7)
    pipeline = definition(scripts)
    first = run_pipeline(pipeline, workspace, parameters={"ModelApprovalStatus": "Approved"},
                         seed_inputs={RAW_URI: raw})
    second = run_pipeline(pipeline, workspace, parameters={"ModelApprovalStatus": "Approved"},
                          seed_inputs={RAW_URI: raw})
    return workspace, first, second, raw


def test_happy_path_runs_every_step_on_its_branch_and_records_it(approved):
    workspace, first, _, _ = approved
    assert first.status == "Succeeded", first.failure_reason
    assert _statuses(first) == {"FeatureEngineering": "Succeeded", "TrainModel": "Succeeded",
                                "EvaluateModel": "Succeeded", "CheckModelGate": "Succeeded",
                                "RegisterModel": "Succeeded", "ModelGateFailed": "NotExecuted"}
    assert first.step("CheckModelGate").properties == {"Outcome": "True"}
    on_disk = json.loads((workspace / "executions" / first.execution_id / "execution.json").read_text())
    assert on_disk["status"] == "Succeeded" and on_disk["parameters"]["ModelApprovalStatus"] == "Approved"
    assert on_disk["parameters"]["Epochs"] == 2 and on_disk["start_time"] <= on_disk["end_time"]
    loaded = load_execution(workspace, first.execution_id)
    assert loaded.to_dict() == first.to_dict()
    for step in loaded.steps:
        if step.status == "Succeeded":
            assert step.start_time <= step.end_time and step.duration_seconds >= 0
            assert Path(step.log_file).is_file(), step.name
    assert "prepare: read 7 lines" in Path(loaded.step("FeatureEngineering").log_file).read_text()
    assert loaded.step("EvaluateModel").outputs["evaluation"] == f"s3://bucket/{first.execution_id}/evaluation"
    assert loaded.step("EvaluateModel").property_files["EvaluationReport"].endswith("/evaluation/evaluation.json")


def test_processing_job_sees_its_inputs_and_remapped_paths(approved):
    workspace, first, _, raw = approved
    store = _store(workspace)
    assert (store.path(RAW_URI) / raw.name).read_text() == raw.read_text()  # seeded into the empty prefix
    train = store.path(first.step("FeatureEngineering").outputs["train"]) / "examples.jsonl"
    assert train.read_text().splitlines() == raw.read_text().splitlines()
    report = json.loads((store.path(first.step("FeatureEngineering").outputs["report"]) / "report.json").read_text())
    step_root = workspace.resolve() / "executions" / first.execution_id / "FeatureEngineering"
    assert report["argv"] == ["--input-dir", f"{step_root}/opt/ml/processing/input/raw",
                              "--train-dir", f"{step_root}/opt/ml/processing/output/train",
                              f"--report-dir={step_root}/opt/ml/processing/output/report"]
    assert report["cwd"] == str(step_root) and report["executable"] == sys.executable
    env = report["env"]
    assert env["MODE"] == "demo" and env["FBRAIN_SCRATCH"] == f"{step_root}/opt/ml/processing/scratch"
    assert env["FBRAIN_LOCAL_FEATURE_STORE"] == str(workspace.resolve() / "featurestore")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{workspace.resolve()}/mlflow.db"
    assert env["HF_HUB_OFFLINE"] == "1" and "FBRAIN_CHAMPION_MODEL_DIR" not in env  # no champion yet
    assert env["_MLFLOW_SERVER_ARTIFACT_ROOT"] == (workspace.resolve() / "mlartifacts").as_uri()


def test_training_job_gets_the_sagemaker_contract_and_model_tar_gz(approved):
    workspace, first, _, _ = approved
    store = _store(workspace)
    train = first.step("TrainModel")
    job = train.job_name
    model_uri = f"s3://bucket/{first.execution_id}/training/{job}/output/model.tar.gz"
    assert train.properties["ModelArtifacts"]["S3ModelArtifacts"] == model_uri == train.outputs["model"]
    with tarfile.open(store.path(model_uri)) as tar:
        assert sorted(tar.getnames()) == ["contract.json", "sub", "sub/vocab.txt", "weights.txt"]
        contract = json.loads(tar.extractfile("contract.json").read())
    with tarfile.open(store.path(train.outputs["output"])) as tar:
        assert tar.getnames() == ["curve.csv"]
    assert contract["hps"] == {"epochs": "2", "quality": "0.8", "backbone": "tiny"}
    env = contract["env"]
    step_root = workspace.resolve() / "executions" / first.execution_id / "TrainModel"
    assert json.loads(env["SM_HPS"]) == {"epochs": 2, "quality": 0.8, "backbone": "tiny"}
    assert json.loads(env["SM_CHANNELS"]) == ["train"]
    assert env["SM_CHANNEL_TRAIN"] == f"{step_root}/opt/ml/input/data/train"
    assert env["SM_MODEL_DIR"] == f"{step_root}/opt/ml/model"
    assert env["SM_OUTPUT_DATA_DIR"] == f"{step_root}/opt/ml/output/data"
    assert env["SM_INPUT_CONFIG_DIR"] == f"{step_root}/opt/ml/input/config"
    assert env["SM_CHECKPOINT_DIR"] == f"{step_root}/opt/ml/checkpoints" and env["SM_NUM_GPUS"] == "0"
    assert contract["argv"] == ["--config", f"{step_root}/opt/ml/input/config/hyperparameters.json"]
    assert train.properties["FinalMetricDataList"][0]["MetricName"] == "validation:macro_f1"
    assert train.properties["FinalMetricDataList"][0]["Value"] == pytest.approx(0.8)  # last match wins
    checkpoints = store.path(f"s3://bucket/checkpoints/{first.execution_id}")
    assert (checkpoints / "epoch-1.ckpt").is_file()  # synced to CheckpointConfig.S3Uri


def test_model_is_registered_in_mlflow_with_metrics_approval_and_champion_alias(approved):
    from mlflow import MlflowClient

    workspace, first, second, _ = approved
    uri = f"sqlite:///{workspace.resolve()}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("fb-models", "1")
    assert version.tags["approval_status"] == "Approved"
    assert float(version.tags["metric.gate.macro_f1"]) == pytest.approx(0.8)
    assert version.tags["fbrain.execution_id"] == first.execution_id
    run = client.get_run(version.run_id)
    assert run.data.metrics["multiclass_classification_metrics.accuracy.value"] == pytest.approx(0.8)
    assert int(client.get_model_version_by_alias("fb-models", "champion").version) == 2  # newest approved
    champion = resolve_champion(workspace, "fb-models")
    assert champion is not None and champion[0] == 2
    assert (champion[1] / "weights.txt").read_text() == "quality=0.8\n"
    assert "torch==" in (champion[1] / "requirements.txt").read_text()
    assert latest_approved_model_dir(workspace, "fb-models") == champion[1]
    assert resolve_champion(workspace, "no-such-group") is None
    package = json.loads((workspace / "registry" / "fb-models" / "1" / "model_package.json").read_text())
    assert package["ModelApprovalStatus"] == "Approved" and package["ModelPackageVersion"] == 1
    assert package["ModelPackageArn"].endswith(":model-package/fb-models/1")
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == first.step("TrainModel").outputs["model"]
    assert first.step("RegisterModel").properties["ModelPackageArn"] == package["ModelPackageArn"]


def test_approval_updates_move_the_champion_alias(approved):
    from pipelines.local.registry import update_approval_status

    workspace = approved[0]
    update_approval_status(workspace, "fb-models", 1, "Approved")
    assert resolve_champion(workspace, "fb-models")[0] == 1
    update_approval_status(workspace, "fb-models", 1, "Rejected")
    assert resolve_champion(workspace, "fb-models") is None  # the champion was rejected: no alias left
    record = json.loads((workspace / "registry" / "fb-models" / "1" / "model_package.json").read_text())
    assert record["ModelApprovalStatus"] == "Rejected"
    assert latest_approved_model_dir(workspace, "fb-models") is not None  # version 2 is still Approved
    update_approval_status(workspace, "fb-models", 2, "Approved")
    assert resolve_champion(workspace, "fb-models")[0] == 2
    with pytest.raises(ValueError, match="approval status"):
        update_approval_status(workspace, "fb-models", 2, "Maybe")


def test_second_identical_run_reuses_cached_job_steps(approved):
    workspace, first, second, _ = approved
    assert second.status == "Succeeded" and second.execution_id != first.execution_id
    for name in ("FeatureEngineering", "TrainModel", "EvaluateModel"):
        step = second.step(name)
        assert step.cache_hit and step.cached_from == first.execution_id, name
        assert step.outputs == first.step(name).outputs
        assert "cache hit" in Path(step.log_file).read_text()
    assert not (workspace / "executions" / second.execution_id / "TrainModel").exists()  # nothing ran
    assert not second.step("RegisterModel").cache_hit
    assert [r.execution_id for r in list_executions(workspace)][:2] == [second.execution_id, first.execution_id]


def test_changed_input_misses_the_cache_and_no_cache_runs_everything(approved, scripts):
    workspace, first, _, raw = approved
    pipeline = definition(scripts)
    fresh = run_pipeline(pipeline, workspace, parameters={"ModelApprovalStatus": "Rejected"}, no_cache=True)
    assert fresh.status == "Succeeded"
    assert not any(step.cache_hit for step in fresh.steps)
    report = json.loads((_store(workspace).path(fresh.step("FeatureEngineering").outputs["report"]) / "report.json").read_text())
    assert report["env"]["FBRAIN_CHAMPION_MODEL_DIR"] == str(resolve_champion(workspace, "fb-models")[1])
    assert resolve_champion(workspace, "fb-models")[0] == 2  # a Rejected version does not become champion
    store = _store(workspace)
    (store.path(RAW_URI) / raw.name).write_text(raw.read_text() + '{"feedback_id": "new", "text": "more"}\n')
    changed = run_pipeline(pipeline, workspace, parameters={"ModelApprovalStatus": "Rejected"})
    assert not changed.step("FeatureEngineering").cache_hit and not changed.step("TrainModel").cache_hit


def test_gate_below_threshold_takes_the_else_branch_and_fails_with_the_message(tmp_path, scripts):
    raw = write_raw_input(tmp_path / "raw.jsonl")
    record = run_pipeline(definition(scripts), tmp_path / "ws", parameters={"Quality": "0.3"},
                          seed_inputs={RAW_URI: raw})
    assert record.status == "Failed"
    assert record.failure_reason == "macro_f1 0.300 is below the threshold"
    assert record.step("ModelGateFailed").status == "Failed"
    assert record.step("ModelGateFailed").failure_reason == "macro_f1 0.300 is below the threshold"
    assert record.step("CheckModelGate").properties == {"Outcome": "False"}
    assert record.step("RegisterModel").status == "NotExecuted"
    assert not (tmp_path / "ws" / "mlflow.db").exists()


@pytest.mark.parametrize("with_checkpoints", [True, False], ids=["checkpoint-config", "no-checkpoint-config"])
def test_failed_step_stops_prints_its_log_tail_and_resumes_from_checkpoints(tmp_path, scripts, caplog, with_checkpoints):
    caplog.set_level(logging.INFO, logger="fbrain.runner")
    raw = write_raw_input(tmp_path / "raw.jsonl")
    flag = tmp_path / "fail.flag"
    flag.write_text("fail")
    pipeline = definition(scripts, fail_flag=flag, with_checkpoints=with_checkpoints)
    pipeline["Steps"] = pipeline["Steps"][:3]  # no gate: the resumed execution can succeed
    workspace = tmp_path / "ws"
    failed = run_pipeline(pipeline, workspace, seed_inputs={RAW_URI: raw})
    assert failed.status == "Failed"
    train = failed.step("TrainModel")
    assert train.status == "Failed" and "exit code 3" in train.failure_reason and "simulated crash" in train.failure_reason
    assert failed.failure_reason.startswith("Step TrainModel failed")
    assert failed.step("EvaluateModel").status == "NotStarted"
    assert "CUDA out of memory (pretend)" in caplog.text and "last " in caplog.text
    kept = failed.step("FeatureEngineering")

    flag.unlink()
    resumed = run_pipeline(pipeline, workspace, resume_execution_id=failed.execution_id)
    assert resumed.execution_id == failed.execution_id and resumed.status == "Succeeded" and resumed.resumed == 1
    assert resumed.step("FeatureEngineering").start_time == kept.start_time  # kept, not re-run
    model = _store(workspace).path(resumed.step("TrainModel").outputs["model"])
    with tarfile.open(model) as tar:
        assert json.loads(tar.extractfile("contract.json").read())["resumed"] is True
    assert load_execution(workspace, failed.execution_id).status == "Succeeded"
    with pytest.raises(RunnerError, match="nothing to resume"):
        run_pipeline(pipeline, workspace, resume_execution_id=failed.execution_id)


def test_bad_inputs_and_unknown_step_types_fail_with_clear_reasons(tmp_path, scripts):
    missing = run_pipeline(definition(scripts), tmp_path / "ws")
    assert missing.status == "Failed"
    assert "input raw: no object or prefix at s3://bucket/input/raw" in missing.step("FeatureEngineering").failure_reason
    lambda_step = {"Version": "2020-12-01", "Parameters": [], "Steps": [
        {"Name": "Notify", "Type": "Lambda", "Arguments": {}, "FunctionArn": "arn:aws:lambda:x"}]}
    unknown = run_pipeline(lambda_step, tmp_path / "ws2")
    assert unknown.status == "Failed" and "'Lambda' is not supported" in unknown.step("Notify").failure_reason
    with pytest.raises(RunnerError, match="unknown parameter"):
        run_pipeline(definition(scripts), tmp_path / "ws3", parameters={"Epoch": "3"})
    with pytest.raises(RunnerError, match="Epochs is Integer"):
        run_pipeline(definition(scripts), tmp_path / "ws3", parameters={"Epochs": "three"})


def test_resume_keeps_the_parameters_of_the_execution(tmp_path, scripts):
    pipeline = definition(scripts)
    failed = run_pipeline(pipeline, tmp_path / "ws")  # no input: fails at the first step
    with pytest.raises(RunnerError, match="keeps its parameters"):
        run_pipeline(pipeline, tmp_path / "ws", parameters={"Epochs": "5"}, resume_execution_id=failed.execution_id)


def test_plan_resolves_and_orders_every_step_without_running(tmp_path, scripts):
    plan = plan_pipeline(definition(scripts), tmp_path / "ws", parameters={"Epochs": "4"})
    assert [step.name for step in plan] == ["FeatureEngineering", "TrainModel", "EvaluateModel", "CheckModelGate",
                                            "RegisterModel", "ModelGateFailed"]
    assert all(step.error is None for step in plan), [(s.name, s.error) for s in plan]
    train = next(step for step in plan if step.name == "TrainModel")
    assert train.arguments["HyperParameters"]["epochs"] == "4"
    assert train.arguments["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bucket/planned-execution/train"
    register = next(step for step in plan if step.name == "RegisterModel")
    assert register.arguments["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].endswith("/output/model.tar.gz")
    fail = next(step for step in plan if step.name == "ModelGateFailed")
    assert fail.arguments["ErrorMessage"].startswith("<JsonGet EvaluateModel.EvaluationReport:gate.message")
    assert not (tmp_path / "ws").exists()
    broken = copy.deepcopy(definition(scripts))
    broken["Steps"][1]["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = {
        "Get": "Steps.FeatureEngineering.ProcessingOutputConfig.Outputs['missing'].S3Output.S3Uri"}
    errors = {step.name: step.error for step in plan_pipeline(broken, tmp_path / "ws")}
    assert "no element named 'missing'" in errors["TrainModel"]


def test_plan_resolves_every_expression_of_the_real_definition(tmp_path):
    definition_module = pytest.importorskip("pipelines.definition")
    from pipelines.config import FeedbackBrainConfig

    real = json.loads(definition_module.definition_json(FeedbackBrainConfig()))
    plan = plan_pipeline(real, tmp_path / "ws", parameters={"Epochs": "1"})
    assert all(step.error is None for step in plan), [(s.name, s.error) for s in plan]
    names = [step.name for step in plan]
    for required in ("FeatureEngineering", "TrainModel", "EvaluateModel", "CheckModelGate", "ModelGateFailed",
                     "ComputeMonitorBaseline", "RegisterModel"):
        assert required in names
    assert names.index("TrainModel") < names.index("EvaluateModel") < names.index("CheckModelGate")
    assert names.index("ComputeMonitorBaseline") < names.index("RegisterModel")
    train = plan[names.index("TrainModel")]
    assert train.arguments["HyperParameters"]["epochs"] == "1"
