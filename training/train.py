"""Training entry point: `python3 -m training.train` (SageMaker TrainModel step, local runs, CLI).

Settings come from, in increasing priority: TrainingConfig defaults, SageMaker's
`hyperparameters.json` (string values, any TrainingConfig field by name), command-line flags
(`--epochs 3 --train-dir data/train ...`, see `--help`). Paths follow SageMaker's training
contract (SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION, SM_MODEL_DIR, SM_OUTPUT_DATA_DIR,
SM_CHECKPOINT_DIR or /opt/ml/checkpoints, SM_NUM_GPUS); with more than one GPU the entry
point re-launches itself under torchrun and trains with DistributedDataParallel.

Outputs: the best epoch's model in SM_MODEL_DIR (Hugging Face files + fbrain_model.json +
onnx/), `training_summary.json` and the quarantine of unusable rows in SM_OUTPUT_DATA_DIR.
Exit code 75 (EX_TEMPFAIL) means a spot-interruption drill stopped the job after a checkpoint.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import logging
import os
import random
import subprocess
import sys
import time
import typing
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from processing import settings
from processing.schema import TASKS
from processing.taxonomy import CURRENT_VERSION, load_taxonomy
from training import checkpointing
from training.config import SAGEMAKER_CHECKPOINT_DIR, TrainingConfig
from training.data import (
    Example,
    ExampleSet,
    attach_source_class_weights,
    class_weights,
    collate,
    epoch_indices,
    length_grouped_batches,
    read_examples,
    sorted_batches,
    source_class_weights,
    tokenize_examples,
    write_quarantine,
)
from training.distillation import DistillationSettings, attach_teacher_outputs, read_teacher_outputs
from training.metrics import HEADLINE_METRIC, model_score, predicted_labels, task_f1
from training.model import LossSettings, MultiTaskClassifier, METADATA_FILE, MULTI_LABEL_TASK
from training.tracking import Tracker

logger = logging.getLogger("training.train")

INTERRUPTED_EXIT_CODE = 75
"""Exit status of the spot-interruption drill (EX_TEMPFAIL: try again, state is saved)."""
SUMMARY_FILE = "training_summary.json"
QUARANTINE_DIR = "quarantine"
SAGEMAKER_RESERVED_PREFIXES = ("sagemaker_", "_")
SECTION = "training"
"""The configuration section this job takes whole (every field is a hyperparameter)."""
"""Hyperparameters SageMaker or its SDK add for themselves; ignored here."""


@dataclass
class RunPaths:
    """Where data comes from and results go (SageMaker's defaults, overridable for local runs)."""

    train_dir: str = ""
    """Train channel folder (default $SM_CHANNEL_TRAIN or /opt/ml/input/data/train)."""
    validation_dir: str = ""
    """Validation channel folder (default $SM_CHANNEL_VALIDATION or /opt/ml/input/data/validation)."""
    teacher_dir: str = ""
    """Teacher outputs (training.distillation) to distil from (default $SM_CHANNEL_TEACHER; none: no distillation)."""
    model_dir: str = ""
    """Where the best model is saved (default $SM_MODEL_DIR or /opt/ml/model)."""
    output_data_dir: str = ""
    """Summary and quarantine (default $SM_OUTPUT_DATA_DIR or /opt/ml/output/data)."""
    checkpoint_dir: str = ""
    """Epoch checkpoints (default $SM_CHECKPOINT_DIR or /opt/ml/checkpoints)."""
    hyperparameters: str = ""
    """hyperparameters.json (default $SM_INPUT_CONFIG_DIR/hyperparameters.json; skipped when absent)."""
    resume: bool = True
    """Continue from a checkpoint in checkpoint_dir when one exists."""

    def resolved(self) -> "RunPaths":
        env = os.environ.get
        config_dir = env("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")
        return RunPaths(
            train_dir=self.train_dir or env("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"),
            validation_dir=self.validation_dir or env("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"),
            teacher_dir=self.teacher_dir or env("SM_CHANNEL_TEACHER", ""),
            model_dir=self.model_dir or env("SM_MODEL_DIR", "/opt/ml/model"),
            output_data_dir=self.output_data_dir or env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"),
            checkpoint_dir=self.checkpoint_dir or env("SM_CHECKPOINT_DIR", SAGEMAKER_CHECKPOINT_DIR),
            hyperparameters=self.hyperparameters or str(Path(config_dir) / "hyperparameters.json"),
            resume=self.resume,
        )


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, float]
    epochs_run: int
    resumed_from_epoch: int
    """Epochs already done when this process started (0 = fresh start)."""
    history: list[dict[str, float]] = field(default_factory=list)


