"""The pipeline definition, asserted on json.loads(definition) like the SDK's workflow tests."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines import definition as pipeline_definition
from pipelines import sdk_offline
from pipelines.config import FeedbackBrainConfig, load_config
from pipelines.definition import definition_json, image_uri
from training.config import TrainingConfig
from training.train import apply_settings

PARAMETERIZED_SETTINGS = ("backbone", "epochs", "learning_rate", "max_seq_length", "batch_size")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> FeedbackBrainConfig:
    return FeedbackBrainConfig()


@pytest.fixture(scope="module")
def definition(config) -> dict:
    return json.loads(definition_json(config))


def all_steps(steps: list[dict]) -> dict[str, dict]:
    found = {}
    for step in steps:
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            found.update(all_steps(step["Arguments"]["IfSteps"]))
            found.update(all_steps(step["Arguments"]["ElseSteps"]))
    return found


@pytest.fixture(scope="module")
def steps(definition) -> dict[str, dict]:
    return all_steps(definition["Steps"])


def get(reference: str) -> dict:
    return {"Get": reference}


def output_uri(step: str, output: str) -> dict:
    return get(f"Steps.{step}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri")


def as_string(parameter: str) -> dict:
    """How SDK v3 writes `Parameter.to_string()`."""
    return {"Std:Join": {"On": "", "Values": [get(f"Parameters.{parameter}")]}}


def json_get(path: str) -> dict:
    return {"Std:JsonGet": {"Path": path, "PropertyFile": get("Steps.EvaluateModel.PropertyFiles.EvaluationReport")}}


def inputs_by_name(step: dict) -> dict[str, dict]:
    return {i["InputName"]: i["S3Input"] for i in step["Arguments"]["ProcessingInputs"]}


def outputs_by_name(step: dict) -> dict[str, dict]:
    return {o["OutputName"]: o["S3Output"] for o in step["Arguments"]["ProcessingOutputConfig"]["Outputs"]}


def test_step_names_types_and_graph(definition, steps):
    assert definition["Version"] == "2020-12-01"
    assert [(s["Name"], s["Type"]) for s in definition["Steps"]] == [
        ("FeatureEngineering", "Processing"),
        ("MergeFeatureShards", "Processing"),
        ("TrainModel", "Training"),
        ("EvaluateModel", "Processing"),
        ("CheckModelGate", "Condition"),
    ]
    gate = steps["CheckModelGate"]["Arguments"]
    assert [(s["Name"], s["Type"]) for s in gate["IfSteps"]] == [
        ("ComputeMonitorBaseline", "Processing"),
        ("RegisterModel", "RegisterModel"),
    ]
    assert [(s["Name"], s["Type"]) for s in gate["ElseSteps"]] == [("ModelGateFailed", "Fail")]
    assert steps["RegisterModel"]["DependsOn"] == ["ComputeMonitorBaseline"]
    assert definition["PipelineExperimentConfig"] is None


def test_merge_step_reads_the_corrections_prefix(definition, steps, config):
    """Reviewers' corrections reach the labels: MergeFeatureShards mounts the CorrectionsUri prefix and says where."""
    merge = steps["MergeFeatureShards"]["Arguments"]
    corrections = inputs_by_name(steps["MergeFeatureShards"])["corrections"]
    assert corrections == {
        "S3Uri": get("Parameters.CorrectionsUri"), "LocalPath": "/opt/ml/processing/input/corrections",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
        "S3CompressionType": "None",
    }
    arguments = merge["AppSpecification"]["ContainerArguments"]
    flag = arguments.index("--corrections-dir")
    assert arguments[flag + 1] == corrections["LocalPath"]
    declared = {p["Name"]: p for p in definition["Parameters"]}["CorrectionsUri"]
    # The prefix `fbrain monitor corrections add` writes to (local object store: <workspace>/s3/<bucket>/corrections).
    assert declared == {"Name": "CorrectionsUri", "Type": "String",
                        "DefaultValue": f"s3://{config.aws.bucket}/{config.monitoring.corrections_prefix}/"}
    assert "corrections" not in inputs_by_name(steps["FeatureEngineering"]), "pass 1 never needs labels"


