"""Alerting on AWS: the scheduled detection Lambda and the operations API Lambda (handlers
`operations.alerting_aws_lambda.detect_handler` and `operations.alerting_aws_lambda.operations_api_handler`;
beside operations.alerting rather than inside it, because they also use the review queue and the route answers,
which build on operations.alerting).

- `detect_handler`: an EventBridge schedule (or a replay event `{"at": ISO_TIME}`) runs one evaluation of
  the same engine as `fbrain loop detect` (operations.alerting.engine.Alerting.evaluate): silver is read
  from the Iceberg lake through the Glue catalog (`loop.catalog=glue`, `loop.warehouse=s3://...`), alerts,
  incidents, silences, cool-down state, the notification log and the review queue live in DynamoDB
  (operations.alerting.dynamodb), and notifications go through the same channel clients, each channel's
  URL / token read from its Secrets Manager secret (`alerting.slack_secret_id`, ...).
- `operations_api_handler`: API Gateway proxy integration (REST API v1 or HTTP API v2 events) for
  GET /alerts[?status=], GET /alerts/{id}, POST /alerts/{id}/ack|mitigate|resolve|silence, GET /silences,
  GET /notifications, GET /review, POST /review/{feedback_id}, GET /audit and GET /insights, answered by
  the same functions as the local service's routes (operations.alert_api): same bodies, same status codes.
  A review's correction goes to the S3 corrections store (`alerting.corrections_bucket`) that feeds
  retraining, and overrides the prediction in silver and gold at once, as locally.

Who may do what: API Gateway checks the API key (usage plan) before the Lambda runs; the scopes the local
service keeps per key (read / review / admin) come from the request's authorizer when the API has one -
an HTTP API JWT authorizer's `scopes`, a Cognito user-pool authorizer's `claims.scope`, or a Lambda
authorizer's context value `scopes` (space- or comma-separated; `<resource server>/read` counts as `read`)
- and otherwise from `alerting.api_key_scopes`, which grants every key-checked caller the same scopes
(empty by default: nothing is allowed until one of the two is set). The actor recorded in the audit log
is the API key id or the authorizer's principal, never a key itself.

Both handlers build their sections (alerting, loop, processing, monitoring) from the environment
(`FBRAIN__SECTION__FIELD`, processing.settings.load_sections) once per cold start, with the AWS defaults
`alerting.state_backend=dynamodb` and `loop.catalog=glue`.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Optional
from urllib.parse import unquote

from operations import alert_api as api
from operations.alerting.channels import Channels
from operations.alerting.config import AlertingConfig
from operations.alerting.detection import parse_at
from operations.alerting.engine import Alerting
from operations.config import LoopConfig
from operations.lake import Lake
from processing.config import ProcessingConfig
from processing.pii import PiiMasker
from processing.settings import load_sections
from processing.workspace import WORKSPACE_ENV

log = logging.getLogger(__name__)

LAMBDA_WORKSPACE = "/tmp/fbrain"
"""Scratch folder of a Lambda (the only writable one) unless FBRAIN_WORKSPACE names another."""
SCOPES = ("read", "review", "admin")


@dataclass
class Runtime:
    """What one cold start builds: the sections, the lake and the alerting engine with its review queue."""

    alerting: Alerting
    loop: LoopConfig
    processing: ProcessingConfig
    monitoring: Any
    lake: Lake


def build_runtime(environ: Optional[Mapping[str, str]] = None, *, lake: Optional[Lake] = None, dynamodb: Any = None,
                  secrets_client: Any = None, s3: Any = None, events: Any = None, transport: Any = None,
                  for_reviews: bool = False) -> Runtime:
    """Sections from the environment, the lake, the DynamoDB state, the channels and the review queue.

    The clients default to boto3's (the Lambda's role); tests pass moto's and an httpx transport.
    `for_reviews`: the caller records reviews, so the S3 corrections store must be named."""
    from monitoring.config import MonitoringConfig
    from monitoring.corrections import S3CorrectionStore
    from operations.alerting.backend import open_alert_state
    from operations.review import ReviewQueue

    environ = os.environ if environ is None else environ
    sections = load_sections({"alerting": AlertingConfig(state_backend="dynamodb"), "loop": LoopConfig(catalog="glue"),
                              "processing": ProcessingConfig(), "monitoring": MonitoringConfig()}, environ=environ)
    config: AlertingConfig = sections["alerting"]
    loop: LoopConfig = sections["loop"]
    workspace = Path(environ.get(WORKSPACE_ENV) or LAMBDA_WORKSPACE)
    lake = lake or Lake(loop, workspace)
    if config.state_backend == "dynamodb" and dynamodb is None:
        import boto3

        dynamodb = boto3.client("dynamodb")
    state = open_alert_state(config, workspace, dynamodb)
    channels = Channels(config, environ=dict(environ), transport=transport, secrets_client=secrets_client)
    alerting = Alerting(config, workspace, lake, channels, store=state)
    alerting.manager.masker = PiiMasker(sections["processing"])  # the deployment's PII settings, not the defaults
    corrections = None
    if config.corrections_bucket:
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        corrections = S3CorrectionStore(s3, config.corrections_bucket, sections["monitoring"].corrections_prefix)
        if events is None:
            import boto3

            events = boto3.client("events")
    elif for_reviews:
        raise ValueError("alerting.corrections_bucket is not set: reviews on AWS write their corrections to S3 "
                         "(set FBRAIN__ALERTING__CORRECTIONS_BUCKET to the corrections bucket)")
    context = SimpleNamespace(lake=lake, config=loop, worker=None)
    alerting.review = ReviewQueue(alerting, context, corrections=corrections, monitoring=sections["monitoring"],
                                  events_client=events if corrections is not None else None)
    return Runtime(alerting, loop, sections["processing"], sections["monitoring"], lake)


_RUNTIMES: dict[str, Runtime] = {}
"""Per handler, the runtime of this cold start."""


def _runtime(name: str, **kwargs: Any) -> Runtime:
    if name not in _RUNTIMES:
        _RUNTIMES[name] = build_runtime(**kwargs)
    return _RUNTIMES[name]


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------------------ detection
DETECTION_METRICS = {"Findings": "findings", "AlertsTouched": "alerts_touched", "Notifications": "notifications",
                     "ItemsRead": "items"}
"""CloudWatch metric -> the evaluation summary's count it carries (plus DetectionSeconds, the run's total)."""


def detect_handler(event: Optional[dict[str, Any]], context: Any = None, runtime: Optional[Runtime] = None,
                   cloudwatch: Any = None) -> dict[str, Any]:
    """One evaluation at the event's time: `at` (a replay), else the scheduled event's `time`, else now; its counts
    go to CloudWatch (`alerting.metrics_namespace`), the alert volume of the deployed dashboard."""
    runtime = runtime or _runtime("detect")
    event = event or {}
    when = parse_at(event.get("at") or event.get("time"))
    summary = runtime.alerting.evaluate(when)
    namespace = runtime.alerting.config.metrics_namespace
    if namespace:
        if cloudwatch is None:
            import boto3

            cloudwatch = boto3.client("cloudwatch")
        metrics = [{"MetricName": name, "Value": float(summary.get(key) or 0), "Unit": "Count"}
                   for name, key in DETECTION_METRICS.items()]
        metrics.append({"MetricName": "DetectionSeconds", "Value": float(summary["seconds"]["total"]), "Unit": "Seconds"})
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=metrics)
    return _json_safe(summary)


# ------------------------------------------------------------------------------------------ API
def _response(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body, ensure_ascii=False, default=str)}


def _error(error: api.ApiError) -> dict[str, Any]:
    return _response(error.status, {"detail": error.detail})


def request_scopes(event: dict[str, Any], config: AlertingConfig) -> set[str]:
    """The caller's scopes: from the authorizer when it gives any, else `alerting.api_key_scopes` (module doc)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    given: Any = None
    if isinstance(authorizer.get("jwt"), dict):
        jwt = authorizer["jwt"]
        given = jwt.get("scopes") or (jwt.get("claims") or {}).get("scope")
    if given is None and isinstance(authorizer.get("claims"), dict):
        given = authorizer["claims"].get("scope")
    if given is None:
        given = authorizer.get("scopes") or (authorizer.get("lambda") or {}).get("scopes")
    if given is None:
        return set(config.api_key_scopes)
    names = given if isinstance(given, list) else re.split(r"[\s,]+", str(given))
    return {name.rsplit("/", 1)[-1] for name in names if name} & set(SCOPES)