class TrainingInterrupted(SystemExit):
    def __init__(self, epoch: int) -> None:
        super().__init__(INTERRUPTED_EXIT_CODE)
        self.epoch = epoch


# ---------------------------------------------------------------------- settings
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under dataclass fields (the help text of the CLI flags)."""
    docs: dict[str, str] = {}
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for current, following in zip(body, body[1:]):
        if isinstance(current, ast.AnnAssign) and isinstance(current.target, ast.Name):
            if isinstance(following, ast.Expr) and isinstance(getattr(following, "value", None), ast.Constant):
                docs[current.target.id] = " ".join(str(following.value.value).split())
    return docs


def apply_settings(config: TrainingConfig, values: dict[str, Any], origin: str) -> TrainingConfig:
    """Hyperparameters (SageMaker sends every value as a string) onto the section, with the one shared parser
    (processing.settings); SageMaker's own `sagemaker_*` entries are skipped."""
    try:
        return settings.apply_values(config, values, SECTION, ignore_prefixes=SAGEMAKER_RESERVED_PREFIXES)
    except settings.SettingsError as exc:
        raise settings.SettingsError(f"{origin}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train the multi-task feedback classifier (SageMaker training contract or local flags).",
    )
    for cls, group_name in ((RunPaths, "paths"), (TrainingConfig, "training")):
        group = parser.add_argument_group(group_name)
        docs = field_docs(cls)
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            flag = "--" + item.name.replace("_", "-")
            kind = hints[item.name]
            is_bool = kind is bool
            group.add_argument(
                flag, dest=f"{group_name}.{item.name}", default=None,
                type=str, metavar="BOOL" if is_bool else item.name.upper(),
                help=docs.get(item.name, "") + (" (true/false)" if is_bool else ""),
            )
    return parser


def parse_settings(argv: Sequence[str] | None) -> tuple[TrainingConfig, RunPaths]:
    args = vars(build_parser().parse_args(argv))
    path_values = {k.split(".", 1)[1]: v for k, v in args.items() if k.startswith("paths.") and v is not None}
    paths_hints = typing.get_type_hints(RunPaths)
    paths = RunPaths(**{k: settings.parse_value(paths_hints[k], v, f"--{k}") for k, v in path_values.items()}).resolved()
    config = TrainingConfig()
    settings.load_sections({SECTION: config})  # FBRAIN__TRAINING__* variables
    hyperparameters = Path(paths.hyperparameters)
    if hyperparameters.is_file():
        apply_settings(config, json.loads(hyperparameters.read_text(encoding="utf-8")), str(hyperparameters))
    flags = {k.split(".", 1)[1]: v for k, v in args.items() if k.startswith("training.") and v is not None}
    apply_settings(config, flags, "command line")
    return config, paths


