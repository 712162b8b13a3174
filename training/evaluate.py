"""The `EvaluateModel` processing step: score the candidate, the TF-IDF baseline and the champion.

    python3 -m training.evaluate --model-dir /opt/ml/processing/model --test-dir /opt/ml/processing/test \
        --train-dir /opt/ml/processing/train --output-dir /opt/ml/processing/evaluation

Writes `evaluation.json` (SageMaker model-quality layout at the top, per-task and per-source
detail under `tasks`, `baseline`, `champion`, `gate`) and `quarantine.jsonl` (example rows
that could not be scored, one reason each). See docs/contracts.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from processing.schema import TASKS, example_model_input
from processing.settings import add_settings_argument, load_sections
from processing.workspace import in_sagemaker_job
from training.champion import ChampionLookupError, RegisteredChampion, registered_champion
from training.config import EvaluationConfig
from training.example_rows import read_example_records
from training.gate import decide_gate
from training.metrics import (
    DEFAULT_ASPECT_THRESHOLD,
    HEADLINE_METRIC,
    model_aspect_thresholds,
    multi_label_report,
    sagemaker_multiclass_metrics,
    single_label_report,
)
from training.predict import LoadedModel, load_model, predict_probabilities, resolve_model_dir
from training.tfidf_baseline import TfidfBaseline, rows_labeled_for

log = logging.getLogger("training.evaluate")

EVALUATION_FILE = "evaluation.json"
QUARANTINE_FILE = "quarantine.jsonl"
CHAMPION_DIR_ENV = "FBRAIN_CHAMPION_MODEL_DIR"
BASELINE_NAME = "tfidf-logreg"
Probabilities = Mapping[str, np.ndarray]
AspectThresholds = Optional[np.ndarray | float]
"""A model's aspect thresholds (`training.metrics.model_aspect_thresholds`); None: the default,
as the endpoint uses for a model saved without one (and for the TF-IDF baseline)."""


# ----------------------------------------------------------------------------- scoring
def _task_report(
    task: str, rows: list[int], examples: Sequence[Mapping[str, Any]], probabilities: np.ndarray,
    labels: Sequence[str], config: EvaluationConfig, aspect_thresholds: AspectThresholds,
) -> dict[str, Any]:
    if task == "aspects":
        index = {name: k for k, name in enumerate(labels)}
        truth = np.zeros((len(rows), len(labels)), dtype=int)
        for r, i in enumerate(rows):
            for aspect in examples[i]["aspects"]:
                truth[r, index[aspect]] = 1
        thresholds = DEFAULT_ASPECT_THRESHOLD if aspect_thresholds is None else aspect_thresholds
        return multi_label_report(truth, probabilities[rows], labels, thresholds, config.calibration_bins)
    truth = np.array([list(labels).index(examples[i][task]) for i in rows], dtype=int)
    return single_label_report(truth, probabilities[rows], labels, config.calibration_bins)


def score_tasks(
    examples: Sequence[Mapping[str, Any]], probabilities: Probabilities,
    label_maps: Mapping[str, Sequence[str]], config: EvaluationConfig, aspect_thresholds: AspectThresholds = None,
) -> dict[str, Any]:
    """Per task: `overall` and `by_source` reports over the rows labeled for that task.

    Aspects are decided with `aspect_thresholds`, the scored model's own (as it is served).

    A task with no labeled rows (or no predictions) is reported as `{"rows": 0}` so readers
    can tell "not measured" from "scored zero".
    """
    tasks: dict[str, Any] = {}
    for task in TASKS:
        rows = rows_labeled_for(examples, task)
        if not rows or task not in probabilities:
            tasks[task] = {"rows": 0, "overall": None, "by_source": {}}
            continue
        by_source: dict[str, list[int]] = {}
        for i in rows:
            by_source.setdefault(examples[i]["source"], []).append(i)
        labels = label_maps[task]
        tasks[task] = {
            "rows": len(rows),
            "overall": _task_report(task, rows, examples, probabilities[task], labels, config, aspect_thresholds),
            "by_source": {
                source: _task_report(task, source_rows, examples, probabilities[task], labels, config,
                                     aspect_thresholds)
                for source, source_rows in sorted(by_source.items())
            },
        }
    return tasks


def headline(tasks: Mapping[str, Any]) -> dict[str, Optional[float]]:
    """Task -> its headline metric (None when the task was not measured)."""
    return {
        task: (detail["overall"][HEADLINE_METRIC[task]] if detail.get("overall") else None)
        for task, detail in tasks.items()
    }


def deltas(candidate: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """Candidate minus reference on each task's headline metric, where both were measured."""
    ours, theirs = headline(candidate), headline(reference)
    return {
        task: {"metric": HEADLINE_METRIC[task], "delta": ours[task] - theirs[task]}
        for task in ours if ours[task] is not None and theirs.get(task) is not None
    }


