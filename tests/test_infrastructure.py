"""The CDK app, checked offline: synthesis, cdk-nag, cfn-lint and assertions on the templates.

Synthesis starts a Node.js (jsii) process and builds the pipeline definition, so it runs once
per test session (the `synthesized` fixture) through the same entry point as `make synth`.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

for _silenced in ("DEPRECATED", "END_OF_LIFE", "UNTESTED"):
    os.environ.setdefault(f"JSII_SILENCE_WARNING_{_silenced}_NODE_VERSION", "1")

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
    assert set(templates) == {"data", "ml", "ingest", "operations", "security", "cicd"}
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
    config = load_config()
    (database,) = resources(data, "AWS::Glue::Database").values()
    assert database["Properties"]["DatabaseInput"]["Name"] == config.loop.namespace
    tables = resources(data, "AWS::DynamoDB::Table")
    names = {body["Properties"]["TableName"] for body in tables.values()}
    settings = InfrastructureConfig()
    from infrastructure.stacks.data import table_names

    deployed = table_names(config, settings)  # incidents / review queue: the alerting section's, once it has them
    assert names == {config.loop.feedback_metadata_table, config.loop.customer_insights_table,
                     config.loop.model_performance_table, deployed["incidents_table"], deployed["review_queue_table"]}
    for body in tables.values():
        props = body["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    streams = [body for body in tables.values() if "StreamSpecification" in body["Properties"]]
    assert [s["Properties"]["TableName"] for s in streams] == [config.loop.feedback_metadata_table]


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
    from pipelines.aws import (DEPLOY_TARGET_ID, DEPLOY_TARGET_RETRY_POLICY, approval_event_pattern,
                               endpoint_in_service_event_pattern)

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
        assert target["RetryPolicy"] == DEPLOY_TARGET_RETRY_POLICY  # what `fbrain pipeline upsert` sets as well
    (invoke_config,) = resources(ml, "AWS::Lambda::EventInvokeConfig").values()
    assert "OnFailure" in invoke_config["Properties"]["DestinationConfig"]  # failed deployments are kept, not dropped
    permissions = resources(ml, "AWS::Lambda::Permission")
    assert sum(p["Properties"]["Principal"] == "events.amazonaws.com" for p in permissions.values()) == 2
    environment = functions[deploy]["Properties"]["Environment"]["Variables"]
    assert environment["ENDPOINT_NAME"] == config.aws.endpoint_name
    assert environment["ENDPOINT_INSTANCE_TYPE"] == config.aws.endpoint_instance_type
    assert environment["FBRAIN__SERVING__ROLLOUT_MODE"] == config.serving.rollout_mode


def test_the_pipeline_is_the_cli_definition_with_the_deployed_role_registry_and_key(synthesized):
    from pipelines.definition import definition_json

    _, _, templates = synthesized
    config = load_config()
    pipelines = {body["Properties"]["PipelineName"]: body for body in resources(templates["ml"], "AWS::SageMaker::Pipeline").values()}
    assert set(pipelines) == {config.aws.pipeline_name, config.monitoring.pipeline_name}
    props = pipelines[config.aws.pipeline_name]["Properties"]
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
    feature_store_role = "arn:aws:iam::123456789012:role/fbrain-feature-store"
    ours = deployed_definition(load_config(), role_arn=role, ecr_registry=registry, kms_key_arn=key,
                               feature_store_role_arn=feature_store_role)
    cli = definition_json(load_config(overrides=[f"aws.role_arn={role}", f"aws.ecr_registry={registry}",
                                                 f"aws.kms_key_id={key}",
                                                 f"processing.feature_store_role_arn={feature_store_role}",
                                                 f"processing.feature_store_kms_key_id={key}"]))
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
                "DeployFunctionErrors", "DeployEventsDeadLetters",
                "ConsumerDeadLetters", "KinesisIteratorAge", "SubmitFunctionErrors", "ConsumeFunctionErrors",
                "FeedbackApi5xx", "DetectFunctionErrors", "DetectionScheduleDeadLetters", "OperationsApiFunctionErrors",
                "OperationsApi5xx", "MaintainFunctionErrors"}
    assert {name.removeprefix(f"{settings.project}-") for name in alarms} == expected
    (topic,) = resources(templates["operations"], "AWS::SNS::Topic")
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": topic}]
    assert resources(templates["operations"], "AWS::CloudWatch::Dashboard")
    secrets = {body["Properties"]["Name"] for body in resources(templates["operations"], "AWS::SecretsManager::Secret").values()}
    assert load_config().aws.pseudonym_salt_secret_id in secrets
    from operations.alerting.channels import SETTINGS

    for channel in settings.notification_secrets:  # one secret per value a channel reads (<VARIABLE>_SECRET_ID)
        for variable in SETTINGS[channel]:
            assert f"{settings.project}/notifications/{variable.removeprefix('FBRAIN_').lower().replace('_', '-')}" in secrets


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
    statements = {statement.get("Sid"): statement for policy in resources(cicd, "AWS::IAM::Policy").values()
                  for statement in policy["Properties"]["PolicyDocument"]["Statement"]}
    # `fbrain pipeline upsert` reads the deploy rules' targets before replacing them (it keeps the dead-letter queue).
    assert set(statements["DeployRules"]["Action"]) == {"events:PutRule", "events:PutTargets", "events:ListTargetsByRule"}


def test_names_and_sizes_follow_the_configuration(tmp_path):
    """A different configuration changes the deployed names (synthesised without nag and lint)."""
    from aws_cdk.assertions import Match, Template

    from infrastructure.app import build_app

    config = load_config(overrides=["aws.pipeline_name=fb-test", "aws.bucket=fb-test-artifacts",
                                    "aws.endpoint_name=fb-test-endpoint",
                                    "processing.feature_store_offline_s3_uri=s3://fb-test-artifacts/fs",
                                    "loop.kinesis_stream=fb-test-stream", "loop.feedback_metadata_table=FbTestMetadata",
                                    "loop.max_items_per_request=7", "alerting.detect_every_s=120"])
    built = build_app(config, outdir=tmp_path, nag=False)
    ml = Template.from_stack(built.stacks["ml"])
    ml.has_resource_properties("AWS::SageMaker::Pipeline", {"PipelineName": "fb-test"})
    data = Template.from_stack(built.stacks["data"])
    data.has_resource_properties("AWS::S3::Bucket", {"BucketName": "fb-test-artifacts"})
    data.has_resource_properties("AWS::DynamoDB::Table", {"TableName": "FbTestMetadata"})
    ingest = Template.from_stack(built.stacks["ingest"])
    ingest.has_resource_properties("AWS::Kinesis::Stream", {"Name": "fb-test-stream"})
    # A changed setting and the deployed names reach the handlers as FBRAIN__ variables.
    ingest.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "FBRAIN__LOOP__KINESIS_STREAM": "fb-test-stream", "FBRAIN__LOOP__FEEDBACK_METADATA_TABLE": "FbTestMetadata",
        "FBRAIN__LOOP__MAX_ITEMS_PER_REQUEST": "7", "FBRAIN__LOOP__SCORER_TARGET": "fb-test-endpoint"})}})
    Template.from_stack(built.stacks["operations"]).has_resource_properties(
        "AWS::Scheduler::Schedule", {"ScheduleExpression": "rate(2 minutes)"})


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
    # No bytecode: it would change the asset hash (and so the template) from one synthesis to the next.
    assert not list(package.directory.rglob("*.pyc"))
    # The settings machinery's wheels, for the Lambda platform, at the versions installed here.
    assert (package.directory / "pydantic").is_dir() and list(package.directory.glob("pydantic_core-*.dist-info"))
    assert not (package.directory / "pandas").exists()


def test_a_handler_needing_a_third_party_package_is_refused(tmp_path):
    # processing.feature_store imports pandas and numpy, which the Lambda runtime does not have.
    package = build_lambda_package("processing.feature_store.to_record", tmp_path)
    with pytest.raises(PackagingError, match="not in the Lambda package nor in the Lambda runtime"):
        check_handler_isolated(package)


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



def _literal(value):
    """A template value as text, each CloudFormation token (outside Fn::Join's literal pieces) as TOKEN."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, pieces = value["Fn::Join"]
        return separator.join(_literal(piece) for piece in pieces)
    return "TOKEN"


def _functions(templates, *stacks) -> dict:
    return {f"{stack}/{logical}": body for stack in stacks
            for logical, body in resources(templates[stack], "AWS::Lambda::Function").items()}


def test_handler_environments_parsed_by_load_sections_give_the_deployed_names(synthesized):
    from operations.alerting.config import AlertingConfig
    from operations.config import LoopConfig
    from processing.config import ProcessingConfig
    from processing.settings import load_sections

    _, _, templates = synthesized
    config, settings = load_config(), InfrastructureConfig()
    (stream,) = resources(templates["ingest"], "AWS::Kinesis::Stream").values()
    tables = {body["Properties"]["TableName"] for body in resources(templates["data"], "AWS::DynamoDB::Table").values()}
    (database,) = resources(templates["data"], "AWS::Glue::Database").values()
    functions = _functions(templates, "ingest", "operations")
    assert len(functions) == 5  # submit, consume, detect, operations API, lake maintenance
    for name, body in functions.items():
        raw = body["Properties"]["Environment"]["Variables"]
        sections = load_sections({"loop": LoopConfig(), "processing": ProcessingConfig(), "alerting": AlertingConfig()},
                                 environ={key: _literal(value) for key, value in raw.items()})
        loop = sections["loop"]
        assert loop.kinesis_stream == stream["Properties"]["Name"], name
        assert {loop.feedback_metadata_table, loop.customer_insights_table, loop.model_performance_table} <= tables
        assert loop.catalog == "glue" and loop.namespace == database["Properties"]["DatabaseInput"]["Name"], name
        assert loop.warehouse == f"s3://TOKEN/{settings.lake_prefix}" and "ProcessedBucket" in json.dumps(
            raw["FBRAIN__LOOP__WAREHOUSE"]), name
        assert (loop.scorer, loop.scorer_target) == ("endpoint", config.aws.endpoint_name), name
        assert sections["processing"].pseudonym_salt_secret_id == config.aws.pseudonym_salt_secret_id
        assert body["Properties"]["TracingConfig"] == {"Mode": "Active"}
        assert "KmsKeyArn" in body["Properties"], name  # the environment is encrypted with the data key
        if "FBRAIN__ALERTING__INCIDENTS_TABLE" in raw:  # the alerting Lambdas
            alerting = sections["alerting"]
            assert {alerting.incidents_table, alerting.review_queue_table} <= tables, name
            # the bucket the retraining trigger counts corrections in (aws.bucket)
            assert alerting.corrections_bucket == config.aws.bucket or "ArtifactsBucket" in json.dumps(
                raw["FBRAIN__ALERTING__CORRECTIONS_BUCKET"]), name
            # API Gateway checked the key: the handler must grant its scopes, or every request would be a 403
            assert alerting.api_key_scopes == settings.operations_api_scopes, name


def test_table_keys_are_the_handlers_keys(synthesized):
    from operations.aws_tables import ALERTING_TABLE_KEYS, LOOP_TABLE_KEYS

    _, _, templates = synthesized
    config, settings = load_config(), InfrastructureConfig()
    from infrastructure.stacks.data import table_names

    deployed = table_names(config, settings)
    expected = {getattr(config.loop, field): keys for field, keys in LOOP_TABLE_KEYS.items()}
    expected.update({deployed[field]: keys for field, keys in ALERTING_TABLE_KEYS.items()})
    found = {}
    for body in resources(templates["data"], "AWS::DynamoDB::Table").values():
        schema = {item["KeyType"]: item["AttributeName"] for item in body["Properties"]["KeySchema"]}
        found[body["Properties"]["TableName"]] = (schema["HASH"], schema.get("RANGE"))
    assert found == {name: (keys.partition, keys.sort) for name, keys in expected.items()}
    assert found[config.loop.feedback_metadata_table] == ("feedbackId", None)
    assert found[config.loop.customer_insights_table] == ("customerId", "timestamp")
    assert found[config.loop.model_performance_table] == ("modelId", "version")


def test_submit_is_a_zip_package_and_the_container_functions_run_the_loop_image(synthesized):
    from infrastructure.stacks.ingest import CONSUME_HANDLER, SUBMIT_HANDLER
    from infrastructure.stacks.operations import DETECT_HANDLER, MAINTAIN_HANDLER, OPERATIONS_API_HANDLER

    _, report, templates = synthesized
    functions = _functions(templates, "ingest", "operations")
    zipped = [body for body in functions.values() if body["Properties"].get("Handler") == SUBMIT_HANDLER]
    assert len(zipped) == 1 and zipped[0]["Properties"]["Runtime"] == InfrastructureConfig().lambda_runtime
    images = sorted(body["Properties"]["ImageConfig"]["Command"][0] for body in functions.values()
                    if body["Properties"].get("PackageType") == "Image")
    assert images == sorted([CONSUME_HANDLER, DETECT_HANDLER, OPERATIONS_API_HANDLER, MAINTAIN_HANDLER])
    # The staged image asset is the loop Dockerfile with only what it copies (no .venv, .git, cdk.out, tests).
    for stack in ("Ingest", "Operations"):
        manifest = json.loads((report.outdir / f"FeedbackBrain{stack}.assets.json").read_text())
        for image in manifest["dockerImages"].values():
            assert image["source"]["dockerFile"] == "containers/loop/Dockerfile"
            staged = report.outdir / image["source"]["directory"]
            top = {path.name for path in staged.iterdir()}
            assert top == {"containers", "requirements", "setup.py", "processing", "training", "inference", "monitoring",
                           "operations", "pipelines"}, top
            assert [p.name for p in (staged / "requirements").iterdir()] == ["loop.lock"]
            assert not list(staged.rglob("__pycache__"))


def test_submit_handler_package_imports_with_only_the_lambda_runtime(tmp_path):
    """POST /feedback's package: the body contract (operations.intake) without FastAPI, numpy or pyiceberg."""
    from infrastructure.stacks.ingest import SUBMIT_HANDLER

    package = build_lambda_package(SUBMIT_HANDLER, tmp_path)
    assert {"operations.aws_lambda", "operations.intake", "operations.aws_tables"} <= set(package.modules)
    assert "operations.service" not in package.modules
    check_handler_isolated(package)


def test_submit_and_consumer_grants_are_the_calls_they_make(synthesized):
    _, _, templates = synthesized
    policies = resources(templates["ingest"], "AWS::IAM::Policy")
    statements = {name: {s.get("Sid"): s for s in body["Properties"]["PolicyDocument"]["Statement"]}
                  for name, body in policies.items()}
    submit = next(v for k, v in statements.items() if k.startswith("SubmitFunctionRole"))
    consume = next(v for k, v in statements.items() if k.startswith("ConsumeFunctionRole"))
    assert sorted(submit["ReceiveFeedback"]["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert sorted(consume["WriteLoopTables"]["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert consume["ScoreOnEndpoint"]["Action"] == "sagemaker:InvokeEndpoint"
    assert consume["PseudonymSalt"]["Action"] == "secretsmanager:GetSecretValue"
    # The consumer writes the lake (operations.aws_lambda.consumer_handler -> Lake on Glue), the submit Lambda never.
    assert {"glue:UpdateTable", "glue:CreateTable", "glue:GetTable"} <= set(consume["LakeCatalog"]["Action"])
    assert "LakeCatalog" not in submit


def _api_paths(template) -> dict[str, str]:
    """Logical id of each API Gateway resource -> its path."""
    found = resources(template, "AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path(logical):
        if logical not in paths:
            props = found[logical]["Properties"]
            parent = props["ParentId"]
            prefix = path(parent["Ref"]) if "Ref" in parent else ""
            paths[logical] = f"{prefix}/{props['PathPart']}"
        return paths[logical]

    for logical in found:
        path(logical)
    return paths


def test_operations_api_routes_all_require_a_key_and_proxy_to_the_operations_handler(synthesized):
    from infrastructure.stacks.operations import OPERATIONS_API_HANDLER, OPERATIONS_ROUTES

    _, _, templates = synthesized
    operations = templates["operations"]
    (handler,) = [logical for logical, body in resources(operations, "AWS::Lambda::Function").items()
                  if body["Properties"].get("ImageConfig", {}).get("Command") == [OPERATIONS_API_HANDLER]]
    paths = _api_paths(operations)
    routes = set()
    for body in resources(operations, "AWS::ApiGateway::Method").values():
        props = body["Properties"]
        routes.add((props["HttpMethod"], paths[props["ResourceId"]["Ref"]]))
        assert props["ApiKeyRequired"] is True
        assert props["Integration"]["Type"] == "AWS_PROXY" and handler in json.dumps(props["Integration"]["Uri"])
    assert routes == {(method, f"/{path}") for method, path in OPERATIONS_ROUTES}
    (stage,) = resources(operations, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True and "AccessLogSetting" in stage["Properties"]
    assert resources(operations, "AWS::ApiGateway::UsagePlan") and resources(operations, "AWS::WAFv2::WebACLAssociation")


def test_detection_schedule_invokes_the_detect_lambda_at_the_configured_rate(synthesized):
    from infrastructure.stacks.operations import DETECT_HANDLER, detection_rate

    _, _, templates = synthesized
    operations = templates["operations"]
    (detect,) = [logical for logical, body in resources(operations, "AWS::Lambda::Function").items()
                 if body["Properties"].get("ImageConfig", {}).get("Command") == [DETECT_HANDLER]]
    (schedule,) = [body for logical, body in resources(operations, "AWS::Scheduler::Schedule").items()
                   if logical.startswith("DetectionSchedule")]
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == detection_rate(load_config().alerting.detect_every_s) == "rate(5 minutes)"
    assert props["Target"]["Arn"] == {"Fn::GetAtt": [detect, "Arn"]}
    assert "DeadLetterConfig" in props["Target"] and "RetryPolicy" in props["Target"]
    role = props["Target"]["RoleArn"]["Fn::GetAtt"][0]
    policy = next(body for body in resources(operations, "AWS::IAM::Policy").values()
                  if {"Ref": role} in body["Properties"]["Roles"])
    invoke = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Action"] == "lambda:InvokeFunction"]
    assert invoke and all(detect in json.dumps(s["Resource"]) for s in invoke)


def test_the_lake_is_maintained_on_aws_on_a_schedule(synthesized):
    """Raw-text retention (a privacy obligation), compaction and snapshot expiry: the local worker does them between
    micro-batches; on AWS a scheduled Lambda runs the same maintain_lake on the Glue lake."""
    from infrastructure.stacks.operations import MAINTAIN_HANDLER

    _, _, templates = synthesized
    operations = templates["operations"]
    (maintain,) = [logical for logical, body in resources(operations, "AWS::Lambda::Function").items()
                   if body["Properties"].get("ImageConfig", {}).get("Command") == [MAINTAIN_HANDLER]]
    (schedule,) = [body["Properties"] for logical, body in resources(operations, "AWS::Scheduler::Schedule").items()
                   if logical.startswith("LakeMaintenanceSchedule")]
    assert schedule["ScheduleExpression"] == InfrastructureConfig().lake_maintenance_schedule
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": [maintain, "Arn"]} and "DeadLetterConfig" in schedule["Target"]
    (policy,) = [body for logical, body in resources(operations, "AWS::IAM::Policy").items()
                 if logical.startswith("MaintainFunctionRole")]
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"glue:UpdateTable", "s3:DeleteObject*", "s3:PutObject"} <= actions


def test_detection_rate_is_whole_minutes():
    from infrastructure.stacks.operations import detection_rate

    assert detection_rate(60) == "rate(1 minute)" and detection_rate(3600) == "rate(60 minutes)"
    assert detection_rate(0) is None
    for bad in (30, 90):
        with pytest.raises(ValueError, match="alerting.detect_every_s"):
            detection_rate(bad)


def test_alerting_functions_may_use_their_tables_secrets_lake_and_catalog(synthesized):
    _, _, templates = synthesized
    operations = templates["operations"]
    for prefix in ("DetectFunctionRole", "OperationsApiFunctionRole"):
        (policy,) = [body for logical, body in resources(operations, "AWS::IAM::Policy").items()
                     if logical.startswith(prefix)]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        text = json.dumps(statements)
        actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        assert {"dynamodb:PutItem", "dynamodb:Query", "secretsmanager:GetSecretValue", "s3:GetObject*",
                "glue:GetTable", "kms:Decrypt"} <= actions, prefix
        assert "IncidentsTable" in text and "ReviewQueueTable" in text and "ProcessedBucket" in text
        assert {"glue:UpdateTable", "glue:CreateTable", "events:PutEvents"} <= actions, prefix  # reviews write the lake
        if prefix == "DetectFunctionRole":  # the alert volume, in its own namespace only
            (metrics,) = [s for s in statements if s.get("Sid") == "DetectionMetrics"]
            assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": load_config().alerting.metrics_namespace}}
        # Objects are written only under the lake prefix and the corrections prefix, nowhere else.
        settings, monitoring = load_config().infrastructure, load_config().monitoring
        for statement in statements:
            writes = {"s3:PutObject", "s3:DeleteObject*"} & set(
                [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
            if writes:
                resources_text = json.dumps(statement["Resource"])
                assert f"/{settings.lake_prefix}/*" in resources_text or f"/{monitoring.corrections_prefix}/*" in resources_text
                assert '/*"' not in resources_text.replace(f"/{settings.lake_prefix}/*", "").replace(
                    f"/{monitoring.corrections_prefix}/*", ""), resources_text


def test_ml_roles_per_job_type_reach_the_deployed_definitions(synthesized):
    _, _, templates = synthesized
    ml = templates["ml"]
    roles = {logical for logical in resources(ml, "AWS::IAM::Role")}
    for name in ("ProcessingRole", "TrainingRole", "MonitoringRole", "ModelRole", "PipelineRole"):
        assert any(logical.startswith(name) for logical in roles), name
    pipelines = {body["Properties"]["PipelineName"]: json.dumps(body["Properties"]["PipelineDefinition"])
                 for body in resources(ml, "AWS::SageMaker::Pipeline").values()}
    config = load_config()
    training, monitoring = pipelines[config.aws.pipeline_name], pipelines[config.monitoring.pipeline_name]
    for name in ("ProcessingRole", "TrainingRole"):
        assert f'"{name}' in training, name
    assert '"MonitoringRole' in monitoring and '"TrainingRole' not in monitoring
    # Registered packages carry no role: the endpoint's model role reaches the deploy Lambda instead.
    (deploy,) = [body for body in resources(ml, "AWS::Lambda::Function").values()
                 if body["Properties"]["Handler"] == "inference.deploy.handler"]
    assert deploy["Properties"]["Environment"]["Variables"]["MODEL_EXECUTION_ROLE_ARN"]["Fn::GetAtt"][0].startswith("ModelRole")
    # EvaluateModel (a processing job) reads the champion from the registry.
    (processing,) = [body for logical, body in resources(ml, "AWS::IAM::Policy").items()
                     if logical.startswith("ProcessingRole")]
    (champion,) = [s for s in processing["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "ReadChampion"]
    assert sorted(champion["Action"]) == ["sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages"]
    # The pipeline role passes exactly the job roles, and runs no job itself.
    (policy,) = [body for logical, body in resources(ml, "AWS::IAM::Policy").items() if logical.startswith("PipelineRole")]
    (passing,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "PassJobRoles"]
    passed = sorted(re.sub(r"[0-9A-F]{8}$", "", r["Fn::GetAtt"][0]) for r in passing["Resource"])
    assert passed == ["ModelRole", "MonitoringRole", "ProcessingRole", "TrainingRole"]


def test_deployed_definitions_with_job_roles_are_the_cli_definitions_given_the_same_settings():
    from infrastructure.stacks.ml import deployed_definition
    from pipelines.definition import definition_json
    from pipelines.monitoring_definition import monitoring_definition_json

    account = "123456789012"
    role = f"arn:aws:iam::{account}:role/fbrain-pipeline"
    registry = f"{account}.dkr.ecr.us-east-1.amazonaws.com"
    key = f"arn:aws:kms:us-east-1:{account}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    feature_store_role = f"arn:aws:iam::{account}:role/fbrain-feature-store"
    jobs = {job: f"arn:aws:iam::{account}:role/fbrain-{job}" for job in ("processing", "training", "monitoring", "model")}
    cli_config = load_config(overrides=[f"aws.role_arn={role}", f"aws.ecr_registry={registry}", f"aws.kms_key_id={key}",
                                        f"processing.feature_store_role_arn={feature_store_role}",
                                        f"processing.feature_store_kms_key_id={key}",
                                        *[f"aws.{job}_role_arn={arn}" for job, arn in jobs.items()]])
    values = {"role_arn": role, "ecr_registry": registry, "kms_key_arn": key,
              "feature_store_role_arn": feature_store_role, "job_role_arns": jobs}
    ours = json.loads(deployed_definition(load_config(), **values))
    assert ours == json.loads(definition_json(cli_config))
    steps = {step["Name"]: step for step in ours["Steps"]}
    assert steps["TrainModel"]["Arguments"]["RoleArn"] == jobs["training"]
    assert steps["FeatureEngineering"]["Arguments"]["RoleArn"] == jobs["processing"]
    monitoring = json.loads(deployed_definition(load_config(), monitoring=True, **values))
    assert monitoring == json.loads(monitoring_definition_json(cli_config))
    (step,) = monitoring["Steps"]
    assert step["Arguments"]["RoleArn"] == jobs["monitoring"]


def test_monitoring_schedule_starts_the_monitoring_pipeline(synthesized):
    _, _, templates = synthesized
    config = load_config()
    ml = templates["ml"]
    (schedule,) = resources(ml, "AWS::Scheduler::Schedule").values()
    props = schedule["Properties"]
    assert props["Name"] == config.monitoring.schedule_name
    assert props["ScheduleExpression"] == config.monitoring.schedule_expression
    assert _literal(props["Target"]["Arn"]).endswith(f":pipeline/{config.monitoring.pipeline_name}")
    role = props["Target"]["RoleArn"]["Fn::GetAtt"][0]
    (events_role,) = [body for logical, body in resources(ml, "AWS::IAM::Role").items() if logical == role]
    allowed = json.dumps(events_role["Properties"]["Policies"])
    assert "sagemaker:StartPipelineExecution" in allowed and config.monitoring.pipeline_name in allowed


def test_feedback_route_validates_the_body_contract_of_the_service(synthesized):
    """POST /feedback: an API key, and a JSON body that is a record, {"items": [...]} or a list (operations.intake)."""
    _, _, templates = synthesized
    ingest = templates["ingest"]
    (method,) = resources(ingest, "AWS::ApiGateway::Method").values()
    props = method["Properties"]
    assert props["HttpMethod"] == "POST" and props["ApiKeyRequired"] is True and "RequestValidatorId" in props
    assert props["Integration"]["Type"] == "AWS_PROXY"
    (model,) = resources(ingest, "AWS::ApiGateway::Model").values()
    assert sorted(model["Properties"]["Schema"]["type"]) == ["array", "object"]


def test_section_environment_carries_the_configurations_changes_and_the_deployed_values():
    from infrastructure.stacks.common import check_environment_size, section_environment

    loop = load_config(overrides=["loop.max_items_per_request=7"]).loop
    assert section_environment("loop", loop, {"kinesis_stream": "prod-feedback"}) == {
        "FBRAIN__LOOP__MAX_ITEMS_PER_REQUEST": "7", "FBRAIN__LOOP__KINESIS_STREAM": "prod-feedback"}
    with pytest.raises(ValueError, match="no field"):
        section_environment("loop", loop, {"kinesis": "x"})
    with pytest.raises(ValueError, match="4096"):
        check_environment_size("fn", {"FBRAIN__LOOP__WAREHOUSE": "s3://" + "x" * 5000})


_SUBMIT_FROM_PACKAGE = """
import json


class Table:
    def __init__(self):
        self.items = {}

    def put_item(self, TableName, Item, ConditionExpression):
        self.items[Item["feedbackId"]["S"]] = Item


class Stream:
    def __init__(self):
        self.records = []

    def put_records(self, StreamName, Records):
        self.records += Records
        return {"FailedRecordCount": 0, "Records": [{} for _ in Records]}


record = {"feedback_id": "pkg-1", "text": "The box was crushed.", "channel": "review",
          "created_at": "2026-12-01T10:00:00Z", "customer_id": "cust-1", "sku": "SKU-1"}
event = {"body": json.dumps({"items": [record, {"feedback_id": "pkg-2"}]}), "headers": {"Content-Type": "application/json"}}
table, stream = Table(), Stream()
answer = module.api_handler(event, dynamodb=table, kinesis=stream)
print(json.dumps({"status": answer["statusCode"], "body": json.loads(answer["body"]), "stored": sorted(table.items),
                  "streamed": len(stream.records)}))
"""


def test_submit_handler_answers_from_its_package_alone(tmp_path):
    """The zip package runs POST /feedback end to end (validation reads the taxonomy files it carries), with only
    the standard library and the Lambda runtime's packages importable."""
    import subprocess
    import sys

    from infrastructure.lambda_packages import _ISOLATED_IMPORT, RUNTIME_PROVIDED
    from infrastructure.stacks.ingest import SUBMIT_HANDLER

    package = build_lambda_package(SUBMIT_HANDLER, tmp_path)
    assert list((package.directory / "processing" / "taxonomy").glob("*.json"))
    result = subprocess.run(
        [sys.executable, "-I", "-B", "-c", _ISOLATED_IMPORT + _SUBMIT_FROM_PACKAGE, str(package.directory.resolve()),
         package.handler, ",".join(RUNTIME_PROVIDED)],
        capture_output=True, text=True, check=False, cwd=package.directory,
        env={"PATH": os.environ.get("PATH", ""), "AWS_LAMBDA_FUNCTION_NAME": "feedback-brain-submit"})
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 202 and [i["status"] for i in answer["body"]["items"]] == ["accepted", "rejected"]
    assert answer["stored"] == ["pkg-1"] and answer["streamed"] == 2  # the rejected item goes on for quarantine


def test_package_data_of_every_package_is_declared_in_setup_py():
    """Non-Python files under the repository's packages ship with them (images install the package, Lambda
    packages copy setup.py's package_data): each is matched by a package_data pattern."""
    from infrastructure.lambda_packages import REPO_PACKAGES, REPO_ROOT, setup_package_data

    declared = setup_package_data()
    covered = {path for package, patterns in declared.items() for pattern in patterns
               for path in (REPO_ROOT / package.replace(".", "/")).glob(pattern)}
    missing = [str(path.relative_to(REPO_ROOT)) for top in REPO_PACKAGES for path in sorted((REPO_ROOT / top).rglob("*"))
               if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
               and path not in covered]
    assert not missing, f"data files not in setup.py's package_data: {missing}"