# ---------------------------------------------------------------------- runtime
@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    autocast_dtype: torch.dtype | None = None
    use_scaler: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def setup_runtime(config: TrainingConfig) -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    runtime = Runtime(device, rank, local_rank, world_size)
    choice = config.mixed_precision
    if choice not in ("auto", "bf16", "fp16", "no"):
        raise ValueError(f"mixed_precision must be auto, bf16, fp16 or no; got {choice!r}")
    if device.type == "cuda" and choice != "no":
        if choice == "bf16" or (choice == "auto" and torch.cuda.is_bf16_supported()):
            runtime.autocast_dtype = torch.bfloat16
        else:
            runtime.autocast_dtype, runtime.use_scaler = torch.float16, True
    return runtime


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def maybe_relaunch_distributed(argv: Sequence[str]) -> int | None:
    """Under SM_NUM_GPUS > 1 (and not yet under torchrun) run this module with torchrun."""
    gpus = int(os.environ.get("SM_NUM_GPUS", "0") or 0)
    if gpus <= 1 or "LOCAL_RANK" in os.environ:
        return None
    hosts = json.loads(os.environ.get("SM_HOSTS", "[]") or "[]")
    current = os.environ.get("SM_CURRENT_HOST", "")
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}"]
    if len(hosts) > 1:
        command += [f"--nnodes={len(hosts)}", f"--node_rank={hosts.index(current)}",
                    f"--master_addr={hosts[0]}", "--master_port=29500"]
    else:
        command.append("--standalone")
    command += ["-m", "training.train", *argv]
    logger.info("%d GPUs: re-launching under torchrun: %s", gpus, " ".join(command))
    return subprocess.call(command)


# ---------------------------------------------------------------------- model + data
def build_model(config: TrainingConfig) -> MultiTaskClassifier:
    """A saved feedback-brain model dir warm-starts (heads included); anything else is an encoder.

    The model carries the configured aspect threshold: validation decides aspects with it and it
    is saved in fbrain_model.json for evaluation, export parity, the endpoint and the monitor.
    """
    if (Path(config.backbone) / METADATA_FILE).is_file():
        model = MultiTaskClassifier.from_pretrained(config.backbone)
        if model.label_maps != load_taxonomy(model.taxonomy_version).label_maps():
            raise ValueError(f"{config.backbone} was trained on other labels than taxonomy v{model.taxonomy_version}")
        model.max_seq_length = config.max_seq_length
        model.train()
    else:
        model = MultiTaskClassifier.from_backbone(
            config.backbone, pooling=config.pooling, head_dropout=config.head_dropout,
            max_seq_length=config.max_seq_length, taxonomy_version=CURRENT_VERSION,
            backbone_cache_dir=config.backbone_cache_dir or None,
        )
    model.aspect_threshold = config.aspect_threshold
    try:
        model.aspect_thresholds()
    except ValueError as error:
        raise ValueError(f"training setting aspect_threshold={config.aspect_threshold!r}: {error}") from None
    return model


def loss_settings(config: TrainingConfig, class_weights_by_task: dict | None = None, distil: bool = False) -> LossSettings:
    """The configured per-task loss weights, with class weights when class weighting is on, and the
    distillation mix when training against teacher outputs."""
    return LossSettings(
        task_weights={"sentiment": config.sentiment_loss_weight, "intent": config.intent_loss_weight,
                      "aspects": config.aspect_loss_weight},
        class_weights=class_weights_by_task or {},
        distillation=DistillationSettings(
            hard_weight=config.distillation_hard_weight, soft_weight=config.distillation_soft_weight,
            temperature=config.distillation_temperature) if distil else None,
    )


def configured_class_weights(
    config: TrainingConfig, model: MultiTaskClassifier, train_examples: Sequence[Example],
    validation_examples: Sequence[Example],
) -> dict[str, list[float]]:
    """The model's class weights; with scope `source`, sentiment/intent weights go on each row instead.

    Validation rows get the weights counted on the training rows of their source, so the
    validation loss weighs classes the way the training loss does.
    """
    if not config.class_weighting:
        return {}
    pooled = class_weights(train_examples, model.label_maps, config.max_class_weight)
    if config.class_weight_scope == "all":
        return pooled
    by_source = source_class_weights(train_examples, model.label_maps, config.max_class_weight)
    for examples in (train_examples, validation_examples):
        attach_source_class_weights(examples, by_source)
    for source, by_task in sorted(by_source.items()):
        logger.info("class weights of %s: %s", source,
                    {task: [round(w, 2) for w in weights] for task, weights in by_task.items()})
    return {MULTI_LABEL_TASK: pooled[MULTI_LABEL_TASK]}


