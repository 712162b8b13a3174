"""Key schema of the DynamoDB tables of the loop on AWS: one source for the handlers that write them
(operations.aws_lambda) and the CDK app that creates them (infrastructure/stacks/data.py).

The tables' names are settings (`loop.feedback_metadata_table`, ...); their keys are not: a key is
part of the code that reads and writes the items, so changing one is a code change, not a setting.
"""
from __future__ import annotations

from dataclasses import dataclass

FEEDBACK_ID = "feedbackId"
"""FeedbackMetadata partition key: the record's feedback_id."""
CUSTOMER_ID = "customerId"
"""CustomerInsights partition key: the customer's pseudonym (never the raw id)."""
TIMESTAMP = "timestamp"
"""CustomerInsights sort key: `<created_at ISO>#<feedback_id>` (time-ordered, unique per item)."""
MODEL_ID = "modelId"
"""ModelPerformance partition key: the model's name."""
MODEL_VERSION = "version"
"""ModelPerformance sort key: the model's version."""
INCIDENT_ID = "incident_id"
"""Incidents table partition key (operations.alerting)."""
REVIEW_ITEM_ID = "item_id"
"""Review-queue table partition key (operations.alerting)."""


@dataclass(frozen=True)
class TableKeys:
    partition: str
    sort: str | None = None


LOOP_TABLE_KEYS = {
    "feedback_metadata_table": TableKeys(FEEDBACK_ID),
    "customer_insights_table": TableKeys(CUSTOMER_ID, TIMESTAMP),
    "model_performance_table": TableKeys(MODEL_ID, MODEL_VERSION),
}
"""Keys of each table the live loop writes, by the `loop` section field that names the table."""
ALERTING_TABLE_KEYS = {
    "incidents_table": TableKeys(INCIDENT_ID),
    "review_queue_table": TableKeys(REVIEW_ITEM_ID),
}
"""Keys of each table of alerts and reviews, by the `alerting` section field that names the table."""
