"""HTTP routes of alerting on the loop service: alerts and incidents, silences, the notification log,
playbooks and a detection run. Scopes: `read` to look, `review` to act on an incident, `admin` to
silence or run detection. Registered by operations.service.create_app (one call). What each route
answers is in operations.alert_api, shared with the API Gateway Lambda."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Optional

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query

from operations import alert_api as api
from operations.alerting.alerts import STATES
from operations.alerting.config import AlertingConfig
from operations.alerting.detection import parse_at
from operations.alerting.engine import Alerting


def actor_of(x_api_key: Optional[str]) -> str:
    """`key:<key id>`: who acted, without the secret part of the key."""
    parts = (x_api_key or "").split("_")
    return f"key:{parts[1]}" if len(parts) >= 3 else "key:unknown"


def ensure_alerting(context: Any, config: Optional[AlertingConfig] = None, bucket: Optional[str] = None) -> Alerting:
    """The context's alerting (made on first use) with its review queue; `bucket` of the corrections store."""
    if getattr(context, "alerting", None) is None:
        context.alerting = Alerting(config or AlertingConfig(), context.lake.workspace, context.lake)
    if bucket:
        context.alerting.corrections_bucket = bucket
    if context.alerting.review is None:
        from operations.review import ReviewQueue

        context.alerting.review = ReviewQueue(context.alerting, context)
    return context.alerting


def _http(error: api.ApiError) -> HTTPException:
    return HTTPException(error.status, detail=error.detail)


def register_alerting(app: FastAPI, context: Any, require: Callable[[str], Callable]) -> None:
    alerting = ensure_alerting(context)

    @app.get("/alerts", dependencies=[Depends(require("read"))])
    def list_alerts(status: Optional[str] = Query(None, description=f"comma-separated states: {', '.join(STATES)}"),
                    limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        try:
            return api.list_alerts(alerting, status, limit)
        except api.ApiError as exc:
            raise _http(exc) from None

    @app.get("/alerts/{alert_id}", dependencies=[Depends(require("read"))])
    def get_alert(alert_id: str) -> dict[str, Any]:
        try:
            return api.get_alert(alerting, alert_id)
        except api.ApiError as exc:
            raise _http(exc) from None

    def _action(action: str):
        def handler(alert_id: str, body: dict[str, Any] = Body(default={}),
                    x_api_key: Optional[str] = Header(default=None)) -> dict[str, Any]:
            try:
                return api.alert_action(alerting, alert_id, action, body, actor_of(x_api_key))
            except api.ApiError as exc:
                raise _http(exc) from None
        return handler

    for action in api.ALERT_ACTIONS:
        app.post(f"/alerts/{{alert_id}}/{action}", dependencies=[Depends(require(api.SCOPE_OF["alert_action"]))],
                 name=f"alert_{action}")(_action(action))

    @app.post("/alerts/{alert_id}/silence", dependencies=[Depends(require(api.SCOPE_OF["silence"]))])
    def silence(alert_id: str, body: dict[str, Any] = Body(default={}),
                x_api_key: Optional[str] = Header(default=None)) -> dict[str, Any]:
        try:
            return api.silence(alerting, alert_id, body, actor_of(x_api_key))
        except api.ApiError as exc:
            raise _http(exc) from None

    @app.get("/silences", dependencies=[Depends(require("read"))])
    def silences() -> dict[str, Any]:
        return api.silences(alerting)

    @app.get("/notifications", dependencies=[Depends(require("read"))])
    def notifications(limit: int = Query(200, ge=1, le=2000), alert_id: Optional[str] = None) -> dict[str, Any]:
        return api.notifications(alerting, limit, alert_id)

    @app.get("/playbooks", dependencies=[Depends(require("read"))])
    def playbooks() -> dict[str, Any]:
        return {"playbooks": list(alerting.playbooks.by_id.values())}

    @app.get("/playbooks/{playbook_id}", dependencies=[Depends(require("read"))])
    def playbook(playbook_id: str) -> dict[str, Any]:
        book = alerting.playbooks.by_id.get(playbook_id)
        if book is None:
            raise _http(api.not_found("playbook", playbook_id))
        return book

    @app.post("/detect", dependencies=[Depends(require("admin"))])
    def detect(at: Optional[str] = Query(None, description="ISO 8601 event time; default now")) -> dict[str, Any]:
        try:
            when: datetime = parse_at(at)
        except ValueError as exc:
            raise HTTPException(422, detail={"reason": "invalid_time", "message": str(exc)}) from None
        return alerting.evaluate(when)

    # ------------------------------------------------------------------ review queue (operations.review)
    @app.get("/review", dependencies=[Depends(require("review"))])
    def review_queue(limit: int = Query(100, ge=1, le=1000),
                     status: str = Query("pending", pattern="^(pending|reviewed)$")) -> dict[str, Any]:
        return api.review_queue(alerting, limit, status)

    @app.post("/review/{feedback_id}", dependencies=[Depends(require("review"))])
    def review_item(feedback_id: str, body: dict[str, Any] = Body(...),
                    x_api_key: Optional[str] = Header(default=None)) -> dict[str, Any]:
        try:
            return api.review_item(alerting, feedback_id, body, actor_of(x_api_key))
        except api.ApiError as exc:
            raise _http(exc) from None

    @app.get("/audit", dependencies=[Depends(require("admin"))])
    def audit(limit: int = Query(200, ge=1, le=2000)) -> dict[str, Any]:
        return api.audit(alerting, limit)

    from operations.dashboard import register_dashboard

    register_dashboard(app, context, require)
