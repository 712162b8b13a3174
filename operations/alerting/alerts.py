"""Alerts modelled on Prometheus Alertmanager, and the incident each one opens.

- Dedup: a finding's key (`dimension=value|signal`) names one incident; later findings update that
  alert (counts, examples, severity) and never open a second one. An emerging theme matches a theme
  sharing EMERGING_MATCH_TERMS of its top ten terms.
- Inhibition: an alert that would not be anomalous without the items it shares with another is a
  duplicate, marked inhibited and not notified (see `_inhibit`): a SKU's spike does not also page its
  category, a regional delay does not page each SKU or channel it lifts, and the complaint-intent
  duplicate of a defect spike stays quiet.
- Silences: matchers on dedup_key / dimension / value / signal / owner for a time range.
- Grouping: one Slack / Teams message per owner per evaluation; Jira and PagerDuty per alert.
- Cool-down: an alert already notified is notified again only when its severity rises, when it is
  reopened, or when it has grown and the cool-down has passed.

Incident states: open -> acknowledged -> mitigating -> resolved, then verified or reopened by the
playbook's validation check on data after the resolution (or reopened when the detector finds it
again). Verification writes the post-incident record.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pandas as pd
from scipy.stats import binom

from operations.alerting.channels import Channels
from operations.alerting.config import AlertingConfig
from operations.alerting.detection import Finding, severity_rank
from operations.alerting.playbooks import Playbooks
from operations.alerting.state import AlertState, DuplicateRecord, new_id, wall_now
from processing.config import ProcessingConfig
from processing.pii import PiiMasker

log = logging.getLogger(__name__)

ACTIVE = ("open", "acknowledged", "mitigating", "reopened")
STATES = ("open", "acknowledged", "mitigating", "resolved", "verified", "reopened")
TRANSITIONS = {
    "ack": (("open", "reopened"), "acknowledged"),
    "mitigate": (("open", "acknowledged", "reopened"), "mitigating"),
    "resolve": (("open", "acknowledged", "mitigating", "reopened"), "resolved"),
}
INHIBIT_OVERLAP = 0.6
"""Share of an alert's evidence items inside a stronger alert's evidence that makes it a duplicate."""
EMERGING_MATCH_TERMS = 3
"""An emerging finding sharing this many of its top terms with an emerging alert is that theme again."""
_KIND_RANK = {"immediate": 2, "trend": 1, "emerging": 0}


class TransitionError(ValueError):
    """An incident action not allowed from the alert's current state."""


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