def test_merge_step_writes_the_training_marker_beside_the_corrections(steps):
    """Reading the corrections starts a new counting period: the job writes last_training.json into
    --corrections-state-dir and the step uploads that folder to <CorrectionsUri>_state (not an execution folder)."""
    from processing.corrections import STATE_DIR

    merge = steps["MergeFeatureShards"]
    state = outputs_by_name(merge)["corrections_state"]
    assert state == {
        "S3Uri": {"Std:Join": {"On": "", "Values": [get("Parameters.CorrectionsUri"), STATE_DIR]}},
        "LocalPath": "/opt/ml/processing/output/corrections_state", "S3UploadMode": "EndOfJob",
    }
    arguments = merge["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--corrections-state-dir") + 1] == state["LocalPath"]
    assert "--corrections-dir" in arguments, "the marker says when the corrections were read"


def test_corrections_uri_must_end_with_a_slash():
    """`<CorrectionsUri>_state` is joined without a separator, so a value without the trailing '/' is refused
    before an execution starts (locally and on SageMaker)."""
    from pipelines.aws import PipelineAwsError, pipeline_parameters_request
    from pipelines.parameters import check_parameter_values

    check_parameter_values({"CorrectionsUri": "s3://bucket/reviews/corrections/", "Epochs": 1})
    check_parameter_values({})
    for bad in ("s3://bucket/corrections", "bucket/corrections/"):
        with pytest.raises(ValueError, match="must be an S3 prefix ending with '/'"):
            check_parameter_values({"CorrectionsUri": bad})
    definition = definition_json(FeedbackBrainConfig())
    with pytest.raises(PipelineAwsError, match="CorrectionsUri"):
        pipeline_parameters_request(definition, {"CorrectionsUri": "s3://bucket/corrections"})
    assert pipeline_parameters_request(definition, {"CorrectionsUri": "s3://bucket/c/"}) == [
        {"Name": "CorrectionsUri", "Value": "s3://bucket/c/"}]


def test_parameters_are_typed_with_defaults_from_config(definition, config):
    parameters = {p["Name"]: (p["Type"], p.get("DefaultValue")) for p in definition["Parameters"]}
    assert parameters == {
        "InputDataUri": ("String", f"s3://{config.aws.bucket}/{config.aws.input_prefix}"),
        "CorrectionsUri": ("String", f"s3://{config.aws.bucket}/{config.monitoring.corrections_prefix}/"),
        "ProcessingInstanceType": ("String", config.aws.processing_instance_type),
        "ProcessingInstanceCount": ("Integer", config.aws.processing_instance_count),
        "TrainingInstanceType": ("String", config.aws.training_instance_type),
        "TrainingInstanceCount": ("Integer", config.aws.training_instance_count),
        "BackboneModelId": ("String", config.training.backbone),
        "Epochs": ("Integer", config.training.epochs),
        "LearningRate": ("Float", config.training.learning_rate),
        "MaxSequenceLength": ("Integer", config.training.max_seq_length),
        "BatchSize": ("Integer", config.training.batch_size),
        "MacroF1Threshold": ("Float", config.evaluation.macro_f1_threshold),
        "RegressionTolerance": ("Float", config.evaluation.regression_tolerance),
        "ModelApprovalStatus": ("String", "PendingManualApproval"),
        "FeatureGroupName": ("String", config.processing.feature_group_name),
        "PseudonymSaltSecretId": ("String", config.aws.pseudonym_salt_secret_id),
    }
    assert config.aws.training_instance_type.startswith(("ml.g", "ml.p")), "training defaults to a GPU instance"


