"""Reviewers' corrections flow back into the training data (processing.corrections + the merge pass)."""
from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from processing import lake
from processing.config import ProcessingConfig
from processing.corrections import (LAST_TRAINING_MARKER, STATE_DIR, Correction, CorrectionIndex, parse_timestamp,
                                    read_corrections)
from processing.feature_engineering import main, run
from processing.sharding import ShardSpec
from test_processing_lake import write_malformed_input

import monitoring.corrections as monitoring_corrections
from monitoring.config import MonitoringConfig
from monitoring.corrections import (LocalCorrectionStore, S3CorrectionStore, count_since_last_training,
                                    last_training_time, mark_training_started, record_correction)

SPLITS = ("train", "validation", "test")


def _examples(out: Path) -> dict[str, dict]:
    rows = {}
    for split in SPLITS:
        for line in (out / split / "examples.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            rows[row["feedback_id"]] = row
    return rows


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def record_corrections(folder: Path) -> None:
    """Corrections as `fbrain monitor corrections add` stores them, plus a few no one can use."""
    store = LocalCorrectionStore(folder)
    # pii-1 is labeled for sentiment only (negative): two corrections, the later one wins for sentiment,
    # and it adds intent, which the row was not labeled for.
    store.append(Correction("pii-1", "ana", {"sentiment": "positive"}, created_at="2026-11-01T10:00:00+00:00",
                            correction_id="a-first"))
    store.append(Correction("pii-1", "bo", {"sentiment": "neutral", "intent": "complaint"},
                            created_at="2026-11-02T10:00:00+00:00", correction_id="b-later"))
    # Same instant: the larger correction_id decides, whatever the file order.
    store.append(Correction("ok-1", "bo", {"aspects": ["product_quality"]}, created_at="2026-11-03T10:00:00Z",
                            correction_id="z-tie"))
    store.append(Correction("ok-1", "ana", {"aspects": ["packaging"]}, created_at="2026-11-03T10:00:00Z",
                            correction_id="a-tie"))
    # Not in silver: unknown id, spam, and a near-duplicate removed by the merge.
    for feedback_id in ("no-such-id", "spam-1", "near-b"):
        store.append(Correction(feedback_id, "cy", {"sentiment": "negative"}, created_at="2026-11-04T10:00:00Z"))
    (folder / "2026" / "11" / "05").mkdir(parents=True)
    (folder / "2026" / "11" / "05" / "broken.jsonl").write_text(
        'not json\n{"feedback_id": "ok-1", "reviewer": "dee", "labels": {"sentiment": "furious"}}\n'
        '{"feedback_id": "ok-1", "labels": {"sentiment": "positive"}}\n', encoding="utf-8")
    # An older taxonomy version: its labels are mapped to this run's (v0 mixed -> neutral; return_refund ->
    # return_exchange, the text not asking for money back).
    store.append(Correction("dup-id", "ed", {"sentiment": "mixed", "intent": "return_refund"},
                            created_at="2026-11-05T10:00:00Z", correction_id="v0-mapped", taxonomy_version="0"))
    mark_training_started(store)  # markers under _state/ are never read as corrections


@pytest.fixture(scope="module")
def corrected_run(tmp_path_factory):
    """Pass 1 (--stage-only), then the pipeline's merge (--merge-only --corrections-dir) through the entry point."""
    root = tmp_path_factory.mktemp("corrected")
    write_malformed_input(root / "raw")
    record_corrections(root / "corrections")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(root / "feature_store"))
    try:
        config = ProcessingConfig(validation_fraction=0.2, test_fraction=0.2)
        run(root / "raw", root / "staged", config, ShardSpec(0, 1, "none"), stage_only=True)
        assert main(["--merge-only", "--staged-lake-dir", str(root / "staged" / "lake"), "--output-dir",
                     str(root / "out"), "--corrections-dir", str(root / "corrections"),
                     "--set", "processing.validation_fraction=0.2", "--set", "processing.test_fraction=0.2"]) == 0
    finally:
        monkeypatch.undo()
    return root, lake.read_report(root / "out" / "lake" / lake.RUN_REPORT)


