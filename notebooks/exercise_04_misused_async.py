"""Notebook 04's exercises: two ways to fix an async handler that blocks its event loop.

``from exercise_04_misused_async import ex04`` gives both: ``q4a, q4b = ex04(lab)``. Each
check runs your handler with 8 requests in flight, watches the event loop, and counts how
many invocations ran at once.
"""

from __future__ import annotations

from throughput_lab import Lab
from throughput_lab.checks import (
    Exercise,
    calls_upstream,
    is_async,
    loop_never_blocked,
    no_errors,
    overlap_at_least,
    source_uses,
)


def _fix(
    name: str, way: str, uses: tuple[str, ...], label: str, hints: list[str], lab: Lab
) -> Exercise:
    """One fix of misused_async: the same criteria for both, and its source uses one of ``uses``."""
    return Exercise(
        name=f"04_{name}",
        task=f"rewrite misused_async as `{name}(req)`: still async def, {way}.",
        criteria=[
            is_async(),
            source_uses(*uses, label=label),
            no_errors(),
            calls_upstream(1),
            loop_never_blocked(),
            overlap_at_least(4),
        ],
        hints=hints,
        load={"concurrency": 8, "requests": 32, "upstream_delay_ms": 100},
        lab=lab,
        explanation="The event loop is free again, so invocations overlap instead of queueing.",
    )


def ex04(lab: Lab) -> tuple[Exercise, Exercise]:
    aiohttp_fix = _fix(
        "fix_aiohttp",
        "awaiting the upstream with aiohttp",
        ("aiohttp.",),
        "aiohttp",
        [
            "Replace the blocking `requests.get` with an awaited aiohttp call.",
            "`async with aiohttp.ClientSession() as session:` then "
            "`async with session.get(url) as response: await response.read()`.",
        ],
        lab,
    )
    executor_fix = _fix(
        "fix_executor",
        "keeping requests.get but running it off the event loop",
        ("run_in_executor(", "to_thread("),
        "run_in_executor or asyncio.to_thread",
        [
            "The loop can hand a blocking call to a thread and await the result.",
            "`await asyncio.get_running_loop().run_in_executor(None, requests.get, url)` "
            "(or `await asyncio.to_thread(requests.get, url)`).",
        ],
        lab,
    )
    return aiohttp_fix, executor_fix
