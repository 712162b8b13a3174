"""The feedback service: POST /feedback, GET /feedback/{id}, GET /insights, GET /metrics, GET /health.

Every route but /health needs an API key in `x-api-key` (the API Gateway convention) with the
route's scope; keys are stored hashed (operations.store). Records are validated by the shared
contract (processing.schema.validate_record) and committed to the receive log before the answer,
so nothing answered `accepted` is lost; rejected items are kept for the quarantine with their reason.
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from pyiceberg.expressions import EqualTo

from operations import lake as lake_tables
from operations.config import LoopConfig
from operations.intake import BodyError, parse_body
from operations.insights import default_window, insights
from operations.lake import Lake
from operations.store import Store
from processing.config import ProcessingConfig
from processing.schema import RecordValidationError, validate_record

log = logging.getLogger(__name__)


@dataclass
class LoopContext:
    config: LoopConfig
    processing: ProcessingConfig
    store: Store
    lake: Lake
    worker: Any = None
    alerting: Any = None
    """operations.alerting.engine.Alerting (alerts, incidents, review queue); made on first use when None."""
    pipeline_erasers: list = field(default_factory=list)
    """Erasers of a forget request outside the loop (operations.erasure.pipeline_erasers: Feature Store,
    endpoint data capture); `fbrain loop serve` sets them from loop.forget_pipeline_data."""


def _percentiles(values: list[float]) -> dict[str, Optional[float]]:
    if not values:
        return {"count": 0, "p50_s": None, "p95_s": None}
    array = np.asarray(values)
    return {"count": len(values), "p50_s": round(float(np.percentile(array, 50)), 4),
            "p95_s": round(float(np.percentile(array, 95)), 4)}


def _iso(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def create_app(context: LoopContext) -> FastAPI:
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, CONTENT_TYPE_LATEST

    app = FastAPI(title="feedback-brain loop", version="1")
    app.state.loop = context
    registry = CollectorRegistry()
    items_total = Counter("fbrain_loop_items", "Items posted to /feedback by outcome", ["status"], registry=registry)
    requests_total = Counter("fbrain_loop_requests", "Requests by route and status code", ["route", "code"],
                             registry=registry)
    funnel_gauge = Gauge("fbrain_loop_funnel", "Records per loop stage", ["stage"], registry=registry)
    lag_gauge = Gauge("fbrain_loop_lag_seconds", "Stage lag percentiles of recent records", ["stage", "quantile"],
                      registry=registry)
    store, config = context.store, context.config

    def require(scope: str):
        def check(x_api_key: Optional[str] = Header(default=None)) -> None:
            if not x_api_key:
                raise HTTPException(401, detail={"reason": "missing_api_key", "message": "send an API key in x-api-key"})
            scopes = store.key_scopes(x_api_key)
            if scopes is None:
                raise HTTPException(401, detail={"reason": "invalid_api_key", "message": "unknown API key"})
            if scope not in scopes and "admin" not in scopes:
                raise HTTPException(403, detail={"reason": "forbidden", "message": f"this key lacks the {scope!r} scope"})
        return check

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        requests_total.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    @app.post("/feedback", dependencies=[Depends(require("submit"))])
    async def post_feedback(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
            return _error(413, "body_too_large", f"body has {declared} bytes; the limit is {config.max_body_bytes}")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                return _error(413, "body_too_large", f"body is over the limit of {config.max_body_bytes} bytes")
        try:
            raw_items = parse_body(body, request.headers.get("content-type", ""), config.max_items_per_request)
        except BodyError as exc:
            return _error(exc.status, exc.reason, exc.message)
        entries = []
        for raw in raw_items:
            if isinstance(raw, BodyError):
                rejection = {"reason": raw.reason, "field": None, "message": raw.message}
                entries.append((None, {"unparsed_line": raw.message}, rejection))
                continue
            try:
                record = validate_record(raw, context.processing.max_text_chars).model_dump(mode="json")
                entries.append((record, raw, None))
            except RecordValidationError as exc:
                entries.append((None, raw, exc.as_dict()))
        admissions = store.admit(entries)
        results = []
        for (record, raw, rejection), admission in zip(entries, admissions):
            feedback_id = record["feedback_id"] if record else (raw.get("feedback_id") if isinstance(raw, dict) else None)
            item: dict[str, Any] = {"feedback_id": feedback_id, "status": admission.status}
            if rejection:
                item.update(status="rejected", **rejection)
            elif admission.status == "conflict":
                item.update(status="rejected", reason="conflict",
                            message=f"feedback_id {feedback_id!r} already holds a different record")
            items_total.labels(item["status"] if admission.status != "conflict" else "conflict").inc()
            results.append(item)
        counts = {s: sum(1 for a in admissions if a.status == s) for s in ("accepted", "duplicate", "rejected", "conflict")}
        body_out = {"accepted": counts["accepted"], "duplicates": counts["duplicate"],
                    "rejected": counts["rejected"] + counts["conflict"], "items": results}
        if counts["conflict"] and not counts["accepted"] and not counts["duplicate"]:
            return JSONResponse(body_out, status_code=409)
        if counts["rejected"] == len(admissions):
            return JSONResponse(body_out, status_code=422)
        return JSONResponse(body_out, status_code=202)

    @app.get("/feedback/{feedback_id}", dependencies=[Depends(require("read"))])
    def get_feedback(feedback_id: str) -> dict[str, Any]:
        received = store.received_row(feedback_id)
        if received is None:
            rejected = store.rejected_row(feedback_id)
            if rejected is None:
                raise HTTPException(404, detail={"reason": "not_found", "message": f"no feedback {feedback_id!r}"})
            reason = json.loads(rejected["rejection"])
            return {"feedback_id": feedback_id, "stage": "quarantined", "reason": reason["reason"],
                    "message": reason["message"], "field": reason["field"],
                    "timestamps": {"received": rejected["received_at"], "quarantined": rejected["received_at"]}}
        stage = store.stage(feedback_id) or {}
        answer: dict[str, Any] = {
            "feedback_id": feedback_id, "stage": stage.get("stage", "received"),
            "timestamps": {"created": received["created_at"], "received": received["received_at"],
                           "enriched": stage.get("enriched_at"), "scored": stage.get("scored_at"),
                           "quarantined": stage.get("quarantined_at")},
        }
        if stage.get("duplicate_of"):
            answer["duplicate_of"] = stage["duplicate_of"]
        if stage.get("reason"):
            answer["reason"] = stage["reason"]
        if stage.get("stage") in ("enriched", "scored") and not stage.get("duplicate_of"):
            rows = context.lake.scan(lake_tables.SILVER, EqualTo("feedback_id", feedback_id)).to_pylist()
            if rows:
                row = rows[-1]
                answer.update({
                    "text": row["text"], "title": row["title"], "language": row["language"], "channel": row["channel"],
                    "sku": row["sku"], "product_category": row["product_category"], "region": row["region"],
                    "spam_rule": row["spam_rule"], "pii_masked": row["pii_masked"], "flags": row["flags"] or [],
                })
                if row["sentiment"] is not None:
                    answer["predictions"] = {
                        "sentiment": {"label": row["sentiment"], "score": row["sentiment_score"]},
                        "intent": {"label": row["intent"], "score": row["intent_score"]},
                        "aspects": row["aspects"] or [],
                        "model": {"name": row["model_name"], "version": row["model_version"]},
                    }
                    corrected = {k: row[f"corrected_{k}"] for k in ("sentiment", "intent", "aspects")
                                 if row[f"corrected_{k}"] is not None}
                    if corrected:
                        answer["corrections"] = corrected
        return answer

    @app.get("/insights", dependencies=[Depends(require("read"))])
    def get_insights(sku: Optional[str] = None, product_category: Optional[str] = None, region: Optional[str] = None,
                     channel: Optional[str] = None, aspect: Optional[str] = None,
                     since: Optional[datetime] = Query(None, description="ISO 8601; default: until - 7 days"),
                     until: Optional[datetime] = Query(None, description="ISO 8601; default: now")) -> dict[str, Any]:
        since, until = (_aware(t) for t in default_window(until, since, datetime.now(timezone.utc)))
        try:
            return insights(context.lake, since, until, {"sku": sku, "product_category": product_category,
                                                         "region": region, "channel": channel},
                            aspect, config.insights_examples)
        except ValueError as exc:
            raise HTTPException(422, detail={"reason": "invalid_window", "message": str(exc)}) from None

    @app.post("/admin/forget", dependencies=[Depends(require("admin"))])
    def forget(body: dict[str, Any]) -> dict[str, Any]:
        """A data subject's erasure request: every record of `customer_id`, in every table."""
        from operations.privacy import forget_customer

        customer_id = body.get("customer_id") if isinstance(body, dict) else None
        if not isinstance(customer_id, str) or not customer_id.strip():
            raise HTTPException(422, detail={"reason": "missing_field", "message": "customer_id (a string) is required"})
        lock = context.worker.batch_lock if context.worker is not None else contextlib.nullcontext()
        with lock:
            try:
                return forget_customer(store, context.lake, context.processing, customer_id.strip(), config.gold_window,
                                       erasers=[*([context.alerting.forget_feedback] if context.alerting else []),
                                                *context.pipeline_erasers])
            except RuntimeError as exc:
                raise HTTPException(409, detail={"reason": "batch_pending", "message": str(exc)}) from None

    def health_body() -> dict[str, Any]:
        funnel = store.funnel()
        lags = {name: _percentiles(values) for name, values in store.stage_lags().items()}
        worker = context.worker
        return {"status": "ok" if worker is None or worker.last_error is None else "degraded",
                "funnel": funnel, "lag": lags,
                "worker": None if worker is None else {"last_error": worker.last_error}}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return health_body()

    @app.get("/metrics", dependencies=[Depends(require("read"))])
    def metrics() -> Response:
        body = health_body()
        funnel_gauge.labels("received").set(body["funnel"]["received"])
        funnel_gauge.labels("pending").set(body["funnel"]["pending"])
        for stage, count in body["funnel"]["stages"].items():
            funnel_gauge.labels(stage).set(count)
        for stage, values in body["lag"].items():
            for quantile in ("p50_s", "p95_s"):
                if values[quantile] is not None:
                    lag_gauge.labels(stage, quantile[:3]).set(values[quantile])
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    from operations.alert_routes import register_alerting  # alerts, incidents, review queue, dashboard (#16)

    register_alerting(app, context, require)
    return app


def _quoted(value: str) -> str:
    return value.replace("'", "''")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _error(status: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"reason": reason, "message": message}}, status_code=status)


def open_loop(config: LoopConfig, processing: ProcessingConfig, workspace: Path) -> LoopContext:
    workspace = Path(workspace)
    return LoopContext(config, processing, Store(config.path(workspace, config.state_db)), Lake(config, workspace))
