"""Notebook 00's exercise: a first handler, checked by running it.

``from exercise_00_hello import ex00``. The check runs your handler under a small load (in
one in-process worker, like every exercise) and says what it measured.
"""

from __future__ import annotations

from throughput_lab import Lab
from throughput_lab.checks import Exercise, is_async, no_errors


def ex00(lab: Lab) -> Exercise:
    return Exercise(
        name="00_hello",
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
