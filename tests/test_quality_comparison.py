"""The issue-18 quality table: `python -m benchmarks.model_quality --compare NAME=DIR ... --int8`."""
import json

import pytest

from benchmarks import model_quality


def test_compare_names_are_checked():
    assert list(model_quality.named_models(["teacher=/a", "student=/b"])) == ["teacher", "student"]
    for bad in (["teacher"], ["=/a"], ["a=/x", "a=/y"]):
        with pytest.raises(SystemExit):
            model_quality.named_models(bad)


@pytest.mark.slow
def test_the_comparison_scores_tfidf_each_model_and_its_int8_export_per_source_and_task(
        shared_data_dir, tiny_model_dir, tmp_path, capsys):
    code = model_quality.main([
        "--data-dir", str(shared_data_dir), "--work-dir", str(tmp_path), "--max-train-per-source", "60",
        "--validation-per-source", "30", "--max-test-per-source", "30", "--skip-full-baseline",
        "--compare", f"minilm={tiny_model_dir}", "--compare", f"student={tiny_model_dir}", "--int8"])
    assert code == 0
    result = json.loads((tmp_path / "comparison.json").read_text())
    rows = {(r["source"], r["task"]): r for r in result["rows"]}
    assert {("womens_clothing_reviews", "sentiment"), ("airline_tweets", "sentiment"),
            ("bitext_customer_support", "intent"), ("semeval2016_laptops", "aspects")} <= set(rows)
    for row in rows.values():
        assert set(row["models"]) == set(row["int8"]) == {"minilm", "student"}
        assert row["models"]["minilm"] == row["models"]["student"]  # the same model twice
        assert row["tfidf"] is not None and abs(row["int8_minus_fp32"]["student"]) <= 1.0
    assert rows[("airline_tweets", "sentiment")]["target"] == 0.79
    table = capsys.readouterr().out
    assert "student:int8" in table and "tfidf" in table
