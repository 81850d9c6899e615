"""Are the exercise checks ever wrong? Each official solution and a plainly wrong answer, N times.

For each exercise of notebooks 00-08, the reference solution (``notebooks/solutions``) is
checked ``--runs`` times and must pass every time; each plainly wrong answer (the notebook's
own starting value, and the mistakes the notebook teaches against) is checked as often and
must fail every time. Run it quiet, beside a busy core (``python -c "while True: pass" &``)
and pinned to one core (``taskset -c 0 python benchmarks/verdicts.py``); the counts go in
the closing note of the yardstick issue.

Run: python benchmarks/verdicts.py [--runs N] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import requests

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))

from exercise_00_hello import ex00  # noqa: E402
from exercise_01_half_and_half import ex01  # noqa: E402
from exercise_02_fewest_threads import ex02  # noqa: E402
from exercise_03_two_calls import ex03  # noqa: E402
from exercise_04_misused_async import ex04  # noqa: E402
from exercise_05_own_executor import ex05  # noqa: E402
from exercise_06_processes import ex06  # noqa: E402
from exercise_07_mixed_settings import ex07  # noqa: E402
from exercise_08_instances import ex08  # noqa: E402

from throughput_lab import MAX_PROCESSES, Lab, available_cores  # noqa: E402
from throughput_lab.checks import feedback  # noqa: E402


# The notebooks' starting answers, and the mistakes they teach against, which the checks
# must reject.
def hello(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(0.1)  # on the pool's one thread: one invocation at a time
    return func.HttpResponse("hello")


async def hello_blocking(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(0.1)  # async def, but the wait holds the event loop
    return func.HttpResponse("hello")


async def hello_no_wait(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")  # overlaps, because it skips the wait


def half_and_half(req: func.HttpRequest) -> func.HttpResponse:
    response = requests.get(os.environ["UPSTREAM_URL"], timeout=30)
    return func.HttpResponse(f"upstream {response.status_code}")


async def two_calls(req: func.HttpRequest) -> func.HttpResponse:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(os.environ["UPSTREAM_URL"]) as response:
                await response.read()
    return func.HttpResponse("both done")


async def blocking(req: func.HttpRequest) -> func.HttpResponse:
    response = requests.get(os.environ["UPSTREAM_URL"], timeout=30)  # blocks the loop
    return func.HttpResponse(f"upstream {response.status_code}")


async def own_executor(req: func.HttpRequest) -> func.HttpResponse:
    import asyncio
    import functools
    import json

    calls = int(req.params.get("calls", "10"))
    get = functools.partial(requests.get, os.environ["UPSTREAM_URL"], timeout=30)
    loop = asyncio.get_running_loop()
    responses = await asyncio.gather(*(loop.run_in_executor(None, get) for _ in range(calls)))
    return func.HttpResponse(json.dumps([r.status_code for r in responses]))


def wrong_mixed_settings() -> list[dict[str, int]]:
    """07's wrong answers on this machine: what is wrong depends on its cores (on one core,
    1 process x 16 threads is the right answer)."""
    cores = max(1, math.ceil(available_cores()))
    wrong = [
        dict(processes=cores + 1, threads=math.ceil(16 / (cores + 1))),  # a process too many
        dict(processes=cores, threads=2),  # too few threads for the waiting part
    ]
    if cores > 1:
        wrong.append(dict(processes=1, threads=16))  # the GIL's mistake: one process
    return wrong


def wrong_processes_for_mixed() -> list[int]:
    """06's wrong answers on this machine: one process per core (the rule for work that only
    computes) and, where it keeps far more cores busy than there are, the host's maximum."""
    cores = available_cores()
    wrong = [max(1, round(cores))]
    if cores <= 2:  # 10 processes computing 40% of their time keep 4 cores busy
        wrong.append(MAX_PROCESSES)
    return wrong


Maker = Callable[[Lab], Any]
EXERCISES: dict[str, tuple[Maker, list[Any]]] = {
    "00 hello": (ex00, [hello, hello_blocking, hello_no_wait]),
    "01 half_and_half": (ex01, [half_and_half]),
    # the upstream's delay alone x the target (2 calls, not 1), the users, the target itself
    "02 fewest_threads": (ex02, [4, 32, 40]),
    "03 two_calls": (ex03, [two_calls]),
    "04 fix_aiohttp": (lambda lab: ex04(lab)[0], [blocking]),
    "04 fix_executor": (lambda lab: ex04(lab)[1], [blocking]),
    "05 own_executor": (ex05, [own_executor]),
    "06 processes": (ex06, wrong_processes_for_mixed()),
    "07 mixed_settings": (ex07, wrong_mixed_settings()),
    "08 instances": (ex08, [500, 1]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=None, help="exercise names, e.g. 06")
    args = parser.parse_args()
    os.chdir(NOTEBOOKS)  # the exercises find their solutions from here, as in a notebook
    wrong_verdicts = 0
    with Lab() as lab:
        for name, (make, wrong_answers) in EXERCISES.items():
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            exercise = make(lab)
            right = exercise.solution_answer()
            began = time.monotonic()
            passed = failed = 0
            misses: list[str] = []
            for _ in range(args.runs):
                for answer, should_pass in [(right, True), *((w, False) for w in wrong_answers)]:
                    verdict = exercise.judge(answer)
                    if verdict.passed == should_pass:
                        passed += should_pass
                        failed += not should_pass
                    else:
                        misses.append("\n".join(feedback(verdict)))
            wrong_verdicts += len(misses)
            print(
                f"{name:<18} solution passed {passed}/{args.runs}, wrong answers failed "
                f"{failed}/{args.runs * len(wrong_answers)} "
                f"({time.monotonic() - began:.0f} s)",
                flush=True,
            )
            for text in misses:
                print("  WRONG VERDICT:\n" + text, flush=True)
    return 1 if wrong_verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
