"""The loop's Lambda handlers against moto (DynamoDB, Kinesis) and a Stubber'd SageMaker endpoint."""
from __future__ import annotations

import base64
import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws

from operations_support import record

REGION = "us-east-1"


def _prediction(label="negative"):
    return {"sentiment": {"label": label, "score": 0.9}, "intent": {"label": "complaint", "score": 0.8},
            "aspects": {"labels": ["packaging"]}, "flags": {}, "model": {"name": "feedback-brain-models", "version": "3"}}


@pytest.fixture
def aws():
    from operations.config import LoopConfig

    config = LoopConfig(scorer="endpoint", scorer_target="feedback-brain")
    with mock_aws():
        dynamodb, kinesis = _loop_resources(config)
        yield config, dynamodb, kinesis


@pytest.fixture
def lake(tmp_path):
    """The lake the consumer writes: the embedded catalog in a tmp folder (tests/test_operations_glue_lake.py
    covers the same Lake on Glue + S3)."""
    from operations.config import LoopConfig
    from operations.lake import Lake

    return Lake(LoopConfig(), tmp_path)


def _loop_resources(config):
    """The stream and the tables, created with the key schema the CDK app deploys (operations.aws_tables)."""
    from operations.aws_tables import LOOP_TABLE_KEYS

    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for field_name, keys in LOOP_TABLE_KEYS.items():
        schema = [(keys.partition, "HASH")] + ([(keys.sort, "RANGE")] if keys.sort else [])
        dynamodb.create_table(TableName=getattr(config, field_name), BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in schema],
                              AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in schema])
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName=config.kinesis_stream, ShardCount=1)
    return dynamodb, kinesis


def _api(aws, body, **event):
    from operations.aws_lambda import api_handler

    config, dynamodb, kinesis = aws
    event = {"body": body if isinstance(body, str) else json.dumps(body), "headers": {"Content-Type": "application/json"},
             **event}
    answer = api_handler(event, config=config, dynamodb=dynamodb, kinesis=kinesis)
    return answer["statusCode"], json.loads(answer["body"])


def _stream_event(aws) -> dict:
    config, _, kinesis = aws
    shard = kinesis.describe_stream(StreamName=config.kinesis_stream)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=config.kinesis_stream, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    return {"Records": [{"kinesis": {"sequenceNumber": r["SequenceNumber"],
                                     "data": base64.b64encode(r["Data"]).decode()}} for r in records]}


def _scorer(predictions):
    from operations.scoring import EndpointScorer

    client = boto3.client("sagemaker-runtime", region_name=REGION)
    stubber = Stubber(client)
    body = json.dumps({"predictions": predictions}).encode()
    stubber.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(body), len(body)),
                                             "ContentType": "application/json"},
                         {"EndpointName": "feedback-brain", "ContentType": "application/json",
                          "Accept": "application/json", "Body": ANY})
    stubber.activate()
    return EndpointScorer("feedback-brain", client=client), stubber


def test_api_handler_validates_dedups_and_puts_on_the_stream(aws):
    status, body = _api(aws, {"items": [record("a-1", "Crushed box."), {"feedback_id": "a-2", "channel": "chat"}]})
    assert status == 202 and [i["status"] for i in body["items"]] == ["accepted", "rejected"]
    assert body["items"][1]["reason"] == "missing_field"
    assert _api(aws, record("a-1", "Crushed box."))[1]["items"][0]["status"] == "duplicate"
    assert _api(aws, record("a-1", "Other words."))[0] == 409
    assert _api(aws, "{oops")[0] == 400
    encoded = base64.b64encode(json.dumps(record("a-3", "Fine.")).encode()).decode()
    assert _api(aws, encoded, isBase64Encoded=True)[0] == 202
    entries = [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in _stream_event(aws)["Records"]]
    assert [(e["record"].get("feedback_id"), bool(e["rejection"])) for e in entries] == [
        ("a-1", False), ("a-2", True), ("a-3", False)]


