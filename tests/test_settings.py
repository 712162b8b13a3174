"""One configuration path: typed sections, one override parser, every field of a job's section reaching the job.

The round-trip tests change EVERY field of a section to a value other than its default, build the pipeline
definition, resolve the job's arguments the way the local runner (and SageMaker) does, and parse them with
the job's own entry-point parser: what the job gets must equal what was configured.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from pipelines.config import ConfigError, FeedbackBrainConfig, load_config
from pipelines.definition import definition_json
from pipelines.local.expressions import ExpressionContext, ExpressionError, resolve
from processing import settings
from processing.settings import SettingsError

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the parser
@pytest.mark.parametrize("override,message", [
    ("training.epochs=abc", "training.epochs='abc' is not valid: Input should be a valid integer"),
    ("training.class_weighting=flase", "training.class_weighting='flase' is not valid: Input should be a valid boolean"),
    ("training.class_weight_scope=global", "Input should be 'source' or 'all'"),
    ("processing.near_duplicate_scope=planet", "Input should be 'customer' or 'global'"),
    ("serving.runtime=tensorrt", "'onnx-int8', 'onnx' or 'torch'"),
    ("nope.x=1", "unknown setting 'nope.x': use SECTION.FIELD with SECTION in"),
    ("training.nope=1", "unknown setting 'training.nope'; TrainingConfig has:"),
    ('training.source_weights={"a": "heavy"}', "training.source_weights"),
    ("training.source_weights=not json", "expected JSON"),
    ("training.epochs", "must look like section.field=value"),
])
def test_bad_overrides_name_the_key_and_what_it_accepts(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


def test_values_are_typed_and_sections_validate_assignment():
    config = load_config(overrides=["training.epochs=2", "training.class_weighting=off", "training.learning_rate=1e-4",
                                    'training.source_weights={"reviews": 2}', "processing.taxonomy_version=2"])
    assert config.training.epochs == 2 and config.training.class_weighting is False
    assert config.training.source_weights == {"reviews": 2.0} and config.processing.taxonomy_version == "2"
    with pytest.raises(ValueError):
        config.training.epochs = "many"  # a section refuses a bad value however it is set
    with pytest.raises(ValueError):
        type(config.training)(mixed_precision="fp8")


def test_file_then_environment_then_set_in_that_order(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("training:\n  epochs: 3\n  batch_size: 8\nprocessing:\n  taxonomy_version: 1\n")
    environ = {"FBRAIN__TRAINING__EPOCHS": "4", "FBRAIN__TRAINING__SEED": "7", "UNRELATED": "x"}
    config = load_config(path, ["training.epochs=5"], environ=environ)
    assert (config.training.epochs, config.training.batch_size, config.training.seed) == (5, 8, 7)
    assert config.processing.taxonomy_version == "1"
    with pytest.raises(ConfigError, match="unknown section 'trainng'"):
        path.write_text("trainng:\n  epochs: 3\n")
        load_config(path)
    with pytest.raises(ConfigError, match="FBRAIN__TRAINNG__EPOCHS|unknown setting 'trainng.epochs'"):
        load_config(environ={"FBRAIN__TRAINNG__EPOCHS": "1"})


def test_fbrain_exits_non_zero_naming_the_key():
    for override, key in (("training.epochs=abc", "training.epochs"), ("nope.x=1", "nope.x")):
        result = subprocess.run([sys.executable, "-m", "pipelines.cli", "--set", override, "config"],
                                capture_output=True, text=True, cwd=REPO, timeout=120)
        assert result.returncode == 2 and key in result.stderr and "Traceback" not in result.stderr


def test_job_parsers_share_the_rules():
    """`--param`, training hyperparameters and a job's `--set` refuse bad values with the same parser and words."""
    from pipelines.local.parameters import ParameterError, resolve_parameters
    from processing.feature_engineering import config_from_args, parse_args
    from training.config import TrainingConfig
    from training.train import apply_settings

    with pytest.raises(ParameterError, match="valid boolean"):
        resolve_parameters([{"Name": "Flag", "Type": "Boolean", "DefaultValue": False}], {"Flag": "flase"})
    with pytest.raises(SettingsError, match="valid boolean"):
        apply_settings(TrainingConfig(), {"export_onnx": "flase"}, "hyperparameters.json")
    with pytest.raises(SettingsError, match="processing.workers='two' is not valid: Input should be a valid integer"):
        config_from_args(parse_args(["--output-dir", "out", "--set", "processing.workers=two"]))


