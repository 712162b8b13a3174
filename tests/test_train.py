"""Training entry point: SageMaker contract, reproducibility, spot resume, early stopping."""
import json
import re

import pytest
import torch
from safetensors.torch import load_file

from conftest import build_tiny_model
from training import train as train_module
from training.checkpointing import CheckpointMismatchError
from training.config import TrainingConfig
from training.tracking import METRIC_DEFINITIONS
from training.train import INTERRUPTED_EXIT_CODE, RunPaths, parse_settings, train


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    """A saved tiny model used as warm-start backbone (no pretrained weights needed)."""
    directory = tmp_path_factory.mktemp("tiny_backbone")
    build_tiny_model(seed=7).save_pretrained(directory)
    return str(directory)


def quick_config(backbone: str, **overrides) -> TrainingConfig:
    settings = dict(backbone=backbone, epochs=3, batch_size=16, max_seq_length=48, head_learning_rate=5e-3,
                    learning_rate=1e-3, early_stopping_patience=0, export_onnx=False, log_every_steps=1)
    settings.update(overrides)
    return TrainingConfig(**settings)


def run_paths(root, examples_dir) -> RunPaths:
    return RunPaths(
        train_dir=str(examples_dir / "train"), validation_dir=str(examples_dir / "validation"),
        model_dir=str(root / "model"), output_data_dir=str(root / "output"), checkpoint_dir=str(root / "checkpoints"),
    )


def weights(model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_examples_dir, tiny_backbone):
    root = tmp_path_factory.mktemp("uninterrupted")
    result = train(quick_config(tiny_backbone), run_paths(root, tiny_examples_dir))
    return root, result


def test_sagemaker_contract_run_writes_the_model_layout_and_metric_lines(
    tmp_path, tiny_examples_dir, tiny_backbone, monkeypatch, capsys
):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    hyperparameters = {"backbone": tiny_backbone, "epochs": "2", "learning_rate": "0.001", "max_seq_length": "48",
                       "batch_size": "16", "seed": "5", "head_learning_rate": "0.005", "early_stopping_patience": "0",
                       "aspect_threshold": "0.4", "sagemaker_program": "train.py"}
    (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    for name, value in {
        "SM_INPUT_CONFIG_DIR": config_dir, "SM_CHANNEL_TRAIN": tiny_examples_dir / "train",
        "SM_CHANNEL_VALIDATION": tiny_examples_dir / "validation", "SM_MODEL_DIR": tmp_path / "model",
        "SM_OUTPUT_DATA_DIR": tmp_path / "output", "SM_CHECKPOINT_DIR": tmp_path / "checkpoints", "SM_NUM_GPUS": "0",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert train_module.main([]) == 0
    model_dir = tmp_path / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "fbrain_model.json",
                 "onnx/model.onnx", "onnx/model.int8.onnx", "onnx/parity.json"):
        assert (model_dir / name).is_file(), name
    metadata = json.loads((model_dir / "fbrain_model.json").read_text())
    assert metadata["max_seq_length"] == 48 and metadata["metrics"]["epochs_run"] == 2
    # The aspect threshold travels with the model: the endpoint, evaluation and parity read it there.
    assert metadata["aspect_threshold"] == 0.4
    parity = json.loads((model_dir / "onnx" / "parity.json").read_text())
    assert set(parity["aspect_thresholds"].values()) == {0.4}
    summary = json.loads((tmp_path / "output" / "training_summary.json").read_text())
    assert summary["config"]["seed"] == 5 and len(summary["history"]) == 2
    logged = capsys.readouterr().out
    found = {d["Name"]: re.findall(d["Regex"], logged) for d in METRIC_DEFINITIONS}
    assert len(found["val:macro_f1"]) == 2 and len(found["train:loss"]) == 2
    assert 0.0 <= float(found["val:macro_f1"][-1]) <= 1.0


def test_training_learns_the_tiny_set(uninterrupted):
    _, result = uninterrupted
    losses = [epoch["train_loss"] for epoch in result.history]
    assert losses[-1] < losses[0]
    assert result.epochs_run == 3 and result.resumed_from_epoch == 0


def test_same_seed_gives_the_same_weights(tmp_path, tiny_examples_dir, tiny_backbone, uninterrupted):
    root, _ = uninterrupted
    train(quick_config(tiny_backbone), run_paths(tmp_path, tiny_examples_dir))
    first, second = weights(root / "model"), weights(tmp_path / "model")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    train(quick_config(tiny_backbone, seed=99, epochs=1), run_paths(tmp_path / "other", tiny_examples_dir))
    other = weights(tmp_path / "other" / "model")
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_spot_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_examples_dir, tiny_backbone, uninterrupted):
    root, reference = uninterrupted
    paths = run_paths(tmp_path, tiny_examples_dir)
    with pytest.raises(SystemExit) as stopped:
        train(quick_config(tiny_backbone, interrupt_after_epoch=1), paths)
    assert stopped.value.code == INTERRUPTED_EXIT_CODE
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and not (tmp_path / "model").exists()
    resumed = train(quick_config(tiny_backbone), paths)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_run == 3
    first, second = weights(root / "model"), weights(tmp_path / "model")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert [h["val_macro_f1"] for h in resumed.history] == [h["val_macro_f1"] for h in reference.history]