def test_consumer_scores_writes_tables_reports_partial_failures_and_counts_once(aws, lake):
    from operations.aws_lambda import consumer_handler

    config, dynamodb, _ = aws
    _api(aws, {"items": [record("k-1", "The box was crushed and the mug chipped.", customer_id="cust-9"),
                         record("k-2", "Lovely colour and quick delivery.", customer_id="cust-8")]})
    event = _stream_event(aws)
    event["Records"].append({"kinesis": {"sequenceNumber": "999", "data": base64.b64encode(b"not json").decode()}})
    scorer, stubber = _scorer([_prediction("negative"), _prediction("positive")])
    answer = consumer_handler(event, config=config, dynamodb=dynamodb, scorer=scorer, lake=lake)
    stubber.assert_no_pending_responses()
    assert answer == {"batchItemFailures": [{"itemIdentifier": "999"}]}
    held = dynamodb.get_item(TableName=config.feedback_metadata_table, Key={"feedbackId": {"S": "k-1"}})["Item"]
    assert held["stage"]["S"] == "scored" and held["sentiment"]["S"] == "negative" and held["modelVersion"]["S"] == "3"
    insights = dynamodb.scan(TableName=config.customer_insights_table)["Items"]
    assert len(insights) == 2 and all(i["customerId"]["S"].startswith("p_") for i in insights)  # pseudonymised
    performance = dynamodb.get_item(TableName=config.model_performance_table,
                                    Key={"modelId": {"S": "feedback-brain-models"}, "version": {"S": "3"}})["Item"]
    assert performance["predictions"]["N"] == "2"

    event["Records"].pop()  # Kinesis redelivers the batch: nothing is counted twice
    scorer, _ = _scorer([_prediction("negative"), _prediction("positive")])
    assert consumer_handler(event, config=config, dynamodb=dynamodb, scorer=scorer, lake=lake) == {"batchItemFailures": []}
    performance = dynamodb.get_item(TableName=config.model_performance_table,
                                    Key={"modelId": {"S": "feedback-brain-models"}, "version": {"S": "3"}})["Item"]
    assert performance["predictions"]["N"] == "2"


def test_consumer_retries_every_record_that_needed_a_failed_endpoint(aws, lake):
    from operations.aws_lambda import consumer_handler

    config, dynamodb, _ = aws
    _api(aws, {"items": [record("e-1", "Broken zip."), record("e-2", "Too small, want a bigger size.")]})
    event = _stream_event(aws)
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("invoke_endpoint", "ModelError", http_status_code=424)
    stubber.activate()
    from operations.scoring import EndpointScorer

    answer = consumer_handler(event, config=config, dynamodb=dynamodb, scorer=EndpointScorer("feedback-brain", client),
                              lake=lake)
    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(
        r["kinesis"]["sequenceNumber"] for r in event["Records"])


@pytest.fixture
def deployed_environment(monkeypatch):
    """The handlers' FBRAIN__ variables as a deployment sets them (infrastructure/stacks/ingest.loop_environment)."""
    from operations.aws_lambda import deployed_sections

    variables = {"FBRAIN__LOOP__KINESIS_STREAM": "prod-feedback", "FBRAIN__LOOP__FEEDBACK_METADATA_TABLE": "ProdMetadata",
                 "FBRAIN__LOOP__CUSTOMER_INSIGHTS_TABLE": "ProdInsights",
                 "FBRAIN__LOOP__MODEL_PERFORMANCE_TABLE": "ProdPerformance", "FBRAIN__LOOP__MAX_ITEMS_PER_REQUEST": "2",
                 "FBRAIN__LOOP__SCORER": "endpoint", "FBRAIN__LOOP__SCORER_TARGET": "prod-endpoint"}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    deployed_sections.cache_clear()
    yield variables
    deployed_sections.cache_clear()