# ---------------------------------------------------------------- every field reaches its job
def _other_value(annotation, value):
    """A valid value of the field's type that differs from `value`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return next(choice for choice in typing.get_args(annotation) if choice != value)
    if annotation is bool:
        return not value
    if annotation is int:
        return value + 1
    if annotation is float:
        return value * 0.5 + 0.125
    if annotation is str:
        return (value or "x") + "-changed"
    if origin is dict:
        return {**value, "changed": 1.5}
    if origin is list:
        return [*value, "changed"]
    raise AssertionError(f"no test value for {annotation}")


def _changed_config(section_name: str) -> FeedbackBrainConfig:
    config = FeedbackBrainConfig()
    section = getattr(config, section_name)
    for name, annotation in settings.field_types(section).items():
        setattr(section, name, _other_value(annotation, getattr(section, name)))
    return config


def _parameter_context(definition: dict) -> ExpressionContext:
    def no_steps(name):
        raise ExpressionError(f"step {name} has not run")

    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    return ExpressionContext(parameters=defaults, execution={"PipelineExecutionId": "test"},
                             step_properties=no_steps, read_property_file=no_steps)


def _job_arguments(config: FeedbackBrainConfig, step_name: str) -> list[str] | dict:
    definition = json.loads(definition_json(config))
    steps = {}
    pending = list(definition["Steps"])
    while pending:
        step = pending.pop()
        steps[step["Name"]] = step
        if step["Type"] == "Condition":
            pending += step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]
    arguments = steps[step_name]["Arguments"]
    context = _parameter_context(definition)
    if step_name == "TrainModel":
        return resolve(arguments["HyperParameters"], context)
    # Only the settings arguments: paths point at step outputs, which resolve at run time.
    raw = arguments["AppSpecification"]["ContainerArguments"]
    resolved = [resolve(item, context) for item in raw if isinstance(item, dict) or item.startswith("--set=")]
    return [item for item in resolved if item.startswith("--set=")]


def _section(config, name):
    return dataclasses.asdict(getattr(config, name))


def test_every_processing_field_reaches_both_processing_jobs():
    from processing.feature_engineering import config_from_args, parse_args

    config = _changed_config("processing")
    # The pipeline fills this field from its PseudonymSaltSecretId parameter (default aws.pseudonym_salt_secret_id).
    config.aws.pseudonym_salt_secret_id = config.processing.pseudonym_salt_secret_id
    for step in ("FeatureEngineering", "MergeFeatureShards"):
        received = config_from_args(parse_args(["--output-dir", "/tmp/x", *_job_arguments(config, step)]))
        assert dataclasses.asdict(received) == _section(config, "processing"), step


def test_every_evaluation_field_reaches_the_evaluation_job():
    from training.evaluate import config_from_args, parse_args

    config = _changed_config("evaluation")
    argv = ["--model-dir", "m", "--test-dir", "t", "--output-dir", "o", *_job_arguments(config, "EvaluateModel")]
    assert dataclasses.asdict(config_from_args(parse_args(argv))) == _section(config, "evaluation")


def test_every_monitoring_field_reaches_the_baseline_job(monkeypatch):
    from monitoring import baseline

    config = _changed_config("monitoring")
    received = {}
    monkeypatch.setattr(baseline, "compute_baseline", lambda model, train, out, section: received.update(
        dataclasses.asdict(section)))
    assert baseline.main(["--model-dir", "m", "--train-dir", "t", "--output-dir", "o",
                          *_job_arguments(config, "ComputeMonitorBaseline")]) == 0
    assert received == _section(config, "monitoring")


def test_every_training_field_reaches_the_training_job(tmp_path):
    from training.train import parse_settings

    config = _changed_config("training")
    hyperparameters = tmp_path / "hyperparameters.json"
    hyperparameters.write_text(json.dumps(_job_arguments(config, "TrainModel")))
    received, _ = parse_settings(["--hyperparameters", str(hyperparameters)])
    assert dataclasses.asdict(received) == _section(config, "training")


def test_the_issue_examples_reach_their_jobs():
    """`fbrain --set processing.near_duplicate_threshold=0.77 pipeline definition` and one field of evaluation and
    monitoring each: resolved as the local runner resolves them (pipelines.local.expressions)."""
    config = load_config(overrides=["processing.near_duplicate_threshold=0.77", "evaluation.bootstrap_rounds=3",
                                    "monitoring.psi_threshold=0.3"])
    assert "--set=processing.near_duplicate_threshold=0.77" in _job_arguments(config, "FeatureEngineering")
    assert "--set=evaluation.bootstrap_rounds=3" in _job_arguments(config, "EvaluateModel")
    assert "--set=monitoring.psi_threshold=0.3" in _job_arguments(config, "ComputeMonitorBaseline")


def test_a_config_file_that_does_not_parse_is_a_config_error(tmp_path):
    for name, text, kind in (("bad.yaml", "training: [unclosed\n", "YAML"), ("bad.json", "{bad", "JSON")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError, match=f"{name}: not valid {kind}"):
            load_config(path)
