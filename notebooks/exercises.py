"""The workbook's exercises, one group per notebook: ``from exercises import ex04``.

Each exercise runs your answer under load with the lab you pass in and says what it
measured. The criteria live here, in one place, so the notebooks stay short.
"""

from __future__ import annotations

from throughput_lab import Lab
from throughput_lab.checks import (
    Exercise,
    calls_upstream,
    cpu_ratio_between,
    is_async,
    latency_p50_below,
    loop_never_blocked,
    no_errors,
    overlap_at_least,
    queue_p95_below,
    source_uses,
    threads_all_used,
)


def ex00(lab: Lab) -> Exercise:
    return Exercise(
        name="hello",
        task="write `hello(req)`, an async def handler that returns HttpResponse('hello').",
        criteria=[is_async(), no_errors()],
        hints=[
            "Start from `async def hello(req: func.HttpRequest) -> func.HttpResponse:`.",
            "The body is one line: `return func.HttpResponse('hello')`.",
        ],
        load={"concurrency": 4, "requests": 40},
        lab=lab,
        explanation="Your handler ran in a worker under load, as every exercise will.",
    )


def ex01(lab: Lab) -> Exercise:
    return Exercise(
        name="half_and_half",
        task=(
            "write `half_and_half(req)`, a plain def handler that spends about half its time "
            "computing and half waiting for UPSTREAM_URL."
        ),
        criteria=[is_async(False), no_errors(), calls_upstream(1), cpu_ratio_between(0.3, 0.7)],
        hints=[
            "Waiting is `requests.get(os.environ['UPSTREAM_URL'])`: about 100 ms here.",
            "Compute for as long as you wait: loop until `time.thread_time()` (CPU seconds of "
            "this thread) has grown by 0.1.",
        ],
        load={"concurrency": 1, "requests": 10, "upstream_delay_ms": 100},
        lab=lab,
        explanation="CPU time / wall time tells the two halves apart without reading the code.",
    )


def ex02(lab: Lab) -> Exercise:
    concurrency, delay = 12, 200

    def run(lab: Lab, threads: int):
        return lab.run(
            "sync_io",
            threads=int(threads),
            concurrency=concurrency,
            requests=4 * concurrency,
            upstream_delay_ms=delay,
        )

    return Exercise(
        name="fewest_threads",
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


def ex03(lab: Lab) -> Exercise:
    return Exercise(
        name="two_calls",
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


def _fix(
    name: str, way: str, uses: tuple[str, ...], label: str, hints: list[str], lab: Lab
) -> Exercise:
    return Exercise(
        name=name,
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