# ----------------------------------------------------------------------------- champion
def resolve_champion(scratch_dir: Path) -> Optional[tuple[Path, str]]:
    """Locally: (extracted champion model dir, display name) from CHAMPION_DIR_ENV, or None.

    The local runner sets that variable to the registry's `champion` version; on SageMaker the
    champion's recorded metrics are read instead (training.champion.registered_champion)."""
    local = os.environ.get(CHAMPION_DIR_ENV)
    if local:
        return resolve_model_dir(local, scratch_dir / "champion"), Path(local).name
    return None


def registry_champion(model_package_group: str) -> Optional[RegisteredChampion]:
    """Inside a SageMaker job, with a model package group: the newest Approved package and its recorded evaluation.

    Locally (the embedded runner, or the module run by hand) the champion is CHAMPION_DIR_ENV's, or none."""
    if not model_package_group or not in_sagemaker_job():
        return None
    return registered_champion(model_package_group)


# ----------------------------------------------------------------------------- the report
def loaded_aspect_thresholds(loaded: LoadedModel) -> np.ndarray:
    """The aspect thresholds stored with a loaded model (fbrain_model.json), as the endpoint reads them."""
    return model_aspect_thresholds(loaded.metadata, loaded.label_maps["aspects"])


def _score_model(
    loaded: LoadedModel, examples: Sequence[Mapping[str, Any]], label_maps: Mapping[str, Sequence[str]],
    config: EvaluationConfig,
) -> tuple[Probabilities, dict[str, Any]]:
    stored = {task: list(labels) for task, labels in loaded.label_maps.items()}
    if stored != {task: list(label_maps[task]) for task in stored}:
        raise ValueError(f"model at {loaded.path} was trained with label maps {stored}, the test split uses {dict(label_maps)}")
    probabilities = predict_probabilities(
        loaded, [example_model_input(e) for e in examples], config.prediction_batch_size, config.max_seq_length,
        config.progress_every_batches,
    )
    return probabilities, score_tasks(examples, probabilities, label_maps, config, loaded_aspect_thresholds(loaded))


