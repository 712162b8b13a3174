"""Support module (no tests): tiny jobs and a SageMaker-shaped definition for the local runner's tests (no real model training)."""
from __future__ import annotations

import textwrap
from pathlib import Path

PREPARE = textwrap.dedent('''
    """Processing job: copy the raw lines into train/, report what the container looked like."""
    import argparse, json, os, pathlib, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--input-dir"); parser.add_argument("--train-dir"); parser.add_argument("--report-dir")
    args = parser.parse_args()
    lines = []
    for path in sorted(pathlib.Path(args.input_dir).rglob("*")):
        if path.is_file():
            lines += path.read_text().splitlines()
    print(f"prepare: read {len(lines)} lines", flush=True)
    train = pathlib.Path(args.train_dir); train.mkdir(parents=True, exist_ok=True)
    (train / "examples.jsonl").write_text("\\n".join(lines) + "\\n")
    report = {"argv": sys.argv[1:], "cwd": os.getcwd(), "executable": sys.executable,
              "env": {k: v for k, v in os.environ.items() if k.startswith(("FBRAIN_", "MLFLOW_", "_MLFLOW_", "HF_", "MODE"))}}
    pathlib.Path(args.report_dir, "report.json").write_text(json.dumps(report))
''')

TRAIN = textwrap.dedent('''
    """Training job: reads SageMaker's contract, writes a 'model' and output data; fails on request."""
    import json, os, pathlib, sys
    config = pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"])
    hps = json.loads((config / "hyperparameters.json").read_text())
    train_dir = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"])
    rows = (train_dir / "examples.jsonl").read_text().splitlines()
    checkpoint_dir = pathlib.Path(os.environ.get("SM_CHECKPOINT_DIR", "/nonexistent"))
    resumed = (checkpoint_dir / "epoch-1.ckpt").is_file()
    print(f"train: {len(rows)} rows, epochs={hps['epochs']}, resumed={resumed}", flush=True)
    if os.environ.get("SM_CHECKPOINT_DIR"):
        (checkpoint_dir / "epoch-1.ckpt").write_text("weights after epoch 1")
    fail_flag = os.environ.get("FAIL_FLAG_FILE")
    if fail_flag and pathlib.Path(fail_flag).exists():
        print("train: simulated crash: CUDA out of memory (pretend)", flush=True)
        pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("simulated crash")
        sys.exit(3)
    model = pathlib.Path(os.environ["SM_MODEL_DIR"])
    (model / "weights.txt").write_text(f"quality={hps['quality']}\\n")
    (model / "sub").mkdir(exist_ok=True)
    (model / "sub" / "vocab.txt").write_text("a\\nb\\n")
    contract = {k: v for k, v in os.environ.items() if k.startswith("SM_")}
    (model / "contract.json").write_text(json.dumps({"env": contract, "hps": hps, "resumed": resumed, "argv": sys.argv[1:]}))
    pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "curve.csv").write_text("epoch,loss\\n1,0.5\\n")
    print("val_macro_f1=0.25", flush=True)
    print(f"val_macro_f1={hps['quality']}", flush=True)
''')

EVALUATE = textwrap.dedent('''
    """Processing job: unpack model.tar.gz, write evaluation.json with a gate."""
    import argparse, json, pathlib, tarfile
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir"); parser.add_argument("--out")
    args = parser.parse_args()
    with tarfile.open(pathlib.Path(args.model_dir) / "model.tar.gz") as tar:
        names = tar.getnames()
        weights = tar.extractfile("weights.txt").read().decode()
    quality = float(weights.strip().split("=")[1])
    out = pathlib.Path(args.out); out.mkdir(parents=True, exist_ok=True)
    threshold = 0.5
    report = {"multiclass_classification_metrics": {"accuracy": {"value": quality, "standard_deviation": "NaN"}},
              "tasks": {"sentiment": {"macro_f1": quality}},
              "gate": {"macro_f1": quality, "threshold": threshold, "no_regression": True, "passed": quality >= threshold,
                       "message": f"macro_f1 {quality:.3f} is below the threshold"},
              "archive_members": names}
    (out / "evaluation.json").write_text(json.dumps(report))
    print(f"evaluate: macro_f1={quality}")
''')


