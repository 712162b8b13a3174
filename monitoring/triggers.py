"""Retraining triggers: EventBridge rules on AWS, a file check locally.

Three rules start the SageMaker pipeline (target `SageMakerPipelineParameters`, with a role
EventBridge assumes): a schedule (`retrain_schedule_expression`), a drift violation (the
monitoring job's `feedback-brain.monitoring` / `ModelDriftDetected` event), and enough
human-labelled corrections (`feedback-brain.corrections` / `CorrectionsThresholdReached`).
`fbrain monitor rules apply` (pipelines.aws.apply_monitoring_rules) creates or updates them.

Locally, `check_local_triggers` looks at the latest `fbrain monitor run` output and the
corrections in the local object store; when either calls for it, it returns the command to
run (`fbrain pipeline run --local`, which the lead's CLI executes) and records that it fired,
so the same violation or the same corrections never fire twice. Corrections count as on AWS:
those the bucket's training marker (`corrections/_state/last_training.json`, written by the
merge step) does not cover; a bucket without a marker counts those added since the check last
fired (the trigger's own state).
"""
from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from monitoring.config import MonitoringConfig
from monitoring.corrections import (LocalCorrectionStore, count_corrections, count_new_corrections,
                                    last_training_marker, marker_time)
from monitoring.results import VIOLATIONS_FILE, MonitorInputs, MonitorResult

logger = logging.getLogger(__name__)

TARGET_ID = "start-retraining-pipeline"
RUNS_DIR = "runs"
STATE_FILE = "trigger_state.json"
MAX_FEATURES_IN_EVENT = 20
"""Drift events name at most this many drifted features (EventBridge caps an entry at 256 KB)."""


# ---------------------------------------------------------------- AWS: rules, targets, events
@dataclass
class RetrainingRule:
    """One EventBridge rule: the PutRule request and the PutTargets request that follows it."""

    name: str
    put_rule: dict[str, Any]
    put_targets: dict[str, Any]


def _target(config: MonitoringConfig, pipeline_arn: str, role_arn: str) -> dict[str, Any]:
    return {
        "Id": TARGET_ID,
        "Arn": pipeline_arn,
        "RoleArn": role_arn,
        "SageMakerPipelineParameters": {
            "PipelineParameterList": [
                {"Name": name, "Value": str(value)} for name, value in config.retrain_pipeline_parameters.items()
            ]
        },
    }


def retraining_rules(config: MonitoringConfig, pipeline_arn: str, role_arn: str) -> list[RetrainingRule]:
    """The schedule, drift and corrections rules, each targeting the pipeline."""
    definitions = [
        ("scheduled-retrain", {"ScheduleExpression": config.retrain_schedule_expression},
         f"Retrain on a schedule ({config.retrain_schedule_expression})"),
        ("drift-retrain", {"EventPattern": json.dumps({
            "source": [config.monitoring_event_source], "detail-type": [config.drift_event_detail_type]})},
         "Retrain when the text monitor reports constraint violations"),
        ("corrections-retrain", {"EventPattern": json.dumps({
            "source": [config.corrections_event_source], "detail-type": [config.corrections_event_detail_type]})},
         f"Retrain when {config.corrections_threshold} new human-labelled corrections exist"),
    ]
    rules = []
    for suffix, trigger, description in definitions:
        name = f"{config.rule_prefix}-{suffix}"
        put_rule: dict[str, Any] = {"Name": name, "State": "ENABLED", "Description": description, **trigger}
        if "EventPattern" in trigger:
            put_rule["EventBusName"] = config.event_bus_name
        put_targets: dict[str, Any] = {"Rule": name, "Targets": [_target(config, pipeline_arn, role_arn)]}
        if "EventPattern" in trigger:
            put_targets["EventBusName"] = config.event_bus_name
        rules.append(RetrainingRule(name, put_rule, put_targets))
    return rules


def events_role_arn(account_id: str, config: MonitoringConfig) -> str:
    return f"arn:aws:iam::{account_id}:role/{config.events_role_name}"


