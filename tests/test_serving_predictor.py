"""Predictors: ONNX fp32/int8 and PyTorch agree, padding is masked, torch stays out of the ONNX path."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.config import ServingConfig
from inference.predictor import FlagRules, ModelLoadError, load_predictor

TEXTS = [
    "The parcel arrived late and the box was crushed.",
    "Love it!",
    "Can I exchange these jeans for a larger size? They are far too tight around the waist.",
    "Please cancel my order.",
]
REPO = Path(__file__).resolve().parents[1]


def sentiment_matrix(predictions):
    return np.asarray([list(p["sentiment"]["probabilities"].values()) for p in predictions])


def test_fp32_onnx_scores_do_not_depend_on_batch_mates(tiny_model_dir: Path):
    predictor = load_predictor(tiny_model_dir, ServingConfig(runtime="onnx"))
    together = predictor.predict(TEXTS)
    alone = [predictor.predict([t])[0] for t in TEXTS]
    np.testing.assert_allclose(sentiment_matrix(together), sentiment_matrix(alone), atol=1e-5)
    # Length-sorted groups of any size give back every text's own scores, in request order.
    grouped = load_predictor(tiny_model_dir, ServingConfig(runtime="onnx", sub_batch_size=3)).predict(TEXTS)
    np.testing.assert_allclose(sentiment_matrix(grouped), sentiment_matrix(together), atol=1e-5)
    assert [p["truncated"] for p in grouped] == [False] * len(TEXTS)


def test_int8_agrees_with_fp32_and_torch_agrees_with_onnx(tiny_model_dir: Path):
    fp32 = load_predictor(tiny_model_dir, ServingConfig(runtime="onnx")).predict(TEXTS)
    int8 = load_predictor(tiny_model_dir, ServingConfig(runtime="onnx-int8")).predict(TEXTS)
    torch_eager = load_predictor(tiny_model_dir, ServingConfig(runtime="torch")).predict(TEXTS)
    np.testing.assert_allclose(sentiment_matrix(torch_eager), sentiment_matrix(fp32), atol=1e-4)
    # Dynamic int8 quantises activations per batch: close to fp32, not identical.
    np.testing.assert_allclose(sentiment_matrix(int8), sentiment_matrix(fp32), atol=0.05)
    assert {p["model"]["runtime"] for p in torch_eager} == {"torch"}


def test_single_text_calls_use_the_spinning_session_and_score_the_same(tiny_model_dir: Path):
    predictor = load_predictor(tiny_model_dir, ServingConfig(runtime="onnx-int8"))  # on by default
    assert predictor.single_text_session is not predictor.session
    used = []
    for name in ("session", "single_text_session"):
        session = getattr(predictor, name)
        setattr(predictor, name, type("Spy", (), {"run": lambda self, *a, s=session, n=name: used.append(n) or s.run(*a)})())
    alone = predictor.predict(TEXTS[:1])
    predictor.predict(TEXTS)  # sub-batches of several texts
    assert used[0] == "single_text_session" and set(used[1:]) == {"session"}
    plain = load_predictor(tiny_model_dir, ServingConfig(runtime="onnx-int8", onnx_single_text_session=False))
    assert plain.single_text_session is plain.session
    np.testing.assert_array_equal(sentiment_matrix(alone), sentiment_matrix(plain.predict(TEXTS[:1])))


def test_onnx_path_never_imports_torch(tiny_model_dir: Path):
    code = (
        "import sys, json; from inference.app import create_app; from inference.predictor import load_predictor;"
        f"p = load_predictor({str(tiny_model_dir)!r}); p.predict(['hello']);"
        "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_truncation_is_reported(tiny_model_dir: Path):
    predictor = load_predictor(tiny_model_dir, ServingConfig(max_seq_length=8))
    short, long = predictor.predict(["ok", "one two three four five six seven eight nine ten"])
    assert not short["truncated"] and long["truncated"]
    assert predictor.token_count("one two three four five six seven eight nine ten") > 8


def test_clear_errors_for_incomplete_model_dirs(tiny_model_dir: Path, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_predictor(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="fbrain_model.json"):
        load_predictor(tmp_path / "empty")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir, partial)
    (partial / "onnx" / "model.int8.onnx").unlink()
    with pytest.raises(ModelLoadError, match="model.int8.onnx"):
        load_predictor(partial)
    with pytest.raises(ValueError, match="'onnx-int8', 'onnx' or 'torch'"):  # refused when the setting is made
        ServingConfig(runtime="tensorrt")


def test_flag_rules_are_data_driven(tmp_path: Path):
    lexicon = tmp_path / "flags.json"
    lexicon.write_text(json.dumps({
        "version": "t",
        "intent_threshold": 0.6,
        "flags": {
            "urgency": {"phrases": ["asap"], "implied_by": ["safety_concern"]},
            "safety_concern": {"phrases": ["caught fire"]},
            "refund_intent": {"phrases": ["money back"], "intents": ["refund_request"]},
            "profanity": {"phrases": ["crap"], "aspects": []},
        },
    }))
    rules = FlagRules.load(lexicon)
    assert rules.evaluate("it caught fire", "complaint", 0.9, []) == {
        "urgency": True, "safety_concern": True, "refund_intent": False, "profanity": False}
    assert rules.evaluate("please respond", "refund_request", 0.7, [])["refund_intent"]
    assert not rules.evaluate("please respond", "refund_request", 0.5, [])["refund_intent"]  # below the intent threshold
    assert not rules.evaluate("scrappy little shop", "other", 0.9, [])["profanity"]  # whole words only


def test_length_groups_cut_where_padding_costs_more_than_a_call():
    from inference.predictor import plan_length_groups

    # Two clusters of lengths: one call each beats one padded call and beats a call per length.
    lengths = [10, 10, 11, 12, 60, 61, 64]
    assert plan_length_groups(lengths, call_overhead_tokens=16, max_group_size=32) == [(0, 4), (4, 7)]
    # Cheap calls: one group per distinct length; very dear calls: as few groups as the size cap allows.
    assert len(plan_length_groups(lengths, 1e-6, 32)) == 6
    assert plan_length_groups(lengths, 0, 3) == [(0, 3), (3, 6), (6, 7)]  # 0: fixed groups
    assert len(plan_length_groups(lengths, 1e9, 3)) == 3
    groups = plan_length_groups(list(range(100)), 16, 8)
    assert groups[0][0] == 0 and groups[-1][1] == 100 and all(a[1] == b[0] for a, b in zip(groups, groups[1:]))
    assert max(end - start for start, end in groups) <= 8
    assert plan_length_groups([], 16, 8) == []
