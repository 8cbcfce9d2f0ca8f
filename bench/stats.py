"""Percentiles and the clock the database timestamps are compared with."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def utc_now() -> datetime:
    """Now as a naive UTC datetime: what wfed writes into its timestamp columns."""
    return datetime.now(UTC).replace(tzinfo=None)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` percentile (0…1) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, p50, p99 and max of a sample (NaN when empty)."""
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else math.nan,
    }