def load_split(directory: str, name: str, model: MultiTaskClassifier, config: TrainingConfig, output_dir: Path,
               teacher_outputs: dict | None = None) -> ExampleSet:
    """A channel's usable rows, tokenised; with teacher outputs also the rows labeled for no task that the teacher
    scored (they learn every task from it), each carrying its teacher probabilities."""
    examples = read_examples(directory, model.label_maps, keep_unlabeled=teacher_outputs is not None)
    if teacher_outputs is not None:
        matched, missing = attach_teacher_outputs(examples.examples, teacher_outputs)
        if not matched:
            raise ValueError(f"the teacher outputs have no row for any text of the {name} channel ({directory}); "
                             "they are keyed by the sha256 of the model input text (training.distillation)")
        unusable = [e for e in examples.examples if e.teacher is None and not any(e.task_mask)]
        examples.examples = [e for e in examples.examples if e.teacher is not None or any(e.task_mask)]
        examples.unlabeled = len(unusable)
        logger.info("teacher outputs for %d of %d %s rows (%d without: hard labels only; %d unlabeled and "
                    "unscored rows left out)", matched, matched + missing, name, missing - len(unusable), len(unusable))
    if examples.quarantined:
        target = output_dir / QUARANTINE_DIR / f"{name}.jsonl"
        write_quarantine(examples.quarantined, target)
        logger.warning("%d %s rows quarantined with reasons, see %s", len(examples.quarantined), name, target)
    if not examples.examples:
        raise ValueError(f"the {name} channel ({directory}) has no usable labeled rows")
    tokenize_examples(examples.examples, model.tokenizer, config.max_seq_length)
    return examples


def build_optimizer(model: MultiTaskClassifier, config: TrainingConfig) -> torch.optim.Optimizer:
    head_ids = {id(p) for p in model.head_parameters()}
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if id(parameter) in head_ids or not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": no_decay, "lr": config.learning_rate, "weight_decay": 0.0},
        {"params": model.head_parameters(), "lr": config.head_learning_rate, "weight_decay": config.weight_decay},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def epoch_batches(examples: Sequence[Example], config: TrainingConfig, epoch: int, runtime: Runtime) -> list[list[int]]:
    """This rank's batches for an epoch; the order depends only on (seed, epoch), so a resumed job sees the same data."""
    rng = np.random.default_rng([config.seed, epoch])
    indices = epoch_indices(examples, config.source_weights, rng)
    batches = length_grouped_batches(indices, [len(e) for e in examples], config.batch_size, config.length_group_size, rng)
    if runtime.world_size > 1:
        # Every rank must run the same number of steps or DDP's all-reduce hangs.
        usable = max(runtime.world_size, len(batches) - len(batches) % runtime.world_size)
        batches = (batches * runtime.world_size)[:usable]
        batches = batches[runtime.rank :: runtime.world_size]
    return batches


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: MultiTaskClassifier, examples: Sequence[Example], config: TrainingConfig, runtime: Runtime) -> dict[str, float]:
    """Validation metrics; `val_macro_f1` drives early stopping and the choice of the saved epoch.

    Everything is computed by training.metrics, the module evaluation and its gate use: per-task
    headline scores (sentiment and intent macro-F1, aspect micro-F1 with the model's aspect
    thresholds) and `val_macro_f1` = `model_score`, on validation what the gate's `gate.macro_f1`
    is on the test split."""
    model.eval()
    pad = model.tokenizer.pad_token_id
    probabilities: dict[str, list[np.ndarray]] = {task: [] for task in TASKS}
    order: list[int] = []
    losses, weights = [], []
    for batch_indices in sorted_batches(examples, config.eval_batch_size):
        batch = {k: v.to(runtime.device) for k, v in collate([examples[i] for i in batch_indices], pad).items()}
        with runtime.autocast():
            output = model(**batch)
        losses.append(float(output.loss))
        weights.append(len(batch_indices))
        probabilities["sentiment"].append(output.sentiment_logits.float().softmax(-1).cpu().numpy())
        probabilities["intent"].append(output.intent_logits.float().softmax(-1).cpu().numpy())
        probabilities["aspects"].append(output.aspect_logits.float().sigmoid().cpu().numpy())
        order.extend(batch_indices)
    model.train()
    ordered = [examples[i] for i in order]
    stacked = {task: np.concatenate(parts) for task, parts in probabilities.items()}
    thresholds = model.aspect_thresholds()
    metrics: dict[str, float] = {"val_loss": float(np.average(losses, weights=weights))}
    headlines: dict[str, float | None] = {}
    for column, task in enumerate(TASKS):
        rows = [i for i, e in enumerate(ordered) if e.task_mask[column]]
        if not rows:
            continue
        truth = np.asarray([getattr(ordered[i], task) for i in rows])
        scores = task_f1(task, truth, predicted_labels(task, stacked[task][rows], thresholds))
        headlines[task] = scores[HEADLINE_METRIC[task]]
        if task == MULTI_LABEL_TASK:
            metrics["val_aspect_micro_f1"], metrics["val_aspect_macro_f1"] = scores["micro_f1"], scores["macro_f1"]
        else:
            metrics[f"val_{task}_macro_f1"] = scores["macro_f1"]
    score, _ = model_score(headlines)
    metrics["val_macro_f1"] = 0.0 if score is None else score
    return metrics


