"""Training-throughput benchmark: our training loop vs Hugging Face `Trainer`, same run.

    .venv/bin/python benchmarks/training_throughput.py [--samples 384] [--epochs 1] [--backbone all-MiniLM-L6-v2]

Both sides train the same multi-task MiniLM (same initial weights, seed, batch size, learning
rate, sequence cap, dynamic padding, length-grouped batches) on the same labeled rows of the
shipped demo corpus (`processing/data/demo_feedback.jsonl`, read through training.data), for
the same number of epochs, each in its own fresh process so peak RSS is per side. Reported:
training-loop samples/s (validation, checkpointing and export are not timed on either side),
the ratio ours / Trainer (target >= 1.0) and peak RSS (target <= 3 GB on CPU).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true", "SAGEMAKER_VALIDATE_ROLE": "false",
    "AWS_DEFAULT_REGION": "us-east-1", "TOKENIZERS_PARALLELISM": "false",
}
DEMO_CORPUS = REPO / "processing" / "data"
RSS_TARGET_GB = 3.0
RATIO_TARGET = 1.0
VALIDATION_ROWS = 32
"""Rows held out for our loop's per-epoch validation (not timed); Trainer does no evaluation."""


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def _subset(samples: int, workdir: Path) -> tuple[Path, Path]:
    """Write the first `samples` + VALIDATION_ROWS labeled demo rows as train/validation channels."""
    from processing.taxonomy import load_taxonomy
    from training.data import read_examples

    label_maps = load_taxonomy().label_maps()
    kept = {e.feedback_id for e in read_examples(DEMO_CORPUS, label_maps).examples}
    rows = []
    for path in sorted(DEMO_CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("feedback_id") in kept:
                rows.append(row)
                kept.discard(row["feedback_id"])
    if len(rows) < samples + VALIDATION_ROWS:
        raise SystemExit(f"the demo corpus has {len(rows)} usable rows, fewer than --samples {samples} + {VALIDATION_ROWS}")
    for name, part in (("train", rows[:samples]), ("validation", rows[samples : samples + VALIDATION_ROWS])):
        (workdir / name).mkdir(parents=True, exist_ok=True)
        (workdir / name / "examples.jsonl").write_text("\n".join(json.dumps(r) for r in part) + "\n", encoding="utf-8")
    return workdir / "train", workdir / "validation"


def shared_config(args: argparse.Namespace):
    """The settings both sides train with (one learning rate: Trainer has no per-head rate)."""
    from training.config import TrainingConfig

    return TrainingConfig(
        backbone=args.backbone, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        head_learning_rate=args.learning_rate, max_seq_length=args.max_seq_length, seed=args.seed,
        export_onnx=False, early_stopping_patience=0, class_weighting=False,
    )


def run_ours(args: argparse.Namespace, workdir: Path) -> dict:
    from training.train import RunPaths, train

    config = shared_config(args)
    paths = RunPaths(train_dir=str(workdir / "train"), validation_dir=str(workdir / "validation"),
                     model_dir=str(workdir / "ours_model"), output_data_dir=str(workdir / "ours_out"),
                     checkpoint_dir=str(workdir / "ours_ckpt"), resume=False)
    result = train(config, paths)
    rates = [epoch["samples_per_second"] for epoch in result.history]
    return {"samples_per_second": sum(rates) / len(rates), "final_train_loss": result.history[-1]["train_loss"]}


def run_trainer(args: argparse.Namespace, workdir: Path) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from training.data import collate, read_examples, tokenize_examples
    from training.train import build_model, loss_settings, seed_everything

    seed_everything(args.seed)
    config = shared_config(args)
    model = build_model(config)
    # The same loss as our loop (task weights; class weighting is off on both sides), so the
    # final losses compare.
    model.set_loss_settings(loss_settings(config))
    examples = read_examples(workdir / "train", model.label_maps).examples
    tokenize_examples(examples, model.tokenizer, args.max_seq_length)
    # Trainer's length grouping reads `input_ids` off each item; the example rides along.
    dataset = [{"input_ids": e.input_ids, "example": e} for e in examples]
    pad = model.tokenizer.pad_token_id
    training_args = TrainingArguments(
        output_dir=str(workdir / "trainer_out"), per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs, learning_rate=args.learning_rate, warmup_steps=0.1, weight_decay=0.01,
        lr_scheduler_type="linear", seed=args.seed, train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        save_strategy="no", eval_strategy="no", report_to=[], logging_steps=20, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset,
                      data_collator=lambda features: collate([f["example"] for f in features], pad))
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    # Trainer's own figure (samples / train_runtime) is the baseline; the wall clock around
    # train() (which adds its setup) is kept for reference.
    return {"samples_per_second": output.metrics.get("train_samples_per_second") or len(examples) * args.epochs / seconds,
            "wall_clock_samples_per_second": len(examples) * args.epochs / seconds,
            "final_train_loss": output.training_loss}


def child(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workdir = Path(args.workdir)
    result = run_ours(args, workdir) if args.child == "ours" else run_trainer(args, workdir)
    result["peak_rss_gb"] = peak_rss_gb()
    (workdir / f"{args.child}.json").write_text(json.dumps(result), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=384, help="training rows (from the demo corpus)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--repeats", type=int, default=2, help="alternating trials per side (median reported)")
    parser.add_argument("--child", choices=["ours", "trainer"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.update(OFFLINE_ENV)
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="fbrain-train-bench-") as tmp:
        workdir = Path(tmp)
        _subset(args.samples, workdir)
        forwarded = [a for a in sys.argv[1:]]
        trials: dict[str, list[dict]] = {"trainer": [], "ours": []}
        # Alternating trials: on a shared machine the load drifts, and alternation spreads
        # that drift over both sides instead of handing it to whichever ran second.
        for trial in range(args.repeats):
            for side in ("trainer", "ours"):
                command = [sys.executable, __file__, *forwarded, "--child", side, "--workdir", str(workdir)]
                completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV})
                if completed.returncode != 0:
                    sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
                    raise SystemExit(f"{side} run failed with exit code {completed.returncode}")
                result = json.loads((workdir / f"{side}.json").read_text())
                trials[side].append(result)
                print(f"trial {trial + 1}/{args.repeats} {side}: {result['samples_per_second']:.1f} samples/s, "
                      f"peak RSS {result['peak_rss_gb']:.2f} GB, load average {os.getloadavg()[0]:.1f}", flush=True)
    ours, base = (
        {
            "samples_per_second": statistics.median(t["samples_per_second"] for t in runs),
            "peak_rss_gb": max(t["peak_rss_gb"] for t in runs),
            "final_train_loss": runs[-1]["final_train_loss"],
        }
        for runs in (trials["ours"], trials["trainer"])
    )
    ratio = ours["samples_per_second"] / base["samples_per_second"]
    peak = max(ours["peak_rss_gb"], base["peak_rss_gb"])
    print(f"\ntraining throughput: {args.backbone}, {args.samples} samples x {args.epochs} epoch(s), "
          f"batch {args.batch_size}, max {args.max_seq_length} tokens, dynamic padding, length-grouped")
    print(f"{'loop (median of ' + str(args.repeats) + ')':<26}{'samples/s':>10}{'peak RSS GB':>13}{'final loss':>12}")
    print(f"{'HF Trainer (baseline)':<26}{base['samples_per_second']:>10.1f}{base['peak_rss_gb']:>13.2f}{base['final_train_loss']:>12.4f}")
    print(f"{'feedback-brain loop':<26}{ours['samples_per_second']:>10.1f}{ours['peak_rss_gb']:>13.2f}{ours['final_train_loss']:>12.4f}")
    print(f"ratio ours/Trainer: {ratio:.2f} (target >= {RATIO_TARGET}) -> {'PASS' if ratio >= RATIO_TARGET else 'FAIL'}")
    print(f"peak RSS: {peak:.2f} GB (target <= {RSS_TARGET_GB}) -> {'PASS' if peak <= RSS_TARGET_GB else 'FAIL'}")


if __name__ == "__main__":
    main()
