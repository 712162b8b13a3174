"""Distillation: teacher outputs (files, keys), the mixed loss, and the student trained through training.train."""
import gzip
import json

import pytest
import torch

from conftest import build_tiny_model
from processing.schema import TASKS
from training import teacher_outputs as teacher_outputs_module
from training import train as train_module
from training.distillation import (
    MANIFEST_FILE,
    OUTPUTS_FILE,
    DistillationSettings,
    TeacherOutputsError,
    read_teacher_outputs,
    soft_task_losses,
    text_key,
    write_teacher_outputs,
)
from training.model import LossSettings

TEXTS = ["The parcel arrived late and broken.", "Great price, works well.", "How do I reset my password?"]


def _teacher_tensors(model, texts):
    logits = model.predict_logits(texts)
    return {"sentiment": logits["sentiment_logits"].softmax(-1), "intent": logits["intent_logits"].softmax(-1),
            "aspects": logits["aspect_logits"].sigmoid()}


def _encoded(model, texts):
    encoded = model.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    return {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _labels(n, task_mask):
    return {"sentiment_labels": torch.zeros(n, dtype=torch.long), "intent_labels": torch.zeros(n, dtype=torch.long),
            "aspect_labels": torch.zeros(n, 7), "task_mask": torch.tensor(task_mask, dtype=torch.float32)}


def test_a_student_with_the_teachers_weights_has_zero_distillation_loss():
    teacher = build_tiny_model(seed=3)
    student = build_tiny_model(seed=3).eval()
    student.set_loss_settings(LossSettings(distillation=DistillationSettings(hard_weight=0.0, soft_weight=1.0)))
    probabilities = _teacher_tensors(teacher, TEXTS)
    output = student(**_encoded(student, TEXTS), **_labels(len(TEXTS), [[1, 1, 1]] * len(TEXTS)),
                     teacher_sentiment=probabilities["sentiment"], teacher_intent=probabilities["intent"],
                     teacher_aspects=probabilities["aspects"], teacher_mask=torch.ones(len(TEXTS)))
    assert float(output.loss.detach()) == pytest.approx(0.0, abs=1e-5)
    other = build_tiny_model(seed=4).eval()
    other.set_loss_settings(student.loss_settings)
    different = other(**_encoded(other, TEXTS), **_labels(len(TEXTS), [[1, 1, 1]] * len(TEXTS)),
                      teacher_sentiment=probabilities["sentiment"], teacher_intent=probabilities["intent"],
                      teacher_aspects=probabilities["aspects"], teacher_mask=torch.ones(len(TEXTS)))
    assert float(different.loss.detach()) > 1e-3


def test_the_student_moves_towards_the_teacher():
    teacher = build_tiny_model(seed=1)
    student = build_tiny_model(seed=2)
    probabilities = _teacher_tensors(teacher, TEXTS)
    inputs = _encoded(student, TEXTS)
    mask = torch.ones(len(TEXTS))

    def distance():
        student.eval()
        with torch.no_grad():
            out = student(**inputs)
        logits = {"sentiment": out.sentiment_logits, "intent": out.intent_logits, "aspects": out.aspect_logits}
        return sum(float(v) for v in soft_task_losses(logits, probabilities, mask, temperature=2.0).values())

    student.set_loss_settings(LossSettings(distillation=DistillationSettings(hard_weight=1.0, soft_weight=1.0)))
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    before = distance()
    torch.manual_seed(0)
    for _ in range(8):
        student.train()
        # No gold label anywhere (task mask 0): only the teacher pulls.
        output = student(**inputs, **_labels(len(TEXTS), [[0, 0, 0]] * len(TEXTS)),
                         teacher_sentiment=probabilities["sentiment"], teacher_intent=probabilities["intent"],
                         teacher_aspects=probabilities["aspects"], teacher_mask=mask)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    after = distance()
    assert after < before * 0.5, (before, after)


def test_a_task_without_a_gold_label_gets_gradient_from_the_teacher_only():
    torch.manual_seed(0)
    n = 4
    logits = {"sentiment": torch.randn(n, 3, requires_grad=True), "intent": torch.randn(n, 5, requires_grad=True),
              "aspects": torch.randn(n, 7, requires_grad=True)}
    teacher = {"sentiment": torch.softmax(torch.randn(n, 3), -1), "intent": torch.softmax(torch.randn(n, 5), -1),
               "aspects": torch.rand(n, 7)}
    model = build_tiny_model()
    settings = DistillationSettings(hard_weight=0.7, soft_weight=0.3, temperature=2.0)
    model.set_loss_settings(LossSettings(distillation=settings))
    from training.model import MultiTaskOutput

    output = MultiTaskOutput(sentiment_logits=logits["sentiment"], intent_logits=logits["intent"],
                             aspect_logits=logits["aspects"])
    # Row 0 has no sentiment label; rows 1-3 have every label.
    task_mask = torch.tensor([[0, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=torch.float32)
    labels = torch.tensor([2, 0, 1, 2])
    total, _ = model.masked_loss(output, labels, torch.zeros(n, dtype=torch.long), torch.zeros(n, 7), task_mask,
                                 teacher=teacher, teacher_mask=torch.ones(n))
    total.backward()
    mixed = logits["sentiment"].grad.clone()

    detached = {task: value.detach().clone().requires_grad_(True) for task, value in logits.items()}
    soft = soft_task_losses(detached, teacher, torch.ones(n), settings.temperature)
    (model.loss_settings.task_weights["sentiment"] * settings.soft_weight * soft["sentiment"]).backward()
    teacher_only = detached["sentiment"].grad
    assert torch.allclose(mixed[0], teacher_only[0], atol=1e-6), "row 0's sentiment gradient must be the teacher term's"
    assert not torch.allclose(mixed[1], teacher_only[1], atol=1e-4), "labeled rows also get the hard-label term"
    assert teacher_only[0].abs().sum() > 0


def test_teacher_outputs_are_keyed_by_text_and_reordered_to_the_students_labels(tmp_path):
    label_maps = {"sentiment": ["negative", "neutral", "positive"], "intent": ["a", "b"], "aspects": ["x", "y"]}
    probabilities = {"sentiment": torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]).numpy(),
                     "intent": torch.tensor([[0.9, 0.1], [0.3, 0.7]]).numpy(),
                     "aspects": torch.tensor([[0.2, 0.9], [0.6, 0.1]]).numpy()}
    write_teacher_outputs(tmp_path, label_maps, ["first", "second"], probabilities, teacher={"backbone": "t"})
    student_maps = {"sentiment": ["positive", "neutral", "negative"], "intent": ["b", "a"], "aspects": ["x", "y"]}
    outputs = read_teacher_outputs(tmp_path, student_maps)
    assert outputs[text_key("first")]["sentiment"] == pytest.approx([0.1, 0.2, 0.7])
    assert outputs[text_key("second")]["intent"] == pytest.approx([0.7, 0.3])
    with pytest.raises(TeacherOutputsError, match="intent labels"):
        read_teacher_outputs(tmp_path, {**student_maps, "intent": ["a", "c"]})
    with gzip.open(tmp_path / OUTPUTS_FILE, "at", encoding="utf-8") as handle:
        handle.write('{"key": "k", "sentiment": [1]}\n')
    with pytest.raises(TeacherOutputsError, match="line 3"):
        read_teacher_outputs(tmp_path, student_maps)
    (tmp_path / MANIFEST_FILE).unlink()
    with pytest.raises(TeacherOutputsError, match="missing"):
        read_teacher_outputs(tmp_path, student_maps)


def test_the_student_trains_through_the_entry_point_with_a_teacher_channel(tmp_path, tiny_examples_dir):
    """teacher -> `python -m training.teacher_outputs` -> `python -m training.train --teacher-dir`: unlabeled rows
    join training, the summary says how many rows had teacher outputs, and the model scores a test text."""
    teacher_dir = tmp_path / "teacher_model"
    build_tiny_model(seed=5).save_pretrained(teacher_dir)
    outputs = tmp_path / "teacher_outputs"
    assert teacher_outputs_module.main(["--model-dir", str(teacher_dir), "--examples-dir",
                                        str(tiny_examples_dir / "train"), "--output-dir", str(outputs)]) == 0
    manifest = json.loads((outputs / MANIFEST_FILE).read_text())
    assert manifest["rows"] > 0 and sorted(manifest["label_maps"]) == sorted(TASKS)

    # One extra training row labeled for nothing: it can only learn from the teacher.
    train_dir = tmp_path / "examples" / "train"
    train_dir.mkdir(parents=True)
    rows = (tiny_examples_dir / "train" / "examples.jsonl").read_text().splitlines()
    unlabeled = dict(json.loads(rows[0]), feedback_id="unlabeled-1", sentiment=None, intent=None, aspects=None,
                     labeled_tasks=[])
    (train_dir / "examples.jsonl").write_text("\n".join(rows + [json.dumps(unlabeled)]) + "\n")
    student_backbone = tmp_path / "student_backbone"
    build_tiny_model(seed=7).save_pretrained(student_backbone)
    root = tmp_path / "run"
    code = train_module.main([
        "--backbone", str(student_backbone), "--epochs", "1", "--batch-size", "16", "--max-seq-length", "48",
        "--export-onnx", "false", "--train-dir", str(train_dir), "--validation-dir", str(tiny_examples_dir / "validation"),
        "--teacher-dir", str(outputs), "--model-dir", str(root / "model"), "--output-data-dir", str(root / "output"),
        "--checkpoint-dir", str(root / "checkpoints"), "--distillation-temperature", "3",
    ])
    assert code == 0
    summary = json.loads((root / "output" / "training_summary.json").read_text())
    assert summary["distillation"]["train_rows_with_teacher"] == len(rows) + 1
    assert summary["config"]["distillation_temperature"] == 3.0


def test_teacher_outputs_that_match_no_training_text_are_a_clear_error(tmp_path, tiny_examples_dir):
    model = build_tiny_model()
    probabilities = _teacher_tensors(model, ["a text that is not in the training set"])
    write_teacher_outputs(tmp_path / "teacher", model.label_maps, ["a text that is not in the training set"],
                          {task: value.numpy() for task, value in probabilities.items()})
    backbone = tmp_path / "backbone"
    model.save_pretrained(backbone)
    config = train_module.TrainingConfig(backbone=str(backbone), epochs=1, export_onnx=False)
    paths = train_module.RunPaths(train_dir=str(tiny_examples_dir / "train"),
                                  validation_dir=str(tiny_examples_dir / "validation"), teacher_dir=str(tmp_path / "teacher"),
                                  model_dir=str(tmp_path / "m"), output_data_dir=str(tmp_path / "o"),
                                  checkpoint_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="no row for any text of the train channel"):
        train_module.train(config, paths)
