"""End to end: a malformed input file through the FeatureEngineering entry point."""
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from processing import lake
from processing.config import ProcessingConfig
from processing.feature_engineering import main, run
from processing.lake import BooksDoNotBalance, RunReport
from processing.schema import EXAMPLE_COLUMNS
from processing.sharding import ShardSpec

T0 = "2026-10-01T09:00:00Z"
PII_TEXT = (
    "<p>Hi team, my name is Anna Kowalski.</p><script>var stolen = document.cookie;</script>"
    "<style>p {color: red}</style> Email anna.k@example.com or call +1 (555) 123-4567. "
    "I paid with 4111 1111 1111 1111 for order #ORD-778812, account no: AC-99812. "
    "Ship to 1234 Elm Street, Apt 5B please. Details at https://shop.example.com/orders?id=5. "
    "Thanks, Maria"
)
PII_STRINGS = ["Anna", "Kowalski", "anna.k@example.com", "555", "4111", "778812", "99812", "1234 Elm",
               "shop.example.com", "Maria", "cookie", "color: red", "cust-42", "A-1001"]
LONG_REVIEW = ("The linen shirt arrived quickly and the fabric feels soft but the sleeves are far too long for "
               "the listed size so I will probably exchange it for a smaller one next week")


def _record(feedback_id, text, **extra):
    return {"feedback_id": feedback_id, "text": text, "channel": "review", "created_at": T0, **extra}


def _line(obj) -> bytes:
    return json.dumps(obj).encode("utf-8") + b"\n"


