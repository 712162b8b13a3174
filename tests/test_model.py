"""MultiTaskClassifier: masked multi-task loss, save/load, the shared tiny fixtures, and data assembly."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import build_tiny_model, tiny_example_rows
from processing.schema import TASKS, ReasonCode
from processing.taxonomy import load_taxonomy
from training.data import (
    UNLABELED,
    Example,
    attach_source_class_weights,
    class_weights,
    collate,
    epoch_indices,
    length_grouped_batches,
    read_examples,
    source_class_weights,
    tokenize_examples,
)
from training.model import LossSettings, ModelLoadError, MultiTaskClassifier

TEXTS = ["The parcel was late.", "Great fit!", "Refund please, it broke after one day of use."]


def _batch(model, sentiment, intent, aspects, mask):
    encoded = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return dict(
        **encoded,
        sentiment_labels=torch.tensor(sentiment),
        intent_labels=torch.tensor(intent),
        aspect_labels=torch.tensor(aspects, dtype=torch.float32),
        task_mask=torch.tensor(mask, dtype=torch.float32),
    )


def test_head_of_a_task_nobody_is_labeled_for_gets_zero_gradient():
    model = build_tiny_model(seed=1).train()
    n_aspects = len(model.label_maps["aspects"])
    batch = _batch(
        model, sentiment=[0, 2, 0], intent=[UNLABELED] * 3, aspects=[[0] * n_aspects] * 3,
        mask=[[1, 0, 0], [1, 0, 0], [1, 0, 0]],
    )
    model(**batch).loss.backward()
    assert torch.count_nonzero(model.intent_head.weight.grad) == 0
    assert torch.count_nonzero(model.aspect_head.weight.grad) == 0
    assert torch.count_nonzero(model.sentiment_head.weight.grad) > 0


def test_masked_loss_averages_each_task_over_its_labeled_rows_only():
    model = build_tiny_model(seed=2).eval()
    n_aspects = len(model.label_maps["aspects"])
    aspects = [[1] + [0] * (n_aspects - 1), [0] * n_aspects, [0, 1] + [0] * (n_aspects - 2)]
    batch = _batch(model, sentiment=[0, UNLABELED, 2], intent=[3, 1, UNLABELED], aspects=aspects,
                   mask=[[1, 1, 0], [0, 1, 1], [1, 0, 1]])
    out = model(**batch)
    expected_sentiment = F.cross_entropy(out.sentiment_logits[[0, 2]], torch.tensor([0, 2]))
    expected_intent = F.cross_entropy(out.intent_logits[[0, 1]], torch.tensor([3, 1]))
    expected_aspects = F.binary_cross_entropy_with_logits(out.aspect_logits[[1, 2]], batch["aspect_labels"][[1, 2]])
    assert out.task_losses["sentiment"].item() == pytest.approx(expected_sentiment.item(), rel=1e-5)
    assert out.task_losses["intent"].item() == pytest.approx(expected_intent.item(), rel=1e-5)
    assert out.task_losses["aspects"].item() == pytest.approx(expected_aspects.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx((expected_sentiment + expected_intent + expected_aspects).item(), rel=1e-5)


def test_task_and_class_weights_change_the_loss():
    model = build_tiny_model(seed=3).eval()
    n_aspects = len(model.label_maps["aspects"])
    batch = _batch(model, sentiment=[0, 1, 2], intent=[0, 1, 2], aspects=[[1] * n_aspects] * 3, mask=[[1, 1, 1]] * 3)
    base = model(**batch)
    model.set_loss_settings(LossSettings(
        task_weights={"sentiment": 0.0, "intent": 2.0, "aspects": 1.0},
        class_weights={"aspects": [3.0] * n_aspects},
    ))
    weighted = model(**batch)
    assert weighted.task_losses["aspects"].item() == pytest.approx(3 * base.task_losses["aspects"].item(), rel=1e-5)
    assert weighted.loss.item() == pytest.approx(
        2 * base.task_losses["intent"].item() + weighted.task_losses["aspects"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="class weights have 2 entries"):
        model.set_loss_settings(LossSettings(class_weights={"sentiment": [1.0, 2.0]}))


def test_row_class_weights_give_the_class_weighted_loss_and_override_it():
    model = build_tiny_model(seed=4).eval()
    n_aspects = len(model.label_maps["aspects"])
    batch = _batch(model, sentiment=[0, 1, 2], intent=[0, 1, UNLABELED], aspects=[[0] * n_aspects] * 3,
                   mask=[[1, 1, 0], [1, 1, 0], [1, 0, 0]])
    sentiment_weights, intent_weights = [3.0, 1.0, 0.5], [2.0] + [1.0] * (len(model.label_maps["intent"]) - 1)
    model.set_loss_settings(LossSettings(class_weights={"sentiment": sentiment_weights, "intent": intent_weights}))
    by_class = model(**batch)
    rows = torch.tensor([[3.0, 2.0], [1.0, 1.0], [0.5, 7.0]])  # row 2's intent is masked: its 7.0 must not count
    by_row = model(**batch, class_weight_rows=rows)
    assert by_row.task_losses["sentiment"].item() == pytest.approx(by_class.task_losses["sentiment"].item(), rel=1e-5)
    assert by_row.task_losses["intent"].item() == pytest.approx(by_class.task_losses["intent"].item(), rel=1e-5)
    # Row weights replace the class weights: all weight on row 0 leaves row 0's loss alone.
    only_first = model(**batch, class_weight_rows=torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    expected = F.cross_entropy(only_first.sentiment_logits[:1], torch.tensor([0]))
    assert only_first.task_losses["sentiment"].item() == pytest.approx(expected.item(), rel=1e-5)


def _example(source: str, sentiment: int, intent: int = UNLABELED) -> Example:
    return Example(feedback_id=f"{source}-{sentiment}-{intent}", text="x", source=source, sentiment=sentiment,
                   intent=intent, aspects=[], task_mask=[1, int(intent != UNLABELED), 0])


def test_source_class_weights_balance_each_source_on_its_own():
    label_maps = load_taxonomy().label_maps()
    negative, neutral, positive = (label_maps["sentiment"].index(n) for n in ("negative", "neutral", "positive"))
    # Reviews are mostly positive, complaints mostly negative.
    reviews = [_example("reviews", positive)] * 80 + [_example("reviews", negative)] * 10 + [_example("reviews", neutral)] * 10
    complaints = [_example("complaints", negative)] * 80 + [_example("complaints", positive)] * 20
    examples = reviews + complaints
    weights = source_class_weights(examples, label_maps, max_weight=10.0)
    assert set(weights) == {"reviews", "complaints"} and set(weights["reviews"]) == {"sentiment"}
    review_w, complaint_w = weights["reviews"]["sentiment"], weights["complaints"]["sentiment"]
    assert review_w[negative] == pytest.approx(100 / (3 * 10)) and review_w[positive] == pytest.approx(100 / (3 * 80))
    assert complaint_w[positive] == pytest.approx(100 / (2 * 20)) and complaint_w[negative] == pytest.approx(100 / (2 * 80))
    assert complaint_w[neutral] == 1.0  # a class the source never has
    pooled = class_weights(examples, label_maps, max_weight=10.0)["sentiment"]
    # Pooled, each source's rare class is down-weighted as common (the other source is full of it).
    assert pooled[negative] < 1.0 < review_w[negative] and pooled[positive] < 1.0 < complaint_w[positive]
    attach_source_class_weights(examples + [_example("unseen", negative, intent=0)], weights)
    for source in (reviews, complaints):  # below the cap, a source keeps its share of the loss
        assert sum(e.class_weights[0] for e in source) == pytest.approx(len(source))
    assert examples[0].class_weights == [review_w[positive], 1.0]
    capped = source_class_weights(reviews + [_example("reviews", negative, intent=0)], label_maps, max_weight=2.0)
    assert max(capped["reviews"]["sentiment"]) == 2.0 and capped["reviews"]["intent"][0] == 1.0


def test_save_and_load_round_trip_gives_identical_logits(tmp_path):
    model = build_tiny_model(seed=4)
    model.metrics = {"val_macro_f1": 0.5}
    model.save_pretrained(tmp_path)
    loaded = MultiTaskClassifier.from_pretrained(tmp_path)
    before, after = model.predict_logits(TEXTS), loaded.predict_logits(TEXTS)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tasks"]["intent"]["id2label"]["0"] == load_taxonomy().intents[0]
    assert config["tasks"]["aspects"]["problem_type"] == "multi_label_classification"
    assert loaded.metrics == {"val_macro_f1": 0.5}


def test_loading_an_incomplete_directory_says_what_is_missing(tmp_path):
    build_tiny_model().save_pretrained(tmp_path)
    (tmp_path / "fbrain_model.json").unlink()
    with pytest.raises(ModelLoadError, match="fbrain_model.json"):
        MultiTaskClassifier.from_pretrained(tmp_path)


def test_tiny_model_dir_has_the_contract_layout(tiny_model_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "fbrain_model.json",
                 "onnx/model.onnx", "onnx/model.int8.onnx", "onnx/parity.json"):
        assert (tiny_model_dir / name).is_file(), name
    metadata = json.loads((tiny_model_dir / "fbrain_model.json").read_text())
    assert metadata["label_maps"] == load_taxonomy().label_maps()
    assert {"taxonomy_version", "backbone", "max_seq_length", "metrics"} <= set(metadata)


def test_tiny_examples_cover_every_label_in_validation_and_test(tiny_examples_dir):
    label_maps = load_taxonomy().label_maps()
    for split in ("validation", "test"):
        rows = [json.loads(line) for line in (tiny_examples_dir / split / "examples.jsonl").read_text().splitlines()]
        assert {r["sentiment"] for r in rows} == set(label_maps["sentiment"])
        assert {r["intent"] for r in rows} == set(label_maps["intent"])
        assert {a for r in rows for a in r["aspects"]} == set(label_maps["aspects"])
    train = tiny_example_rows()["train"]
    assert {tuple(r["labeled_tasks"]) for r in train} >= {("aspects",), ("sentiment", "intent"), tuple(TASKS)}


def test_malformed_rows_are_quarantined_with_a_reason(tmp_path):
    label_maps = load_taxonomy().label_maps()
    good = tiny_example_rows()["validation"][0]
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "feedback_id": "x1", "text": "  "}),
        json.dumps({**good, "feedback_id": "x2", "sentiment": "furious"}),
        json.dumps({**good, "feedback_id": "x3", "intent": None}),
        json.dumps({**good, "feedback_id": "x4", "labeled_tasks": ["mood"]}),
        json.dumps(good),
        json.dumps({**good, "feedback_id": "x5", "labeled_tasks": [], "sentiment": None, "intent": None, "aspects": None}),
    ]
    (tmp_path / "examples.jsonl").write_text("\n".join(lines) + "\n")
    result = read_examples(tmp_path, label_maps)
    assert len(result.examples) == 1 and result.unlabeled == 1
    assert [q.reason for q in result.quarantined] == [
        ReasonCode.invalid_json.value, ReasonCode.text_empty.value, ReasonCode.unknown_label.value,
        ReasonCode.missing_field.value, ReasonCode.unknown_label.value, ReasonCode.duplicate_id.value,
    ]
    assert [q.line for q in result.quarantined] == [2, 3, 4, 5, 6, 7]


def test_title_is_read_in_front_of_the_text_and_a_bad_title_is_quarantined(tmp_path):
    label_maps = load_taxonomy().label_maps()
    good = tiny_example_rows()["validation"][0]
    lines = [
        json.dumps({**good, "feedback_id": "t1", "title": "Runs small", "text": "Had to return it."}),
        json.dumps({**good, "feedback_id": "t2", "title": "Love it!", "text": "Soft fabric."}),
        json.dumps({**good, "feedback_id": "t3", "title": None, "text": "No title here."}),
        json.dumps({**good, "feedback_id": "t4", "title": 5, "text": "Numeric title."}),
    ]
    (tmp_path / "examples.jsonl").write_text("\n".join(lines) + "\n")
    result = read_examples(tmp_path, label_maps)
    assert [e.text for e in result.examples] == ["Runs small. Had to return it.", "Love it! Soft fabric.", "No title here."]
    assert [(q.line, q.reason) for q in result.quarantined] == [(4, ReasonCode.wrong_type.value)]
    assert "title" in result.quarantined[0].message


def test_missing_channel_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.jsonl files"):
        read_examples(tmp_path, load_taxonomy().label_maps())


def test_source_weights_repeat_and_subsample_sources(tiny_examples_dir):
    examples = read_examples(tiny_examples_dir / "train", load_taxonomy().label_maps()).examples
    counts = {s: sum(e.source == s for e in examples) for s in {e.source for e in examples}}
    rng = np.random.default_rng(0)
    chosen = epoch_indices(examples, {"support": 2.0, "aspect_reviews": 0.5}, rng)
    picked = {s: sum(examples[i].source == s for i in chosen) for s in counts}
    assert picked["support"] == 2 * counts["support"]
    assert picked["aspect_reviews"] == round(0.5 * counts["aspect_reviews"])
    assert picked["survey"] == counts["survey"]


def test_length_grouped_batches_use_every_index_once_and_pad_less_than_random():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=400).tolist()
    batches = length_grouped_batches(list(range(400)), lengths, 16, 10, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(400))
    assert max(lengths[i] for i in batches[0]) == max(lengths)

    def padding(groups):
        return sum(max(lengths[i] for i in g) * len(g) - sum(lengths[i] for i in g) for g in groups)

    random_batches = [list(range(400))[i : i + 16] for i in range(0, 400, 16)]
    assert padding(batches) < 0.3 * padding(random_batches)


def test_collate_pads_dynamically_and_class_weights_favour_rare_classes(tiny_examples_dir):
    model = build_tiny_model()
    examples = read_examples(tiny_examples_dir / "train", model.label_maps).examples
    tokenize_examples(examples, model.tokenizer, 64)
    batch = collate(examples[:4], model.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[1] == max(len(e) for e in examples[:4])
    assert batch["attention_mask"].sum().item() == sum(len(e) for e in examples[:4])
    weights = class_weights(examples, model.label_maps, max_weight=10.0)
    sentiment_counts = np.bincount([e.sentiment for e in examples if e.task_mask[0]], minlength=3)
    rarest, commonest = sentiment_counts.argmin(), sentiment_counts.argmax()
    assert weights["sentiment"][rarest] > weights["sentiment"][commonest]
    assert all(w <= 10.0 for ws in weights.values() for w in ws)