def test_latest_correction_wins_and_adds_unlabeled_tasks(corrected_run):
    root, _ = corrected_run
    examples = _examples(root / "out")
    pii = examples["pii-1"]
    assert (pii["sentiment"], pii["intent"]) == ("neutral", "complaint")
    assert pii["labeled_tasks"] == ["sentiment", "intent"], "intent was added, in task order"
    ok = examples["ok-1"]
    assert ok["aspects"] == ["product_quality"] and ok["labeled_tasks"] == ["aspects"]
    mapped = examples["dup-id"]
    assert (mapped["sentiment"], mapped["intent"]) == ("neutral", "return_exchange"), "an older version is mapped"
    assert mapped["labeled_tasks"] == ["sentiment", "intent"]
    untouched = examples["exact-a"]
    assert untouched["labeled_tasks"] == [] and untouched["sentiment"] is None
    silver = lake.read_parquet_folder(root / "out" / "lake" / "silver").set_index("feedback_id")
    assert silver.loc["pii-1", "intent"] == "complaint" and list(silver.loc["pii-1", "labeled_tasks"]) == [
        "sentiment", "intent"]


def test_gold_counts_the_corrected_labels(corrected_run):
    root, _ = corrected_run
    by_sku = pd.read_parquet(root / "out" / "lake" / "gold" / "daily_by_sku.parquet").set_index("sku")
    assert by_sku.loc["SKU-1", "sentiment_neutral_rate"] == 1.0 and by_sku.loc["SKU-1", "sentiment_negative"] == 0
    assert by_sku.loc["SKU-1", "intent_labeled"] == 1 and by_sku.loc["SKU-1", "aspect_product_quality"] == 1


def test_unmatched_and_invalid_corrections_are_counted_and_kept_with_reasons(corrected_run):
    root, report = corrected_run
    summary = report.corrections
    assert summary["source"] == str(root / "corrections")
    assert (summary["read"], summary["applied"], summary["superseded"], summary["unmatched"], summary["invalid"]) == (
        11, 3, 2, 3, 3)
    assert (summary["mapped"], summary["mapped_from"]) == (1, {"0": 1}), "mapped ones are also applied"
    assert summary["invalid_reasons"] == {"invalid_json": 1, "unknown_label": 1, "invalid_fields": 1}
    assert summary["rows_corrected"] == {"sentiment": 2, "intent": 2, "aspects": 1}
    assert summary["tasks_added"] == {"sentiment": 0, "intent": 2, "aspects": 0}
    folder = root / "out" / "lake" / lake.CORRECTIONS
    unmatched = _jsonl(folder / "unmatched.jsonl")
    assert sorted(u["correction"]["feedback_id"] for u in unmatched) == ["near-b", "no-such-id", "spam-1"]
    assert {u["reason"] for u in unmatched} == {"unknown_feedback_id"}
    invalid = _jsonl(folder / "invalid.jsonl")
    assert sorted(i["reason"] for i in invalid) == sorted(summary["invalid_reasons"])
    assert {i["source"] for i in invalid} == {
        "2026/11/05/broken.jsonl:1", "2026/11/05/broken.jsonl:2", "2026/11/05/broken.jsonl:3"}
    assert next(i for i in invalid if i["reason"] == "unknown_label")["feedback_id"] == "ok-1"
    applied = _jsonl(folder / "applied.jsonl")
    assert {(a["feedback_id"], a["task"], a["correction_id"]) for a in applied} == {
        ("pii-1", "sentiment", "b-later"), ("pii-1", "intent", "b-later"), ("ok-1", "aspects", "z-tie"),
        ("dup-id", "sentiment", "v0-mapped"), ("dup-id", "intent", "v0-mapped")}
    assert next(a for a in applied if a["feedback_id"] == "dup-id" and a["task"] == "sentiment")["mapped_from"] == {
        "taxonomy_version": "0", "label": "mixed"}
    assert next(a for a in applied if a["task"] == "sentiment")["previous"] == "negative"


