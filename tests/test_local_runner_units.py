"""Local runner building blocks: expressions, parameters, ordering, object store, conditions, cache policy."""
from __future__ import annotations

import json
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.local.cache import cache_policy, parse_duration
from pipelines.local.expressions import (ExpressionContext, ExpressionError, PropertyFileRef, parse_path,
                                         referenced_steps, resolve)
from pipelines.local.graph import DefinitionError, build_graph
from pipelines.local.jobs import extract_tar_gz, job_name, make_tar_gz
from pipelines.local.object_store import ObjectStore, ObjectStoreError
from pipelines.local.parameters import ParameterError, resolve_parameters
from pipelines.local.process import python_command, remap_opt_ml
from pipelines.local.settings import RunnerSettings
from pipelines.local.step_control import ConditionError, evaluate

PROPERTIES = {
    "Prep": {"ProcessingOutputConfig": {"Outputs": [
        {"OutputName": "train", "S3Output": {"S3Uri": "s3://b/run-1/train"}},
        {"OutputName": "test", "S3Output": {"S3Uri": "s3://b/run-1/test"}}]}},
    "Train": {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/run-1/job/output/model.tar.gz"},
              "FinalMetricDataList": [{"MetricName": "f1", "Value": 0.7}]},
}
REPORT = {"gate": {"macro_f1": 0.72, "passed": True, "message": "ok"}, "per_class": [{"f1": 0.5}, {"f1": 0.9}]}


def _context(**overrides) -> ExpressionContext:
    def properties(name):
        if name not in PROPERTIES:
            raise ExpressionError(f"step {name} has not run")
        return PROPERTIES[name]

    values = dict(parameters={"Epochs": 3, "Threshold": 0.5, "Flag": True, "Uri": "s3://b/in"},
                  execution={"PipelineExecutionId": "exec-1", "PipelineName": "fb"},
                  step_properties=properties,
                  read_property_file=lambda ref: REPORT if ref == PropertyFileRef("Eval", "Report") else {})
    values.update(overrides)
    return ExpressionContext(**values)