def request_actor(event: dict[str, Any]) -> str:
    """Who acts: `key:<API key id>` or `principal:<authorizer principal>` (never a key or token itself)."""
    request = event.get("requestContext") or {}
    authorizer = request.get("authorizer") or {}
    principal = (authorizer.get("principalId") or (authorizer.get("claims") or {}).get("sub")
                 or ((authorizer.get("jwt") or {}).get("claims") or {}).get("sub"))
    if principal:
        return f"principal:{principal}"
    key_id = (request.get("identity") or {}).get("apiKeyId")
    return f"key:{key_id}" if key_id else "key:unknown"


def _body(event: dict[str, Any], required: bool) -> Any:
    raw = event.get("body")
    if raw in (None, ""):
        if required:
            raise api.ApiError(422, "invalid_body", "a JSON body is required")
        return {}
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode("utf-8", "replace")
    try:
        return json.loads(raw)
    except ValueError:
        raise api.ApiError(422, "invalid_json", "the body is not valid JSON") from None


def _time(query: dict[str, str], name: str) -> Optional[datetime]:
    if not query.get(name):
        return None
    try:
        return parse_at(query[name])
    except ValueError:
        raise api.ApiError(422, "invalid_time", f"{name} {query[name]!r} is not an ISO 8601 time") from None


