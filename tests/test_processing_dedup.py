"""Deduplication (exact, near, across shards) and leakage-free splits."""
import json
import random
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash

from processing import lake
from processing.config import ProcessingConfig
from processing.dedup import (_NORMALISE_RE, DUPLICATE, KEPT, NEAR_DUPLICATE, NearDuplicateHasher,
                              normalised_for_dedup, resolve_duplicates, shingles)
from processing.feature_engineering import run
from processing.sharding import ShardSpec, detect_shard, files_for_shard
from processing.splits import assign_splits

BASE = ("the wool coat arrived two days late and the left sleeve seam was already coming apart "
        "which is disappointing for the price i paid")


def _reference_signature(text: str, config: ProcessingConfig) -> np.ndarray:
    reference = MinHash(num_perm=config.minhash_num_perm, seed=config.minhash_seed, hashfunc=zlib.crc32)
    reference.update_batch(shingles(text, config.shingle_words))
    return reference.hashvalues


def test_signatures_equal_datasketch_minhash():
    config = ProcessingConfig()
    hasher = NearDuplicateHasher(config)
    texts = [normalised_for_dedup(t) for t in [BASE, "short", "", "Zürich café — naïve 😀 emoji"]]
    signatures = hasher.signatures(texts)
    for text, signature in zip(texts, signatures):
        assert np.array_equal(_reference_signature(text, config), signature)


@pytest.mark.parametrize("shingle_words", [1, 2, 3])
def test_vectorised_shingle_hashing_matches_the_scalar_definition_across_blocks(shingle_words):
    """Texts of 0..20 words (shorter, equal to and longer than a shingle), multi-byte characters,
    blocks and permutation batches that split the input unevenly."""
    config = ProcessingConfig(shingle_words=shingle_words, minhash_hash_block_docs=7, minhash_batch_docs=3)
    rng = random.Random(shingle_words)
    vocabulary = ["a", "bb", "café", "zürich", "[EMAIL]", "x_y", "12", "😀", "naïve"]
    texts = [normalised_for_dedup(" ".join(rng.choice(vocabulary) for _ in range(rng.choice([0, 1, 2, 3, 5, 20]))))
             for _ in range(60)]
    signatures = NearDuplicateHasher(config).signatures(texts)
    for text, signature in zip(texts, signatures):
        assert np.array_equal(_reference_signature(text, config), signature), text


def test_signatures_reject_unnormalised_text_with_a_newline():
    with pytest.raises(ValueError, match="normalised_for_dedup"):
        NearDuplicateHasher().signatures(["two\nlines", "fine"])


@pytest.mark.parametrize("text", ["Hello,  World!! [EMAIL] foo_bar", "  ", "", "tab\tand\x1ccontrol", "A\u00a0B café",
                                  "ÉCOLE d'été", "snake_case-and.dots"])
def test_ascii_fast_normalisation_equals_the_regex_definition(text):
    assert normalised_for_dedup(text) == _NORMALISE_RE.sub(" ", text.lower()).strip()


def test_band_keys_collide_for_near_copies_only():
    hasher = NearDuplicateHasher()
    near = BASE.replace("two days", "three days")
    other = "lovely soft jumper true to size and the colour matches the photos exactly would buy again"
    keys = hasher.band_keys(hasher.signatures([BASE, near, other]))
    assert (keys[0] == keys[1]).any()
    assert not (keys[0] == keys[2]).any()


def _index(rows, hasher):
    from processing.dedup import customer_key, exact_key, text_key

    texts = [normalised_for_dedup(r[2]) for r in rows]
    bands = hasher.band_keys(hasher.signatures(texts))
    frame = pd.DataFrame({
        "feedback_id": [r[0] for r in rows],
        "created_at": pd.to_datetime([r[1] for r in rows], utc=True),
        "exact_key": [exact_key(t, r[3]) for t, r in zip(texts, rows)],
        "text_key": [text_key(t) for t in texts],
        "customer_key": [customer_key(r[3]) for r in rows],
        "near_eligible": [len(t.split()) >= 8 for t in texts],
    })
    for b in range(bands.shape[1]):
        frame[f"band_{b}"] = bands[:, b]
    return frame


