"""Configuration of Model Monitor for text and retraining triggers (a FeedbackBrainConfig section)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MonitoringConfig:
    drift_auc_threshold: float = 0.75
