"""The monitoring pipeline (definition, validation) and `fbrain monitor rules apply` (moto; Stubber for Model Monitor).

The local run of the monitoring pipeline is in test_monitoring.py (it reuses that module's baseline and captures).
"""
from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from typer.testing import CliRunner

from monitoring.config import MonitoringConfig
from pipelines.cli import app
from pipelines.validate import validate_definition

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
GROUP = "feedback-brain-models"
BASELINE_PREFIX = "s3://feedback-brain-artifacts/feedback-brain/exec-7/ComputeMonitorBaseline/baseline"
MODEL_DATA = "s3://feedback-brain-artifacts/feedback-brain/exec-7/TrainModel/model/model.tar.gz"


def fbrain(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _step(definition: dict) -> dict:
    (step,) = definition["Steps"]
    return step


def test_definition_runs_the_monitor_in_the_processing_image_and_validates():
    result = fbrain("--set", "monitoring.window_hours=3", "--set", "monitoring.monitor_instance_type=ml.c5.2xlarge",
                    "monitor", "pipeline", "definition")
    assert result.exit_code == 0, result.output
    definition = json.loads(result.output)
    assert validate_definition(definition) == []
    step = _step(definition)
    assert step["Name"] == "MonitorCapturedTraffic" and step["Type"] == "Processing"
    arguments = step["Arguments"]
    application = arguments["AppSpecification"]
    assert application["ContainerEntrypoint"] == ["python3", "-m", "monitoring.monitor"]
    assert application["ImageUri"].endswith("/feedback-brain-processing:latest")
    container_arguments = application["ContainerArguments"]
    settings = [a for a in container_arguments if isinstance(a, str) and a.startswith("--set=")]
    joins = [a for a in container_arguments if isinstance(a, dict) and "Std:Join" in a]
    flag_arguments = [a for a in container_arguments if a not in settings and a not in joins]
    flags = dict(zip(flag_arguments[::2], flag_arguments[1::2]))
    assert flags["--end-time"] == {"Get": "Execution.StartDateTime"}  # the window ends where the execution starts
    # The whole monitoring section reaches the job; drift events and the instance type follow the parameters.
    assert "--set=monitoring.window_hours=3.0" in settings
    joined = {a["Std:Join"]["Values"][1]: a["Std:Join"]["Values"][2] for a in joins}
    assert joined == {"monitoring.emit_drift_events": {"Get": "Parameters.EmitDriftEvents"},
                      "monitoring.put_metric_data": {"Get": "Parameters.PublishMetrics"},
                      "monitoring.monitor_instance_type": {"Get": "Parameters.MonitorInstanceType"}}
    assert len(settings) + len(joined) == len(dataclasses.fields(MonitoringConfig))
    inputs = {i["InputName"]: i["S3Input"] for i in arguments["ProcessingInputs"]}
    assert inputs["capture"]["S3Uri"] == {"Get": "Parameters.CaptureUri"}
    assert inputs["capture"]["LocalPath"] == flags["--capture-dir"] == "/opt/ml/processing/input/endpoint"
    assert inputs["baseline"]["LocalPath"] == flags["--baseline-dir"]
    assert inputs["model"]["LocalPath"] == flags["--model-dir"]
    (output,) = arguments["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == flags["--output-dir"] == "/opt/ml/processing/resultdata"
    parameters = {p["Name"]: p for p in definition["Parameters"]}
    assert parameters["CaptureUri"]["DefaultValue"] == "s3://feedback-brain-artifacts/datacapture/feedback-brain/"
    assert "champion-not-set" in parameters["BaselineUri"]["DefaultValue"]
    assert parameters["MonitorInstanceType"]["DefaultValue"] == "ml.c5.2xlarge"
    assert fbrain("monitor", "pipeline", "validate").exit_code == 0


def test_configured_baseline_and_model_become_the_defaults():
    definition = json.loads(fbrain("--set", f"monitoring.baseline_uri={BASELINE_PREFIX}/",
                                   "--set", f"monitoring.model_data_uri={MODEL_DATA}",
                                   "monitor", "pipeline", "definition").output)
    parameters = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert parameters["BaselineUri"] == f"{BASELINE_PREFIX}/" and parameters["ModelDataUri"] == MODEL_DATA


def test_champion_parameters_come_from_the_packages_drift_check_baselines():
    from pipelines.monitoring_definition import champion_monitoring_parameters

    package = {"ModelPackageArn": "arn:p/3",
               "DriftCheckBaselines": {"ModelDataQuality": {"Statistics": {
                   "ContentType": "application/json", "S3Uri": f"{BASELINE_PREFIX}/statistics.json"}}},
               "InferenceSpecification": {"Containers": [{"Image": "i", "ModelDataUrl": MODEL_DATA}]}}
    assert champion_monitoring_parameters(package) == {"BaselineUri": f"{BASELINE_PREFIX}/", "ModelDataUri": MODEL_DATA}
    with pytest.raises(ValueError, match="arn:p/3 has no DriftCheckBaselines"):
        champion_monitoring_parameters({**package, "DriftCheckBaselines": {}})


def _register_champion(sagemaker) -> str:
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    return sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "i:1", "ModelDataUrl": MODEL_DATA}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]},
        DriftCheckBaselines={"ModelDataQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": f"{BASELINE_PREFIX}/statistics.json"},
            "Constraints": {"ContentType": "application/json", "S3Uri": f"{BASELINE_PREFIX}/constraints.json"}}},
    )["ModelPackageArn"]