def _insights(runtime: Runtime, query: dict[str, str]) -> dict[str, Any]:
    from operations.insights import FILTER_COLUMNS, default_window, insights

    since, until = default_window(_time(query, "until"), _time(query, "since"), datetime.now(timezone.utc))
    try:
        return insights(runtime.lake, since, until, {c: query.get(c) for c in FILTER_COLUMNS}, query.get("aspect"),
                        runtime.loop.insights_examples)
    except ValueError as exc:
        raise api.ApiError(422, "invalid_window", str(exc)) from None


Route = tuple[str, "re.Pattern[str]", str, Callable[..., Any]]


def _routes() -> list[Route]:
    """(method, path pattern, operation, answer(runtime, match, query, event, actor))."""
    def limit(query: dict[str, str], default: int, high: int) -> int:
        return api.bounded_int(query.get("limit"), "limit", default, 1, high)

    return [
        ("GET", re.compile(r"/alerts"), "list_alerts",
         lambda rt, m, q, e, a: api.list_alerts(rt.alerting, q.get("status"), limit(q, 200, 1000))),
        ("GET", re.compile(r"/alerts/(?P<id>[^/]+)"), "get_alert",
         lambda rt, m, q, e, a: api.get_alert(rt.alerting, m["id"])),
        ("POST", re.compile(r"/alerts/(?P<id>[^/]+)/silence"), "silence",
         lambda rt, m, q, e, a: api.silence(rt.alerting, m["id"], _body(e, False), a)),
        ("POST", re.compile(r"/alerts/(?P<id>[^/]+)/(?P<action>ack|mitigate|resolve)"), "alert_action",
         lambda rt, m, q, e, a: api.alert_action(rt.alerting, m["id"], m["action"], _body(e, False), a)),
        ("GET", re.compile(r"/silences"), "silences", lambda rt, m, q, e, a: api.silences(rt.alerting)),
        ("GET", re.compile(r"/notifications"), "notifications",
         lambda rt, m, q, e, a: api.notifications(rt.alerting, limit(q, 200, 2000), q.get("alert_id"))),
        ("GET", re.compile(r"/review"), "review_queue",
         lambda rt, m, q, e, a: api.review_queue(rt.alerting, limit(q, 100, 1000), q.get("status") or "pending")),
        ("POST", re.compile(r"/review/(?P<id>[^/]+)"), "review_item",
         lambda rt, m, q, e, a: api.review_item(rt.alerting, m["id"], _body(e, True), a)),
        ("GET", re.compile(r"/audit"), "audit", lambda rt, m, q, e, a: api.audit(rt.alerting, limit(q, 200, 2000))),
        ("GET", re.compile(r"/insights"), "insights", lambda rt, m, q, e, a: _insights(rt, q)),
    ]


ROUTES = _routes()


def _request_line(event: dict[str, Any]) -> tuple[str, str]:
    http = (event.get("requestContext") or {}).get("http") or {}
    method = (event.get("httpMethod") or http.get("method") or "GET").upper()
    path = event.get("path") or event.get("rawPath") or "/"
    stage = (event.get("requestContext") or {}).get("stage")
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1:]  # an HTTP API's rawPath carries the stage
    return method, path.rstrip("/") or "/"


def operations_api_handler(event: dict[str, Any], context: Any = None,
                           runtime: Optional[Runtime] = None) -> dict[str, Any]:
    """API Gateway proxy event -> the alerting / review / insights answer (module doc)."""
    method, path = _request_line(event)
    matched = [(route, match) for route in ROUTES if (match := route[1].fullmatch(path))]
    if not matched:
        return _error(api.ApiError(404, "not_found", f"no route {path}"))
    allowed = [(route, match) for route, match in matched if route[0] == method]
    if not allowed:
        return _error(api.ApiError(405, "method_not_allowed", f"{path} allows {sorted({r[0] for r, _ in matched})}"))
    (_method, _pattern, operation, answer), found = allowed[0]
    match = {name: unquote(value) for name, value in found.groupdict().items()}  # REST API paths arrive encoded
    runtime = runtime or _runtime("api", for_reviews=True)
    needed = api.SCOPE_OF[operation]
    scopes = request_scopes(event, runtime.alerting.config)
    if needed not in scopes and "admin" not in scopes:
        return _error(api.ApiError(403, "forbidden", f"this key lacks the {needed!r} scope"))
    query = {k: v for k, v in (event.get("queryStringParameters") or {}).items() if v is not None}
    actor = runtime.alerting.manager.mask(request_actor(event))  # a principal may be an e-mail address
    try:
        return _response(200, answer(runtime, match, query, event, actor))
    except api.ApiError as exc:
        return _error(exc)
    except Exception:  # as the service answers an unexpected failure: 500, the details only in the log
        log.exception("operations API: %s %s failed", method, path)
        return _error(api.ApiError(500, "internal_error", "the request failed; see the function's log"))