def build_report(
    examples: Sequence[Mapping[str, Any]],
    candidate_probabilities: Probabilities,
    label_maps: Mapping[str, Sequence[str]],
    config: EvaluationConfig,
    baseline_probabilities: Optional[Probabilities] = None,
    champion_probabilities: Optional[Probabilities] = None,
    champion_name: Optional[str] = None,
    aspect_thresholds: AspectThresholds = None,
    champion_aspect_thresholds: AspectThresholds = None,
    champion_recorded_tasks: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """evaluation.json as a dict, from predictions already made on `examples`.

    Each model's aspects are decided with its own thresholds; the baseline uses the candidate's.
    The champion is either scored here (`champion_probabilities`, locally) or known by the `tasks`
    of the evaluation recorded when it was registered (`champion_recorded_tasks`, on SageMaker).
    """
    tasks = score_tasks(examples, candidate_probabilities, label_maps, config, aspect_thresholds)
    sentiment_rows = rows_labeled_for(examples, "sentiment")
    if sentiment_rows and "sentiment" in candidate_probabilities:
        labels = label_maps["sentiment"]
        truth = np.array([list(labels).index(examples[i]["sentiment"]) for i in sentiment_rows])
        quality = sagemaker_multiclass_metrics(
            truth, candidate_probabilities["sentiment"][sentiment_rows], labels,
            config.bootstrap_rounds, config.bootstrap_seed,
        )
    else:
        quality = {"multiclass_classification_metrics": {}}

    baseline = None
    if baseline_probabilities is not None:
        baseline_tasks = score_tasks(examples, baseline_probabilities, label_maps, config, aspect_thresholds)
        baseline = {"model": BASELINE_NAME, "tasks": baseline_tasks, "delta": deltas(tasks, baseline_tasks)}

    champion = None
    champion_scores = None
    if champion_probabilities is not None:
        champion_tasks = score_tasks(examples, champion_probabilities, label_maps, config, champion_aspect_thresholds)
        champion_scores = headline(champion_tasks)
        champion = {"name": champion_name, "tasks": champion_tasks, "delta": deltas(tasks, champion_tasks)}
    elif champion_recorded_tasks is not None:
        champion_scores = headline(champion_recorded_tasks)
        champion = {"name": champion_name, "source": "recorded at registration",
                    "delta": deltas(tasks, champion_recorded_tasks)}

    gate = decide_gate(
        headline(tasks), config.macro_f1_threshold, config.regression_tolerance, champion_scores, champion_name
    )
    if champion is not None:
        champion["macro_f1"] = gate.champion_macro_f1
    return {
        **quality,
        "tasks": tasks,
        "baseline": baseline,
        "champion": champion,
        "gate": gate.as_dict(),
    }


def evaluate(
    model_dir: str | Path,
    test_dir: str | Path,
    output_dir: str | Path,
    train_dir: Optional[str | Path] = None,
    model_package_group: str = "",
    config: Optional[EvaluationConfig] = None,
) -> dict[str, Any]:
    """Run the whole step; returns the report it wrote to `output_dir/evaluation.json`."""
    config = config or EvaluationConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fbrain-eval-") as scratch:
        scratch_dir = Path(scratch)
        loaded = load_model(resolve_model_dir(model_dir, scratch_dir / "candidate"))
        label_maps = loaded.label_maps
        examples, quarantined = read_example_records(test_dir, label_maps)
        if not examples:
            raise ValueError(f"no usable test rows in {test_dir} ({len(quarantined)} quarantined)")
        log.info("scoring candidate %s on %d test rows", model_dir, len(examples))
        candidate_probabilities, _ = _score_model(loaded, examples, label_maps, config)

        baseline_probabilities = None
        train_quarantined: list[dict[str, Any]] = []
        train_rows = 0
        if train_dir and Path(train_dir).exists():
            train_examples, train_quarantined = read_example_records(train_dir, label_maps, as_training_reads=True)
            train_rows = len(train_examples)
            log.info("fitting the TF-IDF baseline on %d training rows", train_rows)
            baseline = TfidfBaseline(label_maps, config).fit(train_examples)
            baseline_probabilities = baseline.predict_proba([example_model_input(e) for e in examples])
        else:
            log.warning("no training split given (--train-dir %s): baseline is null", train_dir)

        champion_probabilities, champion_name, champion_thresholds = None, None, None
        champion = resolve_champion(scratch_dir)
        champion_skipped = None
        if champion is not None:
            champion_dir, champion_name = champion
            champion_model = load_model(champion_dir)
            if champion_model.label_maps != label_maps:
                # A champion trained on another taxonomy predicts other classes: not comparable.
                champion_skipped = f"champion {champion_name} uses different label maps; not compared"
                log.warning(champion_skipped)
                champion_name = None
            else:
                log.info("scoring champion %s on the same %d test rows", champion_name, len(examples))
                champion_probabilities, _ = _score_model(champion_model, examples, label_maps, config)
                champion_thresholds = loaded_aspect_thresholds(champion_model)

    recorded = registry_champion(model_package_group) if champion is None else None
    recorded_tasks = None
    if recorded is not None:
        champion_name = recorded.name
        recorded_taxonomy = (recorded.evaluation.get("evaluation") or {}).get("taxonomy_version")
        if recorded_taxonomy != loaded.metadata.get("taxonomy_version") or "tasks" not in recorded.evaluation:
            champion_skipped = (f"champion {recorded.name} was evaluated under taxonomy {recorded_taxonomy!r}, the "
                                f"candidate under {loaded.metadata.get('taxonomy_version')!r}; not compared")
            log.warning(champion_skipped)
            champion = (None, recorded.name)
        else:
            recorded_tasks = recorded.evaluation["tasks"]
    report = build_report(
        examples, candidate_probabilities, label_maps, config,
        baseline_probabilities, champion_probabilities, champion_name if not champion_skipped else None,
        loaded_aspect_thresholds(loaded), champion_thresholds, recorded_tasks,
    )
    if recorded is not None and report["champion"] is not None:
        report["champion"].update({"model_package_arn": recorded.package.arn,
                                   "statistics_uri": recorded.package.statistics_uri})
    if champion_skipped:
        report["champion"] = {"name": champion[1], "skipped": champion_skipped}
    all_quarantined = [{**row, "split": "test"} for row in quarantined] + [
        {**row, "split": "train"} for row in train_quarantined
    ]
    report["evaluation"] = {
        "created_at": datetime.now(timezone.utc).isoformat(),
        "model_dir": str(model_dir),
        "taxonomy_version": loaded.metadata.get("taxonomy_version"),
        "test_rows": len(examples),
        "train_rows": train_rows,
        "quarantined_rows": len(all_quarantined),
        "quarantine_file": QUARANTINE_FILE if all_quarantined else None,
        "config": dataclasses.asdict(config),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if all_quarantined:
        with (output_dir / QUARANTINE_FILE).open("w", encoding="utf-8") as handle:
            for row in all_quarantined:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (output_dir / EVALUATION_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    gate = report["gate"]
    log.info("gate %s: macro_f1=%.4f threshold=%.3f champion=%s -> %s",
             "PASSED" if gate["passed"] else "FAILED", gate["macro_f1"], gate["threshold"],
             gate["champion_macro_f1"], gate["message"])
    return report


# ----------------------------------------------------------------------------- command line
SECTION = "evaluation"
"""The configuration section this job takes whole (`--set evaluation.field=value`)."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="extracted model, or a folder holding model.tar.gz")
    parser.add_argument("--test-dir", required=True, help="folder of *.jsonl example files (or one file)")
    parser.add_argument("--train-dir", default="", help="training split for the TF-IDF baseline")
    parser.add_argument("--output-dir", required=True, help="where evaluation.json is written")
    parser.add_argument("--model-package-group", default="", help="registry group holding the champion (AWS)")
    add_settings_argument(parser, [SECTION])
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> EvaluationConfig:
    """Defaults, then FBRAIN__EVALUATION__* variables, then `--set evaluation.X=...` (the pipeline passes them all)."""
    config = EvaluationConfig()
    load_sections({SECTION: config}, args.settings)
    return config


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = config_from_args(args)
    try:
        evaluate(args.model_dir, args.test_dir, args.output_dir, args.train_dir or None, args.model_package_group,
                 config)
    except ChampionLookupError as error:  # the gate cannot be decided without the champion: fail the step
        log.error("champion lookup failed: %s", error)
        return 1
    # The gate's verdict travels in evaluation.json; the step itself succeeds either way so
    # the pipeline's condition (not a crashed job) decides and the Fail step shows the message.
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
