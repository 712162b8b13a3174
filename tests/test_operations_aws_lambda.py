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
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for name, keys in ((config.feedback_metadata_table, [("feedbackId", "HASH")]),
                           (config.customer_insights_table, [("customerId", "HASH"), ("timestamp", "RANGE")]),
                           (config.model_performance_table, [("modelId", "HASH"), ("version", "RANGE")])):
            dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                                  KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                                  AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys])
        kinesis = boto3.client("kinesis", region_name=REGION)
        kinesis.create_stream(StreamName=config.kinesis_stream, ShardCount=1)
        yield config, dynamodb, kinesis


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


def test_consumer_scores_writes_tables_reports_partial_failures_and_counts_once(aws):
    from operations.aws_lambda import consumer_handler

    config, dynamodb, _ = aws
    _api(aws, {"items": [record("k-1", "The box was crushed and the mug chipped.", customer_id="cust-9"),
                         record("k-2", "Lovely colour and quick delivery.", customer_id="cust-8")]})
    event = _stream_event(aws)
    event["Records"].append({"kinesis": {"sequenceNumber": "999", "data": base64.b64encode(b"not json").decode()}})
    scorer, stubber = _scorer([_prediction("negative"), _prediction("positive")])
    answer = consumer_handler(event, config=config, dynamodb=dynamodb, scorer=scorer)
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
    assert consumer_handler(event, config=config, dynamodb=dynamodb, scorer=scorer) == {"batchItemFailures": []}
    performance = dynamodb.get_item(TableName=config.model_performance_table,
                                    Key={"modelId": {"S": "feedback-brain-models"}, "version": {"S": "3"}})["Item"]
    assert performance["predictions"]["N"] == "2"


def test_consumer_retries_every_record_that_needed_a_failed_endpoint(aws):
    from operations.aws_lambda import consumer_handler

    config, dynamodb, _ = aws
    _api(aws, {"items": [record("e-1", "Broken zip."), record("e-2", "Too small, want a bigger size.")]})
    event = _stream_event(aws)
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("invoke_endpoint", "ModelError", http_status_code=424)
    stubber.activate()
    from operations.scoring import EndpointScorer

    answer = consumer_handler(event, config=config, dynamodb=dynamodb, scorer=EndpointScorer("feedback-brain", client))
    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(
        r["kinesis"]["sequenceNumber"] for r in event["Records"])