def write_scripts(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    scripts = {}
    for name, text in {"prepare": PREPARE, "train": TRAIN, "evaluate": EVALUATE}.items():
        scripts[name] = folder / f"{name}.py"
        scripts[name].write_text(text)
    return scripts


def _join(*values):
    return {"Std:Join": {"On": "/", "Values": list(values)}}


EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}
EVALUATION = {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"}


def definition(scripts: dict[str, Path], fail_flag: Path | None = None, with_checkpoints: bool = True,
               cache_config: dict | None = None) -> dict:
    """A definition shaped like the SDK's output (see FINDINGS.md), calling the tiny scripts."""
    cache = {"CacheConfig": cache_config} if cache_config is not None else {}
    train_args = {
        "AlgorithmSpecification": {"TrainingImage": "111122223333.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-training:latest",
                                   "TrainingInputMode": "File",
                                   "ContainerEntrypoint": ["python3", str(scripts["train"])],
                                   "ContainerArguments": ["--config", "/opt/ml/input/config/hyperparameters.json"],
                                   "MetricDefinitions": [{"Name": "validation:macro_f1", "Regex": r"val_macro_f1=([0-9.]+)"}]},
        "OutputDataConfig": {"S3OutputPath": _join("s3://bucket", EXECUTION_ID, "training")},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "RoleArn": "arn:aws:iam::111122223333:role/x",
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": {"Get": "Steps.FeatureEngineering.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"},
            "S3DataDistributionType": "FullyReplicated"}}, "InputMode": "File"}],
        "HyperParameters": {"epochs": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Epochs"}]}},
                            "quality": {"Get": "Parameters.Quality"}, "backbone": "tiny"},
        "Environment": {"FAIL_FLAG_FILE": str(fail_flag or "/nonexistent/flag")},
    }
    if with_checkpoints:
        train_args["CheckpointConfig"] = {"S3Uri": _join("s3://bucket/checkpoints", EXECUTION_ID)}
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [
            {"Name": "InputDataUri", "Type": "String", "DefaultValue": "s3://bucket/input/raw"},
            {"Name": "Epochs", "Type": "Integer", "DefaultValue": 2},
            {"Name": "Quality", "Type": "Float", "DefaultValue": 0.8},
            {"Name": "MacroF1Threshold", "Type": "Float", "DefaultValue": 0.5},
            {"Name": "ModelApprovalStatus", "Type": "String", "DefaultValue": "PendingManualApproval"},
            {"Name": "RequireNoRegression", "Type": "Boolean", "DefaultValue": True},
        ],
        "PipelineExperimentConfig": {"ExperimentName": {"Get": "Execution.PipelineName"},
                                     "TrialName": {"Get": "Execution.PipelineExecutionId"}},
        "Steps": [
            {"Name": "FeatureEngineering", "Type": "Processing", **cache, "Arguments": {
                "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}},
                "AppSpecification": {"ImageUri": "111122223333.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-processing:latest",
                                     "ContainerEntrypoint": ["python3", str(scripts["prepare"])],
                                     "ContainerArguments": ["--input-dir", "/opt/ml/processing/input/raw",
                                                            "--train-dir", "/opt/ml/processing/output/train",
                                                            "--report-dir=/opt/ml/processing/output/report"]},
                "RoleArn": "arn:aws:iam::111122223333:role/x",
                "Environment": {"MODE": "demo", "FBRAIN_SCRATCH": "/opt/ml/processing/scratch"},
                "ProcessingInputs": [{"InputName": "raw", "AppManaged": False, "S3Input": {
                    "S3Uri": {"Get": "Parameters.InputDataUri"}, "LocalPath": "/opt/ml/processing/input/raw",
                    "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
                    "S3CompressionType": "None"}}],
                "ProcessingOutputConfig": {"Outputs": [
                    {"OutputName": "train", "AppManaged": False, "S3Output": {
                        "S3Uri": _join("s3://bucket", EXECUTION_ID, "train"),
                        "LocalPath": "/opt/ml/processing/output/train", "S3UploadMode": "EndOfJob"}},
                    {"OutputName": "report", "AppManaged": False, "S3Output": {
                        "S3Uri": _join("s3://bucket", EXECUTION_ID, "report"),
                        "LocalPath": "/opt/ml/processing/output/report", "S3UploadMode": "EndOfJob"}}]}}},
            {"Name": "TrainModel", "Type": "Training", **cache, "Arguments": train_args},
            {"Name": "EvaluateModel", "Type": "Processing", **cache, "Arguments": {
                "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}},
                "AppSpecification": {"ImageUri": "111122223333.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-processing:latest",
                                     "ContainerEntrypoint": ["python3", str(scripts["evaluate"])],
                                     "ContainerArguments": ["--model-dir", "/opt/ml/processing/model",
                                                            "--out", "/opt/ml/processing/evaluation"]},
                "RoleArn": "arn:aws:iam::111122223333:role/x",
                "ProcessingInputs": [{"InputName": "model", "S3Input": {
                    "S3Uri": {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"},
                    "LocalPath": "/opt/ml/processing/model", "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
                "ProcessingOutputConfig": {"Outputs": [{"OutputName": "evaluation", "S3Output": {
                    "S3Uri": _join("s3://bucket", EXECUTION_ID, "evaluation"),
                    "LocalPath": "/opt/ml/processing/evaluation", "S3UploadMode": "EndOfJob"}}]}},
             "PropertyFiles": [{"PropertyFileName": "EvaluationReport", "OutputName": "evaluation",
                                "FilePath": "evaluation.json"}]},
            {"Name": "CheckModelGate", "Type": "Condition", "Arguments": {
                "Conditions": [
                    {"Type": "GreaterThanOrEqualTo",
                     "LeftValue": {"Std:JsonGet": {"PropertyFile": EVALUATION, "Path": "gate.macro_f1"}},
                     "RightValue": {"Get": "Parameters.MacroF1Threshold"}},
                    {"Type": "Equals",
                     "LeftValue": {"Std:JsonGet": {"PropertyFile": EVALUATION, "Path": "gate.no_regression"}},
                     "RightValue": {"Get": "Parameters.RequireNoRegression"}}],
                "IfSteps": [{"Name": "RegisterModel", "Type": "RegisterModel", "Arguments": {
                    "ModelPackageGroupName": "fb-models",
                    "ModelApprovalStatus": {"Get": "Parameters.ModelApprovalStatus"},
                    "InferenceSpecification": {"Containers": [{
                        "Image": "111122223333.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-inference:latest",
                        "ModelDataUrl": {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}}],
                        "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
                    "ModelMetrics": {"ModelQuality": {"Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": _join({"Get": "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
                                       "evaluation.json")}}}}}],
                "ElseSteps": [{"Name": "ModelGateFailed", "Type": "Fail", "Arguments": {
                    "ErrorMessage": {"Std:JsonGet": {"PropertyFile": EVALUATION, "Path": "gate.message"}}}}]}},
        ],
    }


def write_raw_input(path: Path, lines: int = 5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'{{"feedback_id": "f{i}", "text": "item {i}"}}\n' for i in range(lines)))
    return path
