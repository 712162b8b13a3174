"""Glue between the configuration, the pipeline definition and the embedded runner.

`fbrain pipeline run --local` builds the same definition JSON that CodePipeline upserts,
seeds the local object store with the shipped demo corpus and hands both to the runner.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from pipelines.config import FeedbackBrainConfig

LOG = logging.getLogger("fbrain")
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "processing" / "data" / "demo_feedback.jsonl"


def _definition(config: FeedbackBrainConfig) -> dict:
    from pipelines.definition import definition_json

    return json.loads(definition_json(config))


def _input_uri(definition: dict, parameters: dict[str, str], name: str = "InputDataUri") -> str | None:
    """The value an S3 URI parameter takes in this run (the --param override, else its default)."""
    for parameter in definition.get("Parameters", []):
        if parameter["Name"] == name:
            return parameters.get(name, parameter.get("DefaultValue"))
    return None


def run_locally(config: FeedbackBrainConfig, workspace: Path, parameters: dict[str, str],
                resume: str | None = None, no_cache: bool = False):
    from pipelines.local import run_pipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from pipelines.parameters import check_parameter_values

    check_parameter_values(parameters)
    definition = _definition(config)
    input_uri = _input_uri(definition, parameters)
    # Corrections recorded with `fbrain monitor corrections add` lie under this prefix of the local object
    # store; before the first one it does not exist, and MergeFeatureShards then reads an empty folder.
    corrections_uri = _input_uri(definition, parameters, "CorrectionsUri")
    seed = Path(config.local.demo_data) if config.local.demo_data else DEMO_CORPUS
    workspace.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    record = run_pipeline(definition, workspace, parameters=parameters, resume_execution_id=resume,
                          seed_inputs={input_uri: seed} if input_uri else None, no_cache=no_cache,
                          settings=dataclasses.replace(config.runner, pipeline_name=config.aws.pipeline_name),
                          empty_prefixes=[corrections_uri] if corrections_uri else None)
    print(f"\nexecution {record.execution_id}: {record.status} in {time.monotonic() - started:.0f}s")
    for step in record.steps:
        note = " (cache hit)" if getattr(step, "cache_hit", False) else ""
        print(f"  {step.name:<24} {step.status:<10}{note}")
    if record.status == "Succeeded":
        _print_locations(config, workspace, record)
    return record


def _print_locations(config: FeedbackBrainConfig, workspace: Path, record) -> None:
    champion = _champion(config, workspace)
    outputs = {step.name: step.outputs for step in record.steps}
    print("\nwhere things are:")
    print(f"  workspace        {workspace.resolve()}")
    from pipelines.local.registry import tracking_uri

    print(f"  registry         {tracking_uri(workspace)} (model '{config.aws.model_package_group}')")
    if champion:
        version, model_dir = champion
        print(f"  champion model   version {version}: {model_dir}")
    evaluation = outputs.get("EvaluateModel") or {}
    for name, value in evaluation.items():
        print(f"  evaluation       {name}: {value}")
    print(f"  endpoint         `fbrain serve --workspace {workspace}` -> "
          f"http://{config.serving.host}:{config.serving.port}/invocations")


def _champion(config: FeedbackBrainConfig, workspace: Path):
    from pipelines.local.registry import resolve_champion

    return resolve_champion(workspace, config.aws.model_package_group)


def champion_model_dir(config: FeedbackBrainConfig, workspace: Path) -> Path:
    champion = _champion(config, workspace)
    if champion is None:
        raise SystemExit(f"no approved model in {workspace}: run `fbrain pipeline run --local "
                         "--param ModelApprovalStatus=Approved` first, or pass --model-dir")
    return Path(champion[1])


def serving_setup(config: FeedbackBrainConfig, workspace: Path, model_dir: Path | None,
                  capture: bool) -> tuple[Path, str, str | None]:
    """Model directory, model name and version to serve; capture into the local object store."""
    if capture and not config.serving.capture_dir:
        config.serving.capture_dir = str(config.local_capture_dir())
    config.serving.endpoint_name = config.aws.endpoint_name
    if model_dir is not None:
        return model_dir, model_dir.name, None
    champion = _champion(config, workspace)
    if champion is None:
        champion_model_dir(config, workspace)  # raises with the how-to
    version, directory = champion
    return Path(directory), config.aws.model_package_group, str(version)


DEMO_TEXTS = [
    "The zipper broke the second time I wore this jacket, really disappointed. I want my money back.",
    "Where is my order? It was supposed to arrive last Tuesday and tracking hasn't moved.",
    "Love these sneakers! True to size and super comfortable, will buy another pair.",
    "The blender started smoking and sparking after two uses, this is dangerous!",
]


def print_demo(config: FeedbackBrainConfig, workspace: Path) -> None:
    """Score a few texts through the real HTTP endpoint, then draft replies for them."""
    from inference.demo_client import score_over_http
    from inference.replies.drafting import ResponseService, normalise_scores

    model_dir, _, _ = serving_setup(config, workspace, None, capture=True)
    scored = score_over_http(model_dir, config.serving, DEMO_TEXTS)
    service = ResponseService(config.generative)
    print("\nscored by the local endpoint, with drafted replies:")
    for text, prediction in zip(DEMO_TEXTS, scored):
        draft = service.draft_reply({"feedback_id": "demo", "text": text, "channel": "review"}, prediction)
        summary = normalise_scores(prediction)
        print(f"\n> {text}\n  sentiment={summary['sentiment']} intent={summary['intent']} "
              f"aspects={', '.join(summary['aspects']) or '-'} flags={', '.join(summary['flags']) or '-'}")
        print(f"  draft [{draft.generator}, {draft.approval_status}, policy {'ok' if draft.policy.ok else 'REJECTED'}]: "
              f"{draft.text}")


def local_monitoring_parameters(config: FeedbackBrainConfig, workspace: Path,
                                parameters: dict[str, str]) -> dict[str, str]:
    """Parameters of a local monitoring run: the champion's baseline and model unless configured or given,
    and no EventBridge events or CloudWatch metrics (a laptop has no account; `fbrain monitor triggers check`
    reads the results)."""
    from pipelines.local.registry import champion_package_record
    from pipelines.monitoring_definition import (CHAMPION_PARAMETERS, EMIT_DRIFT_EVENTS, PUBLISH_METRICS,
                                                 champion_monitoring_parameters, configured_champion_parameters)

    values = {EMIT_DRIFT_EVENTS: "false", PUBLISH_METRICS: "false", **parameters}
    if all(name in values for name in CHAMPION_PARAMETERS):
        return values
    champion = configured_champion_parameters(config)
    if champion is None:
        record = champion_package_record(workspace, config.aws.model_package_group)
        if record is None:
            raise SystemExit(f"no approved model in {workspace} to monitor: run `fbrain pipeline run --local "
                             "--param ModelApprovalStatus=Approved` (or `fbrain model approve VERSION`) first, or pass "
                             "--param BaselineUri=... --param ModelDataUri=...")
        champion = champion_monitoring_parameters(record)
    return {**champion, **values}


def run_monitoring_locally(config: FeedbackBrainConfig, workspace: Path, parameters: dict[str, str],
                           no_cache: bool = False):
    """Run the monitoring pipeline's definition with the embedded runner; its results also land in
    <workspace>/<monitoring.local_monitoring_dir>/runs/<UTC time>/, where `fbrain monitor triggers check` looks."""
    import shutil

    from monitoring.triggers import new_run_dir
    from pipelines.local import run_pipeline
    from pipelines.local.object_store import ObjectStore
    from pipelines.local.runner import OBJECT_STORE_DIR
    from pipelines.monitoring_definition import CAPTURE_URI, MONITOR_STEP, RESULTS_OUTPUT, monitoring_definition_json

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    definition = json.loads(monitoring_definition_json(config))
    workspace.mkdir(parents=True, exist_ok=True)
    values = local_monitoring_parameters(config, workspace, parameters)
    capture_uri = values.get(CAPTURE_URI) or _input_uri(definition, values, CAPTURE_URI)
    record = run_pipeline(definition, workspace, parameters=values, no_cache=no_cache,
                          settings=dataclasses.replace(config.runner, pipeline_name=config.monitoring.pipeline_name),
                          empty_prefixes=[capture_uri] if capture_uri else None)
    print(f"\nexecution {record.execution_id}: {record.status}")
    if record.status == "Succeeded":
        results = ObjectStore(workspace / OBJECT_STORE_DIR).path(record.step(MONITOR_STEP).outputs[RESULTS_OUTPUT])
        run_dir = new_run_dir(workspace, config.monitoring)
        shutil.copytree(results, run_dir)
        print(f"  results          {results}\n  for the triggers {run_dir} (`fbrain monitor triggers check`)")
    return record
