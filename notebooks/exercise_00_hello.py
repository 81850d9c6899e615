"""Notebook 00's exercise: a handler that waits, and eight of them at once on one thread.

``from exercise_00_hello import ex00``. The check runs your handler in a worker whose pool
has one thread, with 8 requests in flight, and measures how many invocations were running
at once (Little's law on the handler's own code): a plain ``def`` gets the pool's one
thread, one invocation at a time; an ``async def`` that awaits its wait overlaps them all.
"""

from __future__ import annotations

from throughput_lab import Lab
from throughput_lab.checks import Criterion, Evidence, Exercise, near, no_errors

WAIT_MS = 100  # what each invocation must wait, as for a slow upstream
IN_FLIGHT = 8
THREADS = 1  # PYTHON_THREADPOOL_THREAD_COUNT for the check's worker
AT_ONCE = 4  # invocations running at once, on average, that pass


def waits(wait_ms: float = WAIT_MS, share: float = 0.9) -> Criterion:
    """The handler really waits: a handler that returns at once would overlap for free."""

    def test(e: Evidence) -> tuple[bool, str]:
        times = sorted(r.run_ms for r in e.result.records if r.ok)
        middle = times[len(times) // 2] if times else 0.0
        return middle >= share * wait_ms, f"an invocation took {middle:.0f} ms (median)"

    return Criterion(f"waits {wait_ms:g} ms in each invocation", test)


def running_at_once(invocations: float = AT_ONCE) -> Criterion:
    """Little's law on the handler's own code: its time in all invocations / the run's time.

    Invocations that run one after another can never add up to more than the run's time,
    so one at a time measures at most 1, whatever the machine is doing.
    """

    def test(e: Evidence) -> tuple[bool, str, bool]:
        s = e.summary
        busy_ms = sum(r.run_ms for r in e.result.records if r.ok)
        at_once = busy_ms / (s.elapsed_s * 1e3) if s.elapsed_s > 0 else 0.0
        text = f"{at_once:.1f} invocations running at once on average: {_why(e, at_once)}"
        return at_once >= invocations, text, near(at_once, invocations)

    return Criterion(
        f"runs at least {invocations:g} of the {IN_FLIGHT} requests in flight at once", test
    )


def _why(e: Evidence, at_once: float) -> str:
    """What the measurement says about where the handler ran."""
    if not e.summary.is_async:
        return f"a plain def runs on the pool's {THREADS} thread: one invocation at a time"
    longest = max((r.longest_step_ms for r in e.result.records), default=0.0)
    if longest >= 0.5 * WAIT_MS:
        return (
            f"an async def on the event loop, but one step held the loop {longest:.0f} ms: "
            "a wait that does not await stops every other invocation"
        )
    if at_once < AT_ONCE:
        return "an async def on the event loop that awaited too little of its time to overlap"
    return "an async def: while one awaits, the event loop runs the others"


def ex00(lab: Lab) -> Exercise:
    return Exercise(
        name="00_hello",
        task=(
            f"write `hello(req)`: it waits {WAIT_MS} ms (as if for a slow upstream), then "
            "returns func.HttpResponse('hello'); with one pool thread and "
            f"{IN_FLIGHT} requests in flight, at least {AT_ONCE} must run at once."
        ),
        criteria=[no_errors(), waits(), running_at_once()],
        hints=[
            f"A plain `def` runs on the worker's thread pool, and this one has {THREADS} "
            "thread: one invocation at a time, whatever it does. An `async def` runs on the "
            "worker's event loop instead and needs no pool thread (How the lab works).",
            "On the event loop, `time.sleep` holds the loop's one thread, so nothing else runs "
            "meanwhile. `await asyncio.sleep(0.1)` hands the loop back while it waits.",
        ],
        load={"threads": THREADS, "concurrency": IN_FLIGHT, "requests": 4 * IN_FLIGHT},
        lab=lab,
        explanation=(
            f"{IN_FLIGHT} waits overlapped on one thread: the event loop ran each invocation "
            "up to its `await`, then the next. Notebook 03 does the same with real upstream calls."
        ),
    )
