"""HTTP routes of alerting on the loop service: alerts and incidents, silences, the notification log,
playbooks and a detection run. Scopes: `read` to look, `review` to act on an incident, `admin` to
silence or run detection. Registered by operations.service.create_app (one call)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Optional

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query

from operations.alerting.alerts import STATES, TransitionError
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


def _not_found(what: str, ident: str) -> HTTPException:
    return HTTPException(404, detail={"reason": "not_found", "message": f"no {what} {ident!r}"})


def register_alerting(app: FastAPI, context: Any, require: Callable[[str], Callable]) -> None:
    alerting = ensure_alerting(context)
    manager, store = alerting.manager, alerting.store

    @app.get("/alerts", dependencies=[Depends(require("read"))])
    def list_alerts(status: Optional[str] = Query(None, description=f"comma-separated states: {', '.join(STATES)}"),
                    limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        if status and any(s.strip() not in STATES for s in status.split(",")):
            raise HTTPException(422, detail={"reason": "invalid_status", "message": f"status must be in {list(STATES)}"})
        alerts = [manager.public(a) for a in store.alerts(status, limit)]
        return {"alerts": alerts, "count": len(alerts)}

    @app.get("/alerts/{alert_id}", dependencies=[Depends(require("read"))])
    def get_alert(alert_id: str) -> dict[str, Any]:
        alert = store.alert(alert_id)
        if alert is None:
            raise _not_found("alert", alert_id)
        post = store.one("SELECT record FROM post_incidents WHERE alert_id = ?", (alert_id,))
        return {**manager.public(alert), "actions": store.actions(alert_id),
                "notifications": store.notifications(alert_id=alert_id),
                "post_incident": post["record"] if post else None}

    def _action(action: str):
        def handler(alert_id: str, body: dict[str, Any] = Body(default={}),
                    x_api_key: Optional[str] = Header(default=None)) -> dict[str, Any]:
            note = str((body or {}).get("note", ""))[:2000]
            try:
                return manager.act(alert_id, action, actor_of(x_api_key), alerting.manager.mask(note))
            except KeyError:
                raise _not_found("alert", alert_id) from None
            except TransitionError as exc:
                raise HTTPException(409, detail={"reason": "invalid_transition", "message": str(exc)}) from None
        return handler

    for action in ("ack", "mitigate", "resolve"):
        app.post(f"/alerts/{{alert_id}}/{action}", dependencies=[Depends(require("review"))],
                 name=f"alert_{action}")(_action(action))

    @app.post("/alerts/{alert_id}/silence", dependencies=[Depends(require("admin"))])
    def silence(alert_id: str, body: dict[str, Any] = Body(default={}),
                x_api_key: Optional[str] = Header(default=None)) -> dict[str, Any]:
        try:
            hours = float((body or {}).get("hours", 24))
            return manager.silence(alert_id, actor_of(x_api_key), hours, manager.mask(str(body.get("comment", ""))))
        except KeyError:
            raise _not_found("alert", alert_id) from None
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, detail={"reason": "invalid_silence", "message": str(exc)}) from None

    @app.get("/silences", dependencies=[Depends(require("read"))])
    def silences() -> dict[str, Any]:
        return {"silences": store.query("SELECT * FROM silences ORDER BY starts_at DESC")}

    @app.get("/notifications", dependencies=[Depends(require("read"))])
    def notifications(limit: int = Query(200, ge=1, le=2000), alert_id: Optional[str] = None) -> dict[str, Any]:
        rows = store.notifications(limit, alert_id)
        return {"notifications": rows, "count": len(rows)}

    @app.get("/playbooks", dependencies=[Depends(require("read"))])
    def playbooks() -> dict[str, Any]:
        return {"playbooks": list(alerting.playbooks.by_id.values())}

    @app.get("/playbooks/{playbook_id}", dependencies=[Depends(require("read"))])
    def playbook(playbook_id: str) -> dict[str, Any]:
        book = alerting.playbooks.by_id.get(playbook_id)
        if book is None:
            raise _not_found("playbook", playbook_id)
        return book

    @app.post("/detect", dependencies=[Depends(require("admin"))])
    def detect(at: Optional[str] = Query(None, description="ISO 8601 event time; default now")) -> dict[str, Any]:
        try:
            when: datetime = parse_at(at)
        except ValueError as exc:
            raise HTTPException(422, detail={"reason": "invalid_time", "message": str(exc)}) from None
        return alerting.evaluate(when)

    # ------------------------------------------------------------------ review queue (operations.review)
    from operations.review import ReviewError

    review = alerting.review

    @app.get("/review", dependencies=[Depends(require("review"))])
    def review_queue(limit: int = Query(100, ge=1, le=1000),
                     status: str = Query("pending", pattern="^(pending|reviewed)$")) -> dict[str, Any]:
        items = review.pending(limit, status)
        return {"items": items, "count": len(items), "queue": review.counts(), "agreement": review.agreement()}

    @app.post("/review/{feedback_id}", dependencies=[Depends(require("review"))])
    def review_item(feedback_id: str, body: dict[str, Any] = Body(...),
                    x_api_key: Optional[str] = Header(default=None)) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HTTPException(422, detail={"reason": "invalid_review", "message": "the body must be a JSON object"})
        try:
            return review.submit(feedback_id, body, actor_of(x_api_key))
        except KeyError:
            raise _not_found("scored feedback", feedback_id) from None
        except ReviewError as exc:
            raise HTTPException(422, detail={"reason": exc.reason, "message": str(exc)}) from None

    @app.get("/audit", dependencies=[Depends(require("admin"))])
    def audit(limit: int = Query(200, ge=1, le=2000)) -> dict[str, Any]:
        return {"entries": store.query("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))}

    from operations.dashboard import register_dashboard

    register_dashboard(app, context, require)