def test_feature_engineering_step(steps, config):
    arguments = steps["FeatureEngineering"]["Arguments"]
    app = arguments["AppSpecification"]
    assert app["ImageUri"] == image_uri(config, "processing")
    assert app["ContainerEntrypoint"] == ["python3", "-m", "processing.feature_engineering"]
    # The whole processing section (tests/test_settings.py parses it back field by field), two fields
    # from pipeline parameters.
    shared = app["ContainerArguments"][5:]
    assert "--set=processing.split_seed=13" in shared
    assert {"Std:Join": {"On": "=", "Values": ["--set", "processing.feature_group_name",
                                               get("Parameters.FeatureGroupName")]}} in shared
    assert {"Std:Join": {"On": "=", "Values": ["--set", "processing.pseudonym_salt_secret_id",
                                               get("Parameters.PseudonymSaltSecretId")]}} in shared
    assert app["ContainerArguments"] == [
        "--input-dir", "/opt/ml/processing/input/raw", "--output-dir", "/opt/ml/processing/output", "--stage-only",
        *shared]
    raw = inputs_by_name(steps["FeatureEngineering"])["raw"]
    assert raw["S3Uri"] == get("Parameters.InputDataUri")
    assert raw["LocalPath"] == "/opt/ml/processing/input/raw"
    # Instances get disjoint file sets (detect_shard then reads all it sees); the merge sees every shard.
    assert raw["S3DataDistributionType"] == "ShardedByS3Key"
    assert {name: o["LocalPath"] for name, o in outputs_by_name(steps["FeatureEngineering"]).items()} == {
        "lake": "/opt/ml/processing/output/lake"}
    # Pass 2 runs once, on one instance, over every shard's staging: the splits come from it.
    merge = steps["MergeFeatureShards"]["Arguments"]
    assert merge["AppSpecification"]["ContainerEntrypoint"] == ["python3", "-m", "processing.feature_engineering"]
    assert merge["AppSpecification"]["ContainerArguments"] == [
        "--merge-only", "--staged-lake-dir", "/opt/ml/processing/input/lake", "--output-dir", "/opt/ml/processing/output",
        "--corrections-dir", "/opt/ml/processing/input/corrections",
        "--corrections-state-dir", "/opt/ml/processing/output/corrections_state", *shared]
    assert merge["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    staged = inputs_by_name(steps["MergeFeatureShards"])["lake"]
    assert staged["S3Uri"] == output_uri("FeatureEngineering", "lake")
    assert staged["S3DataDistributionType"] == "FullyReplicated"
    outputs = outputs_by_name(steps["MergeFeatureShards"])
    assert {name: o["LocalPath"] for name, o in outputs.items()} == {
        "train": "/opt/ml/processing/output/train",
        "validation": "/opt/ml/processing/output/validation",
        "test": "/opt/ml/processing/output/test",
        "lake": "/opt/ml/processing/output/lake",
        "corrections_state": "/opt/ml/processing/output/corrections_state",
    }
    assert outputs["train"]["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        "s3:/", config.aws.bucket, config.aws.pipeline_name, get("Execution.PipelineExecutionId"),
        "MergeFeatureShards", "train"]}}
    cluster = arguments["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceType"] == get("Parameters.ProcessingInstanceType")
    assert cluster["InstanceCount"] == get("Parameters.ProcessingInstanceCount")
    assert arguments["RoleArn"] == config.aws.role_arn


def test_training_step_names_its_entry_point_and_reads_features(steps, config):
    arguments = steps["TrainModel"]["Arguments"]
    algorithm = arguments["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == image_uri(config, "training")
    assert algorithm["ContainerEntrypoint"] == ["python3", "-m", "training.train"]
    assert "ContainerArguments" not in algorithm
    metric_names = {m["Name"] for m in algorithm["MetricDefinitions"]}
    assert {"val:macro_f1", "train:loss", "best_val_macro_f1"} <= metric_names
    assert all(m["Regex"].startswith("metric: ") for m in algorithm["MetricDefinitions"])
    hyperparameters = arguments["HyperParameters"]
    assert {name: hyperparameters.pop(name) for name in PARAMETERIZED_SETTINGS} == {
        "backbone": get("Parameters.BackboneModelId"),
        "epochs": as_string("Epochs"),
        "learning_rate": as_string("LearningRate"),
        "max_seq_length": as_string("MaxSequenceLength"),
        "batch_size": as_string("BatchSize"),
    }
    # The rest of the training section, as strings the training entry point parses back.
    assert apply_settings(TrainingConfig(), hyperparameters, "job") == config.training
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in arguments["InputDataConfig"]}
    assert channels == {
        "train": output_uri("MergeFeatureShards", "train"),
        "validation": output_uri("MergeFeatureShards", "validation"),
    }
    assert arguments["ResourceConfig"]["InstanceType"] == get("Parameters.TrainingInstanceType")
    assert arguments["ResourceConfig"]["InstanceCount"] == get("Parameters.TrainingInstanceCount")
    # No code upload: nothing but the data channels goes in.
    assert all(not c["ChannelName"].startswith(("code", "sm_drivers")) for c in arguments["InputDataConfig"])


