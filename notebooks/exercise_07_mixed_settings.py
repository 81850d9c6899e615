"""Notebook 07's exercise: both settings for a mixed handler, without waste.

``from exercise_07_mixed_settings import ex07``. The check runs ``mixed`` with your
processes and threads, 16 requests in flight, and compares its throughput with what this
machine's cores allow; then it counts the pool threads that never had work.
"""

from __future__ import annotations

import math
from collections import Counter

from throughput_lab import Lab, RunResult, available_cores
from throughput_lab.checks import Criterion, Evidence, Exercise, no_errors

IN_FLIGHT = 16


def reaches_cores_limit(fraction: float) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        cpu_s = e.summary.cpu_ms / 1e3
        limit = available_cores() / cpu_s if cpu_s > 0 else math.inf
        got = e.summary.throughput_rps
        return got >= fraction * limit, (
            f"{got:.1f} req/s of the {limit:.1f} req/s the cores allow for its "
            f"{e.summary.cpu_ms:.0f} ms of CPU each ({got / limit:.0%})"
        )

    return Criterion(
        f"reaches {fraction:.0%} of what this machine's cores allow",
        test,
        "the CPU part needs a process per core (GIL); the waiting part needs threads",
    )


def every_thread_used(slack: int = 1) -> Criterion:
    """Per worker process: threads that ever ran an invocation, against the pool size."""

    def test(e: Evidence) -> tuple[bool, str]:
        lanes = {(r.worker, r.thread) for r in e.result.records if r.thread}
        per_process = Counter(worker for worker, _ in lanes)
        used = min(per_process.values(), default=0)
        setting = e.summary.threads or 0
        return setting <= used + slack, (
            f"{used} of {setting} threads ran a request in the least busy process"
        )

    return Criterion(
        "no idle threads in any process",
        test,
        f"{IN_FLIGHT} requests in flight spread round-robin keep at most "
        f"{IN_FLIGHT} / processes threads busy in each process",
    )


def no_more_processes_than_cores() -> Criterion:
    cores = max(1, math.ceil(available_cores()))

    def test(e: Evidence) -> tuple[bool, str]:
        processes = e.summary.processes or 0
        return processes <= cores, f"{processes} process(es) for {cores} core(s)"

    return Criterion("no more processes than cores", test)


def ex07(lab: Lab) -> Exercise:
    def run(lab: Lab, settings: dict) -> RunResult:
        return lab.run(
            "mixed",
            processes=int(settings["processes"]),
            threads=int(settings["threads"]),
            concurrency=IN_FLIGHT,
            duration_s=2.0,
            upstream_delay_ms=100,
        )

    return Exercise(
        name="07_mixed_settings",
        task=(
            f"set `mixed_settings = dict(processes=..., threads=...)` so that `mixed`, with "
            f"{IN_FLIGHT} requests in flight, uses this machine's cores fully without a "
            "process or a thread more than it needs."
        ),
        criteria=[
            no_errors(),
            reaches_cores_limit(0.6),
            no_more_processes_than_cores(),
            every_thread_used(),
        ],
        hints=[
            "Processes: the CPU part holds the GIL, so one process per core.",
            f"Threads: round-robin sends each process {IN_FLIGHT} / processes of the requests "
            "in flight, and each one holds a thread while it waits for the upstream.",
        ],
        run=run,
        lab=lab,
        answer_name="mixed_settings",
        explanation="Processes for the CPU part, threads for the waiting part, and nothing idle.",
    )
