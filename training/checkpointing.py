"""Epoch checkpoints so a spot-interrupted training job resumes where it stopped.

`last.pt` holds everything the loop needs to continue bit-for-bit: model, optimizer,
scheduler and grad-scaler states, Python / NumPy / torch (CPU and CUDA) RNG states, the
completed epoch, the early-stopping bookkeeping and the metric history. `best.pt` holds the
weights of the best epoch so far. Both are written atomically (temp file + rename): an
interruption mid-write leaves the previous checkpoint intact. On SageMaker the folder is
`/opt/ml/checkpoints`, which the service syncs to S3 and restores on the next attempt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

LAST_FILE = "last.pt"
BEST_FILE = "best.pt"


class CheckpointMismatchError(RuntimeError):
    """The checkpoint folder belongs to a run with a different configuration."""


@dataclass
class LoopState:
    """Progress of the training loop that must survive an interruption."""

    epoch: int = -1
    """Last completed epoch (0-based); -1 before the first."""
    global_step: int = 0
    best_metric: float = float("-inf")
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    finished: bool = False
    """True once early stopping fired (a resumed job must not train further)."""
    history: list[dict[str, float]] = field(default_factory=list)


def config_fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def save_best(directory: str | Path, model_state: dict[str, torch.Tensor], epoch: int, metric: float) -> None:
    state = {name: tensor.detach().cpu().clone() for name, tensor in model_state.items()}
    _atomic_save({"model": state, "epoch": epoch, "metric": metric}, Path(directory) / BEST_FILE)


def load_best(directory: str | Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / BEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no best-model checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def save_checkpoint(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    loop: LoopState,
    fingerprint: str,
) -> Path:
    path = Path(directory) / LAST_FILE
    _atomic_save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_states(),
            "loop": loop.__dict__,
            "fingerprint": fingerprint,
        },
        path,
    )
    logger.info("checkpoint of epoch %d written to %s", loop.epoch + 1, path)
    return path


def load_checkpoint(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    fingerprint: str,
) -> LoopState | None:
    """Restore every state from `last.pt`; None when the folder holds no checkpoint."""
    path = Path(directory) / LAST_FILE
    if not path.is_file():
        return None
    # Our own file: it holds NumPy RNG arrays and Python tuples, which weights_only rejects.
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(
            f"{path} was written by a run with different settings (fingerprint {saved.get('fingerprint')} vs "
            f"{fingerprint}); point SM_CHECKPOINT_DIR / --checkpoint-dir elsewhere or delete it"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved.get("scaler") is not None:
        scaler.load_state_dict(saved["scaler"])
    restore_rng_states(saved["rng"])
    loop = LoopState(**saved["loop"])
    logger.info("resuming from %s: %d epochs done, best macro-F1 %.4f", path, loop.epoch + 1, loop.best_metric)
    return loop
