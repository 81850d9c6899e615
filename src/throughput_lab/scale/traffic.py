"""The load shapes a scale-out is tried with, as Poisson arrivals: steady, ramp, spike,
and notebook 08's day (20 req/s at night, 400 at noon, scaled so its top is the peak)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

SHAPES = ("steady", "ramp", "spike", "day")
SPIKE_FROM, SPIKE_TO, SPIKE_BASE = 0.2, 0.6, 0.1  # of the duration; the base: of the peak


def day_rate(hour: float) -> float:
    """Notebook 08's day of traffic, in req/s: 20 at night, 400 at noon."""
    return 20 + 380 * math.exp(-(((hour - 12) / 3) ** 2))


@dataclass(frozen=True)
class Traffic:
    """``shape`` at ``peak_rps`` for ``duration_s`` seconds (a day is compressed into it)."""

    shape: str
    peak_rps: float
    duration_s: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"traffic must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if not (math.isfinite(self.peak_rps) and self.peak_rps > 0):
            raise ValueError(f"peak rate must be a number > 0, got {self.peak_rps}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"duration must be a number > 0, got {self.duration_s}")

    def rate(self, t: float) -> float:
        """Requests per second at ``t`` seconds."""
        share = min(max(t / self.duration_s, 0.0), 1.0)
        if self.shape == "steady":
            return self.peak_rps
        if self.shape == "ramp":  # from a tenth of the peak up to it
            return self.peak_rps * (SPIKE_BASE + (1 - SPIKE_BASE) * share)
        if self.shape == "spike":
            return self.peak_rps * (1.0 if SPIKE_FROM <= share < SPIKE_TO else SPIKE_BASE)
        return self.peak_rps * day_rate(24 * share) / day_rate(12)

    def expected_requests(self, steps: int = 1000) -> float:
        dt = self.duration_s / steps
        return sum(self.rate((i + 0.5) * dt) for i in range(steps)) * dt

    def arrivals(self, rng: random.Random) -> Iterator[float]:
        """Arrival times of a Poisson process of this rate (thinning, Lewis and Shedler)."""
        t = 0.0
        while True:
            t += rng.expovariate(self.peak_rps)
            if t >= self.duration_s:
                return
            if rng.random() * self.peak_rps < self.rate(t):
                yield t
