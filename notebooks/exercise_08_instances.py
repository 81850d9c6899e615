"""Notebook 08's exercise: how many instances a load needs, by Little's law.

``from exercise_08_instances import ex08``. The check measures one instance of ``sync_io``
at the per-instance concurrency you plan for, and tests whether your instance count
carries the target load without more than a small margin of spare instances. An instance
is rated by Little's law from the time one request takes (measured), not by this
machine's throughput: here the upstream and the load share the instance's CPU.
"""

from __future__ import annotations

from throughput_lab import Lab, RunResult
from throughput_lab.checks import Criterion, Evidence, Exercise, no_errors, sizing

TARGET_RPS = 500
PER_INSTANCE = 16  # perInstanceConcurrency you plan for
THREADS = 16  # PYTHON_THREADPOOL_THREAD_COUNT: one thread per request in flight


def per_instance(e: Evidence) -> float:
    """What one instance serves: its ideal by Little's law, from the time measured alone.

    Not this machine's throughput: here one CPU also runs the upstream and the load, while
    in Azure each instance has CPU of its own. The cores limit is left out for that reason.
    """
    s = e.summary
    return min((v for k, v in s.bounds.items() if k != "CPU cores"), default=s.throughput_rps)


def sizing_criteria(target: float) -> list[Criterion]:
    """The instances carry the target, with no more than a small margin spare."""
    return sizing(
        target,
        unit="instance",
        count=lambda e: int(e.answer),
        each_rps=per_instance,
        measured=lambda e: (
            f"one instance serves {per_instance(e):.1f} req/s ({PER_INSTANCE} in flight / "
            f"{e.summary.service_ms:.0f} ms each; measured here "
            f"{e.summary.throughput_rps:.1f})"
        ),
        tolerance=0.85,
        spare=1.3,
        too_few="too few instances: requests queue",
        too_many="each instance beyond the need is memory billed and a cold start paid",
    )


def ex08(lab: Lab) -> Exercise:
    def run(lab: Lab, instances: int) -> RunResult:
        if int(instances) < 1:
            raise ValueError("an instance count is a whole number >= 1")
        return lab.run(
            "sync_io",
            threads=THREADS,
            concurrency=PER_INSTANCE,
            requests=8 * PER_INSTANCE,
            upstream_delay_ms=100,
        )

    return Exercise(
        name="08_instances_for_500",
        task=(
            f"set `instances_for_500` to the number of instances that serve {TARGET_RPS} "
            f"req/s of sync_io (100 ms upstream) with perInstanceConcurrency {PER_INSTANCE}."
        ),
        criteria=[no_errors(), *sizing_criteria(TARGET_RPS)],
        hints=[
            "Little's law: requests in flight = arrival rate x time each takes.",
            f"In flight = {TARGET_RPS} req/s x about 0.1 s; each instance takes "
            f"{PER_INSTANCE} of them. Or: {TARGET_RPS} / (one instance's req/s), rounded up.",
        ],
        run=run,
        lab=lab,
        explanation=(
            "Instances = rate x latency / per-instance concurrency: the scale controller "
            "does this sum for you, with the concurrency you allow."
        ),
    )
