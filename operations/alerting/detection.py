"""Detection: which slices of the feedback stream changed, against their own history.

For each dimension value (SKU, category, region, channel) and each signal (a negative mention of an
aspect, a problem intent, a flag), the share of the value's items carrying the signal in the current
window (1 h, 6 h, 24 h by default) is tested against the value's baseline share with a one-sided
binomial test. The baseline is the value's own history (the window excluded), shrunk towards the
pooled rate of all values so thin history does not make every blip significant, and, once two weeks
exist, the larger of the overall and same-weekday rates (weekday seasonality). A finding needs a
minimum count, a minimum lift and a small p-value (playbooks may set their own); severity tiers come
from the p-value. Counting shares rather than raw counts makes a volume surge on its own no alert.

Flags the taxonomy marks `"escalation": "immediate"` (safety_concern) alert on a single item.
Emerging themes outside the taxonomy: negative items the model gave no aspect are clustered by
TF-IDF (the lake stores no embeddings) and a cluster that is large now and was rare before alerts.

Reads scored silver rows with the labels gold counts (`operations.gold.effective_labels`: a
reviewer's correction over the prediction); silver rather than gold because flags and examples are
per item and gold's window is a day by default.
"""
from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import numpy as np
import pandas as pd
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
from scipy.stats import binom

from operations import lake as lake_tables
from operations.alerting.config import AlertingConfig
from operations.lake import Lake
from operations.gold import effective_labels
from processing.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "error", "critical")
"""Ordered severities (PagerDuty Events v2 names)."""
ITEM_COLUMNS = ("feedback_id", "created_at", "sku", "product_category", "region", "channel", "text", "star_rating",
                "sentiment", "sentiment_score", "intent", "intent_score", "aspects", "flags")
