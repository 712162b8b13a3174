"""The shipped demo corpus and its seeded generator."""
import itertools
import json
import re
from collections import Counter

import pytest

from processing.demo_data import (
    DEMO_CORPUS_PATH, DEMO_SEED, DEMO_SIZE, FOREIGN, DirtRates, generate_lines, generate_records, luhn_valid, main,
)
from processing.schema import RecordValidationError, validate_record
from processing.taxonomy import load_taxonomy

MIN_PER_LABEL = 40


def _corpus_lines() -> list[str]:
    return DEMO_CORPUS_PATH.read_text(encoding="utf-8").splitlines()


def _parse(lines):
    records, bad_json = [], 0
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad_json += 1
    return records, bad_json


def test_shipped_corpus_is_the_generator_output():
    assert _corpus_lines() == list(generate_lines(DEMO_SIZE, DEMO_SEED))


def test_corpus_covers_every_label_and_has_a_handful_of_malformed_lines():
    records, bad_json = _parse(_corpus_lines())
    valid, reasons = [], Counter()
    for raw in records:
        try:
            valid.append(validate_record(raw))
        except RecordValidationError as error:
            reasons[error.reason.value] += 1
    malformed = bad_json + sum(reasons.values())
    assert len(valid) >= 650 and 5 <= malformed <= 12, (len(valid), bad_json, reasons)
    labeled = [r for r in valid if r.labeled_tasks == ["sentiment", "intent", "aspects"] and r.source == "demo"]
    taxonomy = load_taxonomy()
    intents = Counter(r.intent for r in labeled)
    aspects = Counter(a for r in labeled for a in r.aspects)
    sentiments = Counter(r.sentiment for r in labeled)
    assert all(intents[i] >= MIN_PER_LABEL for i in taxonomy.intents), intents
    assert all(aspects[a] >= MIN_PER_LABEL for a in taxonomy.aspect_names), aspects
    assert all(sentiments[s] >= 100 for s in taxonomy.sentiments), sentiments
    assert sum(len(r.aspects) > 1 for r in labeled) >= 50  # multi-label where natural
    flags = Counter(f for r in labeled for f in r.flags)
    assert all(flags[f] >= 3 for f in taxonomy.flags), flags
    assert len({r.channel for r in valid}) == 7 and len({r.product_category for r in valid}) >= 5
    customers = Counter(r.customer_id for r in valid)
    assert sum(count >= 3 for count in customers.values()) >= 50  # customers with a history
    days = (max(r.created_at for r in valid) - min(r.created_at for r in valid)).days
    assert 55 <= days <= 60
    words = [len(r.text.split()) for r in labeled]
    assert min(words) <= 5 and max(words) >= 90


def test_labels_agree_with_text_and_ratings():
    records, _ = _parse(_corpus_lines())
    for record in records:
        if record.get("labeled_tasks") and isinstance(record.get("star_rating"), int) and record.get("sentiment"):
            stars = record["star_rating"]
            assert {"negative": stars <= 2, "positive": stars >= 4, "neutral": 2 <= stars <= 4}[record["sentiment"]]
        if "refund_intent" in record.get("flags", []):
            assert re.search(r"r\w{0,2}f\w{0,3}d|mo\w*y|back|reembolso|geld|rembours", record["text"], re.I), record["text"]
        if record.get("intent") == "delivery_status" and record.get("language") in (None, "en"):
            assert "shipping_delivery" in record["aspects"]


def test_corpus_carries_the_dirt_processing_must_handle():
    records, _ = _parse(_corpus_lines())
    texts = [r.get("text") for r in records if isinstance(r.get("text"), str)]
    cards = [m for t in texts for m in re.findall(r"\b(?:\d[ -]?){15}\d\b", t)]
    assert cards and all(luhn_valid(c) for c in cards)
    assert sum("@" in t and re.search(r"\w@\w+\.com", t) is not None for t in texts) >= 2
    assert sum(bool(re.search(r"<(p|br|b|script)\b", t)) for t in texts) >= 5
    pairs = Counter((r.get("customer_id"), r.get("text")) for r in records)
    assert sum(c - 1 for c in pairs.values() if c > 1) >= 5  # exact resubmissions
    assert sum(r.get("labeled_tasks") == [] for r in records) >= 15  # spam / gibberish
    foreign = [t for t in texts if any(f[1].lower() in t.lower() for f in FOREIGN)]
    assert len(foreign) >= 25


def test_generator_is_deterministic_streaming_and_keeps_the_dirt_rates():
    first = list(itertools.islice(generate_records(3000, 7), 3000))
    assert first == list(generate_records(3000, 7))
    assert first != list(generate_records(3000, 8))
    # ids are unique except the deliberately invalid duplicate-id records
    assert 3000 - len({r["feedback_id"] for r in first}) <= 0.008 * 3000
    spam = sum(r.get("labeled_tasks") == [] for r in first) / len(first)
    assert 0.015 < spam < 0.05
    lines = list(generate_lines(2000, 7, DirtRates(bad_json_line=0.01)))
    assert sum(1 for line in lines if not _is_json(line)) == 20


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


def test_cli_writes_the_requested_lines(tmp_path, caplog):
    out = tmp_path / "big.jsonl"
    with caplog.at_level("INFO"):
        assert main(["--n", "500", "--seed", "3", "--out", str(out), "--progress-every", "200"]) == 0
    assert len(out.read_text().splitlines()) == 500
    assert any("lines/s" in message for message in caplog.messages)


def test_negative_n_is_rejected():
    with pytest.raises(ValueError):
        generate_records(-1, 0)
