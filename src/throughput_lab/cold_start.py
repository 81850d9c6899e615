"""Cold start: how long a new worker process takes to be ready, and what it then holds.

In Azure a cold start is a new instance, or a new worker process on one, getting ready for
its first invocation: the host starts the Python worker, the worker imports itself and then
the app (`function_app.py` and everything it imports), and only then takes invocations.
The host starts the extra processes of FUNCTIONS_WORKER_PROCESS_COUNT one after another,
10 s apart (`WorkerProcessCountOptions.ProcessStartupInterval`), so each pays its own.

What is measured here, with the engine's own worker process: the time from starting it to
its ``Ready`` (interpreter, worker, app), the app's share of it (``load_app``: its imports
and indexing), and its resident memory once ready. The platform's own part (allocating an
instance, mounting the app's files, starting the host) is not on this machine.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from .host import Host
from .invocation import HttpRequestFields

MB = 2**20


@dataclass(frozen=True)
class ColdStart:
    """One app's worker start-up, the median of several starts."""

    app: str
    python: str
    startup_s: float  # starting the worker process until it is ready (the app loaded)
    app_load_s: float  # of which importing and indexing the app
    rss_mb: float  # one worker process's resident memory once ready
    first_call_ms: float | None = None  # the first invocation of ``function``, if asked
    next_call_ms: float | None = None  # the one after it

    def line(self) -> str:
        text = (
            f"{self.app}: ready in {self.startup_s * 1e3:.0f} ms on Python {self.python}, "
            f"{self.app_load_s * 1e3:.0f} ms of it importing the app; "
            f"{self.rss_mb:.0f} MB per worker process"
        )
        if self.first_call_ms is not None and self.next_call_ms is not None:
            text += (
                f"; first invocation {self.first_call_ms:.0f} ms, "
                f"the next {self.next_call_ms:.0f} ms"
            )
        return text


def _call_ms(host: Host, function: str) -> float:
    record, _ = host.invoke(function, HttpRequestFields(route=function)).result(timeout=60)
    if not record.ok:
        raise RuntimeError(f"{function} failed: {record.error}")
    return record.run_ms


def measure_cold_start(
    app: str | Path, *, starts: int = 3, function: str | None = None
) -> ColdStart:
    """Start one worker process for ``app`` ``starts`` times; the medians of what it took.

    With ``function``, each start also times its first invocation and the one after: what
    a heavy import moved into the handler costs, and costs only once.
    """
    if starts < 1:
        raise ValueError(f"starts must be >= 1, got {starts}")
    startup, load, rss, first, after = [], [], [], [], []
    python = ""
    for _ in range(starts):
        with Host(app, processes=1) as host:
            ready = host.workers[0].ready
            assert ready is not None  # a started host's workers have said Ready
            python = ready.python
            startup.append(host.startup_s)
            load.append(ready.app_load_s)
            rss.append(sum(s.rss_bytes for s in host.stats()) / MB)  # before any invocation
            if function is not None:
                first.append(_call_ms(host, function))
                after.append(_call_ms(host, function))
    return ColdStart(
        app=Path(app).name,
        python=python,
        startup_s=statistics.median(startup),
        app_load_s=statistics.median(load),
        rss_mb=statistics.median(rss),
        first_call_ms=statistics.median(first) if first else None,
        next_call_ms=statistics.median(after) if after else None,
    )