# ---------------------------------------------------------------------- the loop
def settings_fingerprint(config: TrainingConfig) -> str:
    """Settings that change what a run computes; drills and export switches do not count."""
    ignored = {"interrupt_after_epoch", "export_onnx", "parity_sample_size", "mlflow_experiment", "log_every_steps"}
    return checkpointing.config_fingerprint({k: v for k, v in dataclasses.asdict(config).items() if k not in ignored})


def train(config: TrainingConfig, paths: RunPaths) -> TrainResult:
    """Train, checkpoint every epoch, early-stop, save the best model (+ ONNX) to paths.model_dir."""
    paths = paths.resolved()
    runtime = setup_runtime(config)
    output_dir, checkpoint_dir = Path(paths.output_data_dir), Path(paths.checkpoint_dir)
    seed_everything(config.seed)
    model = build_model(config)
    teacher_outputs = read_teacher_outputs(paths.teacher_dir, model.label_maps) if paths.teacher_dir else None
    train_set = load_split(paths.train_dir, "train", model, config, output_dir, teacher_outputs)
    validation_set = load_split(paths.validation_dir, "validation", model, config, output_dir)
    train_examples, validation_examples = train_set.examples, validation_set.examples
    model.set_loss_settings(loss_settings(
        config, configured_class_weights(config, model, train_examples, validation_examples),
        distil=teacher_outputs is not None))
    model.to(runtime.device)
    model.train()

    steps_per_epoch = -(-len(epoch_batches(train_examples, config, 0, runtime)) // config.gradient_accumulation_steps)
    total_steps = max(1, steps_per_epoch * config.epochs)
    optimizer = build_optimizer(model, config)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler("cuda") if runtime.use_scaler else None
    fingerprint = settings_fingerprint(config)
    loop = checkpointing.LoopState()
    if paths.resume:
        loop = checkpointing.load_checkpoint(
            checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, fingerprint=fingerprint
        ) or loop
    resumed_from = loop.epoch + 1
    trainable = model
    if runtime.world_size > 1:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None
        )

    tracker = Tracker(config.mlflow_experiment, run_name=f"train-{int(time.time())}", enabled=runtime.is_main)
    distilled_rows = sum(e.teacher is not None for e in train_examples)
    tracker.log_params({**dataclasses.asdict(config), "train_rows": len(train_examples),
                        "validation_rows": len(validation_examples), "world_size": runtime.world_size,
                        "teacher_rows": distilled_rows})
    tracker.set_tags({"taxonomy_version": model.taxonomy_version, "device": runtime.device.type,
                      "resumed_from_epoch": resumed_from})
    logger.info(
        "training %s on %s (world %d, precision %s): %d train / %d validation rows, %d epochs x %d steps, "
        "starting at epoch %d", config.backbone, runtime.device, runtime.world_size,
        runtime.autocast_dtype or "fp32", len(train_examples), len(validation_examples), config.epochs,
        steps_per_epoch, resumed_from + 1,
    )
    pad = model.tokenizer.pad_token_id
    throughput: list[float] = []
    status = "FAILED"
    try:
        for epoch in range(loop.epoch + 1, config.epochs):
            if loop.finished:
                break
            batches = epoch_batches(train_examples, config, epoch, runtime)
            started, seen, window_start, window_seen = time.perf_counter(), 0, time.perf_counter(), 0
            # Summed on the device: a .item() per step would stall a GPU's queue every batch.
            sums = {name: torch.zeros((), device=runtime.device) for name in ("loss", *TASKS)}
            for number, batch_indices in enumerate(batches):
                batch = {k: v.to(runtime.device, non_blocking=True)
                         for k, v in collate([train_examples[i] for i in batch_indices], pad).items()}
                is_step = (number + 1) % config.gradient_accumulation_steps == 0 or number + 1 == len(batches)
                sync = nullcontext() if is_step or runtime.world_size == 1 else trainable.no_sync()
                with sync:
                    with runtime.autocast():
                        output = trainable(**batch)
                    loss = output.loss / config.gradient_accumulation_steps
                    (scaler.scale(loss) if scaler else loss).backward()
                sums["loss"] += output.loss.detach().float()
                for task in TASKS:
                    sums[task] += output.task_losses[task].detach()
                seen += len(batch_indices)
                window_seen += len(batch_indices)
                if not is_step:
                    continue
                if scaler:
                    scaler.unscale_(optimizer)
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loop.global_step += 1
                if runtime.is_main and loop.global_step % config.log_every_steps == 0:
                    elapsed = time.perf_counter() - window_start
                    logger.info(
                        "epoch %d/%d batch %d/%d step %d: loss %.4f, lr %.2e, %.1f samples/s",
                        epoch + 1, config.epochs, number + 1, len(batches), loop.global_step, output.loss.item(),
                        scheduler.get_last_lr()[0], window_seen * runtime.world_size / max(elapsed, 1e-9),
                    )
                    window_start, window_seen = time.perf_counter(), 0
            epoch_seconds = time.perf_counter() - started
            samples_per_second = seen * runtime.world_size / max(epoch_seconds, 1e-9)
            throughput.append(samples_per_second)
            metrics = evaluate(model, validation_examples, config, runtime)
            metrics.update({
                "epoch": float(epoch + 1),
                "train_loss": sums["loss"].item() / max(1, len(batches)),
                **{f"train_{task}_loss": sums[task].item() / max(1, len(batches)) for task in TASKS},
                "learning_rate": scheduler.get_last_lr()[0],
                "samples_per_second": samples_per_second,
            })
            improved = metrics["val_macro_f1"] > loop.best_metric
            if improved:
                loop.best_metric, loop.best_epoch, loop.epochs_without_improvement = metrics["val_macro_f1"], epoch, 0
                if runtime.is_main:
                    checkpointing.save_best(checkpoint_dir, model.state_dict(), epoch, loop.best_metric)
            else:
                loop.epochs_without_improvement += 1
            metrics["best_val_macro_f1"] = loop.best_metric
            loop.history.append(metrics)
            loop.epoch = epoch
            patience = config.early_stopping_patience
            loop.finished = patience > 0 and loop.epochs_without_improvement >= patience
            if runtime.is_main:
                checkpointing.save_checkpoint(checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                                              scaler=scaler, loop=loop, fingerprint=fingerprint)
            tracker.log_metrics(metrics, step=epoch + 1)
            logger.info(
                "epoch %d/%d done in %.1f s (%.1f samples/s): val macro-F1 %.4f (best %.4f at epoch %d)%s",
                epoch + 1, config.epochs, epoch_seconds, samples_per_second, metrics["val_macro_f1"],
                loop.best_metric, loop.best_epoch + 1, ", early stop" if loop.finished else "",
            )
            if runtime.world_size > 1:
                torch.distributed.barrier()
            if config.interrupt_after_epoch and epoch + 1 == config.interrupt_after_epoch and epoch + 1 < config.epochs:
                logger.warning("spot-interruption drill: stopping after the checkpoint of epoch %d", epoch + 1)
                status = "KILLED"
                raise TrainingInterrupted(epoch + 1)
        result = _finish(model, loop, config, paths, validation_examples, throughput, resumed_from, tracker, runtime,
                         distilled_rows if teacher_outputs is not None else None)
        status = "FINISHED"
        return result
    finally:
        tracker.end(status)


