"""Notebook 08's exercise: how many instances a load needs, by Little's law.

``from exercise_08_instances import ex08``. The check measures one instance of ``sync_io``
at the per-instance concurrency you plan for, and tests whether your instance count
carries the target load without more than a small margin of spare instances. An instance
is rated by Little's law from the time one request takes (measured), not by this
machine's throughput: here the upstream and the load share the instance's CPU.
"""

from __future__ import annotations

import math

from throughput_lab import Lab, RunResult
from throughput_lab.checks import Criterion, Evidence, Exercise, digits, near, no_errors

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


def carries(target: float, tolerance: float = 0.85) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str, bool]:
        per = per_instance(e)
        total = int(e.answer) * per
        return (
            total >= tolerance * target,
            f"one instance serves {per:.1f} req/s ({PER_INSTANCE} in flight / "
            f"{e.summary.service_ms:.0f} ms each; measured here {e.summary.throughput_rps:.1f}), "
            f"so {int(e.answer)} serve {total:.0f} req/s",
            near(total, tolerance * target),
        )

    return Criterion(
        f"carries {target} req/s (less {1 - tolerance:.0%} for a noisy measurement)",
        test,
        "too few instances: requests queue",
    )


def not_wasteful(target: float, spare: float = 1.3) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str, bool]:
        per = per_instance(e)
        needed = math.ceil(target / per) if per > 0 else math.inf
        total = int(e.answer) * per
        # Say how far over the target the answer is, not how many would do: that is the
        # exercise's answer.
        return (
            int(e.answer) <= spare * needed + 1,
            f"{int(e.answer)} instance(s) serve {total:.0f} req/s, "
            f"{digits(total / target, 1)}x the target",
            int(e.answer) <= spare * needed + 2,
        )

    return Criterion(
        f"no more than {spare - 1:.0%} (and one) spare instances",
        test,
        "each instance beyond the need is memory billed and a cold start paid",
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
        criteria=[no_errors(), carries(TARGET_RPS), not_wasteful(TARGET_RPS)],
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
