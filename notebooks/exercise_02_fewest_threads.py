"""Notebook 02's exercise: the fewest pool threads for a sync I/O handler.

``from exercise_02_fewest_threads import ex02``. The check runs ``sync_io`` with your
PYTHON_THREADPOOL_THREAD_COUNT, 12 requests in flight, and measures how long requests
waited for a pool thread and how many of the threads ever ran one.
"""

from __future__ import annotations

from throughput_lab import Lab, RunResult
from throughput_lab.checks import Exercise, no_errors, queue_p95_below, threads_all_used


def ex02(lab: Lab) -> Exercise:
    concurrency, delay = 12, 200

    def run(lab: Lab, threads: int) -> RunResult:
        return lab.run(
            "sync_io",
            threads=int(threads),
            concurrency=concurrency,
            requests=4 * concurrency,
            upstream_delay_ms=delay,
        )

    return Exercise(
        name="02_fewest_threads",
        task=(
            f"set `fewest_threads` to the smallest PYTHON_THREADPOOL_THREAD_COUNT with which "
            f"sync_io serves {concurrency} requests in flight without any of them waiting "
            "for a thread."
        ),
        criteria=[no_errors(), queue_p95_below(0.4), threads_all_used()],
        hints=[
            "Little's law: requests in flight = throughput x latency. Each sync_io call holds "
            "a thread for the whole upstream wait.",
            f"{concurrency} requests in flight, each holding one thread while it waits.",
        ],
        run=run,
        lab=lab,
        explanation=(
            "One thread per request in flight: fewer and requests queue, more and threads idle."
        ),
    )