def test_get_resolves_parameters_execution_variables_and_step_properties():
    context = _context()
    assert resolve({"Get": "Parameters.Epochs"}, context) == 3
    assert resolve({"Get": "Execution.PipelineExecutionId"}, context) == "exec-1"
    assert resolve({"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}, context) == "s3://b/run-1/test"
    assert resolve({"Get": 'Steps.Prep.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri'}, context) == "s3://b/run-1/train"
    assert resolve({"Get": "Steps.Prep.ProcessingOutputConfig.Outputs[1].S3Output.S3Uri"}, context) == "s3://b/run-1/test"
    assert resolve({"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}, context).endswith("model.tar.gz")
    assert resolve({"Get": "Steps.Train.FinalMetricDataList['f1'].Value"}, context) == 0.7


def test_join_renders_primitives_like_sagemaker_and_nests():
    context = _context()
    joined = resolve({"Std:Join": {"On": "/", "Values": ["s3:/", "b", {"Get": "Execution.PipelineExecutionId"},
                                                         {"Get": "Parameters.Epochs"}, {"Get": "Parameters.Flag"},
                                                         {"Std:Join": {"On": "-", "Values": ["a", 1.5]}}]}}, context)
    assert joined == "s3://b/exec-1/3/true/a-1.5"


def test_json_get_reads_the_property_file_path():
    context = _context()
    report = {"Get": "Steps.Eval.PropertyFiles.Report"}
    assert resolve({"Std:JsonGet": {"PropertyFile": report, "Path": "gate.macro_f1"}}, context) == 0.72
    assert resolve({"Std:JsonGet": {"PropertyFile": report, "Path": "per_class[1].f1"}}, context) == 0.9
    with pytest.raises(ExpressionError, match="gate.missing"):
        resolve({"Std:JsonGet": {"PropertyFile": report, "Path": "gate.missing"}}, context)


def test_plain_dicts_are_walked_and_bad_references_fail_clearly():
    context = _context()
    resolved = resolve({"Environment": {"A": {"Get": "Parameters.Uri"}, "B": "x"}, "List": [{"Get": "Parameters.Epochs"}]}, context)
    assert resolved == {"Environment": {"A": "s3://b/in", "B": "x"}, "List": [3]}
    with pytest.raises(ExpressionError, match="unknown parameter 'Nope'"):
        resolve({"Get": "Parameters.Nope"}, context)
    with pytest.raises(ExpressionError, match="not run"):
        resolve({"Get": "Steps.Later.ModelArtifacts.S3ModelArtifacts"}, context)
    with pytest.raises(ExpressionError, match="no element named 'valid'"):
        resolve({"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['valid'].S3Output.S3Uri"}, context)
    with pytest.raises(ExpressionError, match="unsupported pipeline function"):
        resolve({"Std:Concat": {}}, context)
    with pytest.raises(ExpressionError, match="cannot parse path"):
        parse_path("a..b")


def test_referenced_steps_finds_nested_step_references():
    tree = {"x": [{"Std:Join": {"On": "/", "Values": [{"Get": "Steps.A.ModelArtifacts.S3ModelArtifacts"}]}}],
            "y": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.B.PropertyFiles.R"}, "Path": "a"}},
            "z": {"Get": "Parameters.P"}}
    assert referenced_steps(tree) == {"A", "B"}


def test_parameter_overrides_are_converted_per_type():
    declared = [{"Name": "Epochs", "Type": "Integer", "DefaultValue": 3},
                {"Name": "Rate", "Type": "Float", "DefaultValue": 0.1},
                {"Name": "Flag", "Type": "Boolean", "DefaultValue": False},
                {"Name": "Uri", "Type": "String", "DefaultValue": "s3://b/x"}]
    assert resolve_parameters(declared, None) == {"Epochs": 3, "Rate": 0.1, "Flag": False, "Uri": "s3://b/x"}
    values = resolve_parameters(declared, {"Epochs": "1", "Rate": "2e-5", "Flag": "true", "Uri": "s3://b/y"})
    assert values == {"Epochs": 1, "Rate": 2e-5, "Flag": True, "Uri": "s3://b/y"}
    assert type(values["Epochs"]) is int and type(values["Rate"]) is float
    with pytest.raises(ParameterError, match="Epochs is Integer"):
        resolve_parameters(declared, {"Epochs": "1.5"})
    with pytest.raises(ParameterError, match="Boolean"):
        resolve_parameters(declared, {"Flag": "maybe"})
    with pytest.raises(ParameterError, match="unknown parameter"):
        resolve_parameters(declared, {"Epoch": "1"})
    with pytest.raises(ParameterError, match="no default"):
        resolve_parameters([{"Name": "Required", "Type": "String"}], {})


def _step(name, kind="Processing", arguments=None, **extra):
    return {"Name": name, "Type": kind, "Arguments": arguments or {}, **extra}


def test_order_follows_data_dependencies_depends_on_and_condition_branches():
    definition = {"Steps": [
        _step("Register", "RegisterModel", {"M": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}},
              DependsOn=["Baseline"]),
        _step("Train", "Training", {"In": {"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['t'].S3Output.S3Uri"}}),
        _step("Baseline"),
        _step("Prep"),
        _step("Gate", "Condition", {"Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Steps.Train.TrainingJobStatus"},
                                                     "RightValue": "Completed"}],
                                    "IfSteps": [_step("Deploy", "Processing")], "ElseSteps": [_step("Stop", "Fail")]}),
    ]}
    specs = build_graph(definition)
    order = [spec.name for spec in specs]
    assert order.index("Prep") < order.index("Train") < order.index("Register")
    assert order.index("Baseline") < order.index("Register")
    assert order.index("Gate") < order.index("Deploy") and order.index("Gate") < order.index("Stop")
    branches = {spec.name: spec.branch for spec in specs}
    assert branches["Deploy"] == ("Gate", "IfSteps") and branches["Stop"] == ("Gate", "ElseSteps")
    assert "Deploy" not in referenced_steps(next(s for s in specs if s.name == "Gate").arguments)


def test_graph_rejects_cycles_unknown_steps_and_duplicates():
    with pytest.raises(DefinitionError, match="cycle"):
        build_graph({"Steps": [_step("A", DependsOn=["B"]), _step("B", DependsOn=["A"])]})
    with pytest.raises(DefinitionError, match="unknown step"):
        build_graph({"Steps": [_step("A", DependsOn=["Ghost"])]})
    with pytest.raises(DefinitionError, match="used twice"):
        build_graph({"Steps": [_step("A"), _step("A")]})


