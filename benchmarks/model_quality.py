"""Quality benchmark: one multi-task MiniLM trained on CPU on the shared data vs TF-IDF + LR.

    .venv/bin/python -m benchmarks.model_quality --max-train-per-source 3000 --epochs 3

Reads the external data sets through `processing.adapters` (clothing reviews 3-class from
stars, airline tweets deduplicated on tweet_id, Bitext intents, SemEval-2016 laptops with its
official test set), splits each non-SemEval source 80/20 stratified with seed 13 (the rule
behind the FINDINGS baselines), trains ONE multi-task model on the union of the training
rows with the project's own trainer (`python -m training.train`, SageMaker contract), and
scores every source's test split next to the TF-IDF + logistic-regression baseline fitted
in the same run, both on the very rows the model trained on and on the full training split.
Prints a table (source, task, metric, baseline, ours, target, met?) and writes it as JSON.

The issue-18 quality table (docs/teacher.md) compares trained models instead of training one:

    .venv/bin/python -m benchmarks.model_quality --max-train-per-source 0 \
        --compare minilm=<model dir> --compare teacher=<model dir> --compare student=<model dir> --int8

scores TF-IDF (fitted on the whole training split) and every named model on the same test splits, per source
and task, with each model's ONNX int8 export scored beside it (`--int8`; the served runtime, inference.predictor)
and the int8 - fp32 difference; written to <work-dir>/comparison.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from processing.adapters import external_data_dir, get_adapter
from processing.cleaning import clean_text
from processing.schema import EXAMPLE_COLUMNS, RecordValidationError, example_model_input, validate_record
from processing.taxonomy import load_taxonomy
from training.config import EvaluationConfig
from training.evaluate import loaded_aspect_thresholds, score_tasks
from training.metrics import HEADLINE_METRIC
from training.predict import load_model, predict_probabilities
from training.tfidf_baseline import TfidfBaseline

log = logging.getLogger("benchmarks.model_quality")

SPLIT_SEED = 13
TEST_FRACTION = 0.2
"""80/20 split, seed 13: the rule behind the baselines in docs FINDINGS."""


@dataclass(frozen=True)
class BenchmarkSource:
    adapter: str
    task: str
    """The task this source is judged on (its other labeled tasks are trained and reported too)."""
    target: Optional[float] = None
    """Absolute target of the headline metric (issue 4, part 7a)."""
    margin_over_baseline: Optional[float] = None
    """Target = the full-split baseline measured in this run + this margin."""
    official_test: bool = False
    """The data set ships a test split (SemEval); otherwise 80/20 stratified."""


SOURCES = (
    BenchmarkSource("womens_clothing_reviews", "sentiment", target=0.72),
    BenchmarkSource("airline_tweets", "sentiment", target=0.79),
    BenchmarkSource("bitext_customer_support", "intent", target=0.99),
    BenchmarkSource("semeval2016_laptops", "aspects", margin_over_baseline=0.05, official_test=True),
)


# ----------------------------------------------------------------------------- data
def load_examples(adapter_name: str, split: str, root: Path) -> tuple[list[dict], Counter]:
    """Validated, labeled example rows of one adapter split, and counts of what was left out and why."""
    adapter = get_adapter(adapter_name)
    examples, left_out = [], Counter()
    for raw in adapter.iter_records(adapter.path(split, root)):
        try:
            record = validate_record(raw)
        except RecordValidationError as error:
            left_out[error.reason.value] += 1
            continue
        if not record.labeled_tasks:
            left_out["unlabeled"] += 1
            continue
        row = record.model_dump(mode="json")
        example = {column: row.get(column) for column in EXAMPLE_COLUMNS}
        example["text"] = clean_text(example["text"])
        if example.get("title"):
            example["title"] = clean_text(example["title"])
        examples.append(example)
    return examples, left_out


def _stratify_key(examples: Sequence[dict], task: str) -> Optional[list]:
    if task == "aspects":
        return None
    keys = [example.get(task) or "-" for example in examples]
    return keys if min(Counter(keys).values()) >= 2 else None


def _take(examples: list[dict], count: int, task: str, seed: int) -> tuple[list[dict], list[dict]]:
    """(`count` rows stratified on task, the rest); everything when count >= len."""
    if count <= 0:
        return [], examples
    if count >= len(examples):
        return examples, []
    taken, rest = train_test_split(examples, train_size=count, random_state=seed,
                                   stratify=_stratify_key(examples, task))
    return list(taken), list(rest)


def build_splits(source: BenchmarkSource, root: Path, max_train: int, validation_rows: int, seed: int,
                 max_test: int = 0) -> dict:
    """train (capped), validation (disjoint, for early stopping), full_train (the whole training split), test."""
    if source.official_test:
        pool, left_train = load_examples(source.adapter, "train", root)
        test, left_test = load_examples(source.adapter, "test", root)
        left_out = left_train + left_test
    else:
        everything, left_out = load_examples(source.adapter, "all", root)
        pool, test = train_test_split(everything, test_size=TEST_FRACTION, random_state=SPLIT_SEED,
                                      stratify=_stratify_key(everything, source.task))
        pool, test = list(pool), list(test)
    if max_test > 0:
        test, _ = _take(test, max_test, source.task, seed)
    validation, rest = _take(pool, validation_rows, source.task, seed)
    train, _ = _take(rest, max_train if max_train > 0 else len(rest), source.task, seed)
    log.info("%s: %d train (of %d in the training split), %d validation, %d test; left out %s",
             source.adapter, len(train), len(pool), len(validation), len(test), dict(left_out))
    return {"train": train, "validation": validation, "full_train": pool, "test": test, "left_out": dict(left_out)}


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- training
def train_model(work_dir: Path, hyperparameters: dict[str, str]) -> tuple[Path, float]:
    """Run `python -m training.train` under the SageMaker training contract; (model dir, seconds)."""
    config_dir = work_dir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2), encoding="utf-8")
    model_dir = work_dir / "model"
    env = dict(os.environ)
    env.update({
        "SM_INPUT_CONFIG_DIR": str(config_dir),
        "SM_CHANNEL_TRAIN": str(work_dir / "data" / "train"),
        "SM_CHANNEL_VALIDATION": str(work_dir / "data" / "validation"),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(work_dir / "output"),
        "SM_CHECKPOINT_DIR": str(work_dir / "checkpoints"),
        "SM_NUM_GPUS": "0",
    })
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{(work_dir / 'mlflow.db').resolve()}")
    log.info("training: %s (hyperparameters %s)", " ".join([sys.executable, "-m", "training.train"]), hyperparameters)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "training.train"], env=env, check=True)
    return model_dir, time.perf_counter() - started


# ----------------------------------------------------------------------------- scoring
def headline_scores(examples: list[dict], probabilities: dict[str, np.ndarray], config: EvaluationConfig,
                    aspect_thresholds: Optional[np.ndarray] = None) -> dict:
    """Task -> (headline metric, rows), scored as evaluation scores (training.metrics); aspects decided
    with `aspect_thresholds` (the trained model's; the baselines are judged with the same ones)."""
    label_maps = load_taxonomy().label_maps()
    tasks = score_tasks(examples, probabilities, label_maps, config, aspect_thresholds)
    return {task: (detail["overall"][HEADLINE_METRIC[task]] if detail["overall"] else None, detail["rows"])
            for task, detail in tasks.items()}


def result_rows(sources_splits: dict, ours: dict, baseline_same: dict, baseline_full: dict,
                sources: Sequence[BenchmarkSource]) -> list[dict]:
    rows = []
    for source in sources:
        splits = sources_splits[source.adapter]
        for task in ("sentiment", "intent", "aspects"):
            our_score, n_test = ours[source.adapter][task]
            if our_score is None:
                continue
            main = task == source.task
            full = baseline_full[source.adapter][task][0]
            target = None
            if main and source.target is not None:
                target = source.target
            elif main and source.margin_over_baseline is not None and full is not None:
                target = full + source.margin_over_baseline
            rows.append({
                "source": source.adapter, "task": task, "metric": HEADLINE_METRIC[task], "headline": main,
                "n_train": sum(task in (e["labeled_tasks"] or []) for e in splits["train"]), "n_test": n_test,
                "baseline_same_rows": baseline_same[source.adapter][task][0], "baseline_full_split": full,
                "ours": our_score, "target": target, "met": None if target is None else our_score >= target,
            })
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'source':26} {'task':9} {'metric':8} {'n_train':>7} {'n_test':>6} {'base(same)':>10} " \
             f"{'base(full)':>10} {'ours':>6} {'target':>7} met?"
    lines = [header, "-" * len(header)]
    for row in rows:
        def number(value):
            return f"{value:.3f}" if value is not None else "-"
        met = "-" if row["met"] is None else ("yes" if row["met"] else "NO")
        lines.append(f"{row['source']:26} {row['task']:9} {row['metric']:8} {row['n_train']:>7} {row['n_test']:>6} "
                     f"{number(row['baseline_same_rows']):>10} {number(row['baseline_full_split']):>10} "
                     f"{number(row['ours']):>6} {number(row['target']):>7} {met}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_quality", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="", help="external data root (default: processing.adapters' lookup)")
    parser.add_argument("--work-dir", default=".fbrain/benchmarks/model_quality", help="splits, model, results")
    parser.add_argument("--max-train-per-source", type=int, default=3000,
                        help="cap of training rows per source (0 = the whole training split)")
    parser.add_argument("--max-train", action="append", default=[], metavar="ADAPTER=N",
                        help="cap of one source's training rows, overriding --max-train-per-source (0 = whole split)")
    parser.add_argument("--validation-per-source", type=int, default=200,
                        help="rows per source held out of training for early stopping")
    parser.add_argument("--max-test-per-source", type=int, default=0,
                        help="smoke runs only: stratified cap of test rows per source (0 = the whole test split)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hyperparameter", action="append", default=[], metavar="NAME=VALUE",
                        help="extra training hyperparameter (TrainingConfig field), repeatable")
    parser.add_argument("--model-dir", default="", help="score this trained model instead of training one")
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="seed of subsampling and training")
    parser.add_argument("--baseline-only", action="store_true", help="score only the TF-IDF baselines (no model)")
    parser.add_argument("--skip-full-baseline", action="store_true",
                        help="smoke runs: do not fit the baseline on the whole training split (reuse the same-rows one)")
    parser.add_argument("--splits-only", action="store_true",
                        help="write <work-dir>/data/train|validation|test/examples.jsonl and stop (the GPU run's input)")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=MODEL_DIR",
                        help="score these trained models side by side (no training), repeatable")
    parser.add_argument("--source", action="append", default=[], metavar="ADAPTER",
                        help="benchmark only this source (repeatable; default: all four)")
    parser.add_argument("--int8", action="store_true",
                        help="with --compare: also score each model's onnx/model.int8.onnx (the served runtime)")
    return parser.parse_args(argv)


