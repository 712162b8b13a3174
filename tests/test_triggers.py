"""Retraining triggers: EventBridge rules (moto, in-process), corrections, and the local check."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from monitoring.cli import app
from monitoring.config import MonitoringConfig
from monitoring.corrections import (
    Correction, CorrectionError, LocalCorrectionStore, S3CorrectionStore, count_since_last_training,
    mark_training_started, record_correction,
)
from monitoring.triggers import (
    TARGET_ID, check_local_triggers, drift_event_entry, new_run_dir, retraining_rules, apply_retraining_rules,
)

PIPELINE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/feedback-brain"
ROLE_ARN = "arn:aws:iam::123456789012:role/feedback-brain-eventbridge"


def correction(number: int, when: datetime | None = None) -> Correction:
    stamp = (when or datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)) + timedelta(seconds=number)
    return Correction(feedback_id=f"f{number}", reviewer="ana", labels={"sentiment": "negative", "aspects": ["packaging"]},
                      created_at=stamp.isoformat())


def observe_rule(events, sqs, rule_name: str) -> str:
    """Swap the rule's pipeline target for a queue: moto cannot deliver to SageMaker pipelines
    (NotImplementedError), but it does match events against the rule's pattern and fill a queue.
    (moto also hands every event to schedule rules, so their pipeline target is removed too.)"""
    events.remove_targets(Rule=rule_name, Ids=[TARGET_ID])
    url = sqs.create_queue(QueueName=rule_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_targets(Rule=rule_name, Targets=[{"Id": "observer", "Arn": arn}])
    return url


def test_rules_cover_schedule_drift_and_corrections_and_target_the_pipeline():
    config = MonitoringConfig()
    rules = {rule.name: rule for rule in retraining_rules(config, PIPELINE_ARN, ROLE_ARN)}
    assert set(rules) == {"feedback-brain-scheduled-retrain", "feedback-brain-drift-retrain", "feedback-brain-corrections-retrain"}
    assert rules["feedback-brain-scheduled-retrain"].put_rule["ScheduleExpression"] == config.retrain_schedule_expression
    drift_pattern = json.loads(rules["feedback-brain-drift-retrain"].put_rule["EventPattern"])
    assert drift_pattern == {"source": ["feedback-brain.monitoring"], "detail-type": ["ModelDriftDetected"]}
    for rule in rules.values():
        (target,) = rule.put_targets["Targets"]
        assert target["Arn"] == PIPELINE_ARN and target["RoleArn"] == ROLE_ARN
        assert target["SageMakerPipelineParameters"]["PipelineParameterList"] == [
            {"Name": "ModelApprovalStatus", "Value": "PendingManualApproval"}]


@mock_aws
def test_rules_route_drift_and_corrections_events_with_moto():
    config = MonitoringConfig()
    events, sqs = boto3.client("events"), boto3.client("sqs")
    rules = retraining_rules(config, PIPELINE_ARN, ROLE_ARN)
    arns = apply_retraining_rules(events, rules)
    assert len(arns) == 3 and all(arn.startswith("arn:aws:events:") for arn in arns)
    stored = events.list_targets_by_rule(Rule="feedback-brain-drift-retrain")["Targets"]
    assert stored[0]["Id"] == TARGET_ID and "SageMakerPipelineParameters" in stored[0]
    assert events.describe_rule(Name="feedback-brain-scheduled-retrain")["ScheduleExpression"] == "rate(7 days)"

    events.remove_targets(Rule="feedback-brain-scheduled-retrain", Ids=[TARGET_ID])  # see observe_rule
    observed = {rule.name: observe_rule(events, sqs, rule.name) for rule in rules[1:]}
    result = SimpleNamespace(violations=[{"feature_name": "embedding"}, {"feature_name": "text_language"}],
                             comparison=SimpleNamespace(embedding=SimpleNamespace(roc_auc=0.97)), texts=200)
    inputs = SimpleNamespace(endpoint_name="feedback-brain", schedule_name="feedback-brain-text-monitor")
    response = events.put_events(Entries=[drift_event_entry(result, inputs, config)])
    assert response["FailedEntryCount"] == 0

    drift_messages = sqs.receive_message(QueueUrl=observed["feedback-brain-drift-retrain"], MaxNumberOfMessages=10).get("Messages", [])
    assert len(drift_messages) == 1
    detail = json.loads(drift_messages[0]["Body"])["detail"]
    assert detail["features"] == ["embedding", "text_language"] and detail["embedding_roc_auc"] == 0.97
    assert "Messages" not in sqs.receive_message(QueueUrl=observed["feedback-brain-corrections-retrain"])


@mock_aws
def test_corrections_in_s3_announce_the_threshold_once_per_training_period():
    config = MonitoringConfig(corrections_threshold=3)
    s3, events, sqs = boto3.client("s3"), boto3.client("events"), boto3.client("sqs")
    s3.create_bucket(Bucket="feedback-brain-artifacts")
    rules = retraining_rules(config, PIPELINE_ARN, ROLE_ARN)
    apply_retraining_rules(events, rules)
    for rule in rules[:2]:
        events.remove_targets(Rule=rule.name, Ids=[TARGET_ID])  # see observe_rule
    url = observe_rule(events, sqs, "feedback-brain-corrections-retrain")

    store = S3CorrectionStore(s3, "feedback-brain-artifacts", config.corrections_prefix)
    receipts = [record_correction(store, correction(n), config, events) for n in range(5)]
    assert [r.since_last_training for r in receipts] == [1, 2, 3, 4, 5]
    assert [r.event_sent for r in receipts] == [False, False, True, False, False]
    assert receipts[0].location.startswith("s3://feedback-brain-artifacts/corrections/2026/11/23/")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"])["detail"]["corrections_since_last_training"] == 3

    mark_training_started(store, datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc))
    assert count_since_last_training(store) == 0
    later = [record_correction(store, correction(n, datetime(2026, 11, 23, 11, 0, tzinfo=timezone.utc)), config, events)
             for n in range(3)]
    assert [r.event_sent for r in later] == [False, False, True]


def test_corrections_are_validated_against_the_taxonomy(tmp_path):
    store = LocalCorrectionStore(tmp_path / "corrections")
    for labels in ({"sentiment": "furious"}, {"aspects": ["teleportation"]}, {"colour": "red"}, {}):
        with pytest.raises(CorrectionError):
            record_correction(store, Correction(feedback_id="f1", reviewer="ana", labels=labels), MonitoringConfig())
    with pytest.raises(CorrectionError, match="reviewer"):
        record_correction(store, Correction(feedback_id="f1", reviewer=" ", labels={"intent": "question"}), MonitoringConfig())
    assert not list(store.iter_corrections())


def _violation_run(workspace: Path, config: MonitoringConfig, violations: list, minute: int) -> Path:
    run = new_run_dir(workspace, config, datetime(2026, 11, 23, 9, minute, tzinfo=timezone.utc))
    run.mkdir(parents=True)
    (run / "constraint_violations.json").write_text(json.dumps({"violations": violations}))
    return run


def test_local_violation_fires_once_and_a_clean_run_does_not(tmp_path):
    config = MonitoringConfig()
    assert not check_local_triggers(tmp_path, config).fire
    _violation_run(tmp_path, config, [], minute=0)
    assert not check_local_triggers(tmp_path, config).fire
    run = _violation_run(tmp_path, config, [{"feature_name": "embedding", "constraint_check_type": "baseline_drift_check",
                                            "description": "AUC 0.97"}], minute=5)
    decision = check_local_triggers(tmp_path, config)
    assert decision.fire and decision.command == ["fbrain", "pipeline", "run", "--local"]
    assert decision.violations_run == str(run) and "embedding" in decision.reasons[0]
    assert not check_local_triggers(tmp_path, config).fire, "the same violation must not fire twice"
    state = json.loads((tmp_path / "monitoring" / "trigger_state.json").read_text())
    assert len(state["fired"]) == 1


def test_local_corrections_fire_at_the_threshold_via_the_cli(tmp_path):
    runner = CliRunner()
    composed = SimpleNamespace(monitoring=MonitoringConfig(corrections_threshold=3), aws=SimpleNamespace(bucket="bucket-a"))
    for number in range(2):
        outcome = runner.invoke(app, ["corrections", "add", "--workspace", str(tmp_path), "--bucket", "bucket-a",
                                      "--feedback-id", f"f{number}", "--reviewer", "ana", "--intent", "refund_request"])
        assert outcome.exit_code == 0, outcome.output
    refused = runner.invoke(app, ["corrections", "add", "--workspace", str(tmp_path), "--bucket", "bucket-a",
                                  "--feedback-id", "f9", "--reviewer", "ana", "--sentiment", "furious"])
    assert refused.exit_code == 2 and "furious" in refused.output
    assert not check_local_triggers(tmp_path, composed).fire
    runner.invoke(app, ["corrections", "add", "--workspace", str(tmp_path), "--bucket", "bucket-a",
                        "--feedback-id", "f2", "--reviewer", "bo", "--aspect", "packaging"])
    counted = json.loads(runner.invoke(app, ["corrections", "count", "--workspace", str(tmp_path), "--bucket", "bucket-a"]).output)
    assert counted["total"] == 3

    decision = check_local_triggers(tmp_path, composed)
    assert decision.fire and decision.new_corrections == 3 and "3 new human-labelled corrections" in decision.reasons[0]
    checked = runner.invoke(app, ["triggers", "check", "--workspace", str(tmp_path), "--set", "corrections_threshold=3"])
    assert checked.exit_code == 0 and json.loads(checked.output)["fire"] is False


def test_local_corrections_count_from_the_training_marker_when_there_is_one(tmp_path):
    """Without a marker the check counts what was added since it last fired; once the merge step has written
    `_state/last_training.json`, it counts what that marker does not cover, as the EventBridge side does."""
    from monitoring.corrections import STATE_DIR, Watermark
    from processing.corrections import write_training_marker

    config = MonitoringConfig(corrections_threshold=2)
    root = tmp_path / "s3" / "bucket-a" / config.corrections_prefix
    store = LocalCorrectionStore(root)
    recorded = [correction(n) for n in range(3)]
    for item in recorded:
        store.append(item)

    fallback = check_local_triggers(tmp_path, config)
    assert fallback.fire and fallback.new_corrections == 3 and fallback.last_training == {str(root): None}
    assert not check_local_triggers(tmp_path, config).fire, "no marker: the same corrections never fire twice"

    # The merge read the first two; the third was recorded after SageMaker copied them in, yet before the marker
    # was written (12:00): a time cut-off would call it consumed, the watermark does not.
    at = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    write_training_marker(root / STATE_DIR, at, Watermark.of(recorded[:2]))
    one = check_local_triggers(tmp_path, config)
    assert (one.fire, one.new_corrections, one.last_training) == (False, 1, {str(root): at.isoformat()})
    store.append(correction(3))
    fired = check_local_triggers(tmp_path, config)
    assert fired.fire and fired.new_corrections == 2 and "2 new human-labelled corrections" in fired.reasons[0]
    assert not check_local_triggers(tmp_path, config).fire, "the same corrections never fire twice in a period"

    # The next training read them all: a new period starts from zero.
    later = datetime(2026, 11, 23, 13, 0, tzinfo=timezone.utc)
    write_training_marker(root / STATE_DIR, later, Watermark.of(store.iter_corrections()))
    assert check_local_triggers(tmp_path, config).new_corrections == 0
    for n in range(2):
        store.append(correction(n, later))
    again = check_local_triggers(tmp_path, config)
    assert again.fire and again.new_corrections == 2 and again.last_training == {str(root): later.isoformat()}


@mock_aws
def test_eventbridge_role_is_least_privilege_and_creatable():
    from monitoring.triggers import events_role_arn, events_role_policies

    config = MonitoringConfig()
    trust, permissions = events_role_policies(PIPELINE_ARN)
    iam = boto3.client("iam")
    role = iam.create_role(RoleName=config.events_role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(RoleName=config.events_role_name, PolicyName="start-pipeline", PolicyDocument=json.dumps(permissions))
    assert role["Arn"] == events_role_arn("123456789012", config)
    (statement,) = permissions["Statement"]
    assert statement["Action"] == "sagemaker:StartPipelineExecution" and statement["Resource"] == PIPELINE_ARN
