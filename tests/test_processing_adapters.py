"""External data set adapters: label mappings and counts on a sample of each source."""
from collections import Counter

import pytest

from processing.adapters import (
    ADAPTERS, AIRLINE_REASON_TO_ASPECT, BITEXT_INTENT_MAP, get_adapter, load_split, semeval_category_aspects,
)
from processing.schema import RecordValidationError, validate_record
from processing.taxonomy import load_taxonomy

SAMPLE = 400


def _validate_all(records):
    valid, reasons = [], Counter()
    for raw in records:
        try:
            valid.append(validate_record(raw))
        except RecordValidationError as error:
            reasons[error.reason.value] += 1
    return valid, reasons


def test_mapping_tables_only_name_labels_of_the_taxonomy():
    taxonomy = load_taxonomy()
    assert set(BITEXT_INTENT_MAP.values()) <= set(taxonomy.intents)
    assert {a for a in AIRLINE_REASON_TO_ASPECT.values() if a} <= set(taxonomy.aspect_names)
    assert len(BITEXT_INTENT_MAP) == 27


@pytest.mark.parametrize("category, expected", [
    ("SUPPORT#QUALITY", ["customer_support", "product_quality"]),
    ("LAPTOP#PRICE", ["pricing_value"]),
    ("BATTERY#OPERATION_PERFORMANCE", ["product_quality"]),
    ("SHIPPING#GENERAL", ["shipping_delivery"]),
    ("WARRANTY#GENERAL", ["customer_support"]),
    ("LAPTOP#DESIGN_FEATURES", []),
])
def test_semeval_categories_map_onto_our_aspects(category, expected):
    assert semeval_category_aspects(category) == expected


def test_every_adapter_yields_valid_records_with_exact_labeled_tasks(shared_data_dir):
    for name, adapter in ADAPTERS.items():
        for split in adapter.splits:
            records = load_split(name, split, root=shared_data_dir, limit=SAMPLE)
            assert len(records) > 0.9 * SAMPLE, name
            valid, reasons = _validate_all(records)
            assert set(reasons) <= {"text_empty"}, (name, reasons)
            for record in valid:
                assert set(record.labeled_tasks) <= set(adapter.labeled_tasks), (name, record.labeled_tasks)
                for task in ("sentiment", "intent"):
                    assert (getattr(record, task) is not None) == (task in record.labeled_tasks), (name, record)
                assert (record.aspects is not None) == ("aspects" in record.labeled_tasks), (name, record)


def test_clothing_stars_become_sentiment(shared_data_dir):
    records = load_split("womens_clothing_reviews", root=shared_data_dir, limit=SAMPLE)
    by_star = {}
    for record in records:
        by_star.setdefault(record["star_rating"], set()).add(record["sentiment"])
    assert by_star[1] == by_star[2] == {"negative"} and by_star[3] == {"neutral"}
    assert by_star[4] == by_star[5] == {"positive"}
    assert all(r["channel"] == "review" and r["product_category"].startswith("apparel/") for r in records)
    # the source's rows without text are kept for the quarantine, not dropped
    full = load_split("womens_clothing_reviews", root=shared_data_dir, limit=3000)
    assert len(full) == 3000 and any(r["text"] == "" for r in full)


def test_airline_dedupes_tweet_ids_and_maps_reasons(shared_data_dir):
    records = load_split("airline_tweets", root=shared_data_dir)
    assert len(records) == 14_640 - 155
    assert len({r["feedback_id"] for r in records}) == len(records)
    with_aspects = [r for r in records if "aspects" in r["labeled_tasks"]]
    assert all(r["sentiment"] == "negative" and len(r["aspects"]) == 1 for r in with_aspects)
    assert Counter(r["aspects"][0] for r in with_aspects)["customer_support"] > 3000
    assert all(r["customer_id"].startswith("tw-") for r in records[:50])  # user names pseudonymised
    assert all(r["created_at"].startswith("2015-02-") for r in records)


def test_bitext_intents_are_mapped(shared_data_dir):
    records = load_split("bitext_customer_support", root=shared_data_dir)
    assert len(records) == 4514
    intents = Counter(r["intent"] for r in records)
    assert set(intents) == set(BITEXT_INTENT_MAP.values())
    assert intents["cancellation"] >= 139 and intents["refund_request"] >= 2 * 139


def test_semeval_keeps_the_official_test_split_apart(shared_data_dir):
    train = load_split("semeval2016_laptops", "train", root=shared_data_dir)
    test = load_split("semeval2016_laptops", "test", root=shared_data_dir)
    assert (len(train), len(test)) == (2500, 808)
    assert not {r["feedback_id"] for r in train} & {r["feedback_id"] for r in test}
    assert {r["source"] for r in test} == {"semeval2016_laptops_test"}
    aspects = Counter(a for r in train for a in r.get("aspects") or [])
    assert aspects["pricing_value"] >= 140 and aspects["customer_support"] >= 140
    assert sum(r["labeled_tasks"] == [] for r in train) == 199  # OutOfScope sentences


def test_complaint_tweets(shared_data_dir):
    records = load_split("complaints_social_media", root=shared_data_dir)
    assert len(records) == 3449
    complaints = [r for r in records if r.get("intent") == "complaint"]
    assert len(complaints) == 1232 and all(r["sentiment"] == "negative" for r in complaints)


def test_unknown_names_and_missing_files_fail_clearly(tmp_path):
    with pytest.raises(KeyError, match="known"):
        get_adapter("nope")
    with pytest.raises(ValueError, match="splits"):
        get_adapter("semeval2016_laptops").path("dev")
    with pytest.raises(FileNotFoundError):
        get_adapter("airline_tweets").iter_records(tmp_path / "Tweets.csv")


def test_a_data_set_folder_reads_every_split(shared_data_dir):
    adapter = get_adapter("semeval2016_laptops")
    records = list(adapter.iter_records(shared_data_dir / adapter.folder, limit=5))
    assert [r["source"] for r in records] == ["semeval2016_laptops_train"] * 5 + ["semeval2016_laptops_test"] * 5
