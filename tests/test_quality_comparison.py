"""The issue-18 quality table: `python -m benchmarks.model_quality --compare NAME=DIR ... --int8`."""
import json
import shutil

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


def test_sources_are_checked():
    assert [s.adapter for s in model_quality.selected_sources([])] == [s.adapter for s in model_quality.SOURCES]
    assert [s.adapter for s in model_quality.selected_sources(["airline_tweets"])] == ["airline_tweets"]
    with pytest.raises(SystemExit, match="airlines"):
        model_quality.selected_sources(["airlines"])


@pytest.mark.slow
def test_one_source_and_a_teacher_without_an_onnx_export(shared_data_dir, tiny_model_dir, tmp_path):
    """`--source` narrows splits and table to one source; a model trained without ONNX (the teacher) is scored
    in fp32 and its int8 column stays empty."""
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, teacher, ignore=shutil.ignore_patterns("onnx"))
    code = model_quality.main([
        "--data-dir", str(shared_data_dir), "--work-dir", str(tmp_path / "work"), "--source", "airline_tweets",
        "--max-train-per-source", "60", "--validation-per-source", "30", "--max-test-per-source", "30",
        "--skip-full-baseline", "--compare", f"teacher={teacher}", "--compare", f"student={tiny_model_dir}", "--int8"])
    assert code == 0
    result = json.loads((tmp_path / "work" / "comparison.json").read_text())
    assert result["sources"] == ["airline_tweets"] and {r["source"] for r in result["rows"]} == {"airline_tweets"}
    for row in result["rows"]:
        assert row["models"]["teacher"] == row["models"]["student"]  # the same weights, with and without ONNX
        assert set(row["int8"]) == {"student"}

    assert model_quality.main(["--data-dir", str(shared_data_dir), "--work-dir", str(tmp_path / "splits"),
                               "--source", "bitext_customer_support", "--max-train-per-source", "40",
                               "--validation-per-source", "10", "--splits-only"]) == 0
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (tmp_path / "splits" / "data" / split / "examples.jsonl").open()]
        assert rows and {row["source"] for row in rows} == {"bitext_customer_support"}
