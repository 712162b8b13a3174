"""Teacher outputs for distillation: `python -m training.teacher_outputs --model-dir M --examples-dir D --output-dir O`.

Scores every valid row of the example files under D (labeled or not: the student learns unlabeled tasks from
these) with the trained model M (a model folder or a folder holding model.tar.gz) and writes
`teacher_manifest.json` + `teacher_outputs.jsonl.gz` (training.distillation) into O, which is what
`python -m training.train --teacher-dir O` (the SageMaker channel `teacher`) reads. The pipeline's ScoreTeacher
step runs this on the TrainTeacher model (training.teacher_source=step); the GPU run
(`python -m training.teacher_gpu`) calls `score_examples` too. Runs on a GPU when one is visible.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from training.distillation import write_teacher_outputs
from training.example_rows import read_example_rows
from training.predict import load_model, predict_probabilities, resolve_model_dir
from processing.schema import example_model_input

logger = logging.getLogger("training.teacher_outputs")


def example_texts(examples_dir: str | Path, label_maps) -> list[str]:
    """The model input text of every valid row under `examples_dir` (quarantined rows are not scored)."""
    rows, quarantined, _ = read_example_rows(examples_dir, label_maps, keep_unlabeled=True, quarantine_duplicate_ids=False)
    if quarantined:
        logger.warning("%d rows of %s are not valid examples and get no teacher outputs", len(quarantined), examples_dir)
    return [example_model_input(row) for row in rows]


def score_examples(model_dir: str | Path, examples_dirs: Sequence[str | Path], output_dir: str | Path,
                   batch_size: int = 64, device: str = "") -> Path:
    """Teacher outputs of the model in `model_dir` for every text under `examples_dirs`, written to `output_dir`."""
    import torch

    with tempfile.TemporaryDirectory(prefix="teacher-model-") as scratch:
        loaded = load_model(resolve_model_dir(model_dir, scratch))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded.model.to(device)
        texts = [text for directory in examples_dirs for text in example_texts(directory, loaded.label_maps)]
        if not texts:
            raise ValueError(f"no valid example rows under {list(map(str, examples_dirs))}: nothing to score")
        probabilities = predict_probabilities(loaded, texts, batch_size=batch_size)
        teacher = {"backbone": loaded.metadata.get("backbone", ""), "metrics": loaded.metadata.get("metrics", {}),
                   "texts": len(texts)}
        written = write_teacher_outputs(output_dir, loaded.label_maps, texts, probabilities, teacher=teacher)
    logger.info("teacher outputs for %d texts written to %s", len(texts), written)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.teacher_outputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="trained teacher: model folder or folder with model.tar.gz")
    parser.add_argument("--examples-dir", required=True, action="append",
                        help="examples.jsonl folder to score (repeatable)")
    parser.add_argument("--output-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", ""),
                        help="where the teacher outputs go")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    if not args.output_dir:
        parser.error("--output-dir is required")
    try:
        score_examples(args.model_dir, args.examples_dir, args.output_dir, batch_size=args.batch_size)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