def test_object_store_maps_uris_and_copies_prefixes(tmp_path):
    store = ObjectStore(tmp_path / "s3")
    assert store.path("s3://bucket/a/b.json") == (tmp_path / "s3" / "bucket" / "a" / "b.json").resolve()
    assert store.uri(store.path("s3://bucket/a/b.json")) == "s3://bucket/a/b.json"
    for bad in ("/local/file", "s3://", "s3://bucket/../escape"):
        with pytest.raises(ObjectStoreError):
            store.path(bad)
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "x.txt").write_text("x")
    (source / "sub" / "y.txt").write_text("y")
    assert store.is_empty("s3://bucket/prefix")
    store.upload(source, "s3://bucket/prefix")
    assert not store.is_empty("s3://bucket/prefix")
    store.copy("s3://bucket/prefix", "s3://other/copy")
    target = store.download("s3://other/copy", tmp_path / "dl")
    assert (target / "sub" / "y.txt").read_text() == "y"
    single = store.download("s3://bucket/prefix/x.txt", tmp_path / "one")
    assert (single / "x.txt").read_text() == "x"
    assert store.content_hash("s3://bucket/prefix") == store.content_hash("s3://other/copy")
    (source / "x.txt").write_text("changed")
    store.upload(source, "s3://bucket/prefix")
    assert store.content_hash("s3://bucket/prefix") != store.content_hash("s3://other/copy")
    with pytest.raises(ObjectStoreError, match="no object or prefix"):
        store.download("s3://bucket/missing", tmp_path / "nothing")


def test_every_condition_type_evaluates():
    context = _context()
    f1 = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"}, "Path": "gate.macro_f1"}}
    passed = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"}, "Path": "gate.passed"}}
    threshold = {"Get": "Parameters.Threshold"}
    cases = [
        ({"Type": "GreaterThanOrEqualTo", "LeftValue": f1, "RightValue": threshold}, True),
        ({"Type": "GreaterThanOrEqualTo", "LeftValue": f1, "RightValue": 0.72}, True),
        ({"Type": "GreaterThan", "LeftValue": f1, "RightValue": 0.72}, False),
        ({"Type": "LessThan", "LeftValue": f1, "RightValue": threshold}, False),
        ({"Type": "LessThanOrEqualTo", "LeftValue": f1, "RightValue": "0.72"}, True),
        ({"Type": "Equals", "LeftValue": passed, "RightValue": True}, True),
        ({"Type": "Equals", "LeftValue": passed, "RightValue": "true"}, True),
        ({"Type": "Equals", "LeftValue": passed, "RightValue": {"Get": "Parameters.Flag"}}, True),
        ({"Type": "In", "QueryValue": {"Get": "Parameters.Epochs"}, "Values": [1, 2, 3]}, True),
        ({"Type": "In", "QueryValue": "x", "Values": ["a", "b"]}, False),
        ({"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": 1, "RightValue": 1}}, False),
        ({"Type": "Or", "Conditions": [{"Type": "Equals", "LeftValue": 1, "RightValue": 2},
                                        {"Type": "GreaterThan", "LeftValue": f1, "RightValue": 0.1}]}, True),
    ]
    for condition, expected in cases:
        assert evaluate(condition, context) is expected, condition
    with pytest.raises(ConditionError, match="unsupported condition"):
        evaluate({"Type": "Between"}, context)
    with pytest.raises(ConditionError, match="cannot compare"):
        evaluate({"Type": "GreaterThan", "LeftValue": f1, "RightValue": "high"}, context)


def test_cache_policy_honours_cache_config_and_no_cache():
    settings = RunnerSettings()
    assert parse_duration("P30D") == timedelta(days=30)
    assert parse_duration("PT1H30M") == timedelta(hours=1, minutes=30)
    with pytest.raises(ValueError):
        parse_duration("30 days")
    assert cache_policy({"Type": "Processing", "CacheConfig": {"Enabled": True, "ExpireAfter": "P1D"}}, settings, False) \
        == (True, timedelta(days=1))
    assert cache_policy({"Type": "Processing", "CacheConfig": {"Enabled": False}}, settings, False) == (False, None)
    assert cache_policy({"Type": "Processing"}, settings, False) == (True, None)
    assert cache_policy({"Type": "Processing"}, settings, True) == (False, None)
    assert cache_policy({"Type": "RegisterModel"}, settings, False) == (False, None)


