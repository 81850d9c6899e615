"""Notebook 02's exercise: the fewest pool threads for a target throughput, by Little's law.

``from exercise_02_fewest_threads import ex02, profile_page``. The check runs
``profile_page`` (two upstream calls, one after the other) with your
PYTHON_THREADPOOL_THREAD_COUNT and more requests in flight than any sensible pool, and
rates the pool by Little's law from the time a request held its thread in that run:
threads / seconds on a thread each. Rated so, the verdict does not hang on how busy the
machine is, only on the measured time a request holds its thread.
"""

from __future__ import annotations

import math
import os

import azure.functions as func
import requests

from throughput_lab import Lab, RunResult
from throughput_lab.checks import Criterion, Evidence, Exercise, no_errors, sizing

TARGET_RPS = 40
USERS = 32  # requests in flight: more than the target needs, so copying it wastes threads
UPSTREAM_MS = 100


def profile_page(req: func.HttpRequest) -> func.HttpResponse:
    """A page built from two upstream calls, one after the other: the user, then their orders."""
    url = os.environ["UPSTREAM_URL"]
    user = requests.get(url, timeout=30)
    orders = requests.get(url, timeout=30)
    return func.HttpResponse(f"user {user.status_code}, orders {orders.status_code}")


def pool_rps(e: Evidence) -> float:
    """Little's law for the pool: threads / seconds a request held its thread (measured)."""
    return e.summary.bounds.get("thread pool", 0.0)


def thread_s(e: Evidence) -> float:
    threads = e.summary.threads or 0
    rps = pool_rps(e)
    return threads / rps if rps > 0 else math.inf


def per_thread(e: Evidence) -> float:
    """What one thread carries: 1 / seconds a request held it (0 with no pool)."""
    threads = e.summary.threads or 0
    return pool_rps(e) / threads if threads else 0.0


def sizing_criteria(target: float) -> list[Criterion]:
    """The pool carries the target, with no more threads than it keeps busy."""
    return sizing(
        target,
        unit="thread",
        count=lambda e: e.summary.threads or 0,
        each_rps=per_thread,
        measured=lambda e: (
            f"{thread_s(e):.3f} s on a thread each: one thread carries {per_thread(e):.2f} "
            f"req/s (measured here {e.summary.throughput_rps:.1f} req/s in all)"
        ),
        tolerance=0.9,
        spare=1.25,
        too_few="with fewer threads, requests queue for one and throughput stays threads / "
        "time each",
        too_many="a thread beyond the need sits idle at the target rate and still costs memory",
    )


def ex02(lab: Lab) -> Exercise:
    def run(lab: Lab, threads: int) -> RunResult:
        return lab.run(
            handler=profile_page,
            threads=int(threads),
            concurrency=USERS,
            duration_s=2.0,
            upstream_delay_ms=UPSTREAM_MS,
        )

    return Exercise(
        name="02_fewest_threads",
        task=(
            f"set `fewest_threads` to the fewest PYTHON_THREADPOOL_THREAD_COUNT with which "
            f"profile_page serves {TARGET_RPS} req/s (upstream {UPSTREAM_MS} ms, {USERS} "
            "users in flight)."
        ),
        criteria=[no_errors(), *sizing_criteria(TARGET_RPS)],
        hints=[
            "Little's law for the pool: threads busy = throughput x the time each request "
            "holds its thread. Not the users in flight: they only set how many wait.",
            "A plain def holds its thread from start to end, and profile_page makes two "
            "upstream calls one after the other. Measure its time alone (concurrency=1) and "
            f"multiply by {TARGET_RPS} req/s; round up.",
        ],
        run=run,
        lab=lab,
        explanation=(
            "Threads = target throughput x time a request holds its thread (Little's law), "
            "measured, not the upstream's delay and not the users in flight."
        ),
    )
