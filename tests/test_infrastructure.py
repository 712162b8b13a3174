"""The CDK app, checked offline: synthesis, cdk-nag, cfn-lint and assertions on the templates.

Synthesis starts a Node.js (jsii) process and builds the pipeline definition, so it runs once
per test session (the `synthesized` fixture) through the same entry point as `make synth`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

for _silenced in ("DEPRECATED", "END_OF_LIFE", "UNTESTED"):
    os.environ.setdefault(f"JSII_SILENCE_WARNING_{_silenced}_NODE_VERSION", "1")

from infrastructure.app import ingest_handlers_available
from pipelines.infrastructure_config import InfrastructureConfig
from infrastructure.lambda_packages import PackagingError, build_lambda_package, check_handler_isolated
from pipelines.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory):
    """(assembly, report, templates by stack key) of the default configuration, synthesised once."""
    from aws_cdk.assertions import Template

    from infrastructure.synth import synthesize

    outdir = tmp_path_factory.mktemp("cdk.out")
    assembly, report = synthesize(load_config(), outdir)
    templates = {}
    for stack in assembly.stacks:
        key = stack.stack_name.removeprefix("FeedbackBrain").lower()
        templates[key] = Template.from_json(json.loads(Path(stack.template_full_path).read_text()))
    return assembly, report, templates


def resources(template, kind: str) -> dict:
    return template.find_resources(kind)


def all_resources(templates, kind: str) -> dict:
    found = {}
    for name, template in templates.items():
        found.update({f"{name}/{logical}": body for logical, body in resources(template, kind).items()})
    return found


def test_every_stack_synthesises_with_no_unsuppressed_nag_finding_and_clean_cfn_lint(synthesized):
    _, report, templates = synthesized
    assert {"data", "ml", "operations", "security", "cicd"} <= set(templates)
    assert report.nag_findings == []
    assert report.lint_findings == []
    # cdk-nag ran (its reports exist) and suppressions carry reasons.
    nag_reports = sorted(report.outdir.glob("AwsSolutions-*-NagReport.csv"))
    assert len(nag_reports) == len(report.templates)
    for path in nag_reports:
        for line in path.read_text().splitlines()[1:]:
            if '"Suppressed"' in line:
                assert '"N/A"' not in line.split('"Suppressed"')[1][:8], line


def _key_ref(templates) -> str:
    (logical,) = resources(templates["data"], "AWS::KMS::Key")
    return logical


def test_the_key_rotates_and_every_data_bucket_and_table_is_encrypted_with_it(synthesized):
    _, _, templates = synthesized
    data = templates["data"]
    key = _key_ref(templates)
    assert resources(data, "AWS::KMS::Key")[key]["Properties"]["EnableKeyRotation"] is True
    buckets = resources(data, "AWS::S3::Bucket")
    kms_buckets = {name: body for name, body in buckets.items() if not name.startswith("AccessLogs")}
    assert len(kms_buckets) == 5  # raw, processed, features, models, artifacts
    for name, body in kms_buckets.items():
        props = body["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert rule["SSEAlgorithm"] == "aws:kms", name
        assert rule["KMSMasterKeyID"] == {"Fn::GetAtt": [key, "Arn"]}, name
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert props["LoggingConfiguration"]["DestinationBucketName"]["Ref"].startswith("AccessLogs")
    (database,) = resources(data, "AWS::Glue::Database").values()
    assert database["Properties"]["DatabaseInput"]["Name"] == InfrastructureConfig().glue_database
    tables = resources(data, "AWS::DynamoDB::Table")
    names = {body["Properties"]["TableName"] for body in tables.values()}
    settings = InfrastructureConfig()
    assert names == {settings.feedback_metadata_table, settings.customer_insights_table, settings.model_performance_table,
                     settings.incidents_table, settings.review_queue_table}
    for body in tables.values():
        props = body["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    streams = [body for body in tables.values() if "StreamSpecification" in body["Properties"]]
    assert [s["Properties"]["TableName"] for s in streams] == [settings.feedback_metadata_table]


def test_every_bucket_refuses_plain_http(synthesized):
    _, _, templates = synthesized
    policies = all_resources(templates, "AWS::S3::BucketPolicy")
    buckets = all_resources(templates, "AWS::S3::Bucket")
    assert len(policies) == len(buckets)
    for name, body in policies.items():
        denies = [s for s in body["Properties"]["PolicyDocument"]["Statement"]
                  if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
        assert denies, name


def test_raw_bucket_moves_to_cold_storage_and_capture_data_expires(synthesized):
    _, _, templates = synthesized
    settings = InfrastructureConfig()
    rules = {name: body["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
             for name, body in resources(templates["data"], "AWS::S3::Bucket").items()}
    raw = next(r for name, r in rules.items() if name.startswith("RawBucket"))
    transitions = [t for rule in raw for t in rule.get("Transitions", [])]
    assert {(t["StorageClass"], t["TransitionInDays"]) for t in transitions} == {
        ("STANDARD_IA", settings.raw_infrequent_access_days), ("GLACIER", settings.raw_glacier_days)}
    artifacts = next(r for name, r in rules.items() if name.startswith("ArtifactsBucket"))
    assert {"Prefix": f"{settings.capture_prefix}/", "ExpirationInDays": settings.capture_expiry_days} in [
        {k: rule.get(k) for k in ("Prefix", "ExpirationInDays")} for rule in artifacts]


def test_every_lambda_is_traced_and_no_iam_statement_allows_every_action(synthesized):
    _, _, templates = synthesized
    functions = all_resources(templates, "AWS::Lambda::Function")
    assert functions
    for name, body in functions.items():
        assert body["Properties"]["TracingConfig"] == {"Mode": "Active"}, name
    for kind in ("AWS::IAM::Policy", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy"):
        for name, body in all_resources(templates, kind).items():
            documents = [body["Properties"].get("PolicyDocument")] + [
                p["PolicyDocument"] for p in body["Properties"].get("Policies", [])]
            for document in filter(None, documents):
                for statement in document["Statement"]:
                    actions = statement.get("Action", [])
                    actions = [actions] if isinstance(actions, str) else actions
                    assert "*" not in actions and not any(a.endswith(":*") and a != "sagemaker-mlflow:*" for a in actions), (
                        name, statement)


def test_the_approval_rule_targets_the_deploy_lambda(synthesized):
    from pipelines.aws import DEPLOY_TARGET_ID, approval_event_pattern, endpoint_in_service_event_pattern

    _, _, templates = synthesized
    config = load_config()
    ml = templates["ml"]
    functions = resources(ml, "AWS::Lambda::Function")
    (deploy,) = [name for name, body in functions.items() if body["Properties"]["Handler"] == "inference.deploy.handler"]
    rules = {body["Properties"]["Name"]: body["Properties"] for body in resources(ml, "AWS::Events::Rule").values()}
    for rule_name, pattern in ((config.aws.approval_rule_name, approval_event_pattern(config)),
                               (config.aws.endpoint_rule_name, endpoint_in_service_event_pattern(config))):
        rule = rules[rule_name]
        assert rule["EventPattern"] == pattern
        (target,) = rule["Targets"]
        assert target["Id"] == DEPLOY_TARGET_ID
        assert target["Arn"] == {"Fn::GetAtt": [deploy, "Arn"]}
        assert "DeadLetterConfig" in target
    (invoke_config,) = resources(ml, "AWS::Lambda::EventInvokeConfig").values()
    assert "OnFailure" in invoke_config["Properties"]["DestinationConfig"]  # failed deployments are kept, not dropped
    permissions = resources(ml, "AWS::Lambda::Permission")
    assert sum(p["Properties"]["Principal"] == "events.amazonaws.com" for p in permissions.values()) == 2
    environment = functions[deploy]["Properties"]["Environment"]["Variables"]
    assert environment["ENDPOINT_NAME"] == config.aws.endpoint_name
    assert environment["ENDPOINT_INSTANCE_TYPE"] == config.aws.endpoint_instance_type
    assert environment["FBRAIN_SERVING_ROLLOUT_MODE"] == config.serving.rollout_mode


def test_the_pipeline_is_the_cli_definition_with_the_deployed_role_registry_and_key(synthesized):
    from pipelines.definition import definition_json

    _, _, templates = synthesized
    config = load_config()
    (pipeline,) = resources(templates["ml"], "AWS::SageMaker::Pipeline").values()
    props = pipeline["Properties"]
    assert props["PipelineName"] == config.aws.pipeline_name
    body = props["PipelineDefinition"]["PipelineDefinitionBody"]
    # Tokens become Fn::Join pieces; with them replaced by the CLI's defaults the text is the CLI's definition.
    pieces = body["Fn::Join"][1]
    literal = "".join(piece if isinstance(piece, str) else "\x00" for piece in pieces)
    cli = json.loads(definition_json(config))
    assert [step["Name"] for step in cli["Steps"]] == [step["Name"] for step in json.loads(
        literal.replace("\x00", "x"))["Steps"]]
    assert "111122223333" not in literal  # no placeholder account of the defaults is deployed
    groups = resources(templates["ml"], "AWS::SageMaker::ModelPackageGroup")
    assert [g["Properties"]["ModelPackageGroupName"] for g in groups.values()] == [config.aws.model_package_group]


def test_deployed_definition_is_the_cli_definition_given_the_same_role_registry_and_key():
    """The stand-ins the app builds with are replaced everywhere: same JSON as `fbrain --set ... pipeline definition`."""
    from infrastructure.stacks.ml import deployed_definition
    from pipelines.definition import definition_json

    role = "arn:aws:iam::123456789012:role/fbrain-pipeline"
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    ours = deployed_definition(load_config(), role_arn=role, ecr_registry=registry, kms_key_arn=key)
    cli = definition_json(load_config(overrides=[f"aws.role_arn={role}", f"aws.ecr_registry={registry}",
                                                 f"aws.kms_key_id={key}"]))
    assert json.loads(ours) == json.loads(cli)


def test_feature_group_matches_the_processing_definition(synthesized):
    from processing.feature_store import create_feature_group_request

    _, _, templates = synthesized
    config = load_config()
    request = create_feature_group_request(config.processing)
    (group,) = resources(templates["ml"], "AWS::SageMaker::FeatureGroup").values()
    props = group["Properties"]
    assert props["FeatureGroupName"] == request["FeatureGroupName"]
    assert props["FeatureDefinitions"] == request["FeatureDefinitions"]
    assert props["OfflineStoreConfig"]["S3StorageConfig"]["S3Uri"] == config.processing.feature_store_offline_s3_uri
    assert "KmsKeyId" in props["OnlineStoreConfig"]["SecurityConfig"]


def test_retraining_rules_start_the_pipeline(synthesized):
    from monitoring.triggers import TARGET_ID

    _, _, templates = synthesized
    config = load_config()
    rules = {body["Properties"]["Name"]: body["Properties"]
             for body in resources(templates["ml"], "AWS::Events::Rule").values()}
    prefix = config.monitoring.rule_prefix
    for suffix in ("scheduled-retrain", "drift-retrain", "corrections-retrain"):
        (target,) = rules[f"{prefix}-{suffix}"]["Targets"]
        assert target["Id"] == TARGET_ID
        assert "SageMakerPipelineParameters" in target
    assert rules[f"{prefix}-scheduled-retrain"]["ScheduleExpression"] == config.monitoring.retrain_schedule_expression


def test_alarms_exist_for_each_watched_signal_and_notify_the_topic(synthesized):
    _, _, templates = synthesized
    settings = InfrastructureConfig()
    alarms = {body["Properties"]["AlarmName"]: body["Properties"]
              for body in resources(templates["operations"], "AWS::CloudWatch::Alarm").values()}
    expected = {"EndpointLatencyP99", "Endpoint5xx", "PipelineFailures", "EmbeddingDrift", "ConstraintViolations",
                "DeployFunctionErrors", "DeployEventsDeadLetters"}
    if ingest_handlers_available():
        expected |= {"ConsumerDeadLetters", "KinesisIteratorAge", "SubmitFunctionErrors", "ConsumeFunctionErrors"}
    assert {name.removeprefix(f"{settings.project}-") for name in alarms} == expected
    (topic,) = resources(templates["operations"], "AWS::SNS::Topic")
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": topic}]
    assert resources(templates["operations"], "AWS::CloudWatch::Dashboard")
    secrets = {body["Properties"]["Name"] for body in resources(templates["operations"], "AWS::SecretsManager::Secret").values()}
    assert config.aws.pseudonym_salt_secret_id in secrets
    assert {f"{settings.project}/notifications/{c}" for c in settings.notification_secrets} <= secrets


def test_security_services_and_lake_data_events(synthesized):
    _, _, templates = synthesized
    security = templates["security"]
    assert resources(security, "AWS::GuardDuty::Detector")
    assert resources(security, "AWS::AccessAnalyzer::Analyzer")
    assert resources(security, "AWS::Macie::Session")
    (job,) = resources(security, "Custom::AWS").values()
    assert "createClassificationJob" in json.dumps(job["Properties"]["Create"])
    (trail,) = resources(security, "AWS::CloudTrail::Trail").values()
    selectors = trail["Properties"]["EventSelectors"]
    data_resources = [r for s in selectors for r in s.get("DataResources", [])]
    assert len(data_resources[0]["Values"]) == 5  # the five lake and pipeline buckets


def test_cicd_builds_from_github_with_the_buildspec_and_an_approval_before_prod(synthesized):
    _, _, templates = synthesized
    settings = InfrastructureConfig()
    cicd = templates["cicd"]
    (project,) = resources(cicd, "AWS::CodeBuild::Project").values()
    assert project["Properties"]["Source"]["BuildSpec"] == "buildspec.yml"
    variables = {v["Name"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert {"FBRAIN_ROLE_ARN", "FBRAIN_BUCKET", "FBRAIN_DEPLOY_LAMBDA_ARN"} <= variables
    (pipeline,) = resources(cicd, "AWS::CodePipeline::Pipeline").values()
    stages = pipeline["Properties"]["Stages"]
    assert [s["Name"] for s in stages] == ["Source"] + [s.name for s in settings.stages]
    assert stages[0]["Actions"][0]["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    for stage, declared in zip(stages[1:], settings.stages):
        providers = [a["ActionTypeId"]["Provider"] for a in stage["Actions"]]
        assert ("Manual" in providers) == declared.manual_approval
        assert "CodeBuild" in providers


def test_names_and_sizes_follow_the_configuration(tmp_path):
    """A different configuration changes the deployed names (synthesised without nag and lint)."""
    from aws_cdk.assertions import Template

    from infrastructure.app import build_app

    config = load_config(overrides=["aws.pipeline_name=fb-test", "aws.bucket=fb-test-artifacts",
                                    "aws.endpoint_name=fb-test-endpoint",
                                    "processing.feature_store_offline_s3_uri=s3://fb-test-artifacts/fs"])
    built = build_app(config, outdir=tmp_path, nag=False)
    ml = Template.from_stack(built.stacks["ml"])
    ml.has_resource_properties("AWS::SageMaker::Pipeline", {"PipelineName": "fb-test"})
    Template.from_stack(built.stacks["data"]).has_resource_properties("AWS::S3::Bucket", {"BucketName": "fb-test-artifacts"})


def test_offline_store_outside_the_apps_buckets_is_refused(tmp_path):
    from infrastructure.app import build_app

    config = load_config(overrides=["processing.feature_store_offline_s3_uri=s3://someone-elses-bucket/fs"])
    with pytest.raises(ValueError, match="someone-elses-bucket"):
        build_app(config, outdir=tmp_path, nag=False)


def test_deploy_handler_package_imports_with_only_the_lambda_runtime(tmp_path):
    package = build_lambda_package("inference.deploy.handler", tmp_path)
    assert "inference.deploy" in package.modules
    assert not any(m.startswith(("training", "pipelines")) for m in package.modules)
    check_handler_isolated(package)
    # Only sources: bytecode would change the asset hash (and so the template) from one synthesis to the next.
    assert sorted(p.suffix for p in package.directory.rglob("*") if p.is_file()) == [".py"] * len(package.modules)


def test_a_handler_needing_a_third_party_package_is_refused(tmp_path):
    # processing.feature_store imports pandas and numpy, which the Lambda runtime does not have.
    package = build_lambda_package("processing.feature_store.to_record", tmp_path)
    with pytest.raises(PackagingError, match="not in the Lambda package nor in the Lambda runtime"):
        check_handler_isolated(package)


@pytest.mark.skipif(not ingest_handlers_available(),
                    reason="operations.lambda_handlers (live loop) is not in this checkout: the Ingest stack is not built")
def test_ingest_stack_wires_api_kinesis_and_consumer(synthesized):
    _, _, templates = synthesized
    ingest = templates["ingest"]
    (mapping,) = resources(ingest, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "OnFailure" in props["DestinationConfig"]
    (stage,) = resources(ingest, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True
    (stream,) = resources(ingest, "AWS::Kinesis::Stream").values()
    assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
