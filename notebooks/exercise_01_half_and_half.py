"""Notebook 01's exercise: a handler that is half computing, half waiting.

``from exercise_01_half_and_half import ex01``. The check runs your handler one request at
a time and tells the halves apart by CPU time / wall time, without reading the code.
"""

from __future__ import annotations

from throughput_lab import Lab
from throughput_lab.checks import Exercise, calls_upstream, cpu_ratio_between, is_async, no_errors


def ex01(lab: Lab) -> Exercise:
    return Exercise(
        name="01_half_and_half",
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