def test_books_still_balance_with_corrections(corrected_run):
    root, report = corrected_run
    report.check_books()
    assert report.bronze == report.silver + report.duplicates + report.near_duplicates + report.spam + report.quarantine
    assert report.silver == 5 and sum(report.splits.values()) == report.silver
    broken = lake.RunReport.from_dict({**report.to_dict(), "corrections": {**report.corrections, "applied": 0}})
    with pytest.raises(lake.BooksDoNotBalance, match="corrections"):
        broken.check_books()
    c = report.corrections
    too_many_mapped = {**c, "mapped": c["applied"] + c["superseded"] + c["unmatched"] + 1}
    with pytest.raises(lake.BooksDoNotBalance, match="mapped"):
        lake.RunReport.from_dict({**report.to_dict(), "corrections": too_many_mapped}).check_books()


def test_history_features_keep_the_labels_known_at_event_time(tmp_path, monkeypatch):
    """A correction made later must not leak into a later row's as-of "prior complaints" feature."""
    raw = tmp_path / "raw"
    raw.mkdir()
    records = [
        {"feedback_id": "early", "text": "The strap came off after one day of normal use at work.", "channel": "review",
         "created_at": "2026-10-01T09:00:00Z", "sku": "SKU-9", "intent": "question", "labeled_tasks": ["intent"]},
        {"feedback_id": "late", "text": "Ordered the blue one and it is a lovely shade, very happy overall.",
         "channel": "review", "created_at": "2026-10-05T09:00:00Z", "sku": "SKU-9"},
    ]
    (raw / "feedback.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    LocalCorrectionStore(tmp_path / "corrections").append(
        Correction("early", "ana", {"intent": "complaint"}, created_at="2026-11-20T09:00:00Z"))
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "store"))
    config = ProcessingConfig(validation_fraction=0.0, test_fraction=0.0)
    run(raw, tmp_path / "out", config, ShardSpec(0, 1, "none"), corrections_dir=tmp_path / "corrections")
    examples = _examples(tmp_path / "out")
    assert examples["early"]["intent"] == "complaint", "the training label is corrected"
    assert examples["late"]["sku_prior_feedback_count"] == 1
    assert examples["late"]["sku_prior_complaint_count"] == 0, "the correction was not known on 2026-10-05"


def test_no_or_empty_corrections_folder_changes_nothing(tmp_path, monkeypatch, caplog):
    write_malformed_input(tmp_path / "raw")
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "store"))
    config = ProcessingConfig(validation_fraction=0.2, test_fraction=0.2)
    (tmp_path / "empty" / "_state").mkdir(parents=True)
    (tmp_path / "empty" / "_state" / "prefix.json").write_text("{}")  # the placeholder that keeps S3 prefixes alive
    with caplog.at_level(logging.INFO, logger="processing.feature_engineering"):
        without = run(tmp_path / "raw", tmp_path / "a", config, ShardSpec(0, 1, "none"))
        empty = run(tmp_path / "raw", tmp_path / "b", config, ShardSpec(0, 1, "none"), corrections_dir=tmp_path / "empty")
    assert "no --corrections-dir given" in caplog.text and f"none under {tmp_path / 'empty'}" in caplog.text
    assert "no --corrections-state-dir given" in caplog.text, "no marker, and the log says so"
    assert not list(tmp_path.rglob(LAST_TRAINING_MARKER))
    assert without.corrections["read"] == empty.corrections["read"] == 0
    assert _examples(tmp_path / "a") == _examples(tmp_path / "b")
    assert not (tmp_path / "b" / "lake" / lake.CORRECTIONS).exists()


