"""Execute a SageMaker pipeline definition JSON on this machine.

`run_pipeline` walks the definition's steps in dependency order, resolves their expressions,
runs Processing and Training jobs as subprocesses under the SageMaker container contract,
evaluates Condition and Fail steps, registers models into MLflow, caches unchanged job steps
and records everything under `<workspace>/executions/<id>/`. `plan_pipeline` resolves and
orders the steps without running anything.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.local import cache
from pipelines.local.executions import (DEFINITION_FILE, EXECUTING, FAILED, NOT_EXECUTED, SUCCEEDED,
                                        ExecutionRecord, StepRecord, execution_dir, load_execution, new_execution_id,
                                        utc_now)
from pipelines.local.expressions import ExpressionContext, ExpressionError, PropertyFileRef, resolve
from pipelines.local.graph import CONDITION, DefinitionError, StepSpec, build_graph
from pipelines.local.jobs import StepContext, StepFailure, StepResult, arn, job_name
from pipelines.local.object_store import ObjectStore, ObjectStoreError
from pipelines.local.parameters import ParameterError, resolve_parameters
from pipelines.local.process import log_tail
from pipelines.local.registry import ARTIFACTS_DIR
from pipelines.local.settings import OFFLINE_ENV, RunnerSettings
from processing.workspace import LOCAL_STORE_FOLDER
from pipelines.local.step_control import run_condition, run_fail
from pipelines.local.step_processing import clean_container, predicted_processing_properties, run_processing
from pipelines.local.step_training import predicted_training_properties, run_training

LOG = logging.getLogger("fbrain.runner")
CODE_ROOT = Path(__file__).resolve().parents[2]
"""Repository root: on PYTHONPATH of every job, so `python3 -m processing.x` finds the same code as the image."""
OBJECT_STORE_DIR = "s3"
FEATURE_STORE_DIR = LOCAL_STORE_FOLDER
LOGS_DIR = "logs"
MLFLOW_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"
JOB_TYPES = {"Processing": run_processing, "Training": run_training}
REGISTER_TYPES = ("RegisterModel",)
SUPPORTED_TYPES = (*JOB_TYPES, CONDITION, "Fail", *REGISTER_TYPES)
_JOB_NAME_VARIABLE = {"Processing": "ProcessingJobName", "Training": "TrainingJobName"}


class RunnerError(ValueError):
    """The runner cannot start: bad definition, parameters, or a resume that makes no sense."""


@dataclass
class PlannedStep:
    name: str
    type: str
    depends_on: list[str]
    branch: str | None
    arguments: dict[str, Any] | None = None
    """Arguments with every expression resolved (JsonGet values shown as placeholders)."""
    error: str | None = None


def _pipeline_name(definition: dict, settings: RunnerSettings) -> str:
    return (definition.get("Metadata") or {}).get("PipelineName") or settings.pipeline_name


def _execution_variables(pipeline: str, execution_id: str, started: str) -> dict[str, Any]:
    pipeline_arn = arn("pipeline", pipeline)
    return {
        "PipelineExecutionId": execution_id,
        "ExecutionId": execution_id,
        "StartDateTime": started,
        "CurrentDateTime": started,
        "PipelineName": pipeline,
        "PipelineArn": pipeline_arn,
        "PipelineExecutionArn": f"{pipeline_arn}/execution/{execution_id}",
    }


def _definition_hash(definition: dict) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def plan_pipeline(definition: dict, workspace: Path, parameters: dict[str, str] | None = None,
                  settings: RunnerSettings | None = None) -> list[PlannedStep]:
    """Resolve and order every step without running one: each step is assumed to succeed with
    the properties its arguments imply; Condition outcomes are unknown, so both branches appear."""
    settings = settings or RunnerSettings()
    specs = build_graph(definition)
    values = resolve_parameters(definition.get("Parameters", []), parameters)
    execution_id = "planned-execution"
    variables = _execution_variables(_pipeline_name(definition, settings), execution_id, utc_now())
    predicted: dict[str, dict[str, Any]] = {}
    property_files = {spec.name: {p["PropertyFileName"] for p in spec.definition.get("PropertyFiles", []) or []}
                      for spec in specs}

    def properties(name: str) -> dict[str, Any]:
        if name not in predicted:
            raise ExpressionError(f"step {name} could not be planned, so its properties are unknown")
        return predicted[name]

    def check_property_file(reference: PropertyFileRef) -> None:
        if reference.name not in property_files.get(reference.step_name, set()):
            raise ExpressionError(f"step {reference.step_name} declares no property file {reference.name!r}")

    plan = []
    for spec in specs:
        job = job_name(execution_id, spec.name)
        context = ExpressionContext(values, {**variables, _JOB_NAME_VARIABLE.get(spec.type, "JobName"): job},
                                    properties, check_property_file, defer_json_get=True)
        step = PlannedStep(spec.name, spec.type, sorted(spec.depends_on),
                           ".".join(spec.branch) if spec.branch else None)
        try:
            if spec.type not in SUPPORTED_TYPES:
                raise StepFailure(f"step type {spec.type!r} is not supported by the local runner")
            step.arguments = resolve(spec.arguments, context)
            if spec.type == CONDITION:
                for condition in spec.arguments.get("Conditions", []):
                    resolve(condition, context)
            predicted[spec.name] = _predicted_properties(spec, step.arguments, job)
        except (ExpressionError, StepFailure, KeyError) as error:
            step.error = str(error)
        plan.append(step)
    return plan


def _predicted_properties(spec: StepSpec, arguments: dict[str, Any], job: str) -> dict[str, Any]:
    if spec.type == "Processing":
        return predicted_processing_properties(arguments, job)
    if spec.type == "Training":
        return predicted_training_properties(arguments, job)
    if spec.type in REGISTER_TYPES:
        return {**arguments, "ModelPackageArn": arn("model-package", f"{arguments.get('ModelPackageGroupName')}/0"),
                "ModelPackageStatus": "Completed"}
    return {"Outcome": "<decided at run time>"} if spec.type == CONDITION else {}


class _Execution:
    """One run (or resumed run) of a definition; owns the record and the expression context."""

    def __init__(self, definition: dict, workspace: Path, record: ExecutionRecord, specs: list[StepSpec],
                 settings: RunnerSettings, no_cache: bool, code_root: Path):
        self.definition = definition
        self.workspace = workspace
        self.record = record
        self.specs = specs
        self.settings = settings
        self.no_cache = no_cache
        self.code_root = code_root
        self.store = ObjectStore(workspace / OBJECT_STORE_DIR)
        self.variables = _execution_variables(record.pipeline_name, record.execution_id, record.start_time)
        self.base_env = self._base_env()

    # ------------------------------------------------------------------ environment
    def _base_env(self) -> dict[str, str]:
        env = {**os.environ, **OFFLINE_ENV}
        env["FBRAIN_WORKSPACE"] = str(self.workspace)
        env["FBRAIN_LOCAL_FEATURE_STORE"] = str(self.workspace / FEATURE_STORE_DIR)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{self.workspace / 'mlflow.db'}"
        # Experiments a job creates without an artifact location would otherwise keep their
        # artifacts in ./mlruns of the job's container folder, which a re-run wipes. MLflow
        # 3.x reads this (private) variable as the default artifact root of a SQLite store.
        env[MLFLOW_ARTIFACT_ROOT_ENV] = (self.workspace / ARTIFACTS_DIR).as_uri()
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(self.code_root), env.get("PYTHONPATH", "")] if p)
        env.pop("FBRAIN_CHAMPION_MODEL_DIR", None)
        champion = self._champion()
        self.champion_label = f"{champion[2]}:{champion[0]}" if champion else "none"
        if champion:
            env["FBRAIN_CHAMPION_MODEL_DIR"] = str(champion[1])
            LOG.info("champion: %s version %s (%s)", champion[2], champion[0], champion[1])
        return env

    def _champion(self) -> tuple[int, Path, str] | None:
        """The `champion` of the group the definition registers into (resolved from parameters only)."""
        from pipelines.local.registry import resolve_champion

        context = ExpressionContext(self.record.parameters, self.variables, self._properties, self._property_file)
        for spec in self.specs:
            if spec.type in REGISTER_TYPES and "ModelPackageGroupName" in spec.arguments:
                try:
                    group = resolve(spec.arguments["ModelPackageGroupName"], context)
                except ExpressionError:
                    continue
                found = resolve_champion(self.workspace, group, self.settings)
                if found:
                    return found[0], found[1], group
        return None

    # ------------------------------------------------------------------ expression context
    def _properties(self, name: str) -> dict[str, Any]:
        step = self.record.step(name)
        if step.status != SUCCEEDED:
            raise ExpressionError(f"step {name} has not succeeded (status {step.status}); its properties are unknown")
        return step.properties

    def _property_file(self, reference: PropertyFileRef) -> Any:
        step = self.record.step(reference.step_name)
        uri = step.property_files.get(reference.name)
        if uri is None:
            raise ExpressionError(f"step {reference.step_name} has no property file {reference.name!r} "
                                  f"(has {sorted(step.property_files)})")
        try:
            return json.loads(self.store.read_text(uri))
        except (ObjectStoreError, json.JSONDecodeError) as error:
            raise ExpressionError(f"property file {reference.name}: {error}") from None

    def _read_json_uri(self, uri: str) -> Any:
        try:
            return json.loads(self.store.read_text(uri))
        except (ObjectStoreError, json.JSONDecodeError) as error:
            raise ExpressionError(f"Std:JsonGet {uri}: {error}") from None

    def context(self, extra: dict[str, Any] | None = None) -> ExpressionContext:
        return ExpressionContext(self.record.parameters, {**self.variables, **(extra or {})}, self._properties,
                                 self._property_file, self._read_json_uri)

    # ------------------------------------------------------------------ stepping
    def _skipped_by_condition(self, spec: StepSpec) -> bool:
        if spec.branch:
            condition = self.record.step(spec.branch[0])
            if condition.status != SUCCEEDED or condition.outputs.get("branch") != spec.branch[1]:
                return True
        return any(self.record.step(name).status == NOT_EXECUTED for name in spec.depends_on)

    def run(self) -> ExecutionRecord:
        record = self.record
        total = len(self.specs)
        LOG.info("execution %s of %s: %d steps, parameters %s", record.execution_id, record.pipeline_name, total,
                 json.dumps(record.parameters, default=str))
        for index, spec in enumerate(self.specs, start=1):
            step = record.step(spec.name)
            if step.status == SUCCEEDED:
                LOG.info("[%d/%d] %s: kept from the earlier attempt (Succeeded)", index, total, spec.name)
                continue
            if self._skipped_by_condition(spec):
                step.status = NOT_EXECUTED
                record.save()
                LOG.info("[%d/%d] %s: not executed (branch not taken)", index, total, spec.name)
                continue
            if not self._run_step(spec, step, f"[{index}/{total}]"):
                return self._finish(FAILED, step)
        return self._finish(SUCCEEDED, None)

    def _run_step(self, spec: StepSpec, step: StepRecord, position: str) -> bool:
        step.status, step.start_time, step.end_time = EXECUTING, utc_now(), None
        step.failure_reason, step.cache_hit, step.cached_from = None, False, None
        step.log_file = str(self.record.directory / LOGS_DIR / f"{spec.name}.log")
        self.record.save()
        LOG.info("%s %s (%s) started", position, spec.name, spec.type)
        started = time.monotonic()
        try:
            result = self._execute(spec, step)
            step.properties, step.outputs, step.property_files = result.properties, result.outputs, result.property_files
            step.status = SUCCEEDED
        except (StepFailure, ExpressionError, ObjectStoreError) as error:
            step.status, step.failure_reason = FAILED, str(getattr(error, "reason", error))
        except KeyboardInterrupt:
            step.status, step.failure_reason = FAILED, "interrupted (Ctrl-C)"
            step.end_time = utc_now()
            self._finish(FAILED, step)
            LOG.error("interrupted: continue with resume_execution_id=%s", self.record.execution_id)
            raise
        except Exception as error:  # noqa: BLE001  (a runner bug must still leave a Failed record, not "Executing")
            step.status, step.failure_reason = FAILED, f"{type(error).__name__}: {error}"
            self._append_log(step, traceback.format_exc())
        step.end_time = utc_now()
        step.duration_seconds = round(time.monotonic() - started, 3)
        self.record.save()
        note = f" (cache hit from {step.cached_from})" if step.cache_hit else ""
        if step.status == SUCCEEDED:
            LOG.info("%s %s succeeded in %.1fs%s", position, spec.name, step.duration_seconds, note)
            return True
        LOG.error("%s %s failed after %.1fs: %s", position, spec.name, step.duration_seconds, step.failure_reason)
        tail = log_tail(step.log_file, self.settings.log_tail_lines)
        if tail:
            LOG.error("last %d lines of %s:\n%s", len(tail), step.log_file, "\n".join(tail))
        return False

    def _append_log(self, step: StepRecord, text: str) -> None:
        path = Path(step.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(text.rstrip("\n") + "\n")

    def _execute(self, spec: StepSpec, step: StepRecord) -> StepResult:
        if spec.type in JOB_TYPES:
            return self._execute_job(spec, step)
        if spec.type == CONDITION:
            result = run_condition(spec.arguments, self.context())
            self._append_log(step, f"conditions evaluated to {result.properties['Outcome']}: running {result.outputs['branch']}")
            return result
        if spec.type == "Fail":
            try:
                return run_fail(spec.arguments, self.context())
            except StepFailure as failure:
                self._append_log(step, f"Fail step: {failure.reason}")
                raise
        if spec.type in REGISTER_TYPES:
            return self._execute_register(spec, step)
        raise StepFailure(f"step type {spec.type!r} is not supported by the local runner "
                          f"(supported: {', '.join(SUPPORTED_TYPES)})")

    def _execute_job(self, spec: StepSpec, step: StepRecord) -> StepResult:
        job = job_name(self.record.execution_id, spec.name)
        step.job_name = job
        arguments = resolve(spec.arguments, self.context({_JOB_NAME_VARIABLE[spec.type]: job}))
        enabled, expire_after = cache.cache_policy(spec.definition, self.settings, self.no_cache)
        step.cache_key = None
        if enabled:
            environment = {}
            if cache.entry_module(arguments) in self.settings.champion_dependent_modules:
                environment["champion"] = self.champion_label
            step.cache_key = cache.cache_key(spec.type, spec.arguments, arguments, self.record.parameters, self.store,
                                             self.code_root, self.settings, environment)
            hit = cache.find_cached(self.workspace, spec.name, step.cache_key, expire_after, self.store,
                                    self.record.execution_id)
            if hit:
                source, earlier = hit
                step.cache_hit, step.cached_from, step.job_name = True, source, earlier.job_name
                self._append_log(step, f"cache hit: reusing the results of execution {source} (job {earlier.job_name})")
                return StepResult(earlier.properties, earlier.outputs, earlier.property_files)
        context = StepContext(spec=spec, arguments=arguments, execution_id=self.record.execution_id,
                              pipeline_name=self.record.pipeline_name, job_name=job,
                              step_dir=self.record.directory / spec.name, log_path=Path(step.log_file),
                              store=self.store, base_env=self.base_env, settings=self.settings,
                              workspace=self.workspace)
        clean_container(context)
        return JOB_TYPES[spec.type](context)

    def _execute_register(self, spec: StepSpec, step: StepRecord) -> StepResult:
        from pipelines.local.registry import register_model_package

        arguments = resolve(spec.arguments, self.context())
        package = register_model_package(self.workspace, arguments, self.store, self.settings,
                                         self.record.execution_id, spec.name)
        self._append_log(step, json.dumps(package, indent=2, default=str))
        outputs = {"ModelPackageArn": package["ModelPackageArn"], "ModelPackageVersion": package["ModelPackageVersion"],
                   "ModelApprovalStatus": package["ModelApprovalStatus"],
                   "ModelDir": package["MlflowModel"]["source"]}
        return StepResult(properties=package, outputs=outputs)

    def _finish(self, status: str, failed: StepRecord | None) -> ExecutionRecord:
        record = self.record
        record.status, record.end_time = status, utc_now()
        if failed is not None:
            record.failure_reason = (failed.failure_reason if failed.type == "Fail"
                                     else f"Step {failed.name} failed: {failed.failure_reason}")
        record.save()
        LOG.info("execution %s %s%s", record.execution_id, status,
                 f": {record.failure_reason}" if record.failure_reason else "")
        return record


def _seed(store: ObjectStore, seed_inputs: dict[str, Path] | None) -> None:
    """Put demo input where an empty InputDataUri points, so the first run has data."""
    for uri, local in (seed_inputs or {}).items():
        local = Path(local)
        if not store.is_empty(uri):
            continue
        if not local.exists():
            raise RunnerError(f"seed input for {uri} does not exist: {local}")
        target = uri if (local.is_dir() or Path(uri).suffix) else f"{uri.rstrip('/')}/{local.name}"
        store.upload(local, target)
        LOG.info("seeded %s with %s", target, local)


def _new_record(definition: dict, workspace: Path, parameters: dict[str, str] | None,
                specs: list[StepSpec], settings: RunnerSettings) -> ExecutionRecord:
    values = resolve_parameters(definition.get("Parameters", []), parameters)
    record = ExecutionRecord(execution_id=new_execution_id(), pipeline_name=_pipeline_name(definition, settings),
                             parameters=values, workspace=str(workspace))
    record.steps = [StepRecord(spec.name, spec.type, branch=".".join(spec.branch) if spec.branch else None)
                    for spec in specs]
    return record


def _resumed_record(definition: dict, workspace: Path, execution_id: str, parameters: dict[str, str] | None,
                    specs: list[StepSpec]) -> ExecutionRecord:
    record = load_execution(workspace, execution_id)
    if record.status == SUCCEEDED:
        raise RunnerError(f"execution {execution_id} succeeded; there is nothing to resume")
    if parameters:
        requested = resolve_parameters(definition.get("Parameters", []), parameters)
        changed = {k: v for k, v in requested.items() if record.parameters.get(k) != v and k in parameters}
        if changed:
            raise RunnerError(f"a resumed execution keeps its parameters; {sorted(changed)} differ from "
                              f"{execution_id}'s. Start a new execution to change them.")
    stored = execution_dir(workspace, execution_id) / DEFINITION_FILE
    if stored.is_file() and _definition_hash(json.loads(stored.read_text(encoding="utf-8"))) != _definition_hash(definition):
        LOG.warning("the definition changed since execution %s started; resuming with the new one", execution_id)
    kept = {step.name: step for step in record.steps if step.status == SUCCEEDED}
    record.steps = [kept.get(spec.name) or StepRecord(spec.name, spec.type,
                                                       branch=".".join(spec.branch) if spec.branch else None)
                    for spec in specs]
    record.status, record.end_time, record.failure_reason = EXECUTING, None, None
    record.resumed += 1
    LOG.info("resuming %s: %d succeeded step(s) kept, %d to run", execution_id, len(kept), len(specs) - len(kept))
    return record


def run_pipeline(definition: dict, workspace: Path, parameters: dict[str, str] | None = None,
                 resume_execution_id: str | None = None, seed_inputs: dict[str, Path] | None = None,
                 no_cache: bool = False, settings: RunnerSettings | None = None,
                 code_root: Path | None = None, empty_prefixes: list[str] | None = None) -> ExecutionRecord:
    """Execute the definition; returns the final record (status Succeeded or Failed).

    parameters: `Name -> value` overrides (strings from `--param` are converted per parameter type).
    resume_execution_id: continue that failed execution from its failed step (succeeded steps kept).
    seed_inputs: `S3 URI -> local file or folder`, copied into the object store when the URI is empty.
    no_cache: run every step even when a cached result exists.
    empty_prefixes: S3 prefixes a job reads that may hold no objects yet (e.g. reviewers' corrections):
    created empty when missing, so the job gets an empty input folder."""
    settings = settings or RunnerSettings()
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        specs = build_graph(definition)
        if resume_execution_id:
            record = _resumed_record(definition, workspace, resume_execution_id, parameters, specs)
        else:
            record = _new_record(definition, workspace, parameters, specs, settings)
    except (DefinitionError, ParameterError) as error:
        raise RunnerError(str(error)) from error
    record.directory.mkdir(parents=True, exist_ok=True)
    (record.directory / DEFINITION_FILE).write_text(json.dumps(definition, indent=2), encoding="utf-8")
    record.save()
    store = ObjectStore(workspace / OBJECT_STORE_DIR)
    _seed(store, seed_inputs)
    for uri in empty_prefixes or []:
        store.ensure_prefix(uri)
    execution = _Execution(definition, workspace, record, specs, settings, no_cache, code_root or CODE_ROOT)
    return execution.run()


