"""The monitored feature set: text descriptors plus prediction columns, and their statistics."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from monitoring import prediction_features as pf
from monitoring import text_descriptors as td
from monitoring.config import MonitoringConfig
from monitoring.model_monitor_format import build_statistics


def numeric_features(label_maps: dict[str, list[str]]) -> tuple[str, ...]:
    return (*td.NUMERIC_DESCRIPTORS, *pf.numeric_prediction_features(label_maps))


def categorical_features() -> tuple[str, ...]:
    return (*td.CATEGORICAL_DESCRIPTORS, *pf.categorical_prediction_features())


def monitored_statistics(
    columns: dict[str, Sequence[Any]],
    label_maps: dict[str, list[str]],
    config: MonitoringConfig,
    dataset_name: str,
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Model Monitor statistics over every monitored feature (columns must hold them all)."""
    missing = [n for n in (*numeric_features(label_maps), *categorical_features()) if n not in columns]
    if missing:
        raise ValueError(f"columns lack monitored features {missing}")
    return build_statistics(
        columns,
        numeric=numeric_features(label_maps),
        integral=td.INTEGRAL_DESCRIPTORS,
        categorical=categorical_features(),
        bucket_count=config.numeric_bucket_count,
        dataset_name=dataset_name,
        extra={"label_maps": label_maps, **(extra or {})},
    )