def test_reader_reads_what_the_stores_write_and_skips_markers(tmp_path):
    """Moving the contract to processing changed no stored byte: both stores' files read back as written."""
    root = tmp_path / "s3" / "bucket" / "corrections"  # the local object store's key layout
    local = LocalCorrectionStore(root)
    first = Correction("f1", "ana", {"sentiment": "negative", "aspects": ["packaging"]}, note="box crushed")
    local.append(first)
    mark_training_started(local)

    class FakeS3:
        """Just enough of an S3 client for S3CorrectionStore.append: the object lands in the folder as-is."""

        def put_object(self, Bucket, Key, Body, **_):
            path = tmp_path / "s3" / Bucket / Key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(Body)

    second = Correction("f2", "bo", {"intent": "question"}, created_at="2026-11-23T09:00:00Z")
    S3CorrectionStore(FakeS3(), "bucket", "corrections").append(second)  # .../corrections/2026/11/23/<id>.json
    read = read_corrections(root)
    assert read.invalid == []
    assert sorted(read.corrections, key=lambda c: c.feedback_id) == [first, second]
    assert sorted(c.feedback_id for c in local.iter_corrections()) == ["f1", "f2"]
    stored = next(root.rglob("*.jsonl")).read_text(encoding="utf-8")
    assert json.loads(stored) == {"feedback_id": "f1", "reviewer": "ana",
                                  "labels": {"sentiment": "negative", "aspects": ["packaging"]},
                                  "created_at": first.created_at, "correction_id": first.correction_id,
                                  "note": "box crushed", "taxonomy_version": "1"}


def test_monitoring_keeps_exporting_the_contract_it_no_longer_declares():
    import processing.corrections as contract

    for name in ("Correction", "CorrectionError", "parse_timestamp", "STATE_DIR", "LAST_TRAINING_MARKER"):
        assert getattr(monitoring_corrections, name) is getattr(contract, name)


def test_index_orders_by_time_not_by_text():
    """created_at is compared as a moment: 10:00+02:00 is earlier than 09:00Z."""
    from processing.corrections import CorrectionsRead

    earlier = Correction("f", "a", {"sentiment": "positive"}, created_at="2026-11-01T10:00:00+02:00", correction_id="z")
    later = Correction("f", "b", {"sentiment": "negative"}, created_at="2026-11-01T09:00:00Z", correction_id="a")
    index = CorrectionIndex(CorrectionsRead(corrections=[later, earlier]), "1")
    assert index.latest["f"]["sentiment"] is later


class StubEvents:
    """Just enough of an EventBridge client for record_correction: keeps what was sent, accepts it all."""

    def __init__(self):
        self.sent: list[dict] = []

    def put_events(self, Entries):
        self.sent.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(len(self.sent))} for _ in Entries]}


