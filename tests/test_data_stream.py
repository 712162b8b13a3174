"""`fbrain data generate --days N`: a multi-day demo stream with realistic daily volumes per SKU."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import date, datetime

from typer.testing import CliRunner


def _fbrain(*args):
    from pipelines.cli import app

    return CliRunner().invoke(app, list(args))


def _records(path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the few lines corrupted on purpose
    return records


def test_generate_days_writes_a_stream_with_weekday_seasonality_and_uneven_skus(tmp_path):
    out = tmp_path / "stream.jsonl"
    result = _fbrain("data", "generate", "--days", "28", "--start", "2026-11-02", "--skus", "12",
                     "--per-sku-daily", "15", "--seed", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    records = _records(out)
    assert summary["records"] == len(out.read_text().splitlines()) and len(records) > 0.99 * summary["records"]
    assert len({r.get("feedback_id") for r in records}) > 0.99 * len(records)  # ids unique but for the dirt

    days = Counter()
    per_sku = Counter()
    for r in records:
        try:
            created = datetime.fromisoformat(str(r.get("created_at")).replace("Z", "+00:00"))
        except ValueError:
            continue  # invalid dates are part of the dirt
        if created.date() < date(2026, 11, 30):  # (a duplicate may come a few hours after the last day)
            days[created.date()] += 1
        per_sku[r.get("sku")] += 1
    assert min(days) == date(2026, 11, 2) and max(days) == date(2026, 11, 29) and len(days) == 28
    by_weekday = defaultdict(list)
    for day, count in days.items():
        by_weekday[day.weekday()].append(count)
    weekend = sum(by_weekday[5] + by_weekday[6]) / 8
    midweek = sum(by_weekday[1] + by_weekday[2]) / 8
    assert weekend > 1.15 * midweek  # WEEKDAY_FACTOR: Saturday / Sunday ~1.3 against ~0.95
    assert 0.7 * 12 * 15 < sum(days.values()) / 28 < 1.5 * 12 * 15
    assert len(per_sku) == 12 and max(per_sku.values()) > 1.5 * min(per_sku.values())  # log-normal across SKUs

    again = tmp_path / "again.jsonl"
    assert _fbrain("data", "generate", "--days", "28", "--start", "2026-11-02", "--skus", "12", "--per-sku-daily", "15",
                   "--seed", "3", "--out", str(again)).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # deterministic for a seed


def test_generate_refuses_bad_options(tmp_path):
    out = tmp_path / "x.jsonl"
    assert "days must be >= 1" in _fbrain("data", "generate", "--days", "0", "--out", str(out)).output
    bad_start = _fbrain("data", "generate", "--days", "2", "--start", "soon", "--out", str(out))
    assert bad_start.exit_code == 2 and "--start must be an ISO date" in bad_start.output
    assert "n_skus must be within" in _fbrain("data", "generate", "--days", "2", "--skus", "0", "--out", str(out)).output


def test_generate_without_days_writes_the_corpus(tmp_path):
    from processing.demo_data import generate_lines

    out = tmp_path / "corpus.jsonl"
    assert _fbrain("data", "generate", "--n", "50", "--seed", "9", "--out", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8").splitlines() == list(generate_lines(50, 9))
