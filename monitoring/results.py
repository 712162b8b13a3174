"""What one run of the text monitor reads and what it found: MonitorInputs, MonitorResult and the
names of the files it writes.

Their own module so that the monitor (monitoring.monitor, which produces them) and the
retraining triggers (monitoring.triggers, which read them) share the types without importing
each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from monitoring.baseline import CONSTRAINTS_FILE, EMBEDDINGS_FILE, STATISTICS_FILE
from monitoring.compare import Comparison
from monitoring.text_descriptors import TOKENIZER_FILE

VIOLATIONS_FILE = "constraint_violations.json"
WINDOW_STATISTICS_FILE = "statistics.json"
METRICS_FILE = "metrics.json"
QUARANTINE_FILE = "quarantine.jsonl"


@dataclass
class MonitorInputs:
    """Where one monitoring run reads and writes (all paths may be s3:// URIs except the two folders)."""

    capture_dir: str
    output_dir: str
    baseline_statistics: str
    baseline_constraints: str
    baseline_embeddings: str = ""
    """embeddings.npy of the baseline; empty skips embedding drift."""
    baseline_tokenizer: str = ""
    """tokenizer.json for out-of-vocabulary rates; empty means the model dir's."""
    model_dir: str = ""
    """Model (dir or model.tar.gz) that embeds captured texts; empty skips embedding drift."""
    start_time: Optional[datetime] = None
    end_time: Optional[datetime] = None
    endpoint_name: str = "local"
    schedule_name: str = "local"
    publish_cloudwatch_metrics: bool = False

    @classmethod
    def from_baseline_dir(cls, baseline_dir: str, capture_dir: str, output_dir: str, **kwargs: Any) -> "MonitorInputs":
        """Inputs for a baseline folder as monitoring.baseline writes it (local runs)."""
        root = Path(baseline_dir)
        return cls(
            capture_dir=capture_dir, output_dir=output_dir,
            baseline_statistics=str(root / STATISTICS_FILE), baseline_constraints=str(root / CONSTRAINTS_FILE),
            baseline_embeddings=str(root / EMBEDDINGS_FILE) if (root / EMBEDDINGS_FILE).exists() else "",
            baseline_tokenizer=str(root / TOKENIZER_FILE) if (root / TOKENIZER_FILE).exists() else "",
            **kwargs,
        )


@dataclass
class MonitorResult:
    output_dir: Path
    violations: list[dict[str, str]]
    comparison: Comparison
    texts: int
    quarantined: int
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drift_detected(self) -> bool:
        return bool(self.violations)