def test_merge_that_reads_the_corrections_starts_a_new_counting_period(tmp_path, monkeypatch):
    """The retraining event goes out once per period; the merge job ends a period by writing the marker that the
    pipeline uploads to <CorrectionsUri>_state/, so the next threshold sends the next event."""
    write_malformed_input(tmp_path / "raw")
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "feature_store"))
    corrections = tmp_path / "s3" / "bucket" / "corrections"  # the local object store's key layout
    store, events = LocalCorrectionStore(corrections), StubEvents()
    monitoring = MonitoringConfig(corrections_threshold=2)
    first = [record_correction(store, Correction(feedback_id, "ana", {"sentiment": "positive"}), monitoring, events)
             for feedback_id in ("ok-1", "pii-1", "no-such-id")]
    assert [r.event_sent for r in first] == [False, True, False] and len(events.sent) == 1
    assert count_since_last_training(store) == 3

    config = ProcessingConfig(validation_fraction=0.2, test_fraction=0.2)
    run(tmp_path / "raw", tmp_path / "staged", config, ShardSpec(0, 1, "none"), stage_only=True)
    state = tmp_path / "out" / "corrections_state"
    started = datetime.now(timezone.utc)
    assert main(["--merge-only", "--staged-lake-dir", str(tmp_path / "staged" / "lake"), "--output-dir",
                 str(tmp_path / "out"), "--corrections-dir", str(corrections), "--corrections-state-dir", str(state),
                 "--set", "processing.validation_fraction=0.2", "--set", "processing.test_fraction=0.2"]) == 0
    ended = datetime.now(timezone.utc)
    marker = json.loads((state / LAST_TRAINING_MARKER).read_text(encoding="utf-8"))
    assert started <= parse_timestamp(marker["at"]) <= ended
    assert marker["corrections_read"] == 3 and marker["corrections_applied"] == 2
    assert marker["corrections_unmatched"] == 1 and marker["taxonomy_version"] == config.taxonomy_version
    assert [p.name for p in state.iterdir()] == [LAST_TRAINING_MARKER], "only the marker goes back to _state/"

    shutil.copytree(state, corrections / STATE_DIR, dirs_exist_ok=True)  # what the step's output upload does
    assert last_training_time(store) == parse_timestamp(marker["at"])
    assert count_since_last_training(store) == 0, "what the merge read no longer counts"
    again = record_correction(store, Correction("ok-1", "bo", {"intent": "complaint"}), monitoring, events)
    assert (again.since_last_training, again.event_sent) == (1, False)
    reached = record_correction(store, Correction("pii-1", "bo", {"intent": "question"}), monitoring, events)
    assert (reached.since_last_training, reached.event_sent) == (2, True)
    assert len(events.sent) == 2
    assert json.loads(events.sent[1]["Detail"])["last_training"] == parse_timestamp(marker["at"]).isoformat()


def test_marker_needs_the_corrections_it_dates(tmp_path):
    with pytest.raises(ValueError, match="--corrections-state-dir needs --corrections-dir"):
        run(None, tmp_path / "out", ProcessingConfig(), ShardSpec(0, 1, "none"), merge_only=True,
            corrections_state_dir=tmp_path / "state")


# ---------------------------------------------------------------- corrections of an older taxonomy version
def _silver(*rows: dict):
    """A silver part with just the columns CorrectionIndex reads (the others null)."""
    import pyarrow as pa

    defaults = {"title": None, "sentiment": None, "intent": None, "aspects": None, "labeled_tasks": []}
    return pa.Table.from_pylist([{**defaults, **row} for row in rows], schema=lake.SILVER_SCHEMA)


def _index(taxonomy_version: str, *corrections: Correction) -> CorrectionIndex:
    from processing.corrections import CorrectionsRead

    return CorrectionIndex(CorrectionsRead(corrections=[c.validate() for c in corrections]), taxonomy_version)


def _balanced(outcomes) -> bool:
    return outcomes.read == outcomes.applied + outcomes.superseded + len(outcomes.unmatched) + len(outcomes.invalid)


def test_older_version_correction_is_mapped_with_the_rows_text_and_applied():
    """v0 return_refund splits in v1: the row's title and text decide (refund_request when they ask for money)."""
    index = _index("1", Correction("r1", "ana", {"intent": "return_refund", "aspects": ["delivery"]},
                                   correction_id="old", taxonomy_version="0"),
                   Correction("r2", "ana", {"intent": "return_refund"}, taxonomy_version="0"))
    table = index.apply(_silver({"feedback_id": "r1", "text": "The box was crushed.", "title": "Want my money back"},
                                {"feedback_id": "r2", "text": "Can I swap it for a larger size?"}))
    assert table.column("intent").to_pylist() == ["refund_request", "return_exchange"]
    assert table.column("aspects").to_pylist()[0] == ["shipping_delivery", "packaging"], "delivery + the box rule"
    outcomes = index.finish()
    assert (outcomes.applied, outcomes.mapped_from, outcomes.invalid) == (2, {"0": 2}, [])
    assert _balanced(outcomes) and outcomes.summary(None)["mapped"] == 2
    change = next(c for c in outcomes.changes if c["correction_id"] == "old" and c["task"] == "intent")
    assert change["corrected"] == "refund_request"
    assert change["mapped_from"] == {"taxonomy_version": "0", "label": "return_refund"}


