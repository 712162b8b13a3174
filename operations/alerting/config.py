"""Settings of detection, alerts, notifications and the review queue (`--set alerting.FIELD=VALUE`)."""
from __future__ import annotations

from dataclasses import field
from typing import Literal

from processing.settings import settings_section


@settings_section
class AlertingConfig:
    state_backend: Literal["sqlite", "dynamodb"] = "sqlite"
    """Where alerts, incidents, silences, cool-down state, the notification log, the review queue and its audit
    log are kept: `sqlite` (the file `state_db`, the local loop) or `dynamodb` (the tables `incidents_table` and
    `review_queue_table`, the Lambdas on AWS)."""
    state_db: str = "loop/alerts.db"
    """SQLite file (workspace-relative) of alerts, incidents, silences, the notification log, the review queue
    and its audit log."""
    incidents_table: str = "feedback-brain-incidents"
    """DynamoDB table (hash key `incident_id`) of alerts, their actions, silences, notifications, verdicts,
    post-incident records and named state (state_backend=dynamodb)."""
    review_queue_table: str = "feedback-brain-review-queue"
    """DynamoDB table (hash key `item_id`) of the review queue, the reviews and the audit log
    (state_backend=dynamodb)."""
    slack_secret_id: str = ""
    """AWS Secrets Manager id of the Slack incoming-webhook URL (the secret's string, or a JSON object with
    FBRAIN_SLACK_WEBHOOK_URL); read when the environment does not give it. Empty: environment only."""
    teams_secret_id: str = ""
    """Secrets Manager id of the Microsoft Teams webhook URL (string, or JSON with FBRAIN_TEAMS_WEBHOOK_URL)."""
    jira_secret_id: str = ""
    """Secrets Manager id of the Jira Cloud settings: a JSON object with FBRAIN_JIRA_BASE_URL, FBRAIN_JIRA_EMAIL
    and FBRAIN_JIRA_API_TOKEN."""
    pagerduty_secret_id: str = ""
    """Secrets Manager id of the PagerDuty Events v2 routing key (string, or JSON with
    FBRAIN_PAGERDUTY_ROUTING_KEY)."""
    corrections_bucket: str = ""
    """S3 bucket of the corrections store written by reviews on AWS (s3://BUCKET/<monitoring.corrections_prefix>/);
    empty on a local run: the workspace's local object store."""
    metrics_namespace: str = "feedback-brain/Alerting"
    """CloudWatch namespace of the detection Lambda's per-run metrics (findings, alerts touched, notifications,
    items read, seconds): the alert volume on the deployed dashboard. Empty sends none."""
    api_key_scopes: list[Literal["read", "review", "admin"]] = field(default_factory=list)
    """Scopes of a caller of the operations API Lambda whose request carries no authorizer scopes (API Gateway
    checked only its API key). Empty grants none: scopes then must come from the authorizer (module doc of
    operations.alerting_aws_lambda)."""
    playbooks_dir: str = ""
    """Folder of playbook JSON files; empty means the bundled operations/alerting/playbooks."""
    detect_every_s: float = 300.0
    """The worker runs detection this often (seconds of wall time; 0 turns the cadence off)."""
    windows_hours: list[int] = field(default_factory=lambda: [1, 6, 24])
    """Current windows compared against their baseline (hours before the evaluation time)."""
    baseline_days: int = 14
    """History before a window that forms its baseline (the window itself excluded)."""
    seasonal_min_days: int = 14
    """With at least this much history, the baseline rate is also taken over the same weekdays and the
    larger of the two is used (a weekday that always runs high does not alert)."""
    prior_weight: float = 30.0
    """Pseudo-items of the pooled rate (all values of the dimension) mixed into a value's own baseline rate,
    so a value with little history is compared against the population rather than against noise."""
    min_count: int = 5
    """Fewest items with the signal in a window before it can alert (volume-aware: no alert on 1-2 items)."""
    min_lift: float = 2.0
    """Smallest ratio of the window's rate to the baseline rate that can alert (trend, not raw counts)."""
    max_p_value: float = 1e-6
    """One-sided binomial test p-value under which a window is anomalous (strict: thousands of tests per run)."""
    severity_p_values: dict[str, float] = field(default_factory=lambda: {"warning": 1e-6, "error": 1e-9,
                                                                          "critical": 1e-14})
    """p-value under which a finding reaches each severity (PagerDuty's warning / error / critical)."""
    dimensions: list[str] = field(default_factory=lambda: ["sku", "product_category", "region", "channel"])
    """Silver columns whose values are compared each against their own baseline."""
    problem_intents: list[str] = field(default_factory=lambda: [
        "complaint", "refund_request", "return_exchange", "cancellation", "delivery_status", "account_payment"])
    """Intents watched for a rising share (praise, questions and other are not problems)."""
    emerging_window_hours: int = 24
    """Window of negative items outside the taxonomy clustered for emerging themes."""
    emerging_min_cluster: int = 6
    """Fewest items of a new theme in the window before it alerts."""
    emerging_similarity: float = 0.35
    """Cosine similarity (TF-IDF) above which two items belong to the same theme."""
    emerging_max_baseline_share: float = 0.25
    """A theme is new when its baseline has at most this share of the window's count per equal-length period."""
    emerging_owner: str = "voice-of-customer"
    """Team that triages emerging themes outside the taxonomy (no taxonomy owner exists for them)."""
    cooldown_minutes: float = 60.0
    """An alert's notifications repeat no more often than this, unless its severity rises."""
    examples_per_alert: int = 3
    """Masked examples carried by an alert."""
    channels: list[Literal["slack", "teams", "jira", "pagerduty"]] = field(
        default_factory=lambda: ["slack", "teams", "jira", "pagerduty"])
    """Channels tried for each notification; one without its URL / token in the environment (or AWS Secrets
    Manager) only records the notification in the log."""
    pagerduty_min_severity: Literal["info", "warning", "error", "critical"] = "error"
    """Least severity paged through PagerDuty."""
    dashboard_url: str = "http://127.0.0.1:8090/"
    """Link to the dashboard carried by Slack and Teams messages (the service's `/`; on AWS the operations API's
    address)."""
    jira_project: str = "FB"
    """Jira project key of created issues."""
    http_timeout_s: float = 5.0
    """Timeout of one channel request."""
    http_retries: int = 3
    """Attempts per channel request (exponential backoff) on connection errors, 429 and 5xx."""
    review_min_confidence: float = 0.6
    """Items whose sentiment or intent score is under this enter the review queue."""
    review_double_severity: list[str] = field(default_factory=lambda: ["critical"])
    """Queue entries of these severities want two reviewers (agreement is reported)."""