def test_handlers_take_their_settings_from_the_environment_once_per_cold_start(deployed_environment, monkeypatch, lake):
    from operations.aws_lambda import api_handler, consumer_handler, deployed_sections

    loop, _ = deployed_sections()
    assert (loop.kinesis_stream, loop.feedback_metadata_table, loop.scorer_target) == (
        "prod-feedback", "ProdMetadata", "prod-endpoint")
    with mock_aws():
        dynamodb, kinesis = _loop_resources(loop)
        event = {"body": json.dumps({"items": [record("env-1", "Crushed box.")]}),
                 "headers": {"Content-Type": "application/json"}}
        answer = api_handler(event, dynamodb=dynamodb, kinesis=kinesis)  # no config given: the environment's
        assert answer["statusCode"] == 202
        assert dynamodb.get_item(TableName="ProdMetadata", Key={"feedbackId": {"S": "env-1"}})["Item"]["stage"]["S"] == "received"
        too_many = {"body": json.dumps({"items": [record(f"env-{i}", "x") for i in range(3)]}), "headers": {}}
        assert api_handler(too_many, dynamodb=dynamodb, kinesis=kinesis)["statusCode"] == 413  # max_items_per_request=2
        stream_event = _stream_event((loop, dynamodb, kinesis))
        scorer, stubber = _scorer([_prediction("negative")])
        assert consumer_handler(stream_event, dynamodb=dynamodb, scorer=scorer, lake=lake) == {"batchItemFailures": []}
        assert dynamodb.get_item(TableName="ProdMetadata", Key={"feedbackId": {"S": "env-1"}})["Item"]["stage"]["S"] == "scored"
        assert dynamodb.scan(TableName="ProdPerformance")["Items"]
    # Built once: a variable changed after the cold start is not read again.
    monkeypatch.setenv("FBRAIN__LOOP__KINESIS_STREAM", "other")
    assert deployed_sections()[0].kinesis_stream == "prod-feedback"


def test_a_bad_deployed_setting_fails_naming_it(deployed_environment, monkeypatch):
    from operations.aws_lambda import api_handler, deployed_sections
    from processing.settings import SettingsError

    monkeypatch.setenv("FBRAIN__LOOP__MAX_BODY_BYTES", "lots")
    deployed_sections.cache_clear()
    with pytest.raises(SettingsError, match="loop.max_body_bytes"):
        api_handler({"body": "{}", "headers": {}}, dynamodb=object(), kinesis=object())


def test_consumer_in_a_lambda_function_pseudonymises_with_the_salt_from_secrets_manager(deployed_environment,
                                                                                      monkeypatch, lake):
    """On Lambda there is no workspace (read-only file system): the salt is the deployed secret's value."""
    from operations.aws_lambda import api_handler, consumer_handler, deployed_sections
    from processing import secrets
    from processing.pii import pseudonymise

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "feedback-brain-consume")
    monkeypatch.delenv("FBRAIN_WORKSPACE", raising=False)
    monkeypatch.setenv("FBRAIN__PROCESSING__PSEUDONYM_SALT_SECRET_ID", "prod/pseudonym-salt")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    deployed_sections.cache_clear()
    secrets._read_secret_once.cache_clear()
    try:
        with mock_aws():
            boto3.client("secretsmanager", region_name=REGION).create_secret(
                Name="prod/pseudonym-salt", SecretString="deployed-salt-value")
            loop, _ = deployed_sections()
            dynamodb, kinesis = _loop_resources(loop)
            event = {"body": json.dumps(record("lam-1", "Crushed box.", customer_id="cust-42")), "headers": {}}
            assert api_handler(event, dynamodb=dynamodb, kinesis=kinesis)["statusCode"] == 202
            scorer, _ = _scorer([_prediction("negative")])
            assert consumer_handler(_stream_event((loop, dynamodb, kinesis)), dynamodb=dynamodb, scorer=scorer,
                                    lake=lake) == {
                "batchItemFailures": []}
            (item,) = dynamodb.scan(TableName=loop.customer_insights_table)["Items"]
            assert item["customerId"]["S"] == pseudonymise("cust-42", "deployed-salt-value")
    finally:
        secrets._read_secret_once.cache_clear()