def test_resolution_keeps_the_earliest_and_ignores_row_order():
    hasher = NearDuplicateHasher()
    rows = [
        ("late-copy", "2026-10-03", BASE, "c1"),
        ("original", "2026-10-01", BASE, "c1"),
        ("near", "2026-10-02", BASE.replace("disappointing", "annoying"), "c1"),
        ("other-customer-short", "2026-10-01", "Love it!", "c9"),
        ("same-short", "2026-10-02", "love it", "c8"),
    ]
    result = resolve_duplicates(_index(rows, hasher)).set_index("feedback_id")
    assert result.loc["original", "outcome"] == KEPT
    assert (result.loc["late-copy", "outcome"], result.loc["late-copy", "duplicate_of"]) == (DUPLICATE, "original")
    assert (result.loc["near", "outcome"], result.loc["near", "duplicate_of"]) == (NEAR_DUPLICATE, "original")
    # short texts from different customers are kept, but must share a split group
    assert result.loc["other-customer-short", "outcome"] == KEPT and result.loc["same-short", "outcome"] == KEPT
    assert result.loc["other-customer-short", "split_group"] == result.loc["same-short", "split_group"]
    reversed_result = resolve_duplicates(_index(rows[::-1], hasher)).set_index("feedback_id")
    assert reversed_result.sort_index()[["outcome", "duplicate_of"]].equals(result.sort_index()[["outcome", "duplicate_of"]])


def test_near_duplicates_count_within_one_customer_unless_scope_is_global():
    hasher = NearDuplicateHasher()
    rows = [
        ("first", "2026-10-01", BASE, "c1"),
        ("same-customer-edit", "2026-10-02", BASE + " again", "c1"),
        ("other-customer-alike", "2026-10-03", BASE.replace("disappointing", "annoying"), "c2"),
        ("anonymous-a", "2026-10-01", BASE.replace("wool", "linen"), None),
        ("anonymous-b", "2026-10-04", BASE.replace("wool", "linen") + " again", None),
    ]
    index = _index(rows, hasher)
    scoped = resolve_duplicates(index, ProcessingConfig(near_duplicate_scope="customer")).set_index("feedback_id")
    assert (scoped.loc["same-customer-edit", "outcome"], scoped.loc["same-customer-edit", "duplicate_of"]) == (
        NEAR_DUPLICATE, "first")
    assert scoped.loc["other-customer-alike", "outcome"] == KEPT
    # records without a customer share one anonymous customer (as exact_key does)
    assert scoped.loc["anonymous-b", "outcome"] == NEAR_DUPLICATE
    # the kept look-alike still shares a split group with the original: no leakage across splits
    assert scoped.loc["other-customer-alike", "split_group"] == scoped.loc["first", "split_group"]
    everyone = resolve_duplicates(index, ProcessingConfig(near_duplicate_scope="global")).set_index("feedback_id")
    assert everyone.loc["other-customer-alike", "outcome"] == NEAR_DUPLICATE
    assert ProcessingConfig().near_duplicate_scope == "customer"
    with pytest.raises(ValueError, match="near_duplicate_scope"):
        resolve_duplicates(index, ProcessingConfig(near_duplicate_scope="planet"))


def _write_jsonl(path: Path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


VOCABULARY = ("coat shoe dress parcel courier refund seam zipper colour fabric size box late early soft rough "
              "cheap costly support agent reply photo listing button stain smell warm thin heavy strap").split()


def _records(prefix, start_day, n, customer):
    rng = np.random.default_rng(abs(hash(prefix)) % 1000)
    return [{"feedback_id": f"{prefix}-{i}", "channel": "review", "customer_id": customer,
             "created_at": f"2026-10-{start_day + i:02d}T10:00:00Z",
             "text": " ".join(rng.choice(VOCABULARY, size=18))} for i in range(n)]


def test_dedup_is_correct_across_shards(tmp_path, monkeypatch):
    """Copies in different files (hence different shards) are found; shards == single run."""
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "store"))
    a = _records("a", 1, 4, "c1")
    b = _records("b", 10, 4, "c2")
    copy_of_a0 = {**a[0], "feedback_id": "copy-a0", "created_at": "2026-10-20T10:00:00Z"}
    near_b1 = {**b[1], "feedback_id": "near-b1", "created_at": "2026-10-21T10:00:00Z",
               "text": b[1]["text"] + " indeed"}
    files = {"one.jsonl": a, "two.jsonl": b, "three.jsonl": [copy_of_a0, near_b1], "four.jsonl": [a[2]]}
    raw = tmp_path / "raw"
    for name, records in files.items():
        _write_jsonl(raw / name, records)
    shard_count = 3
    owners = {f.name: i for i in range(shard_count) for f in files_for_shard(
        sorted(raw.glob("*.jsonl")), raw, ShardSpec(i, shard_count, "by_hash"))}
    assert len(set(owners.values())) > 1, owners  # the copies really are spread over shards
    sharded = tmp_path / "sharded"
    for index in range(shard_count):
        run(raw, sharded, ProcessingConfig(), ShardSpec(index, shard_count, "by_hash"))
    assert not (sharded / "lake" / "silver").exists()  # pass 1 only until the merge
    merged = run(None, sharded, ProcessingConfig(), ShardSpec(0, 1, "none"), merge_only=True)
    single = run(raw, tmp_path / "single", ProcessingConfig(), ShardSpec(0, 1, "none"))
    assert merged.counts() == single.counts()
    assert (merged.duplicates, merged.near_duplicates, merged.quarantine) == (1, 1, 1)  # a[2] twice: duplicate id
    assert merged.quarantine_reasons == {"duplicate_id": 1}
    def silver(root):
        return sorted(lake.read_parquet_folder(root / "lake" / "silver")["feedback_id"])
    assert silver(sharded) == silver(tmp_path / "single")
    assert "copy-a0" not in silver(sharded) and "near-b1" not in silver(sharded) and "a-0" in silver(sharded)