def events_role_policies(pipeline_arn: str, *more_pipeline_arns: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trust policy, permissions policy) of the role EventBridge rules and EventBridge Scheduler assume to
    start the pipelines (the training pipeline; the monitoring pipeline for the schedule)."""
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": ["events.amazonaws.com", "scheduler.amazonaws.com"]},
        "Action": "sts:AssumeRole"}]}
    resources = [pipeline_arn, *more_pipeline_arns]
    permissions = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sagemaker:StartPipelineExecution",
        "Resource": resources[0] if len(resources) == 1 else resources}]}
    return trust, permissions


def apply_retraining_rules(events_client: Any, rules: list[RetrainingRule]) -> list[str]:
    """Create or update every rule and its target; returns the rule ARNs."""
    arns = []
    for rule in rules:
        arns.append(events_client.put_rule(**rule.put_rule)["RuleArn"])
        response = events_client.put_targets(**rule.put_targets)
        if response.get("FailedEntryCount", 0):
            raise RuntimeError(f"EventBridge refused targets of {rule.name}: {response['FailedEntries']}")
        logger.info("rule %s -> pipeline", rule.name)
    return arns


def drift_event_entry(result: MonitorResult, inputs: MonitorInputs, config: MonitoringConfig) -> dict[str, Any]:
    """The PutEvents entry the monitoring job sends when it found violations."""
    features = sorted({v["feature_name"] for v in result.violations})
    return {
        "Source": config.monitoring_event_source,
        "DetailType": config.drift_event_detail_type,
        "Detail": json.dumps({
            "endpoint": inputs.endpoint_name,
            "monitoring_schedule": inputs.schedule_name,
            "violations": len(result.violations),
            "features": features[:MAX_FEATURES_IN_EVENT],
            "embedding_roc_auc": result.comparison.embedding.roc_auc if result.comparison.embedding else None,
            "texts": result.texts,
        }),
        "EventBusName": config.event_bus_name,
    }


def emit_drift_event(
    result: MonitorResult, inputs: MonitorInputs, config: MonitoringConfig, events_client: Any = None
) -> None:
    if events_client is None:
        import boto3

        events_client = boto3.client("events")
    response = events_client.put_events(Entries=[drift_event_entry(result, inputs, config)])
    if response.get("FailedEntryCount", 0):
        raise RuntimeError(f"EventBridge refused the drift event: {response['Entries']}")
    logger.info("drift event sent to EventBridge (%d violations)", len(result.violations))


# ---------------------------------------------------------------- local: files -> decision
@dataclass
class TriggerDecision:
    fire: bool
    reasons: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    """argv to run when fire is true (the lead's CLI executes it)."""
    violations_run: Optional[str] = None
    new_corrections: int = 0
    last_training: dict[str, Optional[str]] = field(default_factory=dict)
    """Per corrections folder: the training marker's `at` its corrections were counted from, or None (no marker:
    counted since the check last fired)."""


def monitoring_root(workspace: Path, config: MonitoringConfig) -> Path:
    return Path(workspace) / config.local_monitoring_dir


def new_run_dir(workspace: Path, config: MonitoringConfig, now: Optional[datetime] = None) -> Path:
    """Where a local `fbrain monitor run` writes when no output folder is given."""
    moment = now or datetime.now(timezone.utc)
    return monitoring_root(workspace, config) / RUNS_DIR / f"{moment:%Y%m%dT%H%M%S%fZ}"


def latest_run(workspace: Path, config: MonitoringConfig) -> Optional[Path]:
    runs = monitoring_root(workspace, config) / RUNS_DIR
    done = sorted(p.parent for p in runs.glob(f"*/{VIOLATIONS_FILE}")) if runs.is_dir() else []
    return done[-1] if done else None


def corrections_roots(workspace: Path, config: MonitoringConfig, bucket: Optional[str]) -> list[Path]:
    store = Path(workspace) / "s3"
    if bucket:
        return [store / bucket / config.corrections_prefix]
    return sorted(p for p in store.glob(f"*/{config.corrections_prefix}") if p.is_dir()) if store.is_dir() else []


def _load_state(path: Path) -> dict[str, Any]:
    """`handled_runs`, `fired`, and two corrections counters: `corrections_counted` (folders without a training
    marker: their total when the check last fired) and `corrections_by_period` (folder -> {"period": the
    marker's `at`, "counted": its new corrections when the check last fired in that period})."""
    state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for key, empty in (("handled_runs", []), ("corrections_counted", 0), ("fired", []), ("corrections_by_period", {})):
        state.setdefault(key, empty)
    return state


def _new_corrections(roots: list[Path], state: dict[str, Any]
                     ) -> tuple[int, dict[str, Any], int, dict[str, Optional[str]]]:
    """(new corrections, per-period counters to record on firing, total of folders without a marker to record,
    the period each folder was counted from).

    A folder with a training marker counts what the marker does not cover (count_new_corrections, the
    definition EventBridge's side uses), less what the check already fired for in the same period: a new
    marker (a training read the corrections) starts from zero. Folders without one keep the trigger's own
    counter: their total less `corrections_counted`."""
    marked_new, unmarked_total = 0, 0
    periods: dict[str, Any] = {}
    since: dict[str, Optional[str]] = {}
    for root in roots:
        store = LocalCorrectionStore(root)
        marker = last_training_marker(store)
        if marker is None:
            unmarked_total += count_corrections(store)
            since[str(root)] = None
            continue
        period = marker_time(marker).isoformat()
        count = count_new_corrections(store, marker)
        fired = state["corrections_by_period"].get(str(root))
        already = int(fired["counted"]) if fired and fired.get("period") == period else 0
        marked_new += max(0, count - already)
        periods[str(root)] = {"period": period, "counted": count}
        since[str(root)] = period
    # A folder that gained a marker since the last firing leaves the counter above its new total: no negatives.
    unmarked_new = max(0, unmarked_total - int(state["corrections_counted"]))
    return marked_new + unmarked_new, periods, unmarked_total, since


def check_local_triggers(
    workspace: str | Path, config: Any, bucket: Optional[str] = None, now: Optional[datetime] = None
) -> TriggerDecision:
    """Fire (once) when the latest monitoring run has violations or >= N new corrections exist.

    New corrections: those the training marker of their folder does not cover (as counted for the
    EventBridge event), or, in a folder without a marker, those added since this check last fired.

    config is a MonitoringConfig, or the composed FeedbackBrainConfig (its `monitoring`
    section and `aws.bucket` are used). Without a bucket, every bucket of the local object
    store is searched for corrections.
    """
    monitoring: MonitoringConfig = getattr(config, "monitoring", config)
    bucket = bucket or getattr(getattr(config, "aws", None), "bucket", None)
    workspace = Path(workspace)
    state_path = monitoring_root(workspace, monitoring) / STATE_FILE
    state = _load_state(state_path)
    decision = TriggerDecision(fire=False)

    run = latest_run(workspace, monitoring)
    if run is not None and str(run) not in state["handled_runs"]:
        violations = json.loads((run / VIOLATIONS_FILE).read_text(encoding="utf-8")).get("violations", [])
        if violations:
            features = sorted({v["feature_name"] for v in violations})
            decision.reasons.append(f"{len(violations)} constraint violations in {run} ({', '.join(features[:8])})")
            decision.violations_run = str(run)

    decision.new_corrections, periods, unmarked_total, decision.last_training = _new_corrections(
        corrections_roots(workspace, monitoring, bucket), state)
    if decision.new_corrections >= monitoring.corrections_threshold:
        decision.reasons.append(
            f"{decision.new_corrections} new human-labelled corrections (threshold {monitoring.corrections_threshold})"
        )

    if decision.reasons:
        decision.fire = True
        decision.command = shlex.split(monitoring.local_pipeline_command)
        if run is not None:
            state["handled_runs"].append(str(run))
        # Firing hands every correction counted so far to the retrain: they do not fire again.
        state["corrections_counted"] = unmarked_total
        state["corrections_by_period"].update(periods)
        state["fired"].append({"at": (now or datetime.now(timezone.utc)).isoformat(), "reasons": decision.reasons})
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state, indent=2), encoding="utf-8")
        logger.info("retraining triggered: %s", "; ".join(decision.reasons))
    return decision