def test_a_later_correction_of_the_current_version_still_wins_over_a_mapped_one():
    index = _index("1", Correction("r1", "ana", {"sentiment": "mixed"}, created_at="2026-11-01T09:00:00Z",
                                   taxonomy_version="0"),
                   Correction("r1", "bo", {"sentiment": "positive"}, created_at="2026-11-02T09:00:00Z"))
    table = index.apply(_silver({"feedback_id": "r1", "text": "Fine."}))
    assert table.column("sentiment").to_pylist() == ["positive"]
    outcomes = index.finish()
    assert (outcomes.applied, outcomes.superseded, outcomes.mapped_from) == (1, 1, {"0": 1}) and _balanced(outcomes)


def test_a_label_without_counterpart_is_kept_as_invalid_with_both_versions(monkeypatch):
    """Suppose v1 had dropped v0's order_change (mapped to null): such a correction cannot be carried forward."""
    import dataclasses

    import processing.taxonomy_mapping as taxonomy_mapping

    real = taxonomy_mapping.load_mapping("0", "1")
    tables = {**real.tables, "intent": {**real.tables["intent"], "order_change": None}}
    dropped = dataclasses.replace(real, tables=tables,
                                  rules=tuple(r for r in real.rules if r["from"] != "order_change"))
    monkeypatch.setattr(taxonomy_mapping, "load_mapping", lambda a, b: dropped)
    index = _index("1", Correction("r1", "ana", {"sentiment": "mixed", "intent": "order_change"},
                                   correction_id="lost", taxonomy_version="0"),
                   Correction("r1", "bo", {"sentiment": "mixed"}, correction_id="kept", taxonomy_version="0"))
    table = index.apply(_silver({"feedback_id": "r1", "text": "Please change the colour.", "intent": "question",
                                 "labeled_tasks": ["intent"]}))
    assert table.column("intent").to_pylist() == ["question"] and table.column("sentiment").to_pylist() == ["neutral"]
    outcomes = index.finish()
    (invalid,) = outcomes.invalid
    assert (invalid.reason, invalid.correction_id) == ("unmappable_label", "lost")
    assert "intent='order_change'" in invalid.message and "v0" in invalid.message and "v1" in invalid.message
    assert (outcomes.applied, outcomes.mapped_from) == (1, {"0": 1}) and _balanced(outcomes)
    assert outcomes.summary(None)["invalid_reasons"] == {"unmappable_label": 1}


def test_a_version_no_mapping_leads_from_is_a_mismatch():
    """Mappings only go forward: a v1 correction in a run on v0 names labels v0 cannot be derived into."""
    index = _index("0", Correction("r1", "ana", {"intent": "refund_request"}))
    outcomes = index.finish()
    (invalid,) = outcomes.invalid
    assert invalid.reason == "taxonomy_version_mismatch"
    assert "refund_request" in invalid.message and "v1" in invalid.message and "v0" in invalid.message
    assert _balanced(outcomes) and outcomes.mapped_from == {}