def test_commands_and_paths_are_remapped(tmp_path):
    root = tmp_path / "step"
    assert remap_opt_ml("/opt/ml/processing/input", root) == f"{root}/opt/ml/processing/input"
    assert remap_opt_ml("--out=/opt/ml/model", root) == f"--out={root}/opt/ml/model"
    assert remap_opt_ml("/opt/mlx/keep", root) == "/opt/mlx/keep"
    assert remap_opt_ml("/data/opt/ml/keep", root) == "/data/opt/ml/keep"
    import sys

    assert python_command(["python3", "-m", "x"]) == [sys.executable, "-m", "x"]
    assert python_command(["/usr/bin/python3.11", "a.py"])[0] == sys.executable
    assert python_command(["bash", "run.sh"]) == ["bash", "run.sh"]
    name = job_name("20260101-000000-abcdef", "A Very Long Step Name That Keeps Going And Going")
    assert len(name) <= 63 and " " not in name


def test_model_archive_has_files_at_its_root_and_is_reproducible(tmp_path):
    model = tmp_path / "model"
    (model / "onnx").mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"a": 1}))
    (model / "onnx" / "model.onnx").write_bytes(b"\x00\x01")
    first = make_tar_gz(model, tmp_path / "a" / "model.tar.gz")
    second = make_tar_gz(model, tmp_path / "b" / "model.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        assert sorted(tar.getnames()) == ["config.json", "onnx", "onnx/model.onnx"]
    extracted = extract_tar_gz(first, tmp_path / "x")
    assert (extracted / "onnx" / "model.onnx").read_bytes() == b"\x00\x01"


def test_cache_key_tracks_inputs_code_and_champion_but_not_execution_ids(tmp_path):
    from pipelines.local.cache import cache_key, code_hash, entry_module

    store = ObjectStore(tmp_path / "s3")
    script = tmp_path / "job.py"
    script.write_text("print('v1')")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a")
    store.upload(tmp_path / "in", "s3://b/in")
    raw = {"AppSpecification": {"ContainerEntrypoint": ["python3", str(script)]},
           "ProcessingInputs": [{"InputName": "x", "S3Input": {"S3Uri": {"Get": "Parameters.Uri"}, "LocalPath": "/opt/ml/x"}}],
           "ProcessingOutputConfig": {"Outputs": [{"OutputName": "o", "S3Output": {
               "S3Uri": {"Std:Join": {"On": "/", "Values": ["s3://b", {"Get": "Execution.PipelineExecutionId"}]}}}}]}}

    def key(execution_id, environment=None):
        resolved = json.loads(json.dumps(raw).replace('{"Get": "Parameters.Uri"}', '"s3://b/in"'))
        resolved["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] = f"s3://b/{execution_id}"
        return cache_key("Processing", raw, resolved, {"Uri": "s3://b/in"}, store, tmp_path, RunnerSettings(), environment)

    first = key("exec-1")
    assert key("exec-2") == first  # a new execution id alone does not miss
    assert key("exec-2", {"champion": "group:3"}) != first
    script.write_text("print('v2')")
    after_code_change = key("exec-2")
    assert after_code_change != first
    (tmp_path / "in" / "a.txt").write_text("b")
    store.upload(tmp_path / "in", "s3://b/in")
    assert key("exec-2") != after_code_change
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("x = 1")
    before = code_hash(["python3", "-m", "pkg.mod"], tmp_path, RunnerSettings())
    (package / "other.py").write_text("y = 2")
    assert code_hash(["python3", "-m", "pkg.mod"], tmp_path, RunnerSettings()) != before
    assert entry_module({"AppSpecification": {"ContainerEntrypoint": ["python3", "-m", "training.evaluate"]}}) == "training.evaluate"


def _corrections_definition(script: Path) -> dict:
    """One Processing step that reads the CorrectionsUri prefix, as MergeFeatureShards does, and lists what it got."""
    return {"Version": "2020-12-01", "Metadata": {},
            "Parameters": [{"Name": "CorrectionsUri", "Type": "String", "DefaultValue": "s3://bucket/corrections/"}],
            "Steps": [{"Name": "Merge", "Type": "Processing", "Arguments": {
                "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                                          "VolumeSizeInGB": 30}},
                "AppSpecification": {"ImageUri": "x.dkr.ecr.us-east-1.amazonaws.com/feedback-brain-processing:latest",
                                     "ContainerEntrypoint": ["python3", str(script)],
                                     "ContainerArguments": ["--corrections-dir", "/opt/ml/processing/input/corrections",
                                                            "--out", "/opt/ml/processing/output/seen"]},
                "RoleArn": "arn:aws:iam::111122223333:role/x",
                "ProcessingInputs": [{"InputName": "corrections", "S3Input": {
                    "S3Uri": {"Get": "Parameters.CorrectionsUri"}, "LocalPath": "/opt/ml/processing/input/corrections",
                    "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}],
                "ProcessingOutputConfig": {"Outputs": [{"OutputName": "seen", "S3Output": {
                    "S3Uri": "s3://bucket/out/seen", "LocalPath": "/opt/ml/processing/output/seen",
                    "S3UploadMode": "EndOfJob"}}]}}}]}


def test_corrections_prefix_is_the_monitor_store_folder_and_may_be_empty(tmp_path):
    """The local run maps CorrectionsUri to <workspace>/s3/<bucket>/corrections (where `fbrain monitor corrections
    add` writes); before any correction exists the step still runs, on an empty folder."""
    from monitoring.cli import DEFAULT_BUCKET, _store
    from monitoring.config import MonitoringConfig
    from pipelines.config import FeedbackBrainConfig
    from pipelines.local import run_pipeline
    from pipelines.local_run import _definition, _input_uri

    real = _input_uri(_definition(FeedbackBrainConfig()), {}, "CorrectionsUri")
    workspace = tmp_path / "ws"
    assert ObjectStore(workspace / "s3").path(real) == _store(workspace, DEFAULT_BUCKET, MonitoringConfig()).root.resolve()

    script = tmp_path / "merge.py"
    script.write_text("import json, pathlib, sys\n"
                      "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
                      "found = sorted(p.name for p in pathlib.Path(args['--corrections-dir']).rglob('*') if p.is_file())\n"
                      "out = pathlib.Path(args['--out']); out.mkdir(parents=True, exist_ok=True)\n"
                      "(out / 'seen.json').write_text(json.dumps(found))\n")
    definition = _corrections_definition(script)
    missing = run_pipeline(definition, tmp_path / "strict", no_cache=True)
    assert missing.status == "Failed" and "no object or prefix" in missing.steps[0].failure_reason
    empty = run_pipeline(definition, workspace, no_cache=True, empty_prefixes=["s3://bucket/corrections/"])
    assert empty.status == "Succeeded"
    assert json.loads((workspace / "s3" / "bucket" / "out" / "seen" / "seen.json").read_text()) == []
    (workspace / "s3" / "bucket" / "corrections" / "2026" / "11" / "23").mkdir(parents=True)
    (workspace / "s3" / "bucket" / "corrections" / "2026" / "11" / "23" / "09.jsonl").write_text("{}\n")
    again = run_pipeline(definition, workspace, empty_prefixes=["s3://bucket/corrections/"])
    assert again.status == "Succeeded" and not again.steps[0].cache_hit, "new corrections change the cache key"
    assert json.loads((workspace / "s3" / "bucket" / "out" / "seen" / "seen.json").read_text()) == ["09.jsonl"]
    with pytest.raises(ObjectStoreError, match="not a prefix"):
        ObjectStore(workspace / "s3").ensure_prefix("s3://bucket/corrections/2026/11/23/09.jsonl")


def test_merge_writes_the_training_marker_into_the_corrections_prefix_and_keeps_its_cache(tmp_path):
    """MergeFeatureShards' `corrections_state` output goes to `<CorrectionsUri>_state`: locally the runner uploads
    it like any output, to <workspace>/s3/<bucket>/corrections/_state/last_training.json. The markers there are
    not part of the input's cache key (the job skips _state/), so writing one does not make the next run miss."""
    from pipelines.definition import CORRECTIONS_STATE_DIR, CORRECTIONS_STATE_OUTPUT
    from pipelines.local import run_pipeline
    from processing.corrections import LAST_TRAINING_MARKER, STATE_DIR

    script = tmp_path / "merge.py"
    script.write_text("import json, pathlib, sys\n"
                      "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
                      "found = sorted(p.name for p in pathlib.Path(args['--corrections-dir']).rglob('*.jsonl'))\n"
                      "out = pathlib.Path(args['--out']); out.mkdir(parents=True, exist_ok=True)\n"
                      "(out / 'seen.json').write_text(json.dumps(found))\n"
                      "state = pathlib.Path(args['--corrections-state-dir']); state.mkdir(parents=True, exist_ok=True)\n"
                      f"(state / {LAST_TRAINING_MARKER!r}).write_text(json.dumps({{'at': 'now', 'read': found}}))\n")
    definition = _corrections_definition(script)
    arguments = definition["Steps"][0]["Arguments"]
    arguments["AppSpecification"]["ContainerArguments"] += ["--corrections-state-dir", CORRECTIONS_STATE_DIR]
    arguments["ProcessingOutputConfig"]["Outputs"].append({"OutputName": CORRECTIONS_STATE_OUTPUT, "S3Output": {
        "S3Uri": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.CorrectionsUri"}, STATE_DIR]}},
        "LocalPath": CORRECTIONS_STATE_DIR, "S3UploadMode": "EndOfJob"}})
    workspace = tmp_path / "ws"
    prefix = workspace / "s3" / "bucket" / "corrections"
    (prefix / "2026" / "11" / "23").mkdir(parents=True)
    (prefix / "2026" / "11" / "23" / "09.jsonl").write_text("{}\n")

    first = run_pipeline(definition, workspace, empty_prefixes=["s3://bucket/corrections/"])
    assert first.status == "Succeeded"
    assert first.steps[0].outputs[CORRECTIONS_STATE_OUTPUT] == "s3://bucket/corrections/_state"
    marker = prefix / STATE_DIR / LAST_TRAINING_MARKER
    assert json.loads(marker.read_text()) == {"at": "now", "read": ["09.jsonl"]}
    assert sorted(p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if p.is_file()) == [
        "2026/11/23/09.jsonl", "_state/last_training.json"], "the marker lands beside the corrections, nothing else"

    second = run_pipeline(definition, workspace, empty_prefixes=["s3://bucket/corrections/"])
    assert second.steps[0].cache_hit, "the marker the first run wrote is not an input change"
    (prefix / "2026" / "11" / "23" / "10.jsonl").write_text("{}\n")
    third = run_pipeline(definition, workspace, empty_prefixes=["s3://bucket/corrections/"])
    assert not third.steps[0].cache_hit, "a new correction is"
    assert json.loads(marker.read_text())["read"] == ["09.jsonl", "10.jsonl"]


def test_content_hash_can_leave_marker_folders_out(tmp_path):
    store = ObjectStore(tmp_path / "s3")
    prefix = store.ensure_prefix("s3://b/corrections/")
    (prefix / "a.jsonl").write_text("{}\n")
    before = store.content_hash("s3://b/corrections/", ["_state"])
    (prefix / "_state").mkdir()
    (prefix / "_state" / "last_training.json").write_text("{}")
    assert store.content_hash("s3://b/corrections/", ["_state"]) == before
    assert store.content_hash("s3://b/corrections/") != before
    (prefix / "b.jsonl").write_text("{}\n")
    assert store.content_hash("s3://b/corrections/", ["_state"]) != before


def test_local_run_refuses_a_corrections_uri_without_its_slash(tmp_path):
    from pipelines.config import FeedbackBrainConfig
    from pipelines.local_run import run_locally

    with pytest.raises(ValueError, match="CorrectionsUri"):
        run_locally(FeedbackBrainConfig(), tmp_path / "ws", {"CorrectionsUri": "s3://bucket/corrections"})
    assert not (tmp_path / "ws").exists(), "refused before anything is written"
