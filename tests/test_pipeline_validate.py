"""validate_definition: 0 errors for our definition; it catches what SageMaker would reject."""
from __future__ import annotations

import copy
import json

import pytest

from pipelines.config import FeedbackBrainConfig, load_config
from pipelines.definition import definition_json
from pipelines.validate import validate_definition


@pytest.fixture(scope="module")
def definition() -> dict:
    return json.loads(definition_json(FeedbackBrainConfig()))


@pytest.fixture
def broken(definition) -> dict:
    return copy.deepcopy(definition)


def step(definition: dict, name: str) -> dict:
    for candidate in definition["Steps"]:
        if candidate["Name"] == name:
            return candidate
        if candidate["Type"] == "Condition":
            for nested in candidate["Arguments"]["IfSteps"] + candidate["Arguments"]["ElseSteps"]:
                if nested["Name"] == name:
                    return nested
    raise KeyError(name)


def test_our_definition_has_no_errors(definition):
    assert validate_definition(definition) == []


def test_an_override_that_the_service_would_reject_is_reported():
    config = load_config(overrides=["aws.processing_instance_type=ml.m5.huge"])
    errors = validate_definition(json.loads(definition_json(config)))
    assert errors and all("ml.m5.huge" in e for e in errors)
    assert any("default of parameter ProcessingInstanceType" in e for e in errors)


def test_misspelled_member(broken):
    resources = step(broken, "FeatureEngineering")["Arguments"]["ProcessingResources"]["ClusterConfig"]
    resources["VolumeSizeInGb"] = resources.pop("VolumeSizeInGB")
    errors = validate_definition(broken)
    assert any("ClusterConfig.VolumeSizeInGb: unknown member of ProcessingClusterConfig" in e for e in errors)
    assert any("missing required member 'VolumeSizeInGB'" in e for e in errors)


def test_missing_required_top_level_member(broken):
    del step(broken, "TrainModel")["Arguments"]["RoleArn"]
    errors = validate_definition(broken)
    assert errors == [e for e in errors if "TrainModel" in e]
    assert any("missing required member 'RoleArn' of CreateTrainingJob" in e for e in errors)


def test_missing_required_member_in_a_branch_step(broken):
    del step(broken, "ComputeMonitorBaseline")["Arguments"]["ProcessingInputs"][1]["S3Input"]["S3Uri"]
    errors = validate_definition(broken)
    assert len(errors) == 1
    assert "ComputeMonitorBaseline" in errors[0] and "missing required member 'S3Uri' of ProcessingS3Input" in errors[0]


def test_wrong_enum(broken):
    step(broken, "EvaluateModel")["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3DataType"] = "S3Folder"
    errors = validate_definition(broken)
    assert len(errors) == 1
    assert "'S3Folder' is not one of the values of ProcessingS3DataType" in errors[0]


def test_wrong_types_and_ranges(broken):
    arguments = step(broken, "FeatureEngineering")["Arguments"]
    arguments["StoppingCondition"]["MaxRuntimeInSeconds"] = "7200"
    arguments["ProcessingResources"]["ClusterConfig"]["VolumeSizeInGB"] = 0
    arguments["AppSpecification"]["ContainerEntrypoint"] = []
    errors = validate_definition(broken)
    assert any("MaxRuntimeInSeconds: expected an integer" in e for e in errors)
    assert any("VolumeSizeInGB: 0 is below the minimum 1" in e for e in errors)
    assert any("ContainerEntrypoint: 0 items, fewer than the minimum 1" in e for e in errors)


def test_expression_cannot_replace_a_structure(broken):
    step(broken, "TrainModel")["Arguments"]["ResourceConfig"] = {"Get": "Parameters.TrainingInstanceType"}
    errors = validate_definition(broken)
    assert any("cannot stand for a structure" in e for e in errors)


def test_dangling_references(broken):
    train = step(broken, "TrainModel")["Arguments"]
    train["HyperParameters"]["backbone"] = {"Get": "Parameters.Backbone"}
    train["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = {
        "Get": "Steps.FeatureEngineerin.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
    step(broken, "RegisterModel")["DependsOn"] = ["ComputeBaseline"]
    gate = step(broken, "CheckModelGate")["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"]
    gate["PropertyFile"] = {"Get": "Steps.EvaluateModel.PropertyFiles.Evaluation"}
    errors = validate_definition(broken)
    assert any("Parameters.Backbone refers to an undeclared parameter" in e for e in errors)
    assert any("Steps.FeatureEngineerin." in e and "unknown step" in e for e in errors)
    assert any("DependsOn: unknown step 'ComputeBaseline'" in e for e in errors)
    assert any("declares no property file 'Evaluation'" in e for e in errors)


def test_parameter_and_step_level_problems(broken):
    broken["Parameters"].append(dict(broken["Parameters"][0]))
    approval = next(p for p in broken["Parameters"] if p["Name"] == "ModelApprovalStatus")
    approval["DefaultValue"] = "Maybe"
    step(broken, "TrainModel")["Name"] = "FeatureEngineering"
    errors = validate_definition(broken)
    assert any("parameter 'InputDataUri' is declared twice" in e for e in errors)
    assert any("'Maybe' of 'ModelApprovalStatus' is not among its EnumValues" in e for e in errors)
    assert any("step name 'FeatureEngineering' is used twice" in e for e in errors)


def test_not_a_definition():
    assert validate_definition([]) == ["definition: expected a JSON object"]
    assert "Steps: expected a non-empty list" in validate_definition({"Version": "2020-12-01", "Parameters": []})
