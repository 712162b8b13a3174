"""Helpers of the alerting tests: a loop scoring with the scenario's lexicon scorer, fed through POST /feedback."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from fastapi.testclient import TestClient

from operations.alerting.config import AlertingConfig
from operations.alerting.scenario import Incident, LexiconScorer, generate, make_scenario
from operations.config import LoopConfig
from processing.config import ProcessingConfig

START = datetime(2026, 11, 2, tzinfo=timezone.utc)  # a Monday


def make_loop(workspace: Path, channels=None, alerting_config: AlertingConfig | None = None):
    from operations.alerting.engine import Alerting
    from operations.service import create_app, open_loop
    from operations.worker import Worker

    config = LoopConfig(micro_batch_max_records=2000)
    context = open_loop(config, ProcessingConfig(), workspace)
    context.worker = Worker(config, context.processing, context.store, context.lake, LexiconScorer())
    context.alerting = Alerting(alerting_config or AlertingConfig(detect_every_s=0, pagerduty_min_severity="warning"), workspace, context.lake, channels)
    client = TestClient(create_app(context))
    keys = {scope: context.store.create_key([scope]) for scope in ("submit", "read", "review", "admin")}
    return context, client, keys


def post_records(client: TestClient, key: str, records: Iterable[dict[str, Any]], batch: int = 500) -> int:
    records = list(records)
    accepted = 0
    for i in range(0, len(records), batch):
        response = client.post("/feedback", content=json.dumps({"items": records[i:i + batch]}),
                               headers={"x-api-key": key})
        assert response.status_code == 202, response.text
        accepted += response.json()["accepted"]
    return accepted


def small_scenario(days: int = 9, n_skus: int = 6, per_sku_daily: float = 30, defect_day: int | None = None):
    scenario = make_scenario(START, days, n_skus, per_sku_daily, seed=3)
    if defect_day is not None:
        hot = max(scenario.volume, key=scenario.volume.get)
        scenario.incidents = [Incident("defect", "sku", START + timedelta(days=defect_day, hours=6), 1.5,
                                       "product_quality", sku=hot, duration_hours=12,
                                       expected_key=f"sku={hot}|aspect:product_quality")]
    return scenario


__all__ = ["START", "make_loop", "post_records", "small_scenario", "generate"]