def test_checkpoint_of_other_settings_is_refused(tmp_path, tiny_examples_dir, tiny_backbone):
    paths = run_paths(tmp_path, tiny_examples_dir)
    with pytest.raises(SystemExit):
        train(quick_config(tiny_backbone, epochs=2, interrupt_after_epoch=1), paths)
    with pytest.raises(CheckpointMismatchError, match="different settings"):
        train(quick_config(tiny_backbone, epochs=2, learning_rate=2e-3), paths)


def test_early_stopping_stops_when_validation_does_not_improve(tmp_path, tiny_examples_dir, tiny_backbone):
    config = quick_config(tiny_backbone, epochs=6, learning_rate=0.0, head_learning_rate=0.0, early_stopping_patience=1)
    result = train(config, run_paths(tmp_path, tiny_examples_dir))
    assert result.epochs_run == 2
    assert result.metrics["best_epoch"] == 1


def test_the_saved_epoch_is_the_one_with_the_best_model_score(tmp_path, tiny_examples_dir, tiny_backbone, monkeypatch):
    """Epoch selection goes through training.metrics.model_score, the gate's metric: a score that
    favours the first epoch keeps the first epoch, fed with the per-task validation headlines."""
    scores, seen = iter([0.9, 0.2]), []

    def first_epoch_best(headlines):
        seen.append(dict(headlines))
        return next(scores), list(headlines)

    monkeypatch.setattr(train_module, "model_score", first_epoch_best)
    result = train(quick_config(tiny_backbone, epochs=2), run_paths(tmp_path, tiny_examples_dir))
    assert [h["val_macro_f1"] for h in result.history] == [0.9, 0.2]
    assert result.metrics["best_epoch"] == 1 and result.metrics["val_macro_f1"] == 0.9
    first = result.history[0]
    assert seen[0]["sentiment"] == first["val_sentiment_macro_f1"]
    assert seen[0]["aspects"] == first["val_aspect_micro_f1"]


def test_settings_precedence_defaults_hyperparameters_then_flags(tmp_path, monkeypatch):
    (tmp_path / "hyperparameters.json").write_text(json.dumps(
        {"epochs": "7", "learning_rate": "3e-05", "class_weighting": "false",
         "source_weights": '{"reviews": 0.5}', "backbone": '"my-backbone"'}))
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "m"))
    config, paths = parse_settings(["--epochs", "2", "--train-dir", "data/train"])
    assert config.epochs == 2 and config.learning_rate == 3e-05 and config.class_weighting is False
    assert config.source_weights == {"reviews": 0.5} and config.backbone == "my-backbone"
    assert paths.train_dir == "data/train" and paths.model_dir == str(tmp_path / "m")
    assert paths.checkpoint_dir  # SM_CHECKPOINT_DIR or /opt/ml/checkpoints


def test_bad_hyperparameters_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(tmp_path))
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"epoch": "3"}))
    with pytest.raises(ValueError, match="unknown setting 'training.epoch'"):
        parse_settings([])
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"epochs": "three"}))
    with pytest.raises(ValueError, match="training.epochs='three' is not valid: Input should be a valid integer"):
        parse_settings([])


def test_multi_gpu_relaunches_under_torchrun(monkeypatch):
    calls = []
    monkeypatch.setattr(train_module.subprocess, "call", lambda command: calls.append(command) or 0)
    monkeypatch.setenv("SM_NUM_GPUS", "4")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("SM_HOSTS", '["algo-1", "algo-2"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")
    assert train_module.maybe_relaunch_distributed(["--epochs", "1"]) == 0
    command = calls[0]
    assert command[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=4"]
    assert "--nnodes=2" in command and "--node_rank=1" in command and "--master_addr=algo-1" in command
    assert command[-4:] == ["-m", "training.train", "--epochs", "1"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert train_module.maybe_relaunch_distributed([]) is None


def test_class_weight_scope_source_weighs_rows_and_all_keeps_pooled_class_weights(tiny_examples_dir):
    from training.data import collate, read_examples, tokenize_examples

    model = build_tiny_model()
    read = lambda split: read_examples(tiny_examples_dir / split, model.label_maps).examples  # noqa: E731
    train_rows, validation_rows = read("train"), read("validation")
    pooled = train_module.configured_class_weights(
        TrainingConfig(class_weight_scope="all"), model, train_rows, validation_rows)
    assert set(pooled) == {"sentiment", "intent", "aspects"}
    assert all(e.class_weights is None for e in train_rows + validation_rows)

    by_source = train_module.configured_class_weights(TrainingConfig(), model, train_rows, validation_rows)
    assert set(by_source) == {"aspects"} and by_source["aspects"] == pooled["aspects"]
    assert all(e.class_weights is not None for e in train_rows + validation_rows)
    tokenize_examples(train_rows[:4], model.tokenizer, 32)
    batch = collate(train_rows[:4], model.tokenizer.pad_token_id)
    assert torch.allclose(batch["class_weight_rows"], torch.tensor([e.class_weights for e in train_rows[:4]]))
    assert train_module.configured_class_weights(TrainingConfig(class_weighting=False), model, [], []) == {}
    with pytest.raises(ValueError, match="Input should be .source. or .all."):  # refused when the setting is made
        train_module.configured_class_weights(TrainingConfig(class_weight_scope="pooled"), model, [], [])
