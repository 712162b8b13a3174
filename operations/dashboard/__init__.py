"""The loop's dashboard at `/`: one page, served by the feedback service itself (plain JS + SVG, no CDN).

The page asks for an API key (kept in the tab's sessionStorage) and reads the same routes as any
client: /dashboard/summary (what changed, detection lag, examples with scores, owner / incident
state / playbook, loop health figures), /alerts/{id}/series (the validation chart), /health (funnel
and lag per stage), /review (the queue, with correction forms posting to /review/{feedback_id}).
"""
from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse

from operations.alerting.detection import load_items
from processing.taxonomy import load_taxonomy

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def _seconds(later: Optional[str], earlier: Optional[str]) -> Optional[float]:
    if not later or not earlier:
        return None
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def _median(values: list[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def summary(alerting: Any) -> dict[str, Any]:
    manager, store = alerting.manager, alerting.store
    alerts = [manager.public(a) for a in store.alerts(limit=300)]
    active = [a for a in alerts if a["state"] in ("open", "acknowledged", "mitigating", "reopened") and not a["suppressed"]]
    movers = sorted(active, key=lambda a: (a["evidence"].get("lift") or 0, a["evidence"]["count"]), reverse=True)[:10]
    taxonomy = load_taxonomy()
    for alert in alerts:
        alert["detection_lag_s"] = _seconds(alert["opened_at"], alert["evidence"].get("onset") or alert["first_seen"])
    return {
        "alerts": alerts,
        "top_movers": [{"id": a["id"], "dimension": a["dimension"], "value": a["value"], "signal": a["signal"],
                        "severity": a["severity"], "rate": a["evidence"]["rate"],
                        "baseline_rate": a["evidence"]["baseline_rate"], "lift": a["evidence"].get("lift"),
                        "count": a["evidence"]["count"]} for a in movers],
        "detection_lag_s": {"median": _median([a["detection_lag_s"] for a in alerts]),
                            "max": max([a["detection_lag_s"] for a in alerts if a["detection_lag_s"] is not None],
                                       default=None)},
        "time_to_ack_s": _median([_seconds(a["acknowledged_wall"], a["created_wall"]) for a in alerts]),
        "time_to_resolve_s": _median([_seconds(a["resolved_wall"], a["created_wall"]) for a in alerts]),
        "alert_precision": manager.precision(),
        "states": {s: sum(1 for a in alerts if a["state"] == s) for s in
                   ("open", "acknowledged", "mitigating", "resolved", "verified", "reopened")},
        "last_evaluation_at": store.get_state("last_evaluation_at"),
        "notifications": len(store.notifications(limit=100000)),
        "review": alerting.review.counts() if alerting.review else {},
        "labels": {"sentiments": list(taxonomy.sentiments), "intents": list(taxonomy.intents),
                   "aspects": list(taxonomy.aspect_names), "flags": list(taxonomy.flags)},
    }


def series(alerting: Any, alert: dict[str, Any], days: int = 30) -> dict[str, Any]:
    """Daily share of the alert's signal in its slice: before, during and after (the validation chart)."""
    from operations.alerting.alerts import _signal_rows

    end = datetime.fromisoformat(alerting.store.get_state("last_evaluation_at") or alert["last_finding_at"])
    items = load_items(alerting.lake, end - timedelta(days=days), end + timedelta(seconds=1))
    ev = alert["evidence"]
    if ev["dimension"] in items.columns:
        items = items[items[ev["dimension"]] == ev["value"]]
    points = []
    if not items.empty:
        hits = set(_signal_rows(items, alert["signal"]))
        items = items.assign(day=items["created_at"].dt.floor("D"), hit=items["feedback_id"].isin(hits))
        for day, group in items.groupby("day"):
            points.append({"day": pd.Timestamp(day).date().isoformat(), "volume": len(group),
                           "rate": round(float(group["hit"].mean()), 4)})
    return {"alert_id": alert["id"], "baseline_rate": ev["baseline_rate"], "points": points,
            "resolved_at": alert["resolved_at"], "opened_at": alert["opened_at"], "state": alert["state"]}


def register_dashboard(app: FastAPI, context: Any, require: Callable[[str], Callable]) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(404, detail={"reason": "not_found", "message": f"no static file {name!r}"})
        return FileResponse(STATIC / name, media_type=FILES[name])

    @app.get("/dashboard/summary", dependencies=[Depends(require("read"))])
    def dashboard_summary() -> dict[str, Any]:
        return summary(context.alerting)

    @app.get("/alerts/{alert_id}/series", dependencies=[Depends(require("read"))])
    def alert_series(alert_id: str, days: int = 30) -> dict[str, Any]:
        alert = context.alerting.store.alert(alert_id)
        if alert is None:
            raise HTTPException(404, detail={"reason": "not_found", "message": f"no alert {alert_id!r}"})
        return series(context.alerting, context.alerting.manager.public(alert), days)
