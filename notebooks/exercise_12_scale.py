"""Notebook 12's exercise: protect a downstream service through a spike, and keep p95 low.

``from exercise_12_scale import ex12``. The answer is a dict of the scale settings,
``per_instance_concurrency`` and ``max_instances``. The check simulates the platform's
scale controller (``throughput_lab.scale``) over a spike, with `sync_io`'s service times
measured by the engine at each per-instance concurrency up to yours, and reads three
things: the most requests in the instances at once (what the downstream, `sync_io`'s
upstream, sees), p95 over the run, and the most instances at once.
"""

from __future__ import annotations

from typing import Any

from throughput_lab.checks import Criterion, Evidence, Exercise, near
from throughput_lab.scale.lab import ScaleLab
from throughput_lab.scale.simulation import ScaleResult
from throughput_lab.scale.traffic import Traffic

FUNCTION = "sync_io"
SPIKE = Traffic("spike", 600, 300)  # 60 req/s, 600 from the 60th s to the 180th, 60 again
DOWNSTREAM_LIMIT = 80  # requests the downstream service takes at once
P95_MS = 250
MOST_INSTANCES = 12  # cold starts and memory you are ready to pay for


def downstream_protected(limit: int) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        result: ScaleResult = e.result
        return (
            result.busy_peak <= limit,
            f"at most {result.busy_peak} requests were in the instances at once",
        )

    return Criterion(
        f"the downstream never sees more than {limit} requests at once",
        test,
        "every request being served calls the downstream: per-instance concurrency x "
        "instances can reach it",
    )


def fast_enough(p95_ms: float) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str, bool]:
        result: ScaleResult = e.result
        p95 = result.latency_ms(95)
        return (
            p95 <= p95_ms and result.rejected == 0,
            f"p95 {p95:.0f} ms, {result.rejected} rejected",
            near(p95, p95_ms),
        )

    return Criterion(
        f"p95 stays under {p95_ms} ms through the spike, nothing rejected",
        test,
        "too little capacity at the peak: requests wait at the front end",
    )


def few_instances(most: int) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        result: ScaleResult = e.result
        return (
            result.instances_max <= most,
            f"up to {result.instances_max} instances ({result.cold_starts} cold starts)",
        )

    return Criterion(
        f"no more than {most} instances at once", test, "each instance is a cold start and memory"
    )


def ex12(lab: ScaleLab) -> Exercise:
    def run(lab: ScaleLab, settings: Any) -> ScaleResult:
        if not isinstance(settings, dict):
            raise TypeError("give a dict: dict(per_instance_concurrency=..., max_instances=...)")
        unknown = set(settings) - {"per_instance_concurrency", "max_instances"}
        if unknown:
            raise ValueError(f"only per_instance_concurrency and max_instances: not {unknown}")
        return lab.simulate(FUNCTION, SPIKE, lab.rules(**settings))

    return Exercise(
        name="12_scale_settings",
        task=(
            f"set `scale_settings` (per_instance_concurrency, max_instances) so that {FUNCTION} "
            f"keeps p95 under {P95_MS} ms through a spike to {SPIKE.peak_rps:g} req/s, on at "
            f"most {MOST_INSTANCES} instances, while its downstream never sees more than "
            f"{DOWNSTREAM_LIMIT} requests at once."
        ),
        criteria=[
            downstream_protected(DOWNSTREAM_LIMIT),
            fast_enough(P95_MS),
            few_instances(MOST_INSTANCES),
        ],
        hints=[
            "Requests in the instances at once is at most per-instance concurrency x "
            "instances, and maximumInstanceCount caps the instances.",
            f"By Little's law the peak needs {SPIKE.peak_rps:g} req/s x the service time in "
            "flight; the product per_instance_concurrency x max_instances must cover that "
            f"(with a little headroom) and stay within {DOWNSTREAM_LIMIT}. A def handler "
            "overlaps no more requests than it has pool threads (16 here).",
        ],
        run=run,
        lab=lab,
        explanation=(
            "maximumInstanceCount x per-instance concurrency is the most the app ever sends "
            "downstream: choose the product for the downstream's limit, and the concurrency "
            "(up to what one instance overlaps well) for the instance count."
        ),
    )