def write_malformed_input(folder: Path) -> dict[str, str]:
    """The issue's malformed file; returns {feedback_id or line tag: expected quarantine reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        _line(_record("pii-1", PII_TEXT, title="Call me on 555-987-6543", customer_id="cust-42",
                      order_id="A-1001", sku="SKU-1", product_category="shirts", region="EU", star_rating=2,
                      sentiment="negative", labeled_tasks=["sentiment"])),
        b'{"feedback_id": "bad-json", "text": "unterminated\n',
        b'{"feedback_id": "bad-utf8", "text": "caf\xe9 au lait", "channel": "review", "created_at": "2026-10-01"}\n',
        _line({"feedback_id": "no-text", "channel": "review", "created_at": T0}),
        _line(_record("huge", "x" * 1_000_000)),
        _line(_record("wrong-type", "fine words here", star_rating="five")),
        _line(_record("dup-id", "First version of this feedback, kept.", sku="SKU-2", sentiment="positive",
                      labeled_tasks=["sentiment"])),
        _line(_record("dup-id", "Second record reusing the same id.")),
        _line([1, 2, 3]),
        _line(_record("script-only", "<script>alert('x')</script>")),
        _line(_record("spam-1", "BUY NOW!!! click here for free money www.cheap-deals.biz")),
        _line(_record("exact-a", "Great fit, lovely colour!", customer_id="c-7", star_rating=5)),
        _line(_record("exact-b", "great fit  lovely colour", customer_id="c-7", star_rating=5)),
        _line(_record("near-a", LONG_REVIEW, customer_id="c-1", sku="SKU-3")),
        _line(_record("near-b", LONG_REVIEW.replace("next week", "next month"), customer_id="c-1", sku="SKU-3")),
        _line(_record("ok-1", "Parcel was late and the box was crushed.", sku="SKU-1", region="US",
                      aspects=["shipping_delivery", "packaging"], labeled_tasks=["aspects"])),
        b"\n",
    ]
    (folder / "feedback.jsonl").write_bytes(b"".join(lines))
    return {"bad-json": "invalid_json", "bad-utf8": "invalid_utf8", "no-text": "missing_field",
            "huge": "text_too_long", "wrong-type": "wrong_type", "dup-id": "duplicate_id", "array": "wrong_type",
            "script-only": "text_empty"}


@pytest.fixture(scope="module")
def malformed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("malformed")
    expected = write_malformed_input(root / "raw")
    store = root / "feature_store"
    import os

    previous = os.environ.get("FBRAIN_LOCAL_FEATURE_STORE")
    os.environ["FBRAIN_LOCAL_FEATURE_STORE"] = str(store)
    try:
        report = run(root / "raw", root / "out", ProcessingConfig(validation_fraction=0.2, test_fraction=0.2),
                     ShardSpec(0, 1, "none"))
    finally:
        if previous is None:
            os.environ.pop("FBRAIN_LOCAL_FEATURE_STORE", None)
        else:
            os.environ["FBRAIN_LOCAL_FEATURE_STORE"] = previous
    return root, report, expected


def test_run_completes_and_books_balance(malformed_run):
    root, report, _ = malformed_run
    on_disk = json.loads((root / "out" / "lake" / "run_report.json").read_text())
    assert on_disk["bronze"] == 16  # every non-blank line, including the unparseable ones
    assert on_disk["bronze"] == (on_disk["silver"] + on_disk["duplicates"] + on_disk["near_duplicates"]
                                 + on_disk["spam"] + on_disk["quarantine"])
    assert (report.silver, report.duplicates, report.near_duplicates, report.spam, report.quarantine) == (5, 1, 1, 1, 8)
    assert on_disk["spam_rules"] == {"promo_pattern": 1}
    assert set(on_disk["stages"]) >= {"bronze", "transform", "dedup_resolve", "silver_write", "gold", "features"}
    assert lake.count_rows(root / "out" / "lake" / "bronze") == 16
    assert lake.count_rows(root / "out" / "lake" / "silver") == 5


def test_quarantine_holds_exactly_the_invalid_rows_with_readable_reasons(malformed_run):
    root, report, expected = malformed_run
    quarantine = lake.read_parquet_folder(root / "out" / "lake" / "quarantine")
    by_id = {(row.feedback_id if isinstance(row.feedback_id, str) else f"line{row.line_no}"): row
             for row in quarantine.itertuples()}
    reasons = {key: row.reason for key, row in by_id.items()}
    # ids survive in quarantine only when the payload could be parsed
    assert reasons == {"line2": "invalid_json", "line3": "invalid_utf8", "no-text": "missing_field",
                       "huge": "text_too_long", "wrong-type": "wrong_type", "dup-id": "duplicate_id",
                       "line9": "wrong_type", "script-only": "text_empty"}
    assert len(quarantine) == report.quarantine == len(expected) == 8
    assert report.quarantine_reasons == {"invalid_json": 1, "invalid_utf8": 1, "missing_field": 1,
                                         "text_too_long": 1, "wrong_type": 2, "duplicate_id": 1, "text_empty": 1}
    assert "text has 1000000 characters" in by_id["huge"].message
    assert by_id["line2"].payload.startswith('{"feedback_id": "bad-json"')
    assert "\\xe9" in by_id["line3"].payload  # undecodable byte kept, visibly escaped
    assert by_id["dup-id"].line_no == 8 and "already seen" in by_id["dup-id"].message
    assert by_id["wrong-type"].field == "star_rating"
    assert all(quarantine["source_file"].str.endswith("feedback.jsonl"))


def test_silver_is_clean_masked_and_pseudonymised(malformed_run):
    root, _, _ = malformed_run
    silver = lake.read_parquet_folder(root / "out" / "lake" / "silver").set_index("feedback_id")
    pii = silver.loc["pii-1"]
    for placeholder in ("[NAME]", "[EMAIL]", "[PHONE]", "[CARD]", "[ORDER_ID]", "[ACCOUNT_ID]", "[ADDRESS]", "[URL]"):
        assert placeholder in pii.text, placeholder
    assert "<" not in pii.text and "script" not in pii.text
    assert pii.title == "Call me on [PHONE]"
    assert pii.customer_id.startswith("p_") and pii.order_id.startswith("p_")
    assert pii.language == "en" and pii.language_detected
    for leaked in PII_STRINGS:
        assert not silver.astype(str).apply(lambda col, leaked=leaked: col.str.contains(leaked, regex=False)).any().any(), leaked
    assert silver.loc["dup-id"].text == "First version of this feedback, kept."


def test_duplicates_and_near_duplicates_are_removed_but_recorded(malformed_run):
    root, _, _ = malformed_run
    silver = lake.read_parquet_folder(root / "out" / "lake" / "silver")
    assert set(silver["feedback_id"]) == {"pii-1", "dup-id", "exact-a", "near-a", "ok-1"}
    removed = lake.read_parquet_folder(root / "out" / "lake" / "filtered" / "duplicates").set_index("feedback_id")
    assert removed.loc["exact-b", "outcome"] == "duplicate" and removed.loc["exact-b", "duplicate_of"] == "exact-a"
    assert removed.loc["near-b", "outcome"] == "near_duplicate" and removed.loc["near-b", "duplicate_of"] == "near-a"
    spam = lake.read_parquet_folder(root / "out" / "lake" / "filtered" / "spam")
    assert list(spam["feedback_id"]) == ["spam-1"] and list(spam["spam_rule"]) == ["promo_pattern"]


def test_bronze_is_hive_partitioned_as_received(malformed_run):
    root, _, _ = malformed_run
    bronze_dir = root / "out" / "lake" / "bronze"
    partitions = sorted(p.relative_to(bronze_dir).as_posix() for p in bronze_dir.glob("ingest_date=*/channel=*"))
    assert len(partitions) == 2
    assert partitions[0].endswith("channel=review") and partitions[1].endswith("channel=unknown")
    review = pq.read_table(next((bronze_dir / partitions[0]).glob("*.parquet"))).to_pandas()
    assert any("anna.k@example.com" in payload for payload in review["payload"])  # bronze keeps what arrived


def test_gold_has_rates_per_dimension_and_no_pii(malformed_run):
    root, _, _ = malformed_run
    gold_dir = root / "out" / "lake" / "gold"
    assert {p.name for p in gold_dir.glob("*.parquet")} == {
        "daily_by_sku.parquet", "daily_by_product_category.parquet", "daily_by_channel.parquet",
        "daily_by_region.parquet", "daily_by_overall.parquet"}
    by_sku = pd.read_parquet(gold_dir / "daily_by_sku.parquet").set_index("sku")
    assert by_sku.loc["SKU-1", "feedback_count"] == 2
    assert by_sku.loc["SKU-1", "sentiment_negative_rate"] == 1.0
    assert by_sku.loc["SKU-1", "aspect_packaging_rate"] == 1.0
    overall = pd.read_parquet(gold_dir / "daily_by_overall.parquet")
    assert overall["feedback_count"].sum() == 5 and overall["aspects_labeled"].sum() == 1
    for path in gold_dir.glob("*.parquet"):
        text = pd.read_parquet(path).astype(str).to_csv()
        for leaked in PII_STRINGS:
            assert leaked not in text


def test_examples_have_contract_columns_and_cover_silver(malformed_run):
    root, report, _ = malformed_run
    seen = []
    for split in ("train", "validation", "test"):
        for line in (root / "out" / split / "examples.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert set(EXAMPLE_COLUMNS) <= set(row)
            seen.append(row["feedback_id"])
    assert sorted(seen) == sorted(lake.read_parquet_folder(root / "out" / "lake" / "silver")["feedback_id"])
    assert sum(report.splits.values()) == report.silver
    assert report.features["ingest"]["succeeded"] == report.silver


def test_entry_point_arguments_and_external_adapters(tmp_path, monkeypatch, shared_data_dir):
    """--include-external runs the adapters; a tiny data set folder is enough."""
    external = tmp_path / "external" / "semeval2016_laptops_absa"
    external.mkdir(parents=True)
    source = shared_data_dir / "semeval2016_laptops_absa"
    for name in ("train.jsonl", "test_gold.jsonl"):
        lines = (source / name).read_text(encoding="utf-8").splitlines()[:20]
        (external / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_malformed_input(tmp_path / "raw")
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "store"))
    assert main(["--input-dir", str(tmp_path / "raw"), "--output-dir", str(tmp_path / "out"),
                 "--include-external", str(tmp_path / "external"), "--set", "processing.split_seed=3",
                 "--set", "processing.validation_fraction=0.2", "--set", "processing.test_fraction=0.2",
                 "--set", "processing.chunk_rows=7"]) == 0
    report = json.loads((tmp_path / "out" / "lake" / "run_report.json").read_text())
    assert report["bronze"] == 16 + 40
    assert report["silver"] > 4


def test_books_check_catches_a_lost_record():
    report = RunReport(bronze=10, silver=5, duplicates=1, near_duplicates=1, spam=1, quarantine=1,
                       quarantine_reasons={"invalid_json": 1})
    with pytest.raises(BooksDoNotBalance, match="bronze=10"):
        report.check_books()
    report.silver = 6
    report.check_books()


def test_worker_processes_give_the_same_lake(malformed_run, tmp_path, monkeypatch):
    root, report, _ = malformed_run
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "store"))
    parallel = run(root / "raw", tmp_path / "out", ProcessingConfig(validation_fraction=0.2, test_fraction=0.2,
                                                                    workers=2, chunk_rows=4), ShardSpec(0, 1, "none"))
    assert parallel.counts() == report.counts()
    assert parallel.quarantine_reasons == report.quarantine_reasons
    assert "transform_wait" in parallel.stages
    def silver(out):
        return lake.read_parquet_folder(out / "lake" / "silver").sort_values("feedback_id")["text"].tolist()
    assert silver(tmp_path / "out") == silver(root / "out")


def test_include_external_reads_each_adapters_folder(tmp_path, monkeypatch):
    """Adapters are found by their folder name (not their data-set name); records reach silver."""
    from processing.adapters import ADAPTERS

    adapter = ADAPTERS["semeval2016_laptops"]
    assert adapter.folder != adapter.name  # the bug this guards against: looking for external/<name>
    folder = tmp_path / "external" / adapter.folder
    folder.mkdir(parents=True)
    sentences = [("1:0", "The battery easily lasts a whole working day, really impressed.", "positive"),
                 ("1:1", "The keyboard started failing after two weeks and support never replied.", "negative"),
                 ("2:0", "Screen is bright and sharp, colours look great for photo editing.", "positive")]
    for name, rows in (("train.jsonl", sentences[:2]), ("test_gold.jsonl", sentences[2:])):
        (folder / name).write_text("".join(json.dumps({"rid": sid.split(":")[0], "id": sid, "text": text, "Opinions": [
            {"category": "LAPTOP#GENERAL", "polarity": polarity}]}) + "\n" for sid, text, polarity in rows),
            encoding="utf-8")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "one.jsonl").write_text(json.dumps({"feedback_id": "own-1", "channel": "review",
                                               "created_at": "2026-10-01T10:00:00Z",
                                               "text": "Arrived on time and works as described."}) + "\n")
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "store"))
    report = run(raw, tmp_path / "out", ProcessingConfig(), ShardSpec(0, 1, "none"),
                 include_external=tmp_path / "external")
    assert report.bronze == 4 and report.silver == 4, report.counts()
    silver = lake.read_parquet_folder(tmp_path / "out" / "lake" / "silver")
    assert sorted(silver["source_file"].unique()) == sorted(["external/semeval2016_laptops", str(raw / "one.jsonl")])
    assert report.features["ingest"]["succeeded"] == 4  # the store was written and closed


def _gold_tables(silver_parts: list[pd.DataFrame], flush_rows: int, folder: Path) -> dict[str, pd.DataFrame]:
    from processing.taxonomy import load_taxonomy

    gold = lake.GoldAccumulator(load_taxonomy().label_maps(), "D", flush_rows)
    for part in silver_parts:
        gold.add(part)
    gold.write(folder)
    return {path.stem: pd.read_parquet(path) for path in sorted(folder.glob("*.parquet"))}


def test_gold_counts_do_not_depend_on_how_rows_are_flushed(tmp_path):
    """Grouping every part at once or in batches gives the same table, and the counts are the hand-made ones."""
    def part(rows):
        frame = pd.DataFrame(rows, columns=["created_at", "sku", "product_category", "channel", "region",
                                            "star_rating", "sentiment", "intent", "aspects"])
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    parts = [
        part([("2026-10-01T09:00:00Z", "SKU-1", "shoes", "review", None, 1.0, "negative", None, ["packaging", "sizing_fit"]),
              ("2026-10-01T23:59:00Z", "SKU-1", "shoes", "review", "EU", None, None, "complaint", None)]),
        part([("2026-10-01T12:00:00Z", "SKU-2", None, "ticket", "EU", 5.0, "positive", "praise", []),
              ("2026-10-02T00:00:00Z", "SKU-1", "shoes", "review", "EU", 3.0, "neutral", None, ["packaging"])]),
    ]
    batched = _gold_tables(parts, 1, tmp_path / "one_by_one")
    at_once = _gold_tables(parts, 1_000, tmp_path / "at_once")
    assert batched.keys() == at_once.keys() and len(batched) == 5
    for name in batched:
        pd.testing.assert_frame_equal(batched[name], at_once[name])
    by_sku = batched["daily_by_sku"].set_index(["day", "sku"])
    first = by_sku.loc[(pd.Timestamp("2026-10-01"), "SKU-1")]
    assert (first["feedback_count"], first["rated_count"], first["star_rating_sum"]) == (2, 1, 1.0)
    assert (first["sentiment_negative"], first["sentiment_labeled"], first["intent_complaint"]) == (1, 1, 1)
    assert (first["aspect_packaging"], first["aspect_sizing_fit"], first["aspects_labeled"]) == (1, 1, 1)
    assert first["intent_refund_request"] == 0  # a label no row has is counted, as zero
    regions = batched["daily_by_region"].set_index(["day", "region"])
    assert regions.loc[(pd.Timestamp("2026-10-01"), "unknown"), "feedback_count"] == 1
    second_day = batched["daily_by_overall"].set_index("day").loc[pd.Timestamp("2026-10-02")]
    assert second_day["aspect_packaging_rate"] == 1.0 and second_day["sentiment_neutral_rate"] == 1.0
