"""Adapters from the third-party labeled data sets onto our feedback event and taxonomy.

Each adapter reads one file of `../shared/data/external/` in place (the data is not ours to
redistribute: it is never copied into the repository) and streams raw `FeedbackRecord`-shaped
dicts. `labeled_tasks` names exactly the tasks the source labels for that row; every other
label is left null so training masks its loss. Rows the source has but we cannot use (e.g. no
text) are still yielded, so validation quarantines them with a reason instead of dropping them
silently. The label mappings are documented in docs/data_sources.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

import pandas as pd

from processing.config import ProcessingConfig

EXTERNAL_DATA_ENV = "FBRAIN_EXTERNAL_DATA"
DEFAULT_EXTERNAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
# Sources without timestamps get a synthetic, deterministic created_at: this origin plus one
# minute per row, so that time-based splits and point-in-time features still have an order.
SYNTHETIC_TIME_ORIGIN = datetime(2020, 1, 1, tzinfo=timezone.utc)

# ---------------------------------------------------------------- label mappings (documented)
CLOTHING_STARS_TO_SENTIMENT = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}

AIRLINE_REASON_TO_ASPECT: dict[str, Optional[str]] = {
    "Customer Service Issue": "customer_support",
    "Flight Attendant Complaints": "customer_support",
    "longlines": "customer_support",
    "Late Flight": "shipping_delivery",
    "Lost Luggage": "shipping_delivery",
    "Damaged Luggage": "shipping_delivery",
    "Bad Flight": "product_quality",
    # No aspect of ours fits these: the row is not labeled for aspects.
    "Cancelled Flight": None,
    "Flight Booking Problems": None,
    "Can't Tell": None,
}

BITEXT_INTENT_MAP = {
    "cancel_order": "cancellation",
    "change_order": "other",
    "place_order": "other",
    "track_order": "delivery_status",
    "delivery_period": "delivery_status",
    "delivery_options": "question",
    "complaint": "complaint",
    "review": "other",
    "check_invoice": "account_payment",
    "get_invoice": "account_payment",
    "payment_issue": "account_payment",
    "check_payment_methods": "question",
    "check_refund_policy": "question",
    "check_cancellation_fee": "question",
    "get_refund": "refund_request",
    "track_refund": "refund_request",
    "create_account": "account_payment",
    "delete_account": "account_payment",
    "edit_account": "account_payment",
    "switch_account": "account_payment",
    "recover_password": "account_payment",
    "registration_problems": "account_payment",
    "contact_customer_service": "other",
    "contact_human_agent": "other",
    "newsletter_subscription": "other",
    "change_shipping_address": "other",
    "set_up_shipping_address": "other",
}

SEMEVAL_ENTITY_TO_ASPECT = {"SUPPORT": "customer_support", "WARRANTY": "customer_support", "SHIPPING": "shipping_delivery"}
SEMEVAL_ATTRIBUTE_TO_ASPECT = {"PRICE": "pricing_value", "QUALITY": "product_quality",
                               "OPERATION_PERFORMANCE": "product_quality"}

COMPLAINT_RANDOM_DOMAINS = ("random_reply", "random_tweet")


def semeval_category_aspects(category: str) -> list[str]:
    """Our aspects for one SemEval ENTITY#ATTRIBUTE category (possibly none, possibly two)."""
    entity, _, attribute = category.partition("#")
    aspects = []
    for aspect in (SEMEVAL_ENTITY_TO_ASPECT.get(entity), SEMEVAL_ATTRIBUTE_TO_ASPECT.get(attribute)):
        if aspect and aspect not in aspects:
            aspects.append(aspect)
    return aspects


# ---------------------------------------------------------------- helpers
def external_data_dir(config: Optional[ProcessingConfig] = None) -> Path:
    """Where the external data sets are: config, then $FBRAIN_EXTERNAL_DATA, then ../shared."""
    configured = (config or ProcessingConfig()).external_data_dir or os.environ.get(EXTERNAL_DATA_ENV, "")
    return Path(configured) if configured else DEFAULT_EXTERNAL_DIR


def _pseudonym(prefix: str, value: str) -> str:
    # Source user names are personal data: keep them linkable (customer history) but not readable.
    return f"{prefix}-{hashlib.blake2b(value.encode('utf-8'), digest_size=6).hexdigest()}"


def _synthetic_time(row_number: int) -> str:
    return (SYNTHETIC_TIME_ORIGIN + timedelta(minutes=row_number)).isoformat().replace("+00:00", "Z")


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")


