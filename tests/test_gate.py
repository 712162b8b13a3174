"""The registration gate: threshold, regression against the champion, messages, and the
end-to-end promise that a deliberately weakened model is blocked and a good one passes."""
import json

import numpy as np
import pytest

from processing.taxonomy import load_taxonomy
from training import evaluate as evaluate_module
from training.config import EvaluationConfig
from training.evaluate import build_report, evaluate
from training.gate import decide_gate

from test_evaluate import make_examples, weakened_copy, write_jsonl

LABEL_MAPS = load_taxonomy().label_maps()


def test_threshold_miss_says_by_how_much():
    decision = decide_gate({"sentiment": 0.5, "intent": 0.524}, threshold=0.6, tolerance=0.02)
    assert decision.macro_f1 == pytest.approx(0.512)
    assert not decision.passed and decision.no_regression
    assert decision.message == "macro_f1 0.512 is 0.088 below the threshold 0.600"


def test_regression_against_champion_names_the_champion_and_tolerance():
    decision = decide_gate({"sentiment": 0.70, "intent": 0.702}, 0.6, 0.02,
                           {"sentiment": 0.73, "intent": 0.74}, "v3")
    assert decision.champion_macro_f1 == pytest.approx(0.735)
    assert not decision.no_regression and not decision.passed
    assert decision.message == "macro_f1 0.701 regressed 0.034 against champion v3 0.735 (tolerance 0.020)"


def test_within_tolerance_passes_and_missing_tasks_are_left_out():
    decision = decide_gate({"sentiment": 0.72, "intent": None}, 0.6, 0.02, {"sentiment": 0.735, "intent": 0.1}, "v3")
    assert decision.tasks == ["sentiment"]
    # champion judged on the same task set as the candidate
    assert decision.champion_macro_f1 == pytest.approx(0.735)
    assert decision.passed and decision.message == "passed"


def test_nothing_scored_never_passes():
    decision = decide_gate({"sentiment": None, "intent": None, "aspects": None}, 0.0, 0.02)
    assert not decision.passed and decision.macro_f1 == 0.0
    assert "no rows labeled" in decision.message


def test_the_gate_metric_is_the_model_score_that_selects_epochs():
    """Aspects are gated as they are selected on: a model with a broken aspect head is blocked."""
    decision = decide_gate({"sentiment": 0.9, "intent": 0.8, "aspects": 0.1}, 0.6, 0.02)
    assert decision.tasks == ["sentiment", "intent", "aspects"]
    assert decision.macro_f1 == pytest.approx(0.6) and decision.passed
    broken = decide_gate({"sentiment": 0.9, "intent": 0.8, "aspects": 0.0}, 0.6, 0.02)
    assert not broken.passed and "below the threshold" in broken.message


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate-splits")
    return {
        "train": write_jsonl(root / "train" / "examples.jsonl", make_examples(6)).parent,
        "test": write_jsonl(root / "test" / "examples.jsonl", make_examples(4, offset=2)).parent,
    }


def test_gate_blocks_a_weakened_model_end_to_end(tiny_model_dir, splits, tmp_path, monkeypatch):
    monkeypatch.delenv(evaluate_module.CHAMPION_DIR_ENV, raising=False)
    weakened = weakened_copy(tiny_model_dir, tmp_path / "weakened")  # uniform outputs: one class for all
    report = evaluate(weakened, splits["test"], tmp_path / "out", splits["train"],
                      config=EvaluationConfig(bootstrap_rounds=0, macro_f1_threshold=0.6))
    gate = json.loads((tmp_path / "out" / "evaluation.json").read_text())["gate"]
    assert gate == report["gate"]
    assert not gate["passed"]
    assert gate["macro_f1"] < 0.6
    assert gate["message"].startswith("macro_f1 ") and "below the threshold 0.600" in gate["message"]
    # The same rows, scored by the baseline, clear the bar: the gate blocked the model, not the data.
    assert report["baseline"]["tasks"]["sentiment"]["overall"]["macro_f1"] > 0.6


def test_gate_passes_a_model_whose_predictions_equal_the_labels_and_blocks_a_regression():
    rows = make_examples(3)
    probabilities = {task: np.zeros((len(rows), len(labels))) for task, labels in LABEL_MAPS.items()}
    for i, row in enumerate(rows):
        for task in ("sentiment", "intent"):
            if task in row["labeled_tasks"]:
                probabilities[task][i, LABEL_MAPS[task].index(row[task])] = 1.0
        for aspect in row["aspects"] or []:
            probabilities["aspects"][i, LABEL_MAPS["aspects"].index(aspect)] = 1.0
    config = EvaluationConfig(bootstrap_rounds=0)
    oracle = build_report(rows, probabilities, LABEL_MAPS, config)
    assert oracle["gate"]["passed"] and oracle["gate"]["macro_f1"] == pytest.approx(1.0)
    assert oracle["tasks"]["aspects"]["overall"]["micro_f1"] == pytest.approx(1.0)

    # Candidate: the oracle with every intent prediction moved to one class; champion: the oracle.
    weaker = dict(probabilities, intent=np.eye(len(LABEL_MAPS["intent"]))[np.zeros(len(rows), dtype=int)])
    regressed = build_report(rows, weaker, LABEL_MAPS, config, champion_probabilities=probabilities,
                             champion_name="v7")
    gate = regressed["gate"]
    assert not gate["no_regression"] and not gate["passed"]
    assert gate["champion_macro_f1"] == pytest.approx(1.0)
    assert "against champion v7 1.000 (tolerance 0.020)" in gate["message"]
