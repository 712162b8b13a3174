"""A generated multi-day feedback stream with injected incidents, and the lexicon scorer that labels it.

The stream: per SKU a realistic daily volume (log-normal across SKUs), weekday seasonality and a
diurnal profile, Poisson noise (processing.feedback_stream, the arrivals the demo stream uses too), a
stable mix of sentiments and aspects. Incidents add complaints on
top from their onset: a SKU defect spike, a shipping delay in one region, packaging damage in one
region, a listing mismatch, a single safety report, a new theme outside the taxonomy. Each incident
names the owner and playbook a right alert must carry.

`LexiconScorer` labels generated texts from their phrases (the phrase tables below): the scenario
benchmark measures detection and routing, so it scores with the generator's ground truth by default
(`benchmarks/alert_scenario.py --model-dir` scores with a trained model instead).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from processing.feedback_stream import HOURLY_SHARE, hourly_arrivals, sku_daily_volumes

CATEGORIES = ("footwear", "kitchen", "toys", "apparel", "electronics")
REGIONS = ("EU", "UK", "US", "APAC")
CHANNELS = ("review", "email", "chat")

PHRASES: dict[str, list[str]] = {
    "product_quality": ["it broke after two days", "the stitching came apart", "stopped working within a week",
                        "the handle snapped off", "poor build quality, it cracked"],
    "sizing_fit": ["runs two sizes small", "way too big even in my usual size", "the fit is odd around the waist"],
    "shipping_delivery": ["the parcel arrived a week late", "delivery never showed up on the promised day",
                          "tracking has not moved for days"],
    "packaging": ["the box was crushed and torn", "it came in a damaged package with items loose",
                  "the packaging was ripped open on arrival"],
    "listing_accuracy": ["the colour is nothing like the photos", "not as described on the product page",
                         "the description promised features it does not have"],
    "customer_support": ["support never answered my emails", "the agent was rude on the phone"],
    "pricing_value": ["far too expensive for what it is", "hidden fees at checkout"],
}
POSITIVE = ["love it, works great", "excellent quality, very happy", "exactly what I wanted", "great value, recommend"]
NEUTRAL = ["it is okay I guess", "arrived, have not tried it yet", "average product"]
SAFETY = "it overheated and caught fire on the counter, my hand got burned"
NEW_THEME = ["the new app qr login keeps rejecting my code", "cannot sign in, app qr login code expired again",
             "app qr login loop, the code never works"]
FILLER = ["", " honestly", " to be fair", " again", " this time", " sadly", " as usual"]
BASE_ASPECTS = {"product_quality": 0.25, "sizing_fit": 0.14, "shipping_delivery": 0.2, "packaging": 0.08,
                "listing_accuracy": 0.07, "customer_support": 0.12, "pricing_value": 0.14}


@dataclass
class Incident:
    name: str
    kind: str
    onset: datetime
    per_hour: float
    """Extra complaints per hour from the onset (safety: one item)."""
    aspect: Optional[str] = None
    sku: Optional[str] = None
    region: Optional[str] = None
    expected_key: str = ""
    expected_owner: str = ""
    expected_playbook: str = ""
    duration_hours: float = 48.0
    min_volume: int = 5
    """Items the detector needs before it can alert (the playbook's / config's min_count)."""


@dataclass
class Scenario:
    start: datetime
    days: int
    skus: list[dict[str, str]]
    volume: dict[str, float]
    incidents: list[Incident] = field(default_factory=list)
    seed: int = 0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


def make_scenario(start: datetime, days: int, n_skus: int, per_sku_daily: float, seed: int = 0,
                  incidents_from_day: Optional[int] = None) -> Scenario:
    rng = np.random.default_rng(seed)
    skus = [{"sku": f"SKU-{i:04d}", "product_category": CATEGORIES[i % len(CATEGORIES)],
             "region": REGIONS[(i // len(CATEGORIES)) % len(REGIONS)]} for i in range(n_skus)]
    daily = sku_daily_volumes(rng, n_skus, per_sku_daily)
    scenario = Scenario(start, days, skus, {s["sku"]: float(v) for s, v in zip(skus, daily)}, seed=seed)
    if incidents_from_day is not None:
        day = start + timedelta(days=incidents_from_day)
        hot = max(scenario.volume, key=scenario.volume.get)
        others = sorted(scenario.volume, key=scenario.volume.get, reverse=True)
        listing = others[1]
        safety_sku = others[-1]
        scenario.incidents = [
            Incident("SKU defect spike", "sku", day + timedelta(hours=9), 1.0, "product_quality", sku=hot,
                     expected_key=f"sku={hot}|aspect:product_quality", expected_owner="product-quality",
                     expected_playbook="product_quality"),
            Incident("regional shipping delay", "region", day + timedelta(days=1, hours=8), 3.0, "shipping_delivery",
                     region="UK", expected_key="region=UK|aspect:shipping_delivery", expected_owner="logistics",
                     expected_playbook="shipping_delivery"),
            Incident("packaging damage in one region", "region", day + timedelta(days=2, hours=10), 1.5, "packaging",
                     region="APAC", expected_key="region=APAC|aspect:packaging", expected_owner="fulfilment",
                     expected_playbook="packaging"),
            Incident("listing mismatch", "sku", day + timedelta(days=3, hours=11), 0.6, "listing_accuracy",
                     sku=listing, expected_key=f"sku={listing}|aspect:listing_accuracy", expected_owner="catalog",
                     expected_playbook="listing_accuracy"),
            Incident("single safety report", "safety", day + timedelta(days=4, hours=14), 0.0, None, sku=safety_sku,
                     expected_key=f"sku={safety_sku}|flag:safety_concern", expected_owner="product-safety",
                     expected_playbook="safety", min_volume=1),
            Incident("new theme outside the taxonomy", "emerging", day + timedelta(days=5, hours=7), 0.8, None,
                     expected_key="emerging|", expected_owner="voice-of-customer", expected_playbook="emerging_theme",
                     min_volume=6),
        ]
    return scenario


def _text(rng: np.random.Generator, choices: Sequence[str]) -> str:
    return choices[int(rng.integers(len(choices)))] + FILLER[int(rng.integers(len(FILLER)))]


def generate(scenario: Scenario, until: Optional[datetime] = None) -> Iterator[dict[str, Any]]:
    """Records in event-time order, hour by hour (deterministic for a seed)."""
    rng = np.random.default_rng(scenario.seed + 1)
    aspects, weights = list(BASE_ASPECTS), np.array(list(BASE_ASPECTS.values()))
    weights = weights / weights.sum()

    def draw(rng: np.random.Generator, sku: dict[str, str]) -> tuple[str, int]:
        roll = rng.random()
        if roll < 0.6:
            return _text(rng, POSITIVE), 5
        if roll < 0.75:
            return _text(rng, NEUTRAL), 3
        return _text(rng, PHRASES[aspects[rng.choice(len(aspects), p=weights)]]), 1

    def incidents(hour: datetime) -> list[tuple[dict[str, str], tuple[str, int]]]:
        batch = []
        for incident in scenario.incidents:
            if not incident.onset <= hour < incident.onset + timedelta(hours=incident.duration_hours):
                continue
            if incident.kind == "safety":
                if hour == incident.onset.replace(minute=0):
                    sku = next(s for s in scenario.skus if s["sku"] == incident.sku)
                    batch.append((sku, (SAFETY, 1)))
                continue
            for _ in range(rng.poisson(incident.per_hour * 24 * HOURLY_SHARE[hour.hour])):
                pool = [s for s in scenario.skus if (incident.sku is None or s["sku"] == incident.sku)
                        and (incident.region is None or s["region"] == incident.region)]
                sku = pool[int(rng.integers(len(pool)))]
                text = _text(rng, NEW_THEME if incident.kind == "emerging" else PHRASES[incident.aspect])
                batch.append((sku, (text, 1)))
        return batch

    arrivals = hourly_arrivals(rng, scenario.skus, scenario.volume, scenario.start, until or scenario.end, draw, incidents)
    for counter, (created, sku, (text, stars)) in enumerate(arrivals, start=1):
        yield {"feedback_id": f"sc-{scenario.seed}-{counter:07d}", "text": text,
               "channel": CHANNELS[int(rng.integers(len(CHANNELS)))], "created_at": created.isoformat(),
               "customer_id": f"cust-{int(rng.integers(10**6)):06d}", "star_rating": stars, **sku}


class LexiconScorer:
    """Labels generated texts by their phrases; the prediction dict of inference.predictor."""

    def __init__(self, name: str = "scenario-lexicon", version: str = "1"):
        self.model = {"name": name, "version": version, "runtime": "lexicon"}
        self.aspect_patterns = {a: re.compile("|".join(re.escape(p) for p in phrases)) for a, phrases in PHRASES.items()}

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        out = []
        for text in texts:
            lower = text.lower()
            aspects = [a for a, pattern in self.aspect_patterns.items() if pattern.search(lower)]
            safety = "caught fire" in lower or "burned" in lower
            negative = bool(aspects) or safety or any(p in lower for p in NEW_THEME) or "app qr login" in lower
            positive = any(p.lower() in lower for p in POSITIVE)
            sentiment = "negative" if negative else ("positive" if positive else "neutral")
            intent = ("delivery_status" if "shipping_delivery" in aspects else "complaint") if negative else \
                ("praise" if positive else "other")
            if safety:
                aspects = ["product_quality"]
            out.append({"sentiment": {"label": sentiment, "score": 0.93 if negative or positive else 0.55},
                        "intent": {"label": intent, "score": 0.9 if negative or positive else 0.5},
                        "aspects": {"labels": aspects, "scores": {a: 0.9 for a in aspects}},
                        "flags": {"safety_concern": safety, "urgency": False, "refund_intent": False, "profanity": False},
                        "model": self.model})
        return out