NEGATIVE = "negative"
EMERGING_TERMS = 10
"""Top TF-IDF terms kept per emerging theme (the first three name it; all ten match it to an open theme)."""


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass
class Finding:
    """One anomalous slice at one evaluation: what the alert manager turns into (or adds to) an alert."""

    key: str
    """Dedup key of the incident: `dimension=value|signal` (emerging themes: `emerging|term+term+term`)."""
    kind: str
    """trend | immediate | emerging"""
    dimension: str
    value: str
    signal: str
    """aspect:NAME, intent:NAME, flag:NAME or emerging"""
    severity: str
    owner: str
    window_hours: float
    count: int
    volume: int
    rate: float
    baseline_rate: float
    baseline_count: int
    baseline_volume: int
    lift: Optional[float]
    p_value: Optional[float]
    first_seen: str
    """Event time of the earliest item in the window carrying the signal."""
    onset: str = ""
    """Estimated start of the excess: the event time after which the items above the baseline's expectation
    arrived (the (k - excess + 1)-th signal item of the window); first_seen for immediate and emerging findings."""
    examples: list[dict[str, Any]] = field(default_factory=list)
    feedback_ids: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)
    """Broader dimension values containing this one (a SKU's category), for inhibition."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Thresholds:
    min_count: int
    min_lift: float
    max_p_value: float


# ---------------------------------------------------------------------------------------------- reading
def load_items(lake: Lake, since: datetime, until: datetime) -> pd.DataFrame:
    """Scored, non-spam silver items created in [since, until), labels as gold counts them."""
    condition = And(GreaterThanOrEqual("created_at", since.isoformat()), LessThan("created_at", until.isoformat()))
    columns = tuple(c for c in ITEM_COLUMNS) + ("spam_rule", "corrected_sentiment", "corrected_intent",
                                                 "corrected_aspects")
    return items_from_silver(lake.scan(lake_tables.SILVER, condition, columns=columns).to_pandas())


def items_from_silver(silver: pd.DataFrame) -> pd.DataFrame:
    """Detection's items from silver rows (a scan, or a micro-batch's rows): scored, non-spam, labels as gold
    counts them (a reviewer's correction over the prediction)."""
    silver = silver[silver["spam_rule"].isna() & silver["sentiment"].notna()]
    if silver.empty:
        return pd.DataFrame(columns=list(ITEM_COLUMNS))
    labels = effective_labels(silver)
    frame = silver[list(ITEM_COLUMNS)].copy()
    frame["sentiment"], frame["intent"], frame["aspects"] = labels["sentiment"], labels["intent"], labels["aspects"]
    frame["flags"] = [list(f) if f is not None else [] for f in frame["flags"]]
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    for dimension in ("sku", "product_category", "region", "channel"):
        frame[dimension] = frame[dimension].fillna(lake_tables.NONE_VALUE).astype(str)
    return frame.drop_duplicates("feedback_id", keep="last").reset_index(drop=True)


def signal_pairs(items: pd.DataFrame, config: AlertingConfig) -> pd.DataFrame:
    """(row, signal) pairs: negative aspect mentions, problem intents, flags. `row` indexes `items`."""
    parts = []
    negative = items[items["sentiment"] == NEGATIVE]
    aspects = negative["aspects"].explode().dropna()
    parts.append(pd.DataFrame({"row": aspects.index, "signal": "aspect:" + aspects.astype(str)}))
    intents = items["intent"][items["intent"].isin(config.problem_intents)]
    parts.append(pd.DataFrame({"row": intents.index, "signal": "intent:" + intents.astype(str)}))
    flags = items["flags"].explode().dropna()
    parts.append(pd.DataFrame({"row": flags.index, "signal": "flag:" + flags.astype(str)}))
    pairs = pd.concat(parts, ignore_index=True)
    return pairs.drop_duplicates()


def signal_owner(signal: str, taxonomy: Taxonomy, config: AlertingConfig) -> str:
    kind, _, name = signal.partition(":")
    if kind == "emerging":
        return config.emerging_owner
    try:
        owner = taxonomy.signal_owner(kind, name)
    except KeyError:
        owner = None
    if owner is None:
        raise ValueError(f"taxonomy v{taxonomy.version} names no owner_team for {signal!r}")
    return owner


# ---------------------------------------------------------------------------------------------- detector
class Detector:
    def __init__(self, config: AlertingConfig, taxonomy: Optional[Taxonomy] = None,
                 thresholds: Optional[dict[str, Thresholds]] = None):
        self.config = config
        self.taxonomy = taxonomy or load_taxonomy()
        self.thresholds = thresholds or {}
        """Per-signal thresholds (from the playbooks' detection criteria); config defaults otherwise."""

    def default_thresholds(self) -> Thresholds:
        return Thresholds(self.config.min_count, self.config.min_lift, self.config.max_p_value)

    def history_start(self, at: datetime) -> datetime:
        return at - timedelta(hours=max(self.config.windows_hours)) - timedelta(days=self.config.baseline_days)

    def detect(self, items: pd.DataFrame, at: datetime) -> list[Finding]:
        if items.empty:
            return []
        pairs = signal_pairs(items, self.config)
        findings = self.trend_findings(items, pairs, at) + self.immediate_findings(items, pairs, at)
        findings += self.emerging_findings(items, at)
        return findings

    # ------------------------------------------------------------------ trends
    def trend_findings(self, items: pd.DataFrame, pairs: pd.DataFrame, at: datetime) -> list[Finding]:
        """Vectorised: per dimension, value x signal count matrices (np.bincount) per window; the binomial
        test runs only on cells past the minimum count and lift."""
        config = self.config
        created = items["created_at"]
        history_days = (at - created.min().to_pydatetime()).total_seconds() / 86400
        signal_codes, signal_names = pd.factorize(pairs["signal"])
        pair_rows = pairs["row"].to_numpy()
        n_signals = len(signal_names)
        if n_signals == 0:
            return []
        limits = [self.thresholds.get(name, self.default_thresholds()) for name in signal_names]
        min_count = np.array([t.min_count for t in limits])
        min_lift = np.array([t.min_lift for t in limits])
        max_p = np.array([t.max_p_value for t in limits])
        firsts = items.drop_duplicates("sku", keep="last")
        category_of = dict(zip(firsts["sku"].tolist(), firsts["product_category"].tolist()))
        encoded = {dimension: pd.factorize(items[dimension]) for dimension in config.dimensions}
        best: dict[str, Finding] = {}
        for hours in config.windows_hours:
            window_start = at - timedelta(hours=hours)
            current = (created >= window_start).to_numpy()
            baseline = ~current
            if not current.any() or not baseline.any():
                continue
            seasonal = None
            if history_days >= config.seasonal_min_days:
                weekdays = sorted(set(pd.date_range(window_start, at, freq="h", inclusive="left").weekday))
                seasonal = baseline & created.dt.weekday.isin(weekdays).to_numpy()
            for dimension, (codes, names) in encoded.items():
                cells = self._anomalous_cells(codes, len(names), signal_codes, n_signals, pair_rows, current, baseline,
                                              seasonal, min_count, min_lift, max_p)
                for v, s, k, n, k_base, n_base, p0, p in cells:
                    value, signal = str(names[v]), str(signal_names[s])
                    key = f"{dimension}={value}|{signal}"
                    kept = best.get(key)
                    if kept is not None and (kept.p_value or 1) <= p:
                        continue
                    rows = pair_rows[(signal_codes == s) & (codes[pair_rows] == v) & current[pair_rows]]
                    evidence = items.loc[rows]
                    times = evidence["created_at"].sort_values()
                    excess = max(1, int(round(k - p0 * n)))
                    onset = times.iloc[max(0, int(k) - excess)].isoformat()
                    parents = {"product_category": str(category_of[value])} if dimension == "sku" else {}
                    best[key] = Finding(
                        key=key, kind="trend", dimension=dimension, value=value, signal=signal,
                        severity=self.severity_of(p), owner=signal_owner(signal, self.taxonomy, config),
                        window_hours=hours, count=int(k), volume=int(n), rate=round(k / n, 4),
                        baseline_rate=round(float(p0), 4), baseline_count=int(k_base), baseline_volume=int(n_base),
                        lift=round(float(k / n / p0), 2), p_value=float(p),
                        first_seen=times.iloc[0].isoformat(), onset=onset, examples=self.examples(evidence),
                        feedback_ids=evidence["feedback_id"].tolist()[:5000], parents=parents)
        return list(best.values())

    def _anomalous_cells(self, codes, n_values, signal_codes, n_signals, pair_rows, current, baseline, seasonal,
                         min_count, min_lift, max_p):
        """(value, signal, k, n, k_base, n_base, p0, p) of the cells whose window share is anomalous."""
        prior = self.config.prior_weight
        combo = codes[pair_rows] * n_signals + signal_codes
        in_window = current[pair_rows]
        size = n_values * n_signals
        k_cur = np.bincount(combo[in_window], minlength=size).reshape(n_values, n_signals)
        k_base = np.bincount(combo[~in_window], minlength=size).reshape(n_values, n_signals)
        n_cur = np.bincount(codes[current], minlength=n_values)
        n_base = np.bincount(codes[baseline], minlength=n_values)
        pooled = (k_base.sum(axis=0) + 0.5) / (baseline.sum() + 1.0)
        p0 = (k_base + prior * pooled) / (n_base[:, None] + prior)
        if seasonal is not None and seasonal.any():
            k_season = np.bincount(combo[seasonal[pair_rows]], minlength=size).reshape(n_values, n_signals)
            n_season = np.bincount(codes[seasonal], minlength=n_values)
            p0 = np.maximum(p0, (k_season + prior * pooled) / (n_season[:, None] + prior))
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = k_cur / n_cur[:, None]
        candidate = (k_cur >= min_count) & (rate >= min_lift * p0)
        values, signals = np.nonzero(candidate)
        if not len(values):
            return []
        k = k_cur[values, signals]
        n = n_cur[values]
        p = binom.sf(k - 1, n, p0[values, signals])
        keep = p < max_p[signals]
        return list(zip(values[keep], signals[keep], k[keep], n[keep], k_base[values, signals][keep],
                        n_base[values][keep], p0[values, signals][keep], p[keep]))

    def severity_of(self, p_value: float) -> str:
        reached = [s for s, limit in self.config.severity_p_values.items() if p_value < limit]
        return max(reached, key=severity_rank) if reached else "info"

    # ------------------------------------------------------------------ immediate flags
    def immediate_findings(self, items: pd.DataFrame, pairs: pd.DataFrame, at: datetime) -> list[Finding]:
        """One item with an immediate flag (safety_concern) alerts at once, per SKU."""
        findings = []
        since = at - timedelta(hours=max(self.config.windows_hours))
        recent = (items["created_at"] >= since).to_numpy()
        for flag in self.taxonomy.immediate_flags:
            signal = f"flag:{flag}"
            rows = pairs["row"][(pairs["signal"] == signal).to_numpy()]
            rows = rows[recent[rows.to_numpy()]]
            if rows.empty:
                continue
            flagged = items.loc[rows.to_numpy()]
            for sku, evidence in flagged.groupby("sku"):
                findings.append(Finding(
                    key=f"sku={sku}|{signal}", kind="immediate", dimension="sku", value=str(sku), signal=signal,
                    severity="critical", owner=signal_owner(signal, self.taxonomy, self.config),
                    window_hours=max(self.config.windows_hours), count=len(evidence),
                    volume=int(((items["sku"] == sku).to_numpy() & recent).sum()), rate=0.0, baseline_rate=0.0,
                    baseline_count=0, baseline_volume=0, lift=None, p_value=None,
                    first_seen=evidence["created_at"].min().isoformat(), examples=self.examples(evidence),
                    feedback_ids=evidence["feedback_id"].tolist()[:5000],
                    parents={"product_category": str(evidence["product_category"].iat[0])}))
        return findings

    # ------------------------------------------------------------------ emerging themes
    def emerging_findings(self, items: pd.DataFrame, at: datetime) -> list[Finding]:
        """New clusters of negative items the taxonomy does not cover (no aspect predicted)."""
        from sklearn.cluster import AgglomerativeClustering
        from sklearn.feature_extraction.text import TfidfVectorizer

        config = self.config
        outside = items[(items["sentiment"] == NEGATIVE) & (items["aspects"].map(len) == 0)]
        since = at - timedelta(hours=config.emerging_window_hours)
        current = outside[outside["created_at"] >= since].tail(2000)
        baseline = outside[outside["created_at"] < since].tail(5000)
        if len(current) < config.emerging_min_cluster:
            return []
        vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b", min_df=2,
                                     sublinear_tf=True)
        try:
            vectors = vectorizer.fit_transform(pd.concat([current["text"], baseline["text"]]).fillna(""))
        except ValueError:  # no term appears twice
            return []
        current_vectors, baseline_vectors = vectors[:len(current)], vectors[len(current):]
        dense = current_vectors.toarray()
        keep = np.linalg.norm(dense, axis=1) > 0
        if keep.sum() < config.emerging_min_cluster:
            return []
        labels = np.full(len(current), -1)
        labels[keep] = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                               distance_threshold=1 - config.emerging_similarity).fit_predict(dense[keep])
        terms = np.asarray(vectorizer.get_feature_names_out())
        baseline_hours = max((since - baseline["created_at"].min().to_pydatetime()).total_seconds() / 3600, 0) \
            if len(baseline) else 0
        findings = []
        for label in set(labels[labels >= 0]):
            members = labels == label
            size = int(members.sum())
            if size < config.emerging_min_cluster:
                continue
            centroid = dense[members].mean(axis=0)
            centroid /= np.linalg.norm(centroid) or 1.0
            before = int((baseline_vectors @ centroid >= config.emerging_similarity).sum()) if len(baseline) else 0
            per_window = before * config.emerging_window_hours / baseline_hours if baseline_hours else 0.0
            if per_window > config.emerging_max_baseline_share * size:
                continue
            ranked = terms[np.argsort(centroid)[::-1][:EMERGING_TERMS]][centroid[np.argsort(centroid)[::-1][
                :EMERGING_TERMS]] > 0].tolist()
            top = sorted(ranked[:3])
            evidence = current[members]
            findings.append(Finding(
                key="emerging|" + "+".join(top), kind="emerging", dimension="theme", value=" ".join(top),
                signal="emerging", severity="warning" if size < 2 * config.emerging_min_cluster else "error",
                owner=config.emerging_owner, window_hours=config.emerging_window_hours, count=size,
                volume=len(current), rate=round(size / len(current), 4), baseline_rate=round(per_window, 2),
                baseline_count=before, baseline_volume=len(baseline), lift=None, p_value=None,
                first_seen=evidence["created_at"].min().isoformat(), examples=self.examples(evidence),
                feedback_ids=evidence["feedback_id"].tolist()[:5000], terms=ranked))
        return findings

    # ------------------------------------------------------------------ evidence
    def examples(self, evidence: pd.DataFrame) -> list[dict[str, Any]]:
        """The most confidently negative recent items (silver text is masked already; masked again on output)."""
        picked = evidence.sort_values(["sentiment_score", "created_at"], ascending=False).head(
            self.config.examples_per_alert)
        return [{"feedback_id": r.feedback_id, "text": _short(r.text), "sentiment": r.sentiment,
                 "sentiment_score": None if pd.isna(r.sentiment_score) else round(float(r.sentiment_score), 3),
                 "intent": r.intent, "intent_score": None if pd.isna(r.intent_score) else round(float(r.intent_score), 3),
                 "aspects": list(r.aspects), "flags": list(r.flags), "created_at": r.created_at.isoformat()}
                for r in picked.itertuples()]


def _short(text: Any, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", str(text or "")).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def parse_at(value: Optional[str]) -> datetime:
    """An ISO 8601 evaluation time (naive = UTC); now when None."""
    if value is None:
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--at {value!r} is not an ISO 8601 time (e.g. 2026-12-01T10:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
