"""Taxonomy versioning: legacy v0 labels re-map onto v1 (file lives here: see the report on test ownership)."""
import json

import pytest

from processing.schema import validate_record
from processing.taxonomy import load_taxonomy
from processing.taxonomy_mapping import TaxonomyMappingError, load_mapping, mapping_path, mapping_table, remap_labels

LEGACY = {
    "feedback_id": "legacy-1", "text": "Box was crushed and the mug inside broke. I want my money back.",
    "channel": "email", "created_at": "2025-04-02T10:00:00Z", "source": "legacy_tool",
    "sentiment": "mixed", "intent": "return_refund", "aspects": ["delivery", "product"],
    "flags": ["urgent"], "labeled_tasks": ["sentiment", "intent", "aspects"],
    "remediation_status": "closed", "taxonomy_version": "0",
}


def test_every_v0_label_has_a_v1_target():
    mapping = load_mapping("0", "1")
    v0, v1 = load_taxonomy("0"), load_taxonomy("1")
    assert set(mapping.tables["intent"]) == set(v0.intents)
    assert set(mapping.tables["intent"].values()) <= set(v1.intents)
    assert {row["task"] for row in mapping_table("0", "1")} == {"sentiment", "intent", "aspects", "flags",
                                                                 "remediation_status"}


def test_legacy_record_remaps_to_a_valid_v1_record():
    remapped = remap_labels(LEGACY, "0", "1")
    assert remapped["sentiment"] == "neutral"
    assert remapped["intent"] == "refund_request"  # split by the text rule
    assert "refund_intent" in remapped["flags"] and "urgency" in remapped["flags"]
    assert remapped["aspects"] == ["shipping_delivery", "packaging", "product_quality"]
    assert remapped["remediation_status"] == "resolved" and remapped["taxonomy_version"] == "1"
    validate_record(remapped)
    assert LEGACY["intent"] == "return_refund"  # the input is not modified


def test_split_labels_follow_the_text():
    exchange = remap_labels(dict(LEGACY, text="Can I swap it for a bigger one?", aspects=["fit"], flags=[]), "0", "1")
    assert exchange["intent"] == "return_exchange" and exchange["aspects"] == ["sizing_fit"]
    assert exchange["flags"] == []
    change = remap_labels(dict(LEGACY, intent="order_change", text="Please change the colour to red"), "0", "1")
    assert change["intent"] == "other"
    cancel = remap_labels(dict(LEGACY, intent="order_change", text="Please cancel it"), "0", "1")
    assert cancel["intent"] == "cancellation"


def test_identity_and_unlabeled_records():
    same = remap_labels({"feedback_id": "x", "intent": "praise", "taxonomy_version": "1"}, "1", "1")
    assert same["intent"] == "praise"
    bare = remap_labels({"feedback_id": "y", "text": "hi", "taxonomy_version": "0"}, "0", "1")
    assert bare["taxonomy_version"] == "1" and bare.get("intent") is None and bare["labeled_tasks"] == []


def test_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(TaxonomyMappingError, match="not a v0 label"):
        remap_labels(dict(LEGACY, intent="refund_request"), "0", "1")
    with pytest.raises(TaxonomyMappingError, match="labeled in v0"):
        remap_labels(LEGACY, "1", "1")
    with pytest.raises(TaxonomyMappingError, match="back"):
        remap_labels(dict(LEGACY, taxonomy_version="1", intent="praise", aspects=[], flags=[],
                          sentiment="neutral", remediation_status="new"), "1", "0")
    with pytest.raises(TaxonomyMappingError, match="no mapping"):
        remap_labels(dict(LEGACY, taxonomy_version="1", intent="praise", aspects=[], flags=[],
                          sentiment="neutral", remediation_status="new"), "1", "2")


def test_an_incomplete_mapping_file_is_rejected(tmp_path, monkeypatch):
    import processing.taxonomy_mapping as module

    raw = json.loads(mapping_path("0", "1").read_text())
    del raw["intent"]["billing"]
    for name in ("taxonomy_v0.json", "taxonomy_v1.json"):
        (tmp_path / name).write_text((module.TAXONOMY_DIR / name).read_text())
    (tmp_path / "mapping_v0_to_v1.json").write_text(json.dumps(raw))
    monkeypatch.setattr(module, "TAXONOMY_DIR", tmp_path)
    module.load_mapping.cache_clear()
    try:
        with pytest.raises(TaxonomyMappingError, match="billing"):
            module.load_mapping("0", "1")
    finally:
        monkeypatch.undo()
        module.load_mapping.cache_clear()


def test_unmapped_labels_reports_labels_some_text_would_drop():
    """Every v0 label reaches v1 whatever the text; a null target (table or rule) is reported, not dropped."""
    import dataclasses

    from processing.taxonomy_mapping import _step_targets, unmapped_labels

    v0 = load_taxonomy("0")
    every = {"sentiment": list(v0.sentiments), "intent": list(v0.intents), "aspects": list(v0.aspect_names)}
    assert unmapped_labels({task: labels for task, labels in every.items() if task == "aspects"}, "0", "1") == []
    for task in ("sentiment", "intent"):
        assert all(unmapped_labels({task: label}, "0", "1") == [] for label in every[task])
    mapping = load_mapping("0", "1")
    assert set(_step_targets(mapping, "intent", "return_refund")) == {"return_exchange", "refund_request"}
    ruled_out = dataclasses.replace(mapping, rules=(*mapping.rules, {"task": "intent", "from": "billing", "to": None}))
    assert _step_targets(ruled_out, "intent", "billing") == ["account_payment", None]
    with pytest.raises(TaxonomyMappingError, match="back"):
        unmapped_labels({"intent": "praise"}, "1", "0")