def test_training_runs_on_spot_with_resumable_checkpoints(steps):
    arguments = steps["TrainModel"]["Arguments"]
    assert arguments["EnableManagedSpotTraining"] is True
    stopping = arguments["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    checkpoints = arguments["CheckpointConfig"]
    assert checkpoints["LocalPath"] == "/opt/ml/checkpoints"
    # one prefix per execution: a spot restart of this job finds its own checkpoints, no other run's
    assert get("Execution.PipelineExecutionId") in checkpoints["S3Uri"]["Std:Join"]["Values"]


def test_evaluation_step_wiring_and_property_file(steps, config):
    step = steps["EvaluateModel"]
    app = step["Arguments"]["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["python3", "-m", "training.evaluate"]
    assert app["ContainerArguments"] == [
        "--model-dir", "/opt/ml/processing/model",
        "--test-dir", "/opt/ml/processing/test",
        "--train-dir", "/opt/ml/processing/train",
        "--output-dir", "/opt/ml/processing/evaluation",
        "--model-package-group", config.aws.model_package_group,
        *app["ContainerArguments"][10:],
    ]
    settings = app["ContainerArguments"][10:]
    assert {"Std:Join": {"On": "=", "Values": ["--set", "evaluation.macro_f1_threshold",
                                               as_string("MacroF1Threshold")]}} in settings
    assert {"Std:Join": {"On": "=", "Values": ["--set", "evaluation.regression_tolerance",
                                               as_string("RegressionTolerance")]}} in settings
    inputs = inputs_by_name(step)
    assert inputs["model"]["S3Uri"] == get("Steps.TrainModel.ModelArtifacts.S3ModelArtifacts")
    assert inputs["model"]["LocalPath"] == "/opt/ml/processing/model"
    assert inputs["test"]["S3Uri"] == output_uri("MergeFeatureShards", "test")
    assert inputs["train"]["S3Uri"] == output_uri("MergeFeatureShards", "train")
    assert outputs_by_name(step)["evaluation"]["LocalPath"] == "/opt/ml/processing/evaluation"
    assert step["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_gate_condition_and_fail_message(steps):
    conditions = steps["CheckModelGate"]["Arguments"]["Conditions"]
    assert conditions == [
        {"Type": "GreaterThanOrEqualTo", "LeftValue": json_get("gate.macro_f1"),
         "RightValue": get("Parameters.MacroF1Threshold")},
        {"Type": "Equals", "LeftValue": json_get("gate.no_regression"), "RightValue": True},
    ]
    message = steps["ModelGateFailed"]["Arguments"]["ErrorMessage"]
    assert message == {"Std:Join": {"On": " ", "Values": ["Model gate failed:", json_get("gate.message")]}}


def test_monitor_baseline_step(steps):
    step = steps["ComputeMonitorBaseline"]
    app = step["Arguments"]["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["python3", "-m", "monitoring.baseline"]
    assert app["ContainerArguments"][:6] == [
        "--model-dir", "/opt/ml/processing/model",
        "--train-dir", "/opt/ml/processing/train",
        "--output-dir", "/opt/ml/processing/baseline",
    ]
    assert app["ContainerArguments"][6] == "--set=monitoring.drift_auc_threshold=0.75"  # the whole section follows
    assert inputs_by_name(step)["train"]["S3Uri"] == output_uri("MergeFeatureShards", "train")
    assert outputs_by_name(step)["baseline"]["LocalPath"] == "/opt/ml/processing/baseline"


def test_registration_carries_metrics_baselines_and_approval(steps, config):
    arguments = steps["RegisterModel"]["Arguments"]
    assert arguments["ModelPackageGroupName"] == config.aws.model_package_group
    assert arguments["ModelApprovalStatus"] == get("Parameters.ModelApprovalStatus")
    container = arguments["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == image_uri(config, "inference")
    assert container["ModelDataUrl"] == get("Steps.TrainModel.ModelArtifacts.S3ModelArtifacts")

    def file_in(step, output, name):
        return {"ContentType": "application/json",
                "S3Uri": {"Std:Join": {"On": "/", "Values": [output_uri(step, output), name]}}}

    assert arguments["ModelMetrics"]["ModelQuality"]["Statistics"] == file_in(
        "EvaluateModel", "evaluation", "evaluation.json")
    assert arguments["DriftCheckBaselines"]["ModelDataQuality"] == {
        "Statistics": file_in("ComputeMonitorBaseline", "baseline", "statistics.json"),
        "Constraints": file_in("ComputeMonitorBaseline", "baseline", "constraints.json"),
    }


def test_config_overrides_reach_the_definition():
    changed = load_config(overrides=["aws.image_tag=abc123", "training.epochs=1", "aws.pipeline_name=fb-test"])
    parsed = json.loads(definition_json(changed))
    found = all_steps(parsed["Steps"])
    assert found["TrainModel"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"].endswith(
        "/feedback-brain-training:abc123")
    assert {p["Name"]: p.get("DefaultValue") for p in parsed["Parameters"]}["Epochs"] == 1
    assert "fb-test" in json.dumps(found["FeatureEngineering"]["Arguments"]["ProcessingOutputConfig"])


def test_image_uri_rejects_unknown_kind(config):
    assert image_uri(config, "inference") == f"{config.aws.ecr_registry}/feedback-brain-inference:{config.aws.image_tag}"
    with pytest.raises(ValueError, match="unknown image kind"):
        image_uri(config, "serving")


def _fresh_build(config) -> str:
    """A build that shares nothing with earlier ones: no cached session, no memoised JSON."""
    sdk_offline._sessions.clear()
    pipeline_definition._definitions.clear()
    return definition_json(config)


def test_build_makes_no_network_call(monkeypatch, config):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network call while building the definition: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    started_threads = []
    original_start = threading.Thread.start

    def record_start(thread):
        started_threads.append(thread.name)
        return original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", record_start)
    text = _fresh_build(config)
    assert attempts == []
    assert "sagemaker-telemetry" not in started_threads, "SDK telemetry would call STS and an HTTPS endpoint"
    assert json.loads(text)["Steps"]


def test_build_time_sdk_adjustments_are_undone():
    from sagemaker.mlops.workflow import steps as workflow_steps

    before_client, before_disable = workflow_steps.LocalSagemakerClient, logging.root.manager.disable
    with sdk_offline.quiet_fast_build():
        assert workflow_steps.LocalSagemakerClient is not before_client
    assert workflow_steps.LocalSagemakerClient is before_client
    assert logging.root.manager.disable == before_disable


def test_two_fresh_builds_are_byte_identical(config):
    first = _fresh_build(config)
    second = _fresh_build(config)
    assert first == second
    assert first == json.dumps(json.loads(first), indent=2, sort_keys=True)


def test_another_process_builds_the_same_bytes(config, tmp_path):
    """Across processes (another hash seed, no shared state) the bytes are the same too."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = tmp_path / "definition.json"
    code = (
        "import sys; from pipelines.config import FeedbackBrainConfig; "
        "from pipelines.definition import definition_json; "
        f"open({str(out)!r}, 'w').write(definition_json(FeedbackBrainConfig()))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120)
    assert out.read_text() == definition_json(config)


def test_mlflow_server_reaches_training_and_evaluation_only():
    arn = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/feedback-brain"
    found = all_steps(json.loads(definition_json(load_config(overrides=[f"aws.mlflow_tracking_arn={arn}"])))["Steps"])
    assert found["TrainModel"]["Arguments"]["Environment"] == {"MLFLOW_TRACKING_URI": arn}
    assert found["EvaluateModel"]["Arguments"]["Environment"] == {"MLFLOW_TRACKING_URI": arn}
    assert "Environment" not in found["FeatureEngineering"]["Arguments"]
    assert "Environment" not in found["ComputeMonitorBaseline"]["Arguments"]


def test_default_definition_carries_no_environment(steps):
    assert all("Environment" not in steps[name]["Arguments"] for name in ("TrainModel", "EvaluateModel"))


def test_every_configured_training_setting_reaches_the_training_job():
    config = load_config(overrides=["training.class_weight_scope=all", "training.head_dropout=0.25",
                                    'training.source_weights={"reviews": 2.5}', "training.class_weighting=false"])
    train = all_steps(json.loads(definition_json(config))["Steps"])["TrainModel"]
    hyperparameters = train["Arguments"]["HyperParameters"]
    assert hyperparameters["class_weight_scope"] == "all" and hyperparameters["class_weighting"] == "false"
    assert hyperparameters["source_weights"] == '{"reviews": 2.5}'
    received = apply_settings(TrainingConfig(), {k: v for k, v in hyperparameters.items()
                                                 if k not in PARAMETERIZED_SETTINGS}, "job")
    assert received == config.training
