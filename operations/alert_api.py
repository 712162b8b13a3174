"""What the alerting and review routes answer, without the web framework: the local service's FastAPI routes
(operations.alert_routes) and the API Gateway Lambda (operations.alerting_aws_lambda.operations_api_handler)
both call these, so the two give the same answers and status codes. A refusal is an ApiError carrying the
status and the `detail` body ({"reason", "message"}) the routes send.
"""
from __future__ import annotations

from typing import Any, Optional

from operations.alerting.alerts import STATES, TransitionError

ALERT_ACTIONS = ("ack", "mitigate", "resolve")
"""Incident actions (POST /alerts/{id}/<action>); `silence` is separate (it needs the admin scope)."""
REVIEW_STATUSES = ("pending", "reviewed")
SCOPE_OF = {"list_alerts": "read", "get_alert": "read", "alert_action": "review", "silence": "admin",
            "silences": "read", "notifications": "read", "review_queue": "review", "review_item": "review",
            "audit": "admin", "insights": "read"}
"""Scope each operation needs (a key with `admin` may do everything)."""


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    @property
    def detail(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message}


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {ident!r}")


def bounded_int(value: Any, name: str, default: int, low: int, high: int) -> int:
    """A query parameter as an integer in [low, high] (422 otherwise)."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(422, "invalid_parameter", f"{name} must be an integer") from None
    if not low <= number <= high:
        raise ApiError(422, "invalid_parameter", f"{name} must be between {low} and {high}")
    return number


def json_object(body: Any) -> dict[str, Any]:
    """An optional JSON object body ({} when absent); anything else is a 422."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    return body


def list_alerts(alerting: Any, status: Optional[str] = None, limit: int = 200) -> dict[str, Any]:
    if status and any(s.strip() not in STATES for s in status.split(",")):
        raise ApiError(422, "invalid_status", f"status must be in {list(STATES)}")
    alerts = [alerting.manager.public(a) for a in alerting.store.alerts(status, limit)]
    return {"alerts": alerts, "count": len(alerts)}


def get_alert(alerting: Any, alert_id: str) -> dict[str, Any]:
    store = alerting.store
    alert = store.alert(alert_id)
    if alert is None:
        raise not_found("alert", alert_id)
    return {**alerting.manager.public(alert), "actions": store.actions(alert_id),
            "notifications": store.notifications(alert_id=alert_id), "post_incident": store.post_incident(alert_id)}


def alert_action(alerting: Any, alert_id: str, action: str, body: Optional[dict[str, Any]], actor: str) -> dict[str, Any]:
    if action not in ALERT_ACTIONS:
        raise ApiError(404, "not_found", f"no alert action {action!r} (one of {list(ALERT_ACTIONS)} or silence)")
    note = str(json_object(body).get("note", ""))[:2000]
    try:
        return alerting.manager.act(alert_id, action, actor, alerting.manager.mask(note))
    except KeyError:
        raise not_found("alert", alert_id) from None
    except TransitionError as exc:
        raise ApiError(409, "invalid_transition", str(exc)) from None


def silence(alerting: Any, alert_id: str, body: Optional[dict[str, Any]], actor: str) -> dict[str, Any]:
    body = json_object(body)
    manager = alerting.manager
    try:
        hours = float(body.get("hours", 24))
        return manager.silence(alert_id, actor, hours, manager.mask(str(body.get("comment", ""))))
    except KeyError:
        raise not_found("alert", alert_id) from None
    except (TypeError, ValueError) as exc:
        raise ApiError(422, "invalid_silence", str(exc)) from None


def silences(alerting: Any) -> dict[str, Any]:
    return {"silences": alerting.store.silences()}


def notifications(alerting: Any, limit: int = 200, alert_id: Optional[str] = None) -> dict[str, Any]:
    rows = alerting.store.notifications(limit, alert_id)
    return {"notifications": rows, "count": len(rows)}


def review_queue(alerting: Any, limit: int = 100, status: str = "pending") -> dict[str, Any]:
    if status not in REVIEW_STATUSES:
        raise ApiError(422, "invalid_status", f"status must be one of {list(REVIEW_STATUSES)}")
    review = alerting.review
    items = review.pending(limit, status)
    return {"items": items, "count": len(items), "queue": review.counts(), "agreement": review.agreement()}


def review_item(alerting: Any, feedback_id: str, body: Any, actor: str) -> dict[str, Any]:
    from operations.review import ReviewError

    if not isinstance(body, dict):
        raise ApiError(422, "invalid_review", "the body must be a JSON object")
    try:
        return alerting.review.submit(feedback_id, body, actor)
    except KeyError:
        raise not_found("scored feedback", feedback_id) from None
    except ReviewError as exc:
        raise ApiError(422, exc.reason, str(exc)) from None


def audit(alerting: Any, limit: int = 200) -> dict[str, Any]:
    return {"entries": alerting.store.audit_log(limit)}
