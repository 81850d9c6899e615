"""Notebook 07's exercise: both settings for a mixed handler, without waste.

``from exercise_07_mixed_settings import ex07``. The check runs ``mixed`` with your
processes and threads, 16 requests in flight, and compares its throughput with what this
machine's cores allow; then it counts the pool threads that never had work.
"""

from __future__ import annotations

from collections import Counter

from throughput_lab import Lab, RunResult
from throughput_lab.checks import (
    Criterion,
    Evidence,
    Exercise,
    no_errors,
    one_process_per_core,
    reaches_cores_limit,
)

IN_FLIGHT = 16


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


def threads_hold_every_request(margin: float = 0.9) -> Criterion:
    """The pool, not the requests in flight, must never be what limits: both bounds divide
    by the same measured time, so their ratio is threads x processes / requests in flight,
    whatever else the machine is doing (a busy CPU can hide a small pool behind its own
    limit, so the throughput alone cannot show it)."""

    def test(e: Evidence) -> tuple[bool, str]:
        bounds = e.summary.bounds
        pool, in_flight = bounds.get("thread pool", 0.0), bounds.get("requests in flight", 0.0)
        ratio = pool / in_flight if in_flight else 0.0
        slots = (e.summary.threads or 0) * (e.summary.processes or 0)
        return ratio >= margin, (
            f"{slots} pool threads in all for {e.summary.concurrency} requests in flight: the "
            f"pool allows {pool:.0f} req/s, the requests in flight {in_flight:.0f} req/s"
        )

    return Criterion(
        "a pool thread for every request in flight",
        test,
        "each request holds a pool thread while it waits for the upstream",
    )


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
            reaches_cores_limit(
                0.6, "the CPU part needs a process per core (GIL); the waiting part needs threads"
            ),
            one_process_per_core(),
            threads_hold_every_request(),
            every_thread_used(),
        ],
        hints=[
            "Processes: the CPU part holds the GIL, so one process per core.",
            f"Threads: round-robin sends each process {IN_FLIGHT} / processes of the requests "
            "in flight, and each one holds a thread while it waits for the upstream.",
        ],
        run=run,
        lab=lab,
        explanation="Processes for the CPU part, threads for the waiting part, and nothing idle.",
    )