def _read_csv_rows(path: Path, limit: Optional[int], chunk_rows: int, **read_kwargs) -> Iterator[tuple[int, dict]]:
    """(row number, row dict) from a CSV, read in chunks (a real CSV parser: quoted newlines)."""
    row_number = 0
    reader = pd.read_csv(path, chunksize=chunk_rows, nrows=limit, keep_default_na=True, **read_kwargs)
    for chunk in reader:
        for row in chunk.to_dict("records"):
            yield row_number, row
            row_number += 1


def _read_jsonl_rows(path: Path, limit: Optional[int]) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as handle:
        for row_number, line in enumerate(handle):
            if limit is not None and row_number >= limit:
                return
            yield row_number, json.loads(line)


# ---------------------------------------------------------------- adapters
def _clothing(path: Path, limit: Optional[int], chunk_rows: int) -> Iterator[dict]:
    for row_number, row in _read_csv_rows(path, limit, chunk_rows):
        rating = row.get("Rating")
        department, clothing_class = _text(row.get("Department Name")), _text(row.get("Class Name"))
        record = {
            "feedback_id": f"clothing-{int(row['Unnamed: 0'])}",
            "source": "womens_clothing_reviews",
            "channel": "review",
            "created_at": _synthetic_time(row_number),
            "text": _text(row.get("Review Text")),
            "sku": f"CLO-{int(row['Clothing ID'])}",
            "product_category": f"apparel/{_slug(clothing_class or department or 'unknown')}",
            "language": "en",
        }
        title = _text(row.get("Title"))
        if title:
            record["title"] = title
        if rating in CLOTHING_STARS_TO_SENTIMENT:
            record.update(star_rating=int(rating), sentiment=CLOTHING_STARS_TO_SENTIMENT[int(rating)],
                          labeled_tasks=["sentiment"])
        yield record


def _airline(path: Path, limit: Optional[int], chunk_rows: int) -> Iterator[dict]:
    seen_ids: set[int] = set()  # 155 tweet ids appear twice in the source: keep the first
    for _, row in _read_csv_rows(path, limit, chunk_rows):
        tweet_id = int(row["tweet_id"])
        if tweet_id in seen_ids:
            continue
        seen_ids.add(tweet_id)
        created = datetime.strptime(row["tweet_created"], "%Y-%m-%d %H:%M:%S %z").astimezone(timezone.utc)
        record = {
            "feedback_id": f"airline-{tweet_id}",
            "source": "airline_tweets",
            "channel": "social",
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "text": _text(row.get("text")),
            "customer_id": _pseudonym("tw", _text(row.get("name"))),
            "sku": f"airline/{_slug(_text(row.get('airline')))}",
            "product_category": "travel/airline",
            "language": "en",
            "sentiment": row["airline_sentiment"],
            "labeled_tasks": ["sentiment"],
        }
        aspect = AIRLINE_REASON_TO_ASPECT.get(_text(row.get("negativereason")))
        if record["sentiment"] == "negative" and aspect:
            record["aspects"] = [aspect]
            record["labeled_tasks"].append("aspects")
        yield record


def _bitext(path: Path, limit: Optional[int], chunk_rows: int) -> Iterator[dict]:
    for row_number, row in _read_csv_rows(path, limit, chunk_rows):
        source_intent = _text(row.get("intent"))
        record = {
            "feedback_id": f"bitext-{row_number}",
            "source": "bitext_customer_support",
            "channel": "chat",
            "created_at": _synthetic_time(row_number),
            "text": _text(row.get("instruction")),
            "language": "en",
        }
        if source_intent in BITEXT_INTENT_MAP:
            record.update(intent=BITEXT_INTENT_MAP[source_intent], labeled_tasks=["intent"])
        yield record


def _semeval(path: Path, limit: Optional[int], chunk_rows: int) -> Iterator[dict]:
    split = "test" if "test" in path.stem else "train"
    for row_number, row in _read_jsonl_rows(path, limit):
        opinions = row.get("Opinions") or []
        record = {
            "feedback_id": f"semeval16-laptops-{split}-{row['id']}",
            "source": f"semeval2016_laptops_{split}",
            "channel": "review",
            "created_at": _synthetic_time(row_number),
            "text": _text(row.get("text")),
            "customer_id": _pseudonym("semeval", str(row["rid"])),
            "sku": f"laptop/{str(row['rid']).split('_')[0]}",
            "product_category": "electronics/laptop",
            "language": "en",
            "labeled_tasks": [],
        }
        if row.get("OutOfScope") != "TRUE":
            # Annotators tagged every in-scope sentence's categories, so the aspect set is complete.
            aspects: list[str] = []
            for opinion in opinions:
                aspects.extend(a for a in semeval_category_aspects(opinion["category"]) if a not in aspects)
            record["aspects"] = aspects
            record["labeled_tasks"].append("aspects")
            polarities = {opinion["polarity"] for opinion in opinions}
            if len(polarities) == 1:  # sentence sentiment only where all opinions agree
                record["sentiment"] = polarities.pop()
                record["labeled_tasks"].insert(0, "sentiment")
        yield record