def selected_sources(names: Sequence[str]) -> tuple[BenchmarkSource, ...]:
    """The benchmark sources named by `--source` (all of them when none is named)."""
    known = {source.adapter: source for source in SOURCES}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"--source {', '.join(unknown)}: expected one of {sorted(known)}")
    return tuple(source for source in SOURCES if not names or source.adapter in names)


def per_source_caps(overrides: Sequence[str], default: int,
                    sources: Sequence[BenchmarkSource]) -> dict[str, int]:
    """Training-row cap per benchmark source: `default`, overridden by ADAPTER=N items."""
    caps = {source.adapter: default for source in sources}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in caps or not value.strip().isdigit():
            raise SystemExit(f"--max-train {item!r}: expected ADAPTER=N with ADAPTER one of {sorted(caps)}")
        caps[name.strip()] = int(value)
    return caps


def named_models(items: Sequence[str]) -> dict[str, Path]:
    """`--compare NAME=DIR` items -> {name: model dir}, in the order given."""
    models: dict[str, Path] = {}
    for item in items:
        name, sep, directory = item.partition("=")
        if not sep or not name.strip() or not directory.strip():
            raise SystemExit(f"--compare {item!r}: expected NAME=MODEL_DIR")
        if name.strip() in models:
            raise SystemExit(f"--compare: the name {name.strip()!r} is given twice")
        models[name.strip()] = Path(directory.strip())
    return models


