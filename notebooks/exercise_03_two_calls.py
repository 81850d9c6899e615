"""Notebook 03's exercise: two upstream calls at once from an async handler.

``from exercise_03_two_calls import ex03``. The check runs your handler with 20 requests in
flight and compares its latency with one upstream delay, while it watches the event loop.
"""

from __future__ import annotations

from throughput_lab import Lab
from throughput_lab.checks import (
    Exercise,
    calls_upstream,
    is_async,
    latency_p50_below,
    loop_never_blocked,
    no_errors,
)


def ex03(lab: Lab) -> Exercise:
    return Exercise(
        name="03_two_calls",
        task=(
            "write `two_calls(req)`, an async def handler that calls UPSTREAM_URL twice, "
            "both calls at the same time, and answers when both are done."
        ),
        criteria=[
            is_async(),
            no_errors(),
            calls_upstream(2),
            latency_p50_below(1.6),
            loop_never_blocked(),
        ],
        hints=[
            "`await asyncio.gather(a(), b())` waits for two awaitables that run at once.",
            "Inside one `async with aiohttp.ClientSession() as session:` make a small "
            "`async def get(): async with session.get(url) as r: return await r.read()`, then "
            "`await asyncio.gather(get(), get())`.",
        ],
        load={"concurrency": 20, "requests": 100, "upstream_delay_ms": 100},
        lab=lab,
        explanation="Two waits overlapped cost one wait: the loop ran both at once.",
    )