@mock_aws
def test_rules_apply_schedules_the_monitoring_pipeline_and_wires_retraining(monkeypatch):
    result = fbrain("monitor", "rules", "apply")
    assert result.exit_code == 1 and "`fbrain pipeline upsert` first" in result.output
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    # The training pipeline as `fbrain pipeline upsert` leaves it (test_pipeline_aws covers the upsert itself).
    sagemaker.create_pipeline(PipelineName="feedback-brain", RoleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
                              PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
    result = fbrain("monitor", "rules", "apply")
    assert result.exit_code == 1 and "`fbrain monitor pipeline upsert` first" in result.output
    upserted = fbrain("monitor", "pipeline", "upsert")
    assert upserted.exit_code == 0, upserted.output
    monitoring_arn = json.loads(upserted.output)["pipeline_arn"]
    stored = json.loads(sagemaker.describe_pipeline(PipelineName="feedback-brain-monitoring")["PipelineDefinition"])
    assert _step(stored)["Name"] == "MonitorCapturedTraffic"
    result = fbrain("monitor", "rules", "apply")
    assert result.exit_code == 1 and "has no Approved package to monitor" in result.output

    _register_champion(sagemaker)
    result = fbrain("monitor", "rules", "apply")
    assert result.exit_code == 0, result.output
    applied = json.loads(result.output)
    role = f"arn:aws:iam::{ACCOUNT}:role/feedback-brain-eventbridge"
    assert applied["role_arn"] == role and applied["schedule"]["created"] is True
    schedule = boto3.client("scheduler", region_name=REGION).get_schedule(Name="feedback-brain-text-monitor")
    assert schedule["ScheduleExpression"] == "cron(0 * ? * * *)" and schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == monitoring_arn and target["RoleArn"] == role
    assert {p["Name"]: p["Value"] for p in target["SageMakerPipelineParameters"]["PipelineParameterList"]} == {
        "BaselineUri": f"{BASELINE_PREFIX}/", "ModelDataUri": MODEL_DATA}

    events = boto3.client("events", region_name=REGION)
    training_arn = sagemaker.describe_pipeline(PipelineName="feedback-brain")["PipelineArn"]
    for rule in ("feedback-brain-scheduled-retrain", "feedback-brain-drift-retrain", "feedback-brain-corrections-retrain"):
        (rule_target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert rule_target["Arn"] == training_arn and rule_target["RoleArn"] == role
    drift = json.loads(events.describe_rule(Name="feedback-brain-drift-retrain")["EventPattern"])
    assert drift == {"source": ["feedback-brain.monitoring"], "detail-type": ["ModelDriftDetected"]}

    # Idempotent: a second apply updates the schedule (here with another expression) instead of failing.
    again = fbrain("--set", "monitoring.schedule_expression=rate(2 hours)", "monitor", "rules", "apply")
    assert again.exit_code == 0 and json.loads(again.output)["schedule"]["created"] is False
    assert boto3.client("scheduler", region_name=REGION).get_schedule(
        Name="feedback-brain-text-monitor")["ScheduleExpression"] == "rate(2 hours)"

    # --model-monitor-schedule adds the Model Monitor schedule (moto has none: its requests are checked below).
    import pipelines.aws as aws_module

    calls = []
    monkeypatch.setattr(aws_module, "put_model_monitor_schedule",
                        lambda config, parameters, session=None: calls.append(dict(parameters)) or {"created": True})
    result = fbrain("monitor", "rules", "apply", "--model-monitor-schedule")
    assert result.exit_code == 0 and json.loads(result.output)["model_monitor_schedule"] == {"created": True}
    assert calls == [{"BaselineUri": f"{BASELINE_PREFIX}/", "ModelDataUri": MODEL_DATA}]


def test_model_monitor_schedule_is_created_then_updated_with_stubber(monkeypatch):
    import pipelines.aws as aws_module
    from pipelines.config import load_config

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    monkeypatch.setattr(aws_module, "_client", lambda config, session, service: sagemaker)
    config = load_config()
    parameters = {"BaselineUri": f"{BASELINE_PREFIX}/", "ModelDataUri": MODEL_DATA}
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/feedback-brain-text-monitor"
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_monitoring_schedule", "ResourceNotFound", "Monitoring schedule not found", 400)
        stub.add_response("create_monitoring_schedule", {"MonitoringScheduleArn": arn})
        assert aws_module.put_model_monitor_schedule(config, parameters)["created"] is True
        stub.add_response("describe_monitoring_schedule", {
            "MonitoringScheduleArn": arn, "MonitoringScheduleName": "feedback-brain-text-monitor",
            "MonitoringScheduleStatus": "Scheduled", "CreationTime": "2026-12-01T00:00:00Z",
            "LastModifiedTime": "2026-12-01T00:00:00Z", "MonitoringScheduleConfig": {}})
        stub.add_response("update_monitoring_schedule", {"MonitoringScheduleArn": arn})
        assert aws_module.put_model_monitor_schedule(config, parameters)["created"] is False
        stub.assert_no_pending_responses()


def test_the_events_role_may_be_assumed_by_eventbridge_and_scheduler():
    from monitoring.triggers import events_role_policies

    trust, permissions = events_role_policies("arn:training", "arn:monitoring")
    assert set(trust["Statement"][0]["Principal"]["Service"]) == {"events.amazonaws.com", "scheduler.amazonaws.com"}
    assert permissions["Statement"][0]["Resource"] == ["arn:training", "arn:monitoring"]


def test_every_monitoring_setting_round_trips_into_the_monitor_job():
    """The definition's arguments, with the parameters' defaults, parse back into the whole monitoring section."""
    from monitoring.monitor import parse_args
    from pipelines.config import load_config
    from pipelines.monitoring_definition import monitoring_definition_json

    config = load_config(overrides=["monitoring.window_hours=6", "monitoring.psi_threshold=0.3",
                                    "monitoring.retrain_pipeline_parameters={\"Epochs\": \"2\"}"])
    definition = json.loads(monitoring_definition_json(config))
    defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    values = {"Parameters." + name: value for name, value in defaults.items()}
    values["Execution.StartDateTime"] = "2026-12-04T10:00:00Z"

    def resolved(argument):
        if isinstance(argument, str):
            return argument
        if "Get" in argument:
            return values[argument["Get"]]
        join = argument["Std:Join"]
        return join["On"].join(resolved(part) for part in join["Values"])

    arguments = [resolved(a) for a in _step(definition)["Arguments"]["AppSpecification"]["ContainerArguments"]]
    inputs, parsed = parse_args(arguments)
    expected = dataclasses.replace(config.monitoring, emit_drift_events=True, put_metric_data=True)
    assert dataclasses.asdict(parsed) == dataclasses.asdict(expected)
    assert inputs.end_time.isoformat() == "2026-12-04T10:00:00+00:00" and inputs.schedule_name == config.monitoring.schedule_name