def test_shard_from_sagemaker_resource_config(tmp_path):
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2", "algo-3"]}))
    assert detect_shard(None, None, config) == ShardSpec(1, 3, "none")
    assert detect_shard(None, None, tmp_path / "absent.json") == ShardSpec(0, 1, "none")
    assert detect_shard(2, 4, config) == ShardSpec(2, 4, "by_hash")
    with pytest.raises(ValueError):
        ShardSpec(3, 3, "none")


def test_splits_are_stratified_and_never_split_a_group():
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({
        "feedback_id": [f"f{i}" for i in range(n)],
        "split_group": [f"g{i // 3}" for i in range(n)],  # groups of 3 rows
        "sentiment": rng.choice(["negative", "neutral", "positive", None], size=n, p=[0.2, 0.1, 0.5, 0.2]),
        "intent": None,
    })
    # a group's rows share their label here, as copies would
    frame["sentiment"] = frame.groupby("split_group")["sentiment"].transform("first")
    split = assign_splits(frame, 0.1, 0.2, seed=13)
    per_group = pd.DataFrame({"group": frame["split_group"], "split": split}).groupby("group")["split"].nunique()
    assert (per_group == 1).all()
    for label, rows in frame.groupby(frame["sentiment"].fillna("none")):
        if len(rows) < 300:
            continue  # a handful of groups cannot match a fraction closely
        shares = split[rows.index].value_counts(normalize=True)
        assert shares["test"] == pytest.approx(0.2, abs=0.04), label
        assert shares["validation"] == pytest.approx(0.1, abs=0.04), label
    assert split.equals(assign_splits(frame.sample(frac=1, random_state=1), 0.1, 0.2, seed=13).sort_index())
    assert not split.equals(assign_splits(frame, 0.1, 0.2, seed=14))
    with pytest.raises(ValueError):
        assign_splits(frame, 0.6, 0.5, seed=1)


def test_pipeline_examples_do_not_leak_near_copies(tmp_path, monkeypatch):
    """Identical short texts from different customers stay in silver but land in one split."""
    monkeypatch.setenv("FBRAIN_LOCAL_FEATURE_STORE", str(tmp_path / "store"))
    distinct = [r["text"] for r in _records("long", 1, 30, "c")]
    records = [{"feedback_id": f"r{i}", "channel": "review", "customer_id": f"c{i}",
                "created_at": f"2026-10-01T{i % 24:02d}:00:00Z", "text": "Love it, perfect!" if i % 2 else
                distinct[i // 2]} for i in range(60)]
    _write_jsonl(tmp_path / "raw" / "x.jsonl", records)
    report = run(tmp_path / "raw", tmp_path / "out", ProcessingConfig(validation_fraction=0.3, test_fraction=0.3),
                 ShardSpec(0, 1, "none"))
    where = {}
    for split in ("train", "validation", "test"):
        for line in (tmp_path / "out" / split / "examples.jsonl").read_text().splitlines():
            row = json.loads(line)
            where.setdefault(row["text"], set()).add(split)
    assert report.silver == 60
    assert all(len(splits) == 1 for text, splits in where.items()), where


def test_range_crc32_equals_zlib_for_short_long_and_empty_ranges():
    from processing.dedup import RangeCrc32

    rng = random.Random(5)
    buffer = bytes(rng.randrange(256) for _ in range(4000))
    starts = np.array([rng.randrange(0, 3900) for _ in range(2000)], dtype=np.int64)
    ends = starts + np.array([rng.choice([0, 1, 2, 7, 15, 16, 17, 60]) for _ in range(2000)], dtype=np.int64)
    expected = np.array([zlib.crc32(buffer[s:e]) for s, e in zip(starts, ends)], dtype=np.uint32)
    assert np.array_equal(RangeCrc32(max_length=16)(buffer, starts, ends), expected)  # 17 and 60: zlib fallback