def _finish(model, loop, config, paths, validation_examples, throughput, resumed_from, tracker, runtime,
            teacher_rows: int | None = None) -> TrainResult:
    model_dir, output_dir = Path(paths.model_dir), Path(paths.output_data_dir)
    best = loop.history[loop.best_epoch] if 0 <= loop.best_epoch < len(loop.history) else {}
    metrics = {k: v for k, v in best.items() if k.startswith("val_")}
    metrics.update({"best_epoch": float(loop.best_epoch + 1), "epochs_run": float(loop.epoch + 1)})
    if throughput:
        metrics["train_samples_per_second"] = float(np.mean(throughput))
    result = TrainResult(model_dir, metrics, loop.epoch + 1, resumed_from, loop.history)
    if not runtime.is_main:
        return result
    model.load_state_dict(checkpointing.load_best(paths.checkpoint_dir))
    model.to("cpu").eval()
    model.metrics = metrics
    model.save_pretrained(model_dir)
    logger.info("best model (epoch %d, val macro-F1 %.4f) saved to %s", loop.best_epoch + 1, loop.best_metric, model_dir)
    parity = None
    if config.export_onnx:
        from training.export import export_model

        sample = validation_examples[: config.parity_sample_size]
        labels = {
            "sentiment": [e.sentiment if e.task_mask[0] else None for e in sample],
            "intent": [e.intent if e.task_mask[1] else None for e in sample],
            "aspects": [e.aspects if e.task_mask[2] else None for e in sample],
        }
        exported = export_model(model, model_dir, [e.text for e in sample], labels)
        parity = {r.model: dataclasses.asdict(r) for r in exported.parity}
        tracker.log_metrics({"onnx_int8_min_label_agreement": exported.int8.min_label_agreement})
        tracker.log_artifact(str(model_dir / "onnx" / "parity.json"))
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {"metrics": metrics, "history": loop.history, "config": dataclasses.asdict(config),
               "resumed_from_epoch": resumed_from, "mlflow_run_id": tracker.run_id, "onnx_parity": parity,
               "distillation": None if teacher_rows is None else {"teacher_dir": paths.teacher_dir,
                                                                  "train_rows_with_teacher": teacher_rows}}
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    tracker.log_metrics({k: v for k, v in metrics.items() if not k.startswith("val_")})
    return result


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    argv = list(sys.argv[1:] if argv is None else argv)
    relaunched = maybe_relaunch_distributed(argv)
    if relaunched is not None:
        return relaunched
    config, paths = parse_settings(argv)
    try:
        train(config, paths)
    except TrainingInterrupted as stop:
        return int(stop.code)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
