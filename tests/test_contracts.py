import pytest

from processing.schema import FeedbackRecord, ReasonCode, RecordValidationError, model_input_text, validate_record
from processing.taxonomy import load_taxonomy
from pipelines.config import ConfigError, load_config

GOOD = {"feedback_id": "f1", "text": "Zip broke after a day", "channel": "review",
        "created_at": "2026-11-01T10:00:00Z", "sentiment": "negative", "labeled_tasks": ["sentiment"]}


def test_taxonomy_has_the_brief_domains_with_owners():
    taxonomy = load_taxonomy()
    assert set(taxonomy.aspect_names) == {"product_quality", "sizing_fit", "shipping_delivery", "packaging",
                                          "listing_accuracy", "customer_support", "pricing_value"}
    assert taxonomy.owner_of("shipping_delivery") == "logistics"
    assert taxonomy.label_maps()["sentiment"] == ["negative", "neutral", "positive"]
    with pytest.raises(ValueError, match="known versions"):
        load_taxonomy("99")


def test_valid_record_parses_with_timezone():
    record = validate_record(GOOD)
    assert isinstance(record, FeedbackRecord) and record.created_at.tzinfo is not None


@pytest.mark.parametrize("change, reason", [
    ({"text": "   "}, ReasonCode.text_empty),
    ({"text": "x" * 30}, ReasonCode.text_too_long),
    ({"star_rating": "five"}, ReasonCode.wrong_type),
    ({"sentiment": "furious"}, ReasonCode.unknown_label),
    ({"created_at": "yesterday"}, ReasonCode.wrong_type),
])
def test_invalid_records_carry_reason_codes(change, reason):
    with pytest.raises(RecordValidationError) as info:
        validate_record({**GOOD, **change}, max_text_chars=25)
    assert info.value.reason == reason


def test_missing_field_and_label_mask_consistency():
    with pytest.raises(RecordValidationError) as info:
        validate_record({k: v for k, v in GOOD.items() if k != "channel"})
    assert info.value.reason == ReasonCode.missing_field and info.value.field == "channel"
    with pytest.raises(RecordValidationError):
        validate_record({**GOOD, "labeled_tasks": ["intent"]})


def test_config_overrides_are_typed_and_checked():
    config = load_config(overrides=["training.epochs=2", "training.learning_rate=1e-4"])
    assert config.training.epochs == 2 and config.training.learning_rate == 1e-4
    with pytest.raises(ConfigError, match="valid integer"):
        load_config(overrides=["training.epochs=many"])
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(overrides=["training.nope=1"])


@pytest.mark.parametrize("title,expected", [
    (None, "It tore."),
    ("", "It tore."),
    ("  Poor quality ", "Poor quality. It tore."),
    ("Never again!", "Never again! It tore."),
    ("Verdict:", "Verdict: It tore."),
])
def test_model_input_puts_the_title_in_front_of_the_text(title, expected):
    assert model_input_text("It tore.", title) == expected
