"""Notebook 06's exercise: the fewest worker processes for CPU-bound work.

``from exercise_06_processes import ex06``. The check runs ``cpu_bound`` with your
FUNCTIONS_WORKER_PROCESS_COUNT and compares its throughput with what this machine's cores
allow, then counts the memory your worker processes hold.
"""

from __future__ import annotations

import math

from throughput_lab import Lab, RunResult, available_cores
from throughput_lab.checks import Criterion, Evidence, Exercise, no_errors


def cores_limit_rps(e: Evidence) -> float:
    """What the cores allow: cores / CPU seconds one invocation needs."""
    cpu_s = e.summary.cpu_ms / 1e3
    return available_cores() / cpu_s if cpu_s > 0 else math.inf


def needed_fraction() -> float:
    """More than one process short of the cores can reach, with room for a busy machine."""
    cores = available_cores()
    return min(0.85, max(0.6, (cores - 0.6) / cores))


def reaches_cores_limit(fraction: float) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        limit = cores_limit_rps(e)
        got = e.summary.throughput_rps
        return got >= fraction * limit, (
            f"{got:.1f} req/s of the {limit:.1f} req/s that {available_cores():g} core(s) "
            f"allow ({got / limit:.0%})"
        )

    return Criterion(
        f"reaches {fraction:.0%} of what this machine's cores allow",
        test,
        "pure-Python work holds the GIL: one process uses at most one core",
    )


def no_more_processes_than_cores() -> Criterion:
    cores = max(1, math.ceil(available_cores()))

    def test(e: Evidence) -> tuple[bool, str]:
        rss = e.summary.worker_rss_mb
        return int(e.answer) <= cores, (
            f"{int(e.answer)} process(es) for {cores} core(s), holding {sum(rss):.0f} MB "
            f"({sum(rss) / max(len(rss), 1):.0f} MB each)"
        )

    return Criterion(
        "no more processes than cores",
        test,
        "a process beyond the cores adds no CPU, only memory and switching",
    )


def ex06(lab: Lab) -> Exercise:
    def run(lab: Lab, processes: int) -> RunResult:
        in_flight = 2 * max(int(processes), math.ceil(available_cores()))
        return lab.run(
            "cpu_bound",
            processes=int(processes),
            threads=1,
            concurrency=in_flight,
            requests=max(24, 3 * in_flight),
        )

    return Exercise(
        name="06_processes_for_cpu_bound",
        task=(
            "set `processes_for_cpu_bound` to the fewest FUNCTIONS_WORKER_PROCESS_COUNT with "
            "which cpu_bound uses every core of this machine."
        ),
        criteria=[
            no_errors(),
            reaches_cores_limit(needed_fraction()),
            no_more_processes_than_cores(),
        ],
        hints=[
            "One process runs pure Python on one core at a time (the GIL), whatever its "
            "thread count.",
            "`available_cores()` says how many cores this machine lets you use.",
        ],
        run=run,
        lab=lab,
        answer_name="processes_for_cpu_bound",
        explanation="One worker process per core: every core busy, no memory spent on idle ones.",
    )
