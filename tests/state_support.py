"""The DynamoDB alerting state on moto, with the two tables the infrastructure app creates."""
from __future__ import annotations

import contextlib
from typing import Iterator

import boto3
from moto import mock_aws

from operations.alerting.config import AlertingConfig

REGION = "us-east-1"


@contextlib.contextmanager
def dynamodb_state(config: AlertingConfig) -> Iterator["DynamoAlertState"]:  # noqa: F821
    from operations.alerting.dynamodb import DynamoAlertState

    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_tables(client, config)
        yield DynamoAlertState(config.incidents_table, config.review_queue_table, client)


def create_tables(client, config: AlertingConfig) -> None:
    """Hash key only, no index: what the alerting state needs of the infrastructure app."""
    from operations.alerting.dynamodb import INCIDENTS_KEY, REVIEW_QUEUE_KEY

    for table, key in ((config.incidents_table, INCIDENTS_KEY), (config.review_queue_table, REVIEW_QUEUE_KEY)):
        client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}])
