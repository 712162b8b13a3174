"""teacher -> labels -> student in the pipeline definition (training.teacher_source), asserted on json.loads(definition)."""
from __future__ import annotations

import json

import pytest

from pipelines.config import load_config
from pipelines.definition import definition_json
from pipelines.validate import validate_definition
from training.config import TrainingConfig
from training.train import apply_settings


def _definition(*overrides: str) -> dict:
    return json.loads(definition_json(load_config(overrides=list(overrides))))


def _steps(definition: dict) -> dict[str, dict]:
    return {step["Name"]: step for step in definition["Steps"]}


def _channels(step: dict) -> dict:
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in step["Arguments"]["InputDataConfig"]}


def _parameters(definition: dict) -> dict:
    return {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}


def test_without_a_teacher_the_definition_has_no_teacher_channel_step_or_parameter():
    definition = _definition()
    assert "teacher" not in _channels(_steps(definition)["TrainModel"])
    assert not {"TrainTeacher", "ScoreTeacher"} & set(_steps(definition))
    assert not {"TeacherOutputsUri", "TeacherInstanceType"} & set(_parameters(definition))


def test_teacher_outputs_from_a_uri_feed_the_students_teacher_channel():
    definition = _definition("training.teacher_source=uri", "aws.bucket=fb-bucket")
    assert _parameters(definition)["TeacherOutputsUri"] == "s3://fb-bucket/teacher-outputs/"
    assert _channels(_steps(definition)["TrainModel"])["teacher"] == {"Get": "Parameters.TeacherOutputsUri"}
    chosen = _definition("training.teacher_source=uri", "training.teacher_outputs_uri=s3://x/gpu-run/")
    assert _parameters(chosen)["TeacherOutputsUri"] == "s3://x/gpu-run/"
    assert validate_definition(definition) == []


def test_the_same_definition_runs_teacher_then_its_labels_then_the_student():
    definition = _definition("training.teacher_source=step", "training.teacher_epochs=2",
                             "training.teacher_instance_type=ml.g6e.2xlarge")
    assert [s["Name"] for s in definition["Steps"]] == [
        "FeatureEngineering", "MergeFeatureShards", "TrainTeacher", "ScoreTeacher", "TrainModel", "EvaluateModel",
        "CheckModelGate"]
    steps = _steps(definition)
    assert _parameters(definition)["TeacherInstanceType"] == "ml.g6e.2xlarge"

    teacher = steps["TrainTeacher"]["Arguments"]
    assert teacher["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python3", "-m", "training.train"]
    assert teacher["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TeacherInstanceType"}
    assert teacher["ResourceConfig"]["InstanceCount"] == 1
    hyperparameters = teacher["HyperParameters"]
    assert hyperparameters["backbone"] == "packaged:all-mpnet-base-v2"
    assert (hyperparameters["epochs"], hyperparameters["export_onnx"]) == ("2", "false")
    assert set(_channels(steps["TrainTeacher"])) == {"train", "validation"}
    assert "TrainTeacher" in json.dumps(teacher["CheckpointConfig"]) and "TrainTeacher" in json.dumps(teacher["OutputDataConfig"])

    score = steps["ScoreTeacher"]["Arguments"]
    assert score["AppSpecification"]["ContainerEntrypoint"] == ["python3", "-m", "training.teacher_outputs"]
    assert score["AppSpecification"]["ImageUri"].split("/")[-1].startswith("feedback-brain-training:")
    assert score["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {"Get": "Parameters.TeacherInstanceType"}
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in score["ProcessingInputs"]}
    assert inputs["model"] == {"Get": "Steps.TrainTeacher.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["train"] == {"Get": "Steps.MergeFeatureShards.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
    arguments = score["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--output-dir") + 1] == "/opt/ml/processing/teacher"

    student = steps["TrainModel"]["Arguments"]
    assert _channels(steps["TrainModel"])["teacher"] == {
        "Get": "Steps.ScoreTeacher.ProcessingOutputConfig.Outputs['teacher'].S3Output.S3Uri"}
    assert student["HyperParameters"]["backbone"] == {"Get": "Parameters.BackboneModelId"}
    received = apply_settings(TrainingConfig(), {k: v for k, v in student["HyperParameters"].items()
                                                 if not isinstance(v, dict)}, "job")
    assert received.teacher_source == "step" and received.distillation_temperature == 2.0
    assert validate_definition(definition) == []


def test_a_teacher_source_that_does_not_exist_is_refused():
    with pytest.raises(Exception, match="teacher_source"):
        load_config(overrides=["training.teacher_source=gpu"])


@pytest.mark.slow
def test_the_local_pipeline_runs_teacher_labels_then_a_distilled_student(tmp_path):
    """`fbrain --set training.teacher_source=step pipeline run --local` on the demo corpus, with the packaged MiniLM
    as a cheap CPU teacher (the mpnet teacher needs a GPU): the student trains on ScoreTeacher's outputs and the
    usual evaluation, gate, ONNX int8 export + parity and registration follow."""
    from e2e_support import fbrain

    done = fbrain(tmp_path, "--set", "training.teacher_source=step",
                  "--set", "training.teacher_backbone=packaged:all-minilm-l6-v2", "--set", "training.teacher_epochs=1",
                  "pipeline", "run", "--local", "--workspace", str(tmp_path), "--param", "Epochs=1",
                  "--param", "MacroF1Threshold=0.0", "--param", "ModelApprovalStatus=Approved")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    (execution,) = (tmp_path / "executions").iterdir()
    for step in ("TrainTeacher", "ScoreTeacher", "TrainModel", "EvaluateModel", "RegisterModel"):
        assert f"{step:<24} Succeeded" in done.stdout, done.stdout[-3000:]
    teacher = json.loads((execution / "ScoreTeacher" / "opt/ml/processing/teacher/teacher_manifest.json").read_text())
    student = json.loads((execution / "TrainModel" / "opt/ml/output/data/training_summary.json").read_text())
    # Every training row (the demo corpus's unlabeled rows too) learned from the teacher; rows repeat texts, the
    # teacher outputs hold each distinct text once.
    train_rows = sum(1 for path in (execution / "TrainModel" / "opt/ml/input/data/train").glob("*.jsonl")
                     for line in path.read_text().splitlines() if line.strip())
    assert student["distillation"]["train_rows_with_teacher"] == train_rows
    assert 0 < teacher["rows"] <= train_rows
    assert student["onnx_parity"]["int8"]["n_texts"] > 0  # exported, int8 parity measured (1 epoch: not judged)
