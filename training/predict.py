"""Batch prediction with a trained PyTorch `MultiTaskClassifier`: texts -> per-task probabilities.

Accepts a model directory in the layout of docs/contracts.md, or a folder holding the
`model.tar.gz` a training job produced (extracted on the fly). Returns softmax
probabilities for sentiment and intent and sigmoid probabilities for aspects, columns in
the label order stored with the model (`fbrain_model.json` -> `label_maps`).
"""
from __future__ import annotations

import json
import logging
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

MODEL_ARCHIVE = "model.tar.gz"
MODEL_METADATA = "fbrain_model.json"
LOGIT_OUTPUTS = {"sentiment": "sentiment_logits", "intent": "intent_logits", "aspects": "aspect_logits"}
"""Task -> name of the model output holding its logits (same names as the ONNX outputs)."""
MULTI_LABEL_TASKS = frozenset({"aspects"})
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ModelDirError(ValueError):
    """The path does not hold a loadable model (says what was found instead)."""


def extract_archive(archive: Path, destination: Path) -> Path:
    """Extract a model.tar.gz safely (no absolute paths or `..` escapes) and return the folder."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(destination, filter="data")
    return destination


def resolve_model_dir(path: str | Path, scratch_dir: str | Path) -> Path:
    """The extracted model folder for `path`: itself when it holds a model, else its model.tar.gz extracted under scratch_dir."""
    path = Path(path)
    if path.is_file() and path.name.endswith(".tar.gz"):
        return extract_archive(path, Path(scratch_dir) / "model")
    if (path / MODEL_METADATA).is_file():
        return path
    if (path / MODEL_ARCHIVE).is_file():
        extracted = extract_archive(path / MODEL_ARCHIVE, Path(scratch_dir) / "model")
        if not (extracted / MODEL_METADATA).is_file():
            raise ModelDirError(f"{path / MODEL_ARCHIVE} has no {MODEL_METADATA} at its root")
        return extracted
    found = sorted(p.name for p in path.iterdir()) if path.is_dir() else "nothing (path does not exist)"
    raise ModelDirError(f"{path} holds neither {MODEL_METADATA} nor {MODEL_ARCHIVE}; found: {found}")


@dataclass
class LoadedModel:
    model: Any
    """The `training.model.MultiTaskClassifier`, in eval mode."""
    tokenizer: Any
    metadata: dict[str, Any]
    """Contents of fbrain_model.json."""
    path: Path

    @property
    def label_maps(self) -> dict[str, list[str]]:
        return self.metadata["label_maps"]

    @property
    def max_seq_length(self) -> int:
        return int(self.metadata.get("max_seq_length", 128))


def load_model(model_dir: str | Path) -> LoadedModel:
    """Load an extracted model directory (see `resolve_model_dir` for archives)."""
    from transformers import AutoTokenizer

    from training.model import MultiTaskClassifier

    model_dir = Path(model_dir)
    metadata_path = model_dir / MODEL_METADATA
    if not metadata_path.is_file():
        raise ModelDirError(f"{model_dir} has no {MODEL_METADATA}; is it an extracted model directory?")
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    if "label_maps" not in metadata:
        raise ModelDirError(f"{metadata_path} has no label_maps")
    model = MultiTaskClassifier.from_pretrained(str(model_dir))
    model.eval()
    tokenizer = getattr(model, "tokenizer", None) or AutoTokenizer.from_pretrained(str(model_dir))
    return LoadedModel(model=model, tokenizer=tokenizer, metadata=metadata, path=model_dir)


def _logits(output: Any, name: str):
    if isinstance(output, dict):
        return output[name]
    return getattr(output, name)


def predict_probabilities(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int = 64,
    max_seq_length: int = 0,
    progress_every_batches: int = 20,
) -> dict[str, np.ndarray]:
    """`{task: (len(texts), len(labels))}` probabilities, rows in the order of `texts`.

    Texts are sorted by length into batches so each batch pads only to its own longest text;
    rows are put back in input order before returning. Runs on the device the model is on.
    """
    import torch

    device = next(loaded.model.parameters()).device

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    limit = max_seq_length or loaded.max_seq_length
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs: dict[str, list[np.ndarray]] = {task: [] for task in LOGIT_OUTPUTS}
    started = time.perf_counter()
    n_batches = (len(texts) + batch_size - 1) // batch_size
    with torch.inference_mode():
        for b in range(n_batches):
            batch = [texts[i] for i in order[b * batch_size:(b + 1) * batch_size]]
            encoded = loaded.tokenizer(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt")
            output = loaded.model(**{k: v.to(device) for k, v in encoded.items() if k in MODEL_INPUTS})
            for task, name in LOGIT_OUTPUTS.items():
                logits = _logits(output, name).float()
                probabilities = torch.sigmoid(logits) if task in MULTI_LABEL_TASKS else torch.softmax(logits, dim=-1)
                outputs[task].append(probabilities.cpu().numpy())
            if progress_every_batches and (b + 1) % progress_every_batches == 0:
                done = min((b + 1) * batch_size, len(texts))
                elapsed = time.perf_counter() - started
                log.info("predicted %d/%d texts (%.1f texts/s)", done, len(texts), done / max(elapsed, 1e-9))
    inverse = np.empty(len(order), dtype=int)
    inverse[order] = np.arange(len(order))
    result = {}
    for task, chunks in outputs.items():
        width = len(loaded.label_maps[task])
        stacked = np.concatenate(chunks) if chunks else np.zeros((0, width))
        result[task] = stacked[inverse] if len(texts) else stacked
    if texts:
        log.info("predicted %d texts in %.1fs", len(texts), time.perf_counter() - started)
    return result