def test_consumer_writes_the_lake_like_the_worker_and_a_redelivery_changes_nothing(aws, lake):
    """bronze = silver + quarantine per id, gold counts the scored rows; Kinesis redelivers whole batches and, after
    a reported failure, the records from that one on: neither adds a row anywhere."""
    from operations import lake as lake_tables
    from operations.aws_lambda import consumer_handler

    config, dynamodb, _ = aws
    _api(aws, {"items": [record("l-1", "The box was crushed and the mug chipped, call me on 07911 123456.",
                                customer_id="cust-1", sku="SKU-1"),
                         record("l-2", "Lovely colour and quick delivery.", sku="SKU-1"),
                         {"feedback_id": "l-3", "channel": "chat"}]})  # rejected at the edge: missing fields
    event = _stream_event(aws)
    scorer, _ = _scorer([_prediction("negative"), _prediction("positive")])
    assert consumer_handler(event, config=config, dynamodb=dynamodb, scorer=scorer, lake=lake) == {"batchItemFailures": []}

    def books():
        tables = {name: lake.scan(name).to_pylist() for name in lake_tables.SCHEMAS}
        return ({name: sorted(r["feedback_id"] for r in rows) for name, rows in tables.items() if name != lake_tables.GOLD},
                sorted((r["sku"], r["sentiment"], r["aspect"], r["count"]) for r in tables[lake_tables.GOLD]))

    ids, gold = books()
    assert ids == {"bronze": ["l-1", "l-2", "l-3"], "silver": ["l-1", "l-2"], "quarantine": ["l-3"]}
    assert ("SKU-1", "negative", "*", 1) in gold and ("SKU-1", "positive", "*", 1) in gold
    (silver,) = [r for r in lake.scan(lake_tables.SILVER).to_pylist() if r["feedback_id"] == "l-1"]
    assert silver["sentiment"] == "negative" and silver["model_version"] == "3"
    assert "07911" not in silver["text"] and silver["customer_id"] != "cust-1"  # masked and pseudonymised
    (quarantined,) = lake.scan(lake_tables.QUARANTINE).to_pylist()
    assert quarantined["reason"] == "missing_field"
    assert dynamodb.get_item(TableName=config.feedback_metadata_table,
                             Key={"feedbackId": {"S": "l-1"}})["Item"]["stage"]["S"] == "scored"

    for redelivered in (event, {"Records": event["Records"][1:]}):
        scorer, _ = _scorer([_prediction("negative"), _prediction("positive")][-len([
            r for r in redelivered["Records"] if not json.loads(base64.b64decode(r["kinesis"]["data"]))["rejection"]]):])
        assert consumer_handler(redelivered, config=config, dynamodb=dynamodb, scorer=scorer, lake=lake) == {
            "batchItemFailures": []}
        assert books() == (ids, gold)


def test_the_deployed_consumer_refuses_a_lake_that_would_live_on_the_function_disk():
    from operations.aws_lambda import deployed_lake
    from operations.config import LoopConfig

    with pytest.raises(ValueError, match="FBRAIN__LOOP__CATALOG=glue"):
        deployed_lake(LoopConfig())


def test_lake_maintenance_on_aws_purges_old_raw_text_compacts_and_expires(aws, lake):
    """maintain_handler (scheduled by the Operations stack) is the worker's maintain_lake on the deployed lake."""
    from operations import lake as lake_tables
    from operations.aws_lambda import consumer_handler, maintain_handler
    from operations.config import LoopConfig

    config, dynamodb, _ = aws
    for n in range(3):  # three Kinesis batches: three small snapshots per table
        _api(aws, record(f"m-{n}", f"Box {n} was crushed in transit."))
    for raw in _stream_event(aws)["Records"]:
        scorer, _ = _scorer([_prediction("negative")])
        assert consumer_handler({"Records": [raw]}, config=config, dynamodb=dynamodb, scorer=scorer, lake=lake) == {
            "batchItemFailures": []}
    assert len(lake.table(lake_tables.BRONZE).snapshots()) >= 3
    later = LoopConfig(bronze_raw_retention_days=0, snapshot_keep_last=1)
    report = maintain_handler({}, None, config=later, lake=lake)
    assert report["raw_text_purged"] == 3 and report["snapshots_expired"]["bronze"] >= 2
    assert len(lake.table(lake_tables.BRONZE).snapshots()) == 1
    assert all(row["payload"] is None or "crushed" not in row["payload"] for row in lake.scan(lake_tables.BRONZE).to_pylist())
    assert sorted(r["feedback_id"] for r in lake.scan(lake_tables.SILVER).to_pylist()) == ["m-0", "m-1", "m-2"]
