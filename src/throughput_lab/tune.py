"""Measured settings for your own app: time one request alone, classify it, sweep, recommend.

1. One invocation at a time: its CPU time / wall time says whether it waits (I/O-bound)
   or computes (CPU-bound), as the article asks to find out before tuning.
2. A short run for each thread count x process count, at a fixed number in flight.
3. The setting with the highest throughput, or the smallest one within 5 % of it (more
   threads and processes cost memory and start-up), as the app settings to set, with the
   ``az functionapp config appsettings set`` command that sets them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .app_settings import PROCESS_COUNT_SETTING, THREAD_COUNT_SETTING, available_cores
from .lab import Lab
from .metrics import Summary

CPU_BOUND_RATIO = 0.5  # CPU time / wall time from which an invocation mostly computes
IO_BOUND_RATIO = 0.2  # ... and below which it mostly waits
NEAR_BEST = 0.95  # a smaller setting within 5 % of the best is preferred


def classify(cpu_ratio: float) -> str:
    if cpu_ratio >= CPU_BOUND_RATIO:
        return "CPU-bound"
    if cpu_ratio <= IO_BOUND_RATIO:
        return "I/O-bound"
    return "mixed"


def default_grid(
    kind: str, is_async: bool, cores: float, concurrency: int
) -> tuple[list[int | None], list[int]]:
    """Thread counts and process counts worth trying for this kind of function.

    Processes: 1 and one per core (at least 2, at most the host's 10). Threads: for a
    function that waits, a quarter of the requests in flight and one per request in
    flight (Little's law: more cannot help; a single thread, which notebook 02 shows, would
    take the longest to measure); for one that computes, a few, since pure Python holds
    the GIL.
    """
    processes = sorted({1, min(max(math.ceil(cores), 2), 10)})
    if is_async:  # the thread pool plays no part in an async def function
        return [None], processes
    if kind == "CPU-bound":
        return [1, 2, 4], processes
    return sorted({max(2, concurrency // 4), max(2, concurrency)}), processes


@dataclass
class TuneResult:
    function: str
    kind: str  # "I/O-bound", "CPU-bound" or "mixed"
    alone: Summary  # one invocation at a time
    runs: list[Summary] = field(default_factory=list)
    best: Summary | None = None

    @property
    def settings(self) -> dict[str, str]:
        """The app settings to set for the recommended run."""
        if self.best is None:
            return {}
        settings = {PROCESS_COUNT_SETTING: str(self.best.processes)}
        if not self.alone.is_async:
            settings[THREAD_COUNT_SETTING] = str(self.best.threads)
        return settings

    def az_command(self, name: str = "<APP_NAME>", group: str = "<RESOURCE_GROUP>") -> str:
        pairs = " ".join(f"{k}={v}" for k, v in self.settings.items())
        return (
            f"az functionapp config appsettings set --name {name} "
            f"--resource-group {group} --settings {pairs}"
        )

    def table(self) -> str:
        rows = [("processes", "threads", "req/s", "ideal", "p95 ms", "errors")]
        for s in self.runs:
            threads = "-" if s.is_async else str(s.threads)
            mark = "  <- recommended" if s is self.best else ""
            rows.append(
                (
                    str(s.processes),
                    threads,
                    f"{s.throughput_rps:.1f}",
                    f"{s.ideal_rps:.1f}",
                    f"{s.latency_ms['p95']:.0f}",
                    f"{s.errors}{mark}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(
                c.rjust(w) if i < 5 else c for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        )

    def report(self) -> str:
        alone = self.alone
        lines = [
            f"{self.function}: {alone.service_ms:.0f} ms alone, "
            f"CPU {alone.cpu_ms:.1f} ms ({alone.cpu_ratio:.0%} of its run time): {self.kind}"
            + (", async def" if alone.is_async else ", def (thread pool)"),
            "",
            self.table(),
        ]
        if self.best is None:
            lines += ["", "No setting ran without errors: fix the function first."]
            return "\n".join(lines)
        lines += [
            "",
            "Recommended app settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()),
            self.az_command(),
            "(Flex Consumption has no FUNCTIONS_WORKER_PROCESS_COUNT: there, per-instance "
            "concurrency and scale-out are the levers.)",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.report()


def tune(
    lab: Lab,
    function: str | None = None,
    *,
    concurrency: int = 32,
    duration_s: float = 1.5,
    threads: Sequence[int | None] | None = None,
    processes: Sequence[int] | None = None,
    on_run: Callable[[Summary], None] | None = None,
    **request: Any,
) -> TuneResult:
    """Measure ``function`` (or the request in ``path=...``) alone, then sweep, recommend.

    ``request`` takes ``Lab.run``'s request options: path, method, params, headers, body.
    """
    alone = lab.run(function, concurrency=1, requests=5, **request).summary
    kind = classify(alone.cpu_ratio)
    grid_threads, grid_processes = default_grid(
        kind, alone.is_async, available_cores(), concurrency
    )
    result = TuneResult(alone.function, kind, alone)
    for p in processes or grid_processes:
        for t in threads or grid_threads:
            summary = lab.run(
                function,
                processes=p,
                threads=t,
                concurrency=concurrency,
                duration_s=duration_s,
                **request,
            ).summary
            result.runs.append(summary)
            if on_run is not None:
                on_run(summary)
    clean = [s for s in result.runs if s.errors == 0 and s.throughput_rps > 0]
    if clean:
        top = max(s.throughput_rps for s in clean)
        near = [s for s in clean if s.throughput_rps >= NEAR_BEST * top]
        result.best = min(near, key=lambda s: (s.processes, s.threads))
    return result
