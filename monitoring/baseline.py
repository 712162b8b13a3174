"""Pipeline step ComputeMonitorBaseline: `python3 -m monitoring.baseline`.

Scores the training texts with the candidate model and writes, under --output-dir:
statistics.json and constraints.json (Model Monitor's formats, over text descriptors and
predictions), embeddings.npy (a bounded reference sample for embedding drift), the model's
tokenizer.json (for out-of-vocabulary rates of captured texts), and
quarantine.jsonl when some training lines could not be used (each with a reason).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from monitoring.artifacts import resolve_model_dir
from monitoring.config import MonitoringConfig
from processing.settings import add_settings_argument, load_sections
from monitoring.features import monitored_statistics
from monitoring.model_monitor_format import build_constraints
from monitoring.prediction_features import columns_from_probabilities
from monitoring.scoring import ModelScorer
from monitoring.text_descriptors import TOKENIZER_FILE, TextDescriber
from processing.schema import example_model_input
from training.example_rows import read_example_records

logger = logging.getLogger(__name__)

STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
EMBEDDINGS_FILE = "embeddings.npy"
QUARANTINE_FILE = "quarantine.jsonl"
BASELINE_ASPECT_THRESHOLDS = "aspect_thresholds"
"""statistics.json key: the baselined model's aspect thresholds, so the monitor's aspect rates
decide aspects as the endpoint does (training.metrics.aspect_decisions)."""


@dataclass
class BaselineResult:
    output_dir: Path
    records: int
    quarantined: int


def compute_baseline(model_dir: str, train_dir: str, output_dir: str, config: Optional[MonitoringConfig] = None) -> BaselineResult:
    config = config or MonitoringConfig()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model_dir(model_dir)
    scorer = ModelScorer(model_path, config)
    rows, quarantined = read_example_records(train_dir, scorer.label_maps)
    # Composed the way the endpoint composes title + text, so captured and baseline texts compare.
    texts = [example_model_input(row) for row in rows]
    if not texts:
        raise ValueError(f"no usable training texts in {train_dir} ({len(quarantined)} quarantined)")
    rng = np.random.default_rng(config.sample_seed)
    if len(texts) > config.baseline_max_records:
        keep = np.sort(rng.choice(len(texts), config.baseline_max_records, replace=False))
        logger.info("baseline uses a seeded sample of %d of %d texts", len(keep), len(texts))
        texts = [texts[i] for i in keep]

    scores = scorer.score(texts)
    # The tokenizer travels with the baseline so the monitoring job's descriptors need no model.
    shutil.copyfile(model_path / TOKENIZER_FILE, output / TOKENIZER_FILE)
    columns = TextDescriber(output / TOKENIZER_FILE, config).describe(texts).columns
    columns.update(columns_from_probabilities(
        scores.label_maps, scores.sentiment_probabilities, scores.intent_probabilities, scores.aspect_scores
    ))
    reference_rows = min(config.embedding_reference_size, len(texts))
    sample = np.sort(rng.choice(len(texts), reference_rows, replace=False))
    np.save(output / EMBEDDINGS_FILE, scores.embeddings[sample].astype(np.float32))

    statistics = monitored_statistics(
        columns, scores.label_maps, config, dataset_name="training",
        extra={"embedding_reference": {"file": EMBEDDINGS_FILE, "rows": int(reference_rows),
                                       "dimension": int(scores.embeddings.shape[1])},
               BASELINE_ASPECT_THRESHOLDS: scorer.aspect_thresholds},
    )
    (output / STATISTICS_FILE).write_text(json.dumps(statistics, indent=2), encoding="utf-8")
    (output / CONSTRAINTS_FILE).write_text(json.dumps(build_constraints(statistics, config), indent=2), encoding="utf-8")
    if quarantined:
        with (output / QUARANTINE_FILE).open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in quarantined)
    logger.info("baseline of %d texts written to %s", len(texts), output)
    return BaselineResult(output, len(texts), len(quarantined))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="/opt/ml/processing/model", help="model directory or model.tar.gz")
    parser.add_argument("--train-dir", default="/opt/ml/processing/train", help="folder of examples.jsonl")
    parser.add_argument("--output-dir", default="/opt/ml/processing/baseline")
    add_settings_argument(parser, ["monitoring"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = MonitoringConfig()
    load_sections({"monitoring": config}, args.settings)
    compute_baseline(args.model_dir, args.train_dir, args.output_dir, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
