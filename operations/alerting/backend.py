"""Opens the alerting state backend the config names (operations.alerting.state has the interface)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from operations.alerting.config import AlertingConfig
from operations.alerting.state import AlertState


def open_alert_state(config: AlertingConfig, workspace: Path, dynamodb: Any = None) -> AlertState:
    """The backend `alerting.state_backend` names: the SQLite file in the workspace, or the DynamoDB tables."""
    if config.state_backend == "dynamodb":
        from operations.alerting.dynamodb import DynamoAlertState

        return DynamoAlertState(config.incidents_table, config.review_queue_table, dynamodb)
    from operations.alerting.store import AlertStore

    return AlertStore(Path(workspace) / config.state_db)