class AlertManager:
    def __init__(self, config: AlertingConfig, store: AlertState, playbooks: Playbooks, channels: Channels,
                 masker: Optional[PiiMasker] = None):
        self.config, self.store, self.playbooks, self.channels = config, store, playbooks, channels
        self.masker = masker or PiiMasker(ProcessingConfig())

    # ------------------------------------------------------------------ masking
    def mask(self, text: str) -> str:
        return self.masker.mask(str(text))

    def key_of(self, key: str) -> str:
        """The stored dedup key: the finding's key masked (a dimension value is customer-supplied text)."""
        return self.mask(key)

    def masked_evidence(self, finding: Finding) -> dict[str, Any]:
        evidence = finding.as_dict()
        evidence["examples"] = [{**e, "text": self.mask(e["text"])} for e in evidence["examples"]]
        evidence["value"], evidence["key"] = self.mask(evidence["value"]), self.key_of(evidence["key"])
        evidence["parents"] = {k: self.mask(v) for k, v in evidence["parents"].items()}
        evidence["terms"] = [self.mask(t) for t in evidence["terms"]]
        evidence["feedback_ids"] = evidence["feedback_ids"][:50]  # a sample; the detector sees them all
        return evidence

    # ------------------------------------------------------------------ evaluation
    def process(self, findings: list[Finding], at: datetime, items: Optional[pd.DataFrame] = None,
                record_evaluation: bool = True) -> dict[str, Any]:
        """Turn one evaluation's findings into alert updates, validation results and notifications.
        `record_evaluation=False`: a partial evaluation (a micro-batch's immediate flags) that does not move the
        time of the last full evaluation (resolutions and the dashboard's charts are dated by it)."""
        with self.store.lock:
            touched: list[tuple[dict[str, Any], str]] = []  # (alert, why it may notify)
            for finding in findings:
                alert, why = self._upsert(finding, at)
                if why:
                    touched.append((alert, why))
            inhibited = self._inhibit([f for f in findings])
            validated = self._validate(at, items, {f.key for f in findings})
            sent = self._notify(at, touched, inhibited)
            if record_evaluation:
                self.store.set_state("last_evaluation_at", _iso(at))
        return {"findings": len(findings), "alerts_touched": len(touched), "inhibited": len(inhibited),
                "validated": validated, "notifications": sent}

    def _existing(self, finding: Finding) -> Optional[dict[str, Any]]:
        alert = self.store.alert_by_key(self.key_of(finding.key))
        if alert is None and finding.kind == "emerging":
            for candidate in self.store.alerts(kind="emerging", limit=100000):
                if len(set(candidate["evidence"].get("terms", [])) & set(finding.terms)) >= EMERGING_MATCH_TERMS:
                    return candidate
        return alert

    def _upsert(self, finding: Finding, at: datetime) -> tuple[dict[str, Any], Optional[str]]:
        evidence = self.masked_evidence(finding)
        existing = self._existing(finding)
        now = wall_now()
        if existing is None:
            alert = {"id": new_id("alert"), "dedup_key": self.key_of(finding.key), "state": "open", "suppressed": None,
                     "severity": finding.severity, "kind": finding.kind, "dimension": finding.dimension,
                     "value": evidence["value"], "signal": finding.signal, "owner": finding.owner,
                     "playbook": self.playbooks.reference(finding.signal), "evidence": evidence,
                     "opened_at": _iso(at), "first_seen": finding.first_seen, "last_finding_at": _iso(at),
                     "created_wall": now, "updated_wall": now}
            try:
                self.store.insert_alert(alert)
            except DuplicateRecord:  # another evaluation (a second detection Lambda) opened it meanwhile
                return self._upsert(finding, at)
            self.store.record_action(alert["id"], "detector", "open", f"{finding.kind} finding", None,
                                     {"state": "open", "severity": finding.severity, "count": finding.count})
            log.info("alert %s opened: %s severity %s", alert["id"], alert["dedup_key"], finding.severity)
            return self.store.alert(alert["id"]), "new"
        if existing["state"] not in ("resolved", "verified"):  # the incident's onset is the one it opened with
            evidence["onset"] = existing["evidence"].get("onset") or evidence.get("onset")
        changes: dict[str, Any] = {"evidence": evidence, "last_finding_at": _iso(at), "updated_wall": now}
        why = None
        if severity_rank(finding.severity) > severity_rank(existing["severity"]):
            changes["severity"] = finding.severity
            why = "escalated"
        if existing["state"] in ("resolved", "verified"):
            changes.update(state="reopened", reopen_count=existing["reopen_count"] + 1, validation=None)
            self.store.record_action(existing["id"], "detector", "reopen", "found again after resolution",
                                     {"state": existing["state"]}, {"state": "reopened"})
            why = "reopened"
        elif finding.count > (existing["last_notified_count"] or 0):
            why = why or "grew"
        self.store.update_alert(existing["id"], changes)
        return self.store.alert(existing["id"]), why

    def _inhibit(self, findings: list[Finding]) -> set[str]:
        """Mark alerts of this evaluation that duplicate another one; clear marks no longer true.

        A finding is explained by another when, without the items they share, it would not be anomalous
        (the same binomial test on what is left). When only one of two findings is explained by the other,
        it is the duplicate (an e-mail-channel rise that is the regional delay's complaints). When each
        explains the other: on one slice (two signals on the same complaints) the weaker one (kind,
        severity, lift) is the duplicate; across slices the smaller one is a part of the larger (a SKU
        in its category or region) and wins when it carries most (INHIBIT_OVERLAP) of the whole's excess
        over baseline (a SKU defect lifts its category), the whole otherwise (a regional delay)."""
        rank = lambda f: (_KIND_RANK[f.kind], severity_rank(f.severity), f.lift or 0.0, f.count)  # noqa: E731
        excess = lambda f: max(f.count - f.baseline_rate * f.volume, 0.0) if f.kind == "trend" else f.count  # noqa: E731
        evidence = {f.key: set(f.feedback_ids) for f in findings}
        inhibited: dict[str, str] = {}
        ordered = sorted(findings, key=rank, reverse=True)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                ids_a, ids_b = evidence[a.key], evidence[b.key]
                shared = len(ids_a & ids_b)
                if not shared:
                    continue
                a_explained, b_explained = self._explained(a, shared), self._explained(b, shared)
                if a_explained and b_explained:
                    if (a.dimension, a.value) == (b.dimension, b.value):
                        loser, winner = b, a  # one slice, two signals on the same items: the weaker is the duplicate
                    else:
                        part, whole = (a, b) if len(ids_a) <= len(ids_b) else (b, a)
                        explains = excess(part) >= INHIBIT_OVERLAP * excess(whole)
                        loser, winner = (whole, part) if explains else (part, whole)
                elif a_explained or b_explained:
                    loser, winner = (a, b) if a_explained else (b, a)
                else:
                    continue
                inhibited.setdefault(loser.key, winner.key)
        for key in list(inhibited):  # a duplicate of a duplicate points at the alert that stays
            seen = {key}
            while inhibited[key] in inhibited and inhibited[key] not in seen:
                seen.add(inhibited[key])
                inhibited[key] = inhibited[inhibited[key]]
        inhibited = {k: v for k, v in inhibited.items() if v not in inhibited}
        silences = self.store.silences(active_at=wall_now())  # read once per evaluation (a Scan on DynamoDB)
        for finding in findings:
            alert = self._existing(finding)
            if alert is None:
                continue
            mark = None
            if finding.key in inhibited:
                source = self.store.alert_by_key(self.key_of(inhibited[finding.key]))
                mark = f"inhibited:{source['id']}" if source else None
            silence = self._silence_for(alert, silences)
            if silence:
                mark = f"silenced:{silence['id']}"
            if alert["suppressed"] != mark:
                self.store.update_alert(alert["id"], {"suppressed": mark})
        return set(inhibited)

    def _explained(self, finding: Finding, shared: int) -> bool:
        """Whether `finding` stops being anomalous without `shared` of its signal items."""
        if finding.kind != "trend":
            return shared >= INHIBIT_OVERLAP * finding.count
        k, n = finding.count - shared, finding.volume - shared
        if k < self.config.min_count or n <= 0:
            return True
        p0 = max(finding.baseline_rate, 1e-9)
        if k / n < self.config.min_lift * p0:
            return True
        return float(binom.sf(k - 1, n, p0)) >= self.config.max_p_value

    @staticmethod
    def _silence_for(alert: dict[str, Any], silences: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
        """The first of the active `silences` whose matchers all match the alert."""
        for silence in silences:
            if all(str(alert.get(k)) == str(v) for k, v in silence["matchers"].items()):
                return silence
        return None

    # ------------------------------------------------------------------ notifications
    def _notify(self, at: datetime, touched: list[tuple[dict[str, Any], str]], inhibited: set[str]) -> int:
        cooldown = timedelta(minutes=self.config.cooldown_minutes)
        due: list[tuple[dict[str, Any], str]] = []
        for alert, why in touched:
            alert = self.store.alert(alert["id"])
            if alert["suppressed"]:
                continue
            if why == "grew" and alert["last_notified_wall"] and \
                    datetime.now(timezone.utc) - _parse(alert["last_notified_wall"]) < cooldown:
                continue
            due.append((alert, why))
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for alert, _why in due:
            groups[alert["owner"]].append(alert)
        sent = 0
        for owner, alerts in groups.items():
            views = [self.public(a) for a in alerts]
            for channel in ("slack", "teams"):
                if channel in self.config.channels:
                    payload, delivery = self.channels.group(channel, views)
                    self._log(at, channel, "group", [a["id"] for a in alerts], owner, payload, delivery)
                    sent += 1
        for alert, why in due:
            view = self.public(alert)
            if "jira" in self.config.channels and not alert["jira_key"] and why in ("new", "reopened"):
                payload, delivery = self.channels.jira(view)
                self._log(at, "jira", "create_issue", [alert["id"]], alert["owner"], payload, delivery)
                if delivery.response and delivery.response.get("key"):
                    self.store.update_alert(alert["id"], {"jira_key": delivery.response["key"]})
                sent += 1
            if "pagerduty" in self.config.channels and \
                    severity_rank(alert["severity"]) >= severity_rank(self.config.pagerduty_min_severity):
                payload, delivery = self.channels.pagerduty(view, "trigger")
                self._log(at, "pagerduty", "trigger", [alert["id"]], alert["owner"], payload, delivery)
                sent += 1
            self.store.update_alert(alert["id"], {
                "last_notified_wall": wall_now(), "last_notified_severity": alert["severity"],
                "last_notified_count": alert["evidence"]["count"]})
        return sent

    def _log(self, at: Optional[datetime], channel: str, kind: str, alert_ids: list[str], owner: str,
             payload: dict[str, Any], delivery: Any) -> None:
        status = {"sent": "sent", "failed": "failed", "unconfigured": "recorded"}[delivery.status]
        self.store.insert_notification({
            "at": wall_now(), "event_at": _iso(at) if at else None, "channel": channel, "kind": kind,
            "alert_ids": alert_ids, "owner": owner, "status": status, "code": delivery.code,
            "attempts": delivery.attempts, "error": delivery.error, "payload": payload})
        log.info("notification %s/%s for %d alert(s): %s", channel, kind, len(alert_ids), status)

    def public(self, alert: dict[str, Any]) -> dict[str, Any]:
        """The alert as answered by the API and sent to channels (evidence masked when stored)."""
        keys = ("id", "dedup_key", "state", "suppressed", "severity", "kind", "dimension", "value", "signal", "owner",
                "playbook", "evidence", "opened_at", "first_seen", "last_finding_at", "created_wall", "updated_wall",
                "acknowledged_wall", "mitigating_wall", "resolved_wall", "resolved_at", "closed_wall", "jira_key",
                "reopen_count", "validation")
        return {k: alert.get(k) for k in keys}

    # ------------------------------------------------------------------ incident actions
    def act(self, alert_id: str, action: str, actor: str, note: str = "") -> dict[str, Any]:
        with self.store.lock:
            alert = self.store.alert(alert_id)
            if alert is None:
                raise KeyError(alert_id)
            allowed, target = TRANSITIONS[action]
            if alert["state"] not in allowed:
                raise TransitionError(f"cannot {action} an alert that is {alert['state']} (allowed from {list(allowed)})")
            now = wall_now()
            changes: dict[str, Any] = {"state": target, "updated_wall": now}
            changes[{"ack": "acknowledged_wall", "mitigate": "mitigating_wall", "resolve": "resolved_wall"}[action]] = now
            if action == "resolve":
                last = self.store.get_state("last_evaluation_at")
                changes["resolved_at"] = max(filter(None, [last, alert["last_finding_at"]]))
            self.store.update_alert(alert_id, changes)
            self.store.record_action(alert_id, actor, action, note, {"state": alert["state"]}, {"state": target})
            alert = self.store.alert(alert_id)
            if "pagerduty" in self.config.channels and action in ("ack", "resolve") and \
                    severity_rank(alert["severity"]) >= severity_rank(self.config.pagerduty_min_severity):
                event = "acknowledge" if action == "ack" else "resolve"
                payload, delivery = self.channels.pagerduty(self.public(alert), event)
                self._log(None, "pagerduty", event, [alert_id], alert["owner"], payload, delivery)
            return self.public(alert)

    def silence(self, alert_id: str, actor: str, hours: float, comment: str = "") -> dict[str, Any]:
        if not hours > 0:
            raise ValueError("hours must be positive")
        with self.store.lock:
            alert = self.store.alert(alert_id)
            if alert is None:
                raise KeyError(alert_id)
            now = datetime.now(timezone.utc)
            silence = {"id": new_id("silence"), "matchers": {"dedup_key": alert["dedup_key"]}, "starts_at": _iso(now),
                       "ends_at": _iso(now + timedelta(hours=hours)), "created_by": actor, "comment": comment}
            self.store.insert_silence(silence)
            self.store.update_alert(alert_id, {"suppressed": f"silenced:{silence['id']}", "updated_wall": wall_now()})
            self.store.record_action(alert_id, actor, "silence", comment, {"suppressed": alert["suppressed"]},
                                     {"suppressed": f"silenced:{silence['id']}", "until": silence["ends_at"]})
            return silence

    def feedback(self, alert_id: str, reviewer: str, verdict: str, note: str = "") -> None:
        if verdict not in ("true_positive", "false_positive"):
            raise ValueError("alert_verdict must be true_positive or false_positive")
        if self.store.alert(alert_id) is None:
            raise KeyError(alert_id)
        self.store.insert_verdict({"alert_id": alert_id, "reviewer": reviewer, "verdict": verdict,
                                             "at": wall_now(), "note": note})
        self.store.audit(reviewer, f"alert:{alert_id}", "verdict", None, {"verdict": verdict})

    def precision(self) -> dict[str, Any]:
        rows = self.store.verdicts()
        latest = {r["alert_id"]: r["verdict"] for r in rows}
        true = sum(1 for v in latest.values() if v == "true_positive")
        return {"judged": len(latest), "true_positive": true, "false_positive": len(latest) - true,
                "precision": round(true / len(latest), 4) if latest else None}

    # ------------------------------------------------------------------ validation
    def _validate(self, at: datetime, items: Optional[pd.DataFrame], found_keys: set[str]) -> list[dict[str, Any]]:
        """Resolved alerts: the playbook's check on items after the resolution -> verified or reopened."""
        results = []
        for alert in self.store.alerts("resolved"):
            if alert["dedup_key"] in found_keys or items is None or not alert["resolved_at"]:
                continue
            check = (alert["playbook"] or {}).get("validation") or {"check": "no_new_items", "within_days": 3,
                                                                     "tolerance": 1.0, "min_volume": 0}
            resolved_at = _parse(alert["resolved_at"])
            after = items[items["created_at"] >= resolved_at]
            ev = alert["evidence"]
            if alert["kind"] == "emerging":
                ids = set()
                matching = after.iloc[0:0]
            else:
                matching = after if ev["dimension"] not in after.columns else after[after[ev["dimension"]] == ev["value"]]
                ids = set(_signal_rows(matching, alert["signal"]))
            volume, count = len(matching), len(ids)
            rate = count / volume if volume else None
            deadline = resolved_at + timedelta(days=check["within_days"])
            outcome = None
            if check["check"] == "signal_rate_at_most_baseline":
                if volume >= check["min_volume"] and rate is not None and \
                        rate <= check["tolerance"] * max(ev["baseline_rate"], 1e-9):
                    outcome = "verified"
                elif at >= deadline:
                    outcome = "reopened"
            elif at >= deadline:
                outcome = "verified" if count == 0 else "reopened"
            validation = {"check": check["check"], "evaluated_at": _iso(at), "volume_after": volume,
                          "count_after": count, "rate_after": None if rate is None else round(rate, 4),
                          "baseline_rate": ev["baseline_rate"], "rate_at_alert": ev["rate"],
                          "deadline": _iso(deadline), "outcome": outcome or "pending"}
            changes: dict[str, Any] = {"validation": validation, "updated_wall": wall_now()}
            if outcome:
                changes["state"] = outcome
                if outcome == "verified":
                    changes["closed_wall"] = wall_now()
                else:
                    changes["reopen_count"] = alert["reopen_count"] + 1
                self.store.record_action(alert["id"], "validation", outcome, validation["check"],
                                         {"state": "resolved"}, {"state": outcome, **validation})
            self.store.update_alert(alert["id"], changes)
            if outcome == "verified":
                self._post_incident(self.store.alert(alert["id"]))
            results.append({"alert_id": alert["id"], **validation})
        return results

    def _post_incident(self, alert: dict[str, Any]) -> None:
        ev = alert["evidence"]
        record = {
            "alert_id": alert["id"], "dedup_key": alert["dedup_key"], "owner": alert["owner"],
            "playbook": (alert["playbook"] or {}).get("id"),
            "triggered": {"first_seen": alert["first_seen"], "opened_at": alert["opened_at"], "severity": alert["severity"],
                          "signal": alert["signal"], "dimension": alert["dimension"], "value": alert["value"],
                          "count": ev["count"], "volume": ev["volume"], "rate": ev["rate"],
                          "baseline_rate": ev["baseline_rate"], "examples": ev["examples"]},
            "done": [{"at": a["at"], "actor": a["actor"], "action": a["action"], "note": a["note"]}
                     for a in self.store.actions(alert["id"])],
            "data_change": alert["validation"],
            "timeline": {k: alert[k] for k in ("created_wall", "acknowledged_wall", "mitigating_wall", "resolved_wall",
                                               "closed_wall")},
        }
        self.store.put_post_incident(alert["id"], record)


def _signal_rows(items: pd.DataFrame, signal: str) -> list[str]:
    kind, _, name = signal.partition(":")
    if items.empty:
        return []
    if kind == "aspect":
        mask = (items["sentiment"] == "negative") & items["aspects"].map(lambda a: name in a)
    elif kind == "intent":
        mask = items["intent"] == name
    elif kind == "flag":
        mask = items["flags"].map(lambda f: name in f)
    else:
        return []
    return items.loc[mask, "feedback_id"].tolist()
