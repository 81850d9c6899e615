"""How long one request holds a slot of an instance: measured by the engine, not assumed.

``calibrate`` runs the function in the engine (one host: one instance's worker processes)
at each per-instance concurrency the simulation can meet, for a short closed-loop run each,
and keeps every request's measured latency. The simulation then draws a request's service
time from the samples taken at the concurrency its instance is running at (the nearest
measured level at or above it), so a handler that slows as requests share an instance (a
CPU-bound one) slows in the model too.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..invocation import InvocationRecord


@dataclass(frozen=True)
class ServiceTimes:
    """Seconds a request takes, by how many run at once on its instance."""

    samples: Mapping[int, tuple[float, ...]]

    def __post_init__(self) -> None:
        if not self.samples or not all(self.samples.values()):
            raise ValueError("no measured service time: the calibration runs had no success")
        object.__setattr__(self, "_levels", sorted(self.samples))

    @property
    def levels(self) -> list[int]:
        return list(self._levels)  # type: ignore[attr-defined]

    def at(self, level: int) -> tuple[float, ...]:
        """The samples measured at ``level`` in flight, or the nearest level above it."""
        levels: list[int] = self._levels  # type: ignore[attr-defined]
        i = min(bisect.bisect_left(levels, max(1, level)), len(levels) - 1)
        return self.samples[levels[i]]

    def sample(self, level: int, rng: random.Random) -> float:
        return rng.choice(self.at(level))

    def mean(self, level: int) -> float:
        return statistics.fmean(self.at(level))

    def percentile(self, level: int, q: float) -> float:
        values = sorted(self.at(level))
        return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]

    def as_dict(self) -> dict[str, Any]:
        return {
            str(k): {"mean_ms": 1e3 * self.mean(k), "p95_ms": 1e3 * self.percentile(k, 95)}
            for k in self.levels
        }

    @classmethod
    def from_records(cls, by_level: Mapping[int, Iterable[InvocationRecord]]) -> ServiceTimes:
        """Each successful record's latency (host sent it -> host got the result)."""
        return cls(
            {
                level: tuple(r.latency_ms / 1e3 for r in records if r.ok)
                for level, records in by_level.items()
            }
        )

    @classmethod
    def exponential(cls, mean_s: float, n: int = 20_000, seed: int = 1) -> ServiceTimes:
        """Exponential service times (the queueing-theory checks' M/M/c)."""
        rng = random.Random(seed)
        return cls({1: tuple(rng.expovariate(1 / mean_s) for _ in range(n))})


def calibration_levels(per_instance_concurrency: int) -> list[int]:
    """1, the per-instance concurrency, and a few levels between (doubling)."""
    levels, level = [], 1
    while level < per_instance_concurrency:
        levels.append(level)
        level *= 2
    return [*levels, per_instance_concurrency]


def calibrate(
    lab: Any,
    function: str | None,
    per_instance_concurrency: int,
    *,
    seconds_per_level: float = 1.0,
    measured: dict[int, list[InvocationRecord]] | None = None,
    **run_options: Any,
) -> ServiceTimes:
    """Measure ``function`` with ``lab`` (a ``Lab``) at each level up to the per-instance
    concurrency: a short closed-loop run each, its records' latencies kept. ``measured``
    holds levels measured before (and gains the new ones): each is measured once."""
    by_level = measured if measured is not None else {}
    levels = calibration_levels(per_instance_concurrency)
    for level in levels:
        if level not in by_level:
            result = lab.run(
                function, concurrency=level, duration_s=seconds_per_level, **run_options
            )
            by_level[level] = result.records
    return ServiceTimes.from_records({level: by_level[level] for level in levels})