# ---------------------------------------------------------------- the training marker records what was consumed
def test_watermark_covers_what_was_read_ties_by_id_and_old_markers_by_time():
    from processing.corrections import Watermark, training_marker

    at = "2026-11-23T09:00:00+00:00"
    read = [Correction("a", "ana", {"sentiment": "negative"}, created_at="2026-11-23T08:00:00Z", correction_id="a"),
            Correction("b", "ana", {"sentiment": "negative"}, created_at=at, correction_id="b")]
    tie = Correction("c", "bo", {"sentiment": "negative"}, created_at=at, correction_id="c")
    late = Correction("d", "bo", {"sentiment": "negative"}, created_at="2026-11-23T09:00:01Z")
    marker = training_marker(datetime(2026, 11, 23, 10, tzinfo=timezone.utc), Watermark.of(read))
    assert (marker["watermark"], marker["watermark_ids"]) == (at, ["b"])
    watermark = Watermark.from_marker(json.loads(json.dumps(marker)))
    assert [watermark.covers(c) for c in (*read, tie, late)] == [True, True, False, False]
    nothing_read = Watermark.from_marker(training_marker(datetime(2026, 11, 23, 10, tzinfo=timezone.utc),
                                                         Watermark.of([])))
    assert not any(nothing_read.covers(c) for c in (*read, tie, late)), "a run that read none consumed none"
    future = Correction("e", "cy", {"sentiment": "negative"}, created_at="2099-01-01T00:00:00Z")
    capped = Watermark.of([*read, future], not_after=datetime(2026, 11, 23, 10, tzinfo=timezone.utc))
    assert capped.through == parse_timestamp(at), "a future-dated record does not lift the watermark past all"
    old = Watermark.from_marker({"at": at, "corrections_read": 2})  # written before watermarks: counts by time
    assert [old.covers(c) for c in (*read, tie, late)] == [True, True, True, False]
    assert Watermark.from_marker(None) is None


def test_a_correction_recorded_after_the_copy_counts_towards_the_next_retrain(tmp_path, monkeypatch):
    """SageMaker downloads the corrections before the job starts; one recorded in between is dated before the
    marker is written and was never read. The marker's watermark (not its time) leaves it counting as new."""
    write_malformed_input(tmp_path / "raw")
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "feature_store"))
    live = tmp_path / "s3" / "bucket" / "corrections"
    store = LocalCorrectionStore(live)
    for feedback_id in ("ok-1", "pii-1"):
        store.append(Correction(feedback_id, "ana", {"sentiment": "positive"}))
    copied = tmp_path / "opt" / "ml" / "processing" / "input" / "corrections"
    shutil.copytree(live, copied)  # the ProcessingInput download
    unread = Correction("ok-1", "bo", {"intent": "question"})
    store.append(unread)  # recorded after the copy, before the job reads it

    config = ProcessingConfig(validation_fraction=0.2, test_fraction=0.2)
    run(tmp_path / "raw", tmp_path / "staged", config, ShardSpec(0, 1, "none"), stage_only=True)
    state = tmp_path / "out" / "corrections_state"
    assert main(["--merge-only", "--staged-lake-dir", str(tmp_path / "staged" / "lake"), "--output-dir",
                 str(tmp_path / "out"), "--corrections-dir", str(copied), "--corrections-state-dir", str(state),
                 "--set", "processing.validation_fraction=0.2", "--set", "processing.test_fraction=0.2"]) == 0
    marker = json.loads((state / LAST_TRAINING_MARKER).read_text(encoding="utf-8"))
    assert parse_timestamp(unread.created_at) < parse_timestamp(marker["at"]), "a time cut-off would lose it"
    assert parse_timestamp(marker["watermark"]) < parse_timestamp(unread.created_at)
    assert marker["corrections_read"] == 2

    shutil.copytree(state, live / STATE_DIR, dirs_exist_ok=True)  # the step's output upload
    assert count_since_last_training(store) == 1, "the unread correction counts; the two read do not"
    assert last_training_time(store) == parse_timestamp(marker["at"]), "the period is still named by `at`"


def test_a_marker_without_a_watermark_says_so(tmp_path, caplog):
    from processing.corrections import write_training_marker

    with caplog.at_level(logging.WARNING, logger="processing.corrections"):
        path = write_training_marker(tmp_path, datetime(2026, 11, 23, tzinfo=timezone.utc),
                                     corrections_source=str(tmp_path / "never-read"))
    assert "watermark" not in json.loads(path.read_text(encoding="utf-8"))
    assert "without a watermark" in caplog.text