def _complaints(path: Path, limit: Optional[int], chunk_rows: int) -> Iterator[dict]:
    names = ["tweet_id", "text", "complaint", "domain"]
    for row_number, row in _read_csv_rows(path, limit, chunk_rows, header=None, names=names):
        domain = _text(row.get("domain"))
        record = {
            "feedback_id": f"complaint-tweet-{int(row['tweet_id'])}",
            "source": "complaints_social_media",
            "channel": "social",
            "created_at": _synthetic_time(row_number),
            "text": _text(row.get("text")),
            "product_category": domain,
            "language": "en",
            "labeled_tasks": [],
        }
        if int(row["complaint"]) == 1:
            record.update(intent="complaint", sentiment="negative", labeled_tasks=["sentiment", "intent"])
        elif domain in COMPLAINT_RANDOM_DOMAINS:
            # Random tweets not addressed to a brand: no customer intent at all.
            record.update(intent="other", labeled_tasks=["intent"])
        yield record


@dataclass(frozen=True)
class Adapter:
    """One external data set: where its files are, what it labels, how to read it."""

    name: str
    folder: str
    splits: dict[str, str]
    """Split name -> file under the folder ('all' when the source has no official split)."""
    labeled_tasks: tuple[str, ...]
    """Tasks the source labels (some rows carry a subset, see docs/data_sources.md)."""
    licence: str
    reader: Callable[[Path, Optional[int], int], Iterator[dict]]

    def path(self, split: str = "", root: Optional[Path] = None) -> Path:
        split = split or next(iter(self.splits))
        if split not in self.splits:
            raise ValueError(f"{self.name} has splits {sorted(self.splits)}, not {split!r}")
        return (root or external_data_dir()) / self.folder / self.splits[split]

    def iter_records(self, path: Optional[Path] = None, limit: Optional[int] = None,
                     config: Optional[ProcessingConfig] = None) -> Iterator[dict]:
        """Raw records from path: a file, or the data set's folder (every split, in order).

        Default: the data set's folder under the external data root. `limit` caps rows per file.
        """
        config = config or ProcessingConfig()
        path = Path(path) if path else external_data_dir(config) / self.folder
        if path.is_dir():
            files = [path / name for name in self.splits.values()]
        else:
            files = [path]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{self.name}: {missing} do not exist (see docs/data_sources.md)")
        return (record for f in files for record in self.reader(f, limit, config.adapter_chunk_rows))


ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        Adapter("womens_clothing_reviews", "womens_ecommerce_clothing_reviews",
                {"all": "Womens_Clothing_E-Commerce_Reviews.csv"}, ("sentiment",),
                "CC0 (Kaggle, reported); repo MIT for code", _clothing),
        Adapter("airline_tweets", "twitter_us_airline_sentiment", {"all": "Tweets.csv"}, ("sentiment", "aspects"),
                "CC BY-NC-SA 4.0 (Kaggle, reported): non-commercial", _airline),
        Adapter("bitext_customer_support", "bitext_customer_support",
                {"all": "Bitext_Sample_Customer_Support_Training_Dataset.csv"}, ("intent",), "CDLA-Sharing-1.0",
                _bitext),
        Adapter("semeval2016_laptops", "semeval2016_laptops_absa", {"train": "train.jsonl", "test": "test_gold.jsonl"},
                ("sentiment", "aspects"), "not stated (META-SHARE terms unchecked)", _semeval),
        Adapter("complaints_social_media", "complaints_social_media", {"all": "complaints-data.csv"},
                ("sentiment", "intent"), "not stated (cite Preotiuc-Pietro et al., ACL 2019)", _complaints),
    )
}


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[name]


def iter_records(name: str, path: Optional[Path] = None, limit: Optional[int] = None) -> Iterator[dict]:
    """Raw records of the named data set (see ADAPTERS)."""
    return get_adapter(name).iter_records(path, limit)


def load_split(name: str, split: str = "", root: Optional[Path] = None, limit: Optional[int] = None) -> list[dict]:
    """All records of one split of a data set ('train' / 'test' for SemEval, 'all' otherwise)."""
    adapter = get_adapter(name)
    return list(adapter.iter_records(adapter.path(split, root), limit))
