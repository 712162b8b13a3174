"""Streaming readers: CSV / JSONL / Parquet, column mapping, bad bytes and bad JSON become BadRecords."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processing.readers import (BadRecord, ColumnMapping, RawRecord, iter_chunks, list_input_files, read_chunks)

MAPPING = ColumnMapping(fields={"text": "Review Text", "star_rating": "Rating", "sku": "Clothing ID"},
                        constants={"channel": "review", "source": "clothing", "created_at": "2026-01-01T00:00:00Z"},
                        derive_feedback_id=True)


def _items(path, chunk_rows=1000, mapping=None):
    return [item for chunk in read_chunks(path, chunk_rows, mapping) for item in chunk]


def test_csv_with_mapping_quoted_newlines_and_bad_bytes(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(
        b"Clothing ID,Review Text,Rating\n"
        b'767,"Fits well,\nlovely colour",5\n'
        b"1080,,4\n"
        b"99,bad \xff byte,3\n"
        b"12,too,many,columns\n"
    )
    items = _items(path, mapping=MAPPING)
    assert [type(i) for i in items] == [RawRecord, RawRecord, BadRecord, BadRecord]
    first = items[0]
    assert first.record == {"text": "Fits well,\nlovely colour", "star_rating": "5", "sku": "767", "channel": "review",
                            "source": "clothing", "created_at": "2026-01-01T00:00:00Z",
                            "feedback_id": "clothing-reviews-1"}
    assert json.loads(first.payload)["Review Text"] == "Fits well,\nlovely colour"
    assert "text" not in items[1].record  # empty cell = missing, so validation says missing_field
    assert items[2].reason == "invalid_utf8" and items[2].line_no == 3 and b"\xff" in items[2].raw
    assert items[3].reason == "invalid_value" and "4 columns" in items[3].message


def test_jsonl_bad_json_bad_utf8_blank_lines_and_non_objects(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"feedback_id": "a", "text": "ok"}\n\n{"broken": \n\xc3\x28 "x"\n[1, 2]\n')
    items = _items(path)
    assert [type(i).__name__ for i in items] == ["RawRecord", "BadRecord", "BadRecord", "RawRecord"]
    assert [i.line_no for i in items] == [1, 3, 4, 5]
    assert items[1].reason == "invalid_json" and "column" in items[1].message
    assert items[2].reason == "invalid_utf8" and items[2].payload.startswith("\\xc3")
    assert items[3].record == [1, 2]


def test_parquet_and_folders_stream_in_bounded_chunks(tmp_path):
    rows = [{"feedback_id": f"p{i}", "text": f"text {i}", "channel": "chat"} for i in range(25)]
    (tmp_path / "sub").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "sub" / "part.parquet")
    (tmp_path / "b.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [p.name for p in list_input_files(tmp_path)] == ["b.jsonl", "part.parquet"]
    chunks = list(read_chunks(tmp_path, 10))
    assert [len(c) for c in chunks] == [10, 10, 6]
    assert chunks[-1][-1].record["feedback_id"] == "p24" and chunks[-1][-1].line_no == 25


def test_chunk_size_and_missing_input_errors(tmp_path):
    with pytest.raises(ValueError, match="chunk_rows"):
        list(iter_chunks(iter([]), 0))
    with pytest.raises(FileNotFoundError):
        list_input_files(tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown keys"):
        ColumnMapping.from_json('{"fields": {}, "typo": 1}')


def test_clothing_reviews_read_completely(shared_data_dir):
    folder = shared_data_dir / "womens_ecommerce_clothing_reviews"
    items = _items(folder, chunk_rows=5000, mapping=MAPPING)
    assert len(items) == 23486
    assert all(isinstance(i, RawRecord) for i in items)


def test_unparsed_json_lines_parse_later_to_the_same_items(tmp_path):
    """The job reads JSON lines undecoded and decodes them in its workers: same items either way."""
    from processing.readers import parse_item

    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"feedback_id": "a", "text": "ok", "sku": ""}\n\n{"broken": \n\xc3\x28 "x"\n[1, 2]\n')
    mapping = ColumnMapping(constants={"channel": "chat"})
    eager = [item for chunk in read_chunks(path, 10, mapping) for item in chunk]
    lazy = [item for chunk in read_chunks(path, 10, mapping, parse=False) for item in chunk]
    assert [type(i).__name__ for i in lazy] == ["RawRecord", "RawRecord", "BadRecord", "RawRecord"]
    assert lazy[0].record is None and not lazy[0].parsed  # decoding is left to parse_item
    assert [parse_item(item, mapping) for item in lazy] == eager
    assert eager[0].record == {"feedback_id": "a", "text": "ok", "channel": "chat"}  # "" is missing
