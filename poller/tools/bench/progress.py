"""Progress lines on stderr, the load average, and the quantile the figures use."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["Progress", "load_average", "quantile"]


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """Timestamped lines on stderr, so a person watching sees the run move."""

    def __init__(self, out: Any = None) -> None:
        self.out = out if out is not None else sys.stderr
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", file=self.out, flush=True)


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
