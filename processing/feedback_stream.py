"""When feedback arrives: a multi-day stream with realistic daily volumes per SKU.

Each SKU gets a daily volume drawn log-normally around a typical one (a few SKUs are much busier than
the rest); an hour's expected count is that volume times the weekday's factor (weekends are busier)
and the hour's share of the day (a diurnal profile), and the actual count is Poisson around it.
What each arrival says is the caller's: the demo corpus (processing.demo_data.generate_stream,
`fbrain data generate --days N`) and the alert benchmark's scenario (operations.alerting.scenario)
draw their texts over the same arrivals.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import numpy as np

WEEKDAY_FACTOR = (1.0, 0.95, 0.95, 1.0, 1.1, 1.3, 1.25)
"""Relative volume Monday..Sunday."""
HOURLY_PROFILE = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 7, 7, 7, 6, 6, 6, 6, 7, 8, 8, 6, 4, 3], dtype=float)
"""Relative volume per hour of the day (UTC)."""
HOURLY_SHARE = HOURLY_PROFILE / HOURLY_PROFILE.sum()
"""Each hour's share of a day's volume."""
VOLUME_SIGMA = 0.4
"""Spread (log-normal sigma) of daily volume across SKUs."""

Item = TypeVar("Item")
Sku = dict[str, Any]


def sku_daily_volumes(rng: np.random.Generator, n_skus: int, per_sku_daily: float,
                      sigma: float = VOLUME_SIGMA) -> np.ndarray:
    """Typical daily volume of each of n SKUs: log-normal around `per_sku_daily`."""
    if per_sku_daily <= 0:
        raise ValueError(f"per_sku_daily must be > 0, got {per_sku_daily}")
    return rng.lognormal(mean=np.log(per_sku_daily), sigma=sigma, size=n_skus)


def expected_hourly(daily: float, hour: datetime) -> float:
    """Expected arrivals in `hour` for a SKU with this typical daily volume."""
    return daily * (WEEKDAY_FACTOR[hour.weekday()] * HOURLY_SHARE[hour.hour])


def hourly_arrivals(rng: np.random.Generator, skus: Sequence[Sku], volume: dict[str, float], start: datetime,
                    until: datetime, draw: Callable[[np.random.Generator, Sku], Item],
                    extra: Optional[Callable[[datetime], list[tuple[Sku, Item]]]] = None
                    ) -> Iterator[tuple[datetime, Sku, Item]]:
    """(created_at, sku, item) hour by hour from `start` to `until`: per SKU a Poisson count around
    expected_hourly, each arrival's item made by `draw(rng, sku)`; `extra(hour)` adds arrivals to the hour
    (injected incidents). created_at is uniform within the hour. Deterministic for the rng's seed."""
    hour = start
    while hour < until:
        batch: list[tuple[Sku, Item]] = []
        for sku in skus:
            for _ in range(rng.poisson(expected_hourly(volume[sku["sku"]], hour))):
                batch.append((sku, draw(rng, sku)))
        if extra is not None:
            batch.extend(extra(hour))
        for sku, item in batch:
            yield hour + timedelta(seconds=int(rng.integers(0, 3600))), sku, item
        hour += timedelta(hours=1)
