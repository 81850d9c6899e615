"""Notebook 06's exercise: the fewest worker processes for CPU-bound work.

``from exercise_06_processes import ex06``. The check runs ``cpu_bound`` with your
FUNCTIONS_WORKER_PROCESS_COUNT, compares its throughput with what the cores free during
the run allow (another program's CPU is not held against you), and counts the memory
your worker processes hold against the cores they can use.
"""

from __future__ import annotations

import math

from throughput_lab import Lab, RunResult, available_cores
from throughput_lab.checks import (
    Exercise,
    no_errors,
    one_process_per_core,
    reaches_cores_limit,
)


def needed_fraction() -> float:
    """More than one process short of the cores can reach, with room for a busy machine."""
    cores = available_cores()
    return min(0.85, max(0.6, (cores - 0.6) / cores))


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
            one_process_per_core(),
            reaches_cores_limit(needed_fraction()),
        ],
        hints=[
            "One process runs pure Python on one core at a time (the GIL), whatever its "
            "thread count.",
            "`available_cores()` says how many cores this machine lets you use.",
        ],
        run=run,
        lab=lab,
        explanation="One worker process per core: every core busy, no memory spent on idle ones.",
    )
