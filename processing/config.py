"""Configuration of the processing layer (one section of pipelines.config.FeedbackBrainConfig)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProcessingConfig:
    max_text_chars: int = 20_000
    """Records with longer text are quarantined (reason text_too_long)."""
    validation_fraction: float = 0.1
    test_fraction: float = 0.15
    split_seed: int = 13
    taxonomy_version: str = "1"
    feature_group_name: str = "feedback-features"
