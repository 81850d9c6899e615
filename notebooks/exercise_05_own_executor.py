"""Notebook 05's exercise: give ``run_in_executor`` a thread pool of your own.

``from exercise_05_own_executor import ex05``. The check runs your handler under load (in
one in-process worker, like every exercise) and watches the upstream: how many of its
calls were in flight at once, and how long an invocation took.
"""

from __future__ import annotations

import math

from throughput_lab import Lab, default_executor_threads
from throughput_lab.checks import (
    Criterion,
    Evidence,
    Exercise,
    calls_upstream,
    is_async,
    near,
    no_errors,
    source_uses,
)

CALLS = 20  # upstream calls per invocation, as the query parameter ``calls``


def in_flight_for_load(calls: int = CALLS) -> int:
    """Invocations in flight so that their calls clearly outnumber the default executor."""
    return max(2, math.ceil(1.5 * default_executor_threads() / calls))


def more_at_once_than_default_executor() -> Criterion:
    threads = default_executor_threads()

    def test(e: Evidence) -> tuple[bool, str]:
        peak = e.summary.upstream_peak_in_flight
        return peak > threads, f"at most {peak} upstream calls were in flight at once"

    return Criterion(
        f"more upstream calls at once than the {threads} threads of asyncio's default executor",
        test,
        "run_in_executor(None, ...) and asyncio.to_thread share that one default pool",
    )


def fewer_rounds_than_default_executor() -> Criterion:
    """p50 latency under half the rounds the default executor needs for the calls in flight.

    With asyncio's D threads, the calls of every invocation in flight wait in
    ceil(calls x in flight / D) rounds of one upstream delay each; an executor of its own
    waits one round (plus the CPU its calls cost, which a busy machine stretches).
    """
    threads = default_executor_threads()

    def test(e: Evidence) -> tuple[bool, str, bool]:
        rounds = math.ceil(CALLS * e.summary.concurrency / threads)
        limit = 0.5 * rounds * e.upstream_delay_ms
        p50 = e.summary.latency_ms["p50"]
        text = (
            f"p50 latency {p50:.0f} ms (limit {limit:.0f} ms: half of {rounds} rounds of "
            f"{e.upstream_delay_ms:g} ms on {threads} threads)"
        )
        return p50 < limit, text, near(p50, limit)

    return Criterion(
        "its calls wait together, not in the default executor's rounds",
        test,
        "D threads serve the calls of all invocations in flight a round at a time",
    )


def ex05(lab: Lab) -> Exercise:
    return Exercise(
        name="05_own_executor",
        task=(
            "write `own_executor(req)`, an async def that makes `calls` (a query parameter) "
            "requests.get calls to UPSTREAM_URL at once, on a ThreadPoolExecutor of its own "
            "sized to `calls`, and answers when all are done."
        ),
        criteria=[
            is_async(),
            source_uses("ThreadPoolExecutor"),
            no_errors(),
            calls_upstream(CALLS),
            more_at_once_than_default_executor(),
            fewer_rounds_than_default_executor(),
        ],
        hints=[
            "`loop.run_in_executor(pool, get)` runs `get` on `pool`; `None` instead of a pool "
            "means asyncio's default executor.",
            "`pool = ThreadPoolExecutor(max_workers=calls)`, then `await asyncio.gather(...)` "
            "over `loop.run_in_executor(pool, get)` for each call, then "
            "`pool.shutdown(wait=False)` (every call is done by then).",
        ],
        load={
            "concurrency": in_flight_for_load(),
            "requests": 8,
            "upstream_delay_ms": 100,
            "params": {"calls": str(CALLS)},
        },
        lab=lab,
        explanation=(
            "Every call of an invocation waited at the same time: one upstream delay per "
            "invocation, however many calls it makes."
        ),
    )