def int8_probabilities(model_dir: Path, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Probabilities of the model's ONNX int8 export through the serving predictor (what the endpoint answers)."""
    from inference.config import ServingConfig
    from inference.predictor import load_predictor

    predictor = load_predictor(model_dir, ServingConfig(runtime="onnx-int8"))
    labels = predictor.card.label_maps
    answers = predictor.predict(list(texts))
    return {
        "sentiment": np.asarray([[a["sentiment"]["probabilities"][n] for n in labels["sentiment"]] for a in answers]),
        "intent": np.asarray([[a["intent"]["probabilities"][n] for n in labels["intent"]] for a in answers]),
        "aspects": np.asarray([[a["aspects"]["scores"][n] for n in labels["aspects"]] for a in answers]),
    }


def comparison_rows(splits: dict, baseline: dict, scores: dict[str, dict], int8: dict[str, dict],
                    sources: Sequence[BenchmarkSource]) -> list[dict]:
    """One row per (source, task) a model was scored on: TF-IDF, each model, each model's int8 and its delta."""
    rows = []
    for source in sources:
        for task in ("sentiment", "intent", "aspects"):
            measured = {name: by_source[source.adapter][task] for name, by_source in scores.items()}
            n_test = max((n for _, n in measured.values()), default=0)
            if not n_test:
                continue
            main_task = task == source.task
            full = baseline[source.adapter][task][0]
            target = source.target if main_task and source.target is not None else (
                full + source.margin_over_baseline if main_task and source.margin_over_baseline is not None
                and full is not None else None)
            row = {"source": source.adapter, "task": task, "metric": HEADLINE_METRIC[task], "headline": main_task,
                   "n_test": n_test, "tfidf": full, "target": target,
                   "models": {name: value for name, (value, _) in measured.items()},
                   "int8": {name: by_source[source.adapter][task][0] for name, by_source in int8.items()}}
            row["int8_minus_fp32"] = {name: (value - row["models"][name])
                                      if value is not None and row["models"][name] is not None else None
                                      for name, value in row["int8"].items()}
            rows.append(row)
    return rows


def format_comparison(rows: list[dict], names: Sequence[str], with_int8: bool) -> str:
    def number(value, signed=False):
        return "-" if value is None else (f"{value:+.3f}" if signed else f"{value:.3f}")

    columns = ["tfidf", *names, *([f"{n}:int8" for n in names] + [f"{n}:d" for n in names] if with_int8 else []),
               "target"]
    header = f"{'source':26} {'task':9} {'metric':8} {'n_test':>6} " + " ".join(f"{c:>12}" for c in columns)
    lines = [header, "-" * len(header)]
    for row in rows:
        values = [number(row["tfidf"]), *(number(row["models"][n]) for n in names)]
        if with_int8:
            values += [number(row["int8"].get(n)) for n in names]
            values += [number(row["int8_minus_fp32"].get(n), signed=True) for n in names]
        values.append(number(row["target"]))
        lines.append(f"{row['source']:26} {row['task']:9} {row['metric']:8} {row['n_test']:>6} "
                     + " ".join(f"{v:>12}" for v in values))
    return "\n".join(lines)


def benchmark_splits(args: argparse.Namespace, root: Path) -> tuple[tuple[BenchmarkSource, ...], dict[str, int], dict]:
    """(the selected sources, their training caps, their splits): the same for training runs and comparisons."""
    sources = selected_sources(args.source)
    caps = per_source_caps(args.max_train, args.max_train_per_source, sources)
    splits = {s.adapter: build_splits(s, root, caps[s.adapter], args.validation_per_source, args.seed,
                                      args.max_test_per_source) for s in sources}
    return sources, caps, splits


def compare(args: argparse.Namespace, root: Path, work_dir: Path) -> int:
    """The quality table of several trained models (docs/teacher.md): no training, same splits as `main`."""
    config = EvaluationConfig()
    models = named_models(args.compare)
    sources, caps, splits = benchmark_splits(args, root)
    label_maps = load_taxonomy().label_maps()
    baseline_rows = "train" if args.skip_full_baseline else "full_train"
    baseline = TfidfBaseline(label_maps, config).fit([e for s in sources for e in splits[s.adapter][baseline_rows]])
    scores: dict[str, dict] = {name: {} for name in models}
    # A teacher is trained without an ONNX export (it is never served): its int8 column stays empty.
    int8: dict[str, dict] = {name: {} for name, directory in models.items()
                             if (directory / "onnx" / "model.int8.onnx").is_file()} if args.int8 else {}
    for name in sorted(set(models) - set(int8) if args.int8 else ()):
        log.info("%s has no onnx/model.int8.onnx: scored in fp32 only", name)
    tfidf: dict[str, dict] = {}
    loaded = {name: load_model(directory) for name, directory in models.items()}
    for source in sources:
        test = splits[source.adapter]["test"]
        texts = [example_model_input(e) for e in test]
        for name, model in loaded.items():
            thresholds = loaded_aspect_thresholds(model)
            scores[name][source.adapter] = headline_scores(test, predict_probabilities(
                model, texts, config.prediction_batch_size, 0, config.progress_every_batches), config, thresholds)
            if name in int8:
                int8[name][source.adapter] = headline_scores(test, int8_probabilities(models[name], texts), config,
                                                             thresholds)
        first = next(iter(loaded.values()))
        tfidf[source.adapter] = headline_scores(test, baseline.predict_proba(texts), config,
                                                loaded_aspect_thresholds(first))
    rows = comparison_rows(splits, tfidf, scores, int8, sources)
    print(format_comparison(rows, list(models), args.int8))
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "comparison.json").write_text(json.dumps({
        "rows": rows, "models": {name: str(path) for name, path in models.items()}, "int8": args.int8,
        "max_train_per_source": caps, "max_test_per_source": args.max_test_per_source,
        "sources": [s.adapter for s in sources]}, indent=2), encoding="utf-8")
    log.info("comparison written to %s", work_dir / "comparison.json")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    root = Path(args.data_dir) if args.data_dir else external_data_dir()
    if not root.is_dir():
        raise SystemExit(f"external data not found at {root} (pass --data-dir)")
    work_dir = Path(args.work_dir)
    if args.compare:
        return compare(args, root, work_dir)
    if args.int8:
        raise SystemExit("--int8 goes with --compare")
    config = EvaluationConfig()
    started = time.perf_counter()

    sources, caps, splits = benchmark_splits(args, root)
    train = [e for s in sources for e in splits[s.adapter]["train"]]
    validation = [e for s in sources for e in splits[s.adapter]["validation"]]
    write_jsonl(work_dir / "data" / "train" / "examples.jsonl", train)
    write_jsonl(work_dir / "data" / "validation" / "examples.jsonl", validation)
    write_jsonl(work_dir / "data" / "test" / "examples.jsonl", [e for s in sources for e in splits[s.adapter]["test"]])
    if args.splits_only:
        log.info("splits written to %s (train %d, validation %d rows)", work_dir / "data", len(train), len(validation))
        return 0

    label_maps = load_taxonomy().label_maps()
    baseline_same = TfidfBaseline(label_maps, config).fit(train)
    baseline_full = baseline_same if args.skip_full_baseline else TfidfBaseline(label_maps, config).fit(
        [e for s in sources for e in splits[s.adapter]["full_train"]])

    hyperparameters = {"epochs": str(args.epochs), "seed": str(args.seed)}
    for item in args.hyperparameter:
        name, _, value = item.partition("=")
        hyperparameters[name.strip()] = value.strip()
    training_seconds = None
    model_dir: Optional[Path] = None
    if args.model_dir:
        model_dir = Path(args.model_dir)
    elif not args.baseline_only:
        model_dir, training_seconds = train_model(work_dir, hyperparameters)
        log.info("trained on %d rows x %d epochs in %.0fs (%.1f samples/s)", len(train), args.epochs,
                 training_seconds, len(train) * args.epochs / training_seconds)
    model = load_model(model_dir) if model_dir else None
    thresholds = loaded_aspect_thresholds(model) if model else None

    ours, same, full = {}, {}, {}
    for source in sources:
        test = splits[source.adapter]["test"]
        texts = [example_model_input(e) for e in test]
        same[source.adapter] = headline_scores(test, baseline_same.predict_proba(texts), config, thresholds)
        full[source.adapter] = headline_scores(test, baseline_full.predict_proba(texts), config, thresholds)
        # Without a model, the same-rows baseline stands in for "ours" so the table still prints.
        ours[source.adapter] = headline_scores(test, predict_probabilities(
            model, texts, config.prediction_batch_size, 0, config.progress_every_batches), config, thresholds) \
            if model else same[source.adapter]
    rows = result_rows(splits, ours, same, full, sources)
    table = format_table(rows)
    print(table)
    headline = [row for row in rows if row["headline"]]
    met = sum(bool(row["met"]) for row in headline)
    trained = f"training {training_seconds:.0f}s" if training_seconds else f"model from {model_dir} (not trained here)"
    print(f"targets met: {met}/{len(headline)}; training rows {len(train)}, epochs {args.epochs}, "
          f"{trained}, total {time.perf_counter() - started:.0f}s")
    results = {
        "rows": rows, "targets_met": met, "targets": len(headline), "train_rows": len(train),
        "validation_rows": len(validation), "epochs": args.epochs, "hyperparameters": hyperparameters,
        "training_seconds": training_seconds, "model_dir": str(model_dir) if model_dir else None,
        "left_out": {s.adapter: splits[s.adapter]["left_out"] for s in sources},
        "max_train_per_source": caps, "max_test_per_source": args.max_test_per_source,
    }
    (work_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    log.info("results written to %s", work_dir / "results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
