"""What a run measured, next to what queueing theory says it could have been.

Little's law: throughput = invocations in flight / latency. With C requests in flight and
a service time S (measured alone, before the run), the ideal is C / S, unless something
caps how many invocations really run at once:
- a ``def`` function runs on P processes x T pool threads: at most P*T at once;
- CPU work cannot go faster than the cores allow: at most cores / (CPU seconds each).
What the settings do not cap (the GIL, a blocking call inside ``async def``) is what
``efficiency`` = measured / ideal exposes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .invocation import InvocationRecord


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Ideal:
    rps: float
    bottleneck: str  # what caps it: "requests in flight", "thread pool", "CPU cores"


def ideal_throughput(
    concurrency: int,
    service_s: float,
    slots: int | None = None,
    cores: float | None = None,
    cpu_s: float = 0.0,
) -> Ideal:
    """Little's-law ideal for C in flight, service time S, ``slots`` at once, ``cores``."""
    if service_s <= 0:
        return Ideal(0.0, "nothing measured")
    candidates = {"requests in flight": concurrency / service_s}
    if slots is not None and slots < concurrency:
        candidates = {"thread pool": slots / service_s}
    if cores and cpu_s > 0:
        candidates["CPU cores"] = cores / cpu_s
    bottleneck = min(candidates, key=lambda k: candidates[k])
    return Ideal(candidates[bottleneck], bottleneck)


@dataclass
class Summary:
    function: str
    processes: int | None  # None when measuring a URL: the remote settings are unknown
    threads: int | None
    concurrency: int
    requests: int
    ok: int
    errors: int
    elapsed_s: float
    throughput_rps: float
    startup_s: float
    latency_ms: dict[str, float]
    ideal_rps: float
    efficiency: float
    bottleneck: str
    service_ms: float  # one invocation alone, measured before the run
    cpu_ms: float  # mean CPU time of the user code per invocation
    cpu_ratio: float  # CPU time / run time: near 1 CPU-bound, near 0 I/O-bound
    queue_ms_p50: float  # dispatched -> user code started
    max_loop_lag_ms: float  # worst event-loop lag of any worker during the run
    loop_lag_ms: list[float] = field(default_factory=list)  # per worker
    worker_rss_mb: list[float] = field(default_factory=list)
    upstream_peak_in_flight: int = 0
    error_samples: list[str] = field(default_factory=list)
    is_async: bool = False
    # The worker model that ran (None for a URL): e.g. "3.13.0" and "uvloop" on 3.13+.
    python: str | None = None
    event_loop: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line a learner can read under a plot."""
        return (
            f"{self.function}: {self.throughput_rps:.1f} req/s "
            f"(ideal {self.ideal_rps:.1f}, {self.efficiency:.0%}; limit: {self.bottleneck}), "
            f"p50 {self.latency_ms['p50']:.0f} ms, p95 {self.latency_ms['p95']:.0f} ms, "
            f"{self.errors} errors - {self.settings_text()}{self.concurrency} in flight"
        )

    def settings_text(self) -> str:
        if self.processes is None:
            return ""
        if self.is_async:  # the thread pool plays no part in an async def function
            return f"{self.processes} process(es), async def on the event loop, "
        return f"{self.processes} process(es) x {self.threads} threads, "


def summarize(
    records: Sequence[InvocationRecord],
    *,
    function: str,
    processes: int | None,
    threads: int | None,
    concurrency: int,
    elapsed_s: float,
    startup_s: float,
    ideal: Ideal,
    service_s: float,
    worker_stats: Sequence[dict[str, Any]] = (),
    upstream_peak: int = 0,
    is_async: bool = False,
) -> Summary:
    ok = [r for r in records if r.ok]
    latencies = [r.latency_ms for r in ok]
    run_ms = sum(r.run_ms for r in ok)
    cpu_ms = sum(r.cpu_ms for r in ok)
    throughput = len(ok) / elapsed_s if elapsed_s > 0 else 0.0
    lags = [s.get("max_loop_lag_ms", 0.0) for s in worker_stats]
    errors = sorted({r.error for r in records if not r.ok and r.error})
    return Summary(
        function=function,
        processes=processes,
        threads=threads,
        concurrency=concurrency,
        requests=len(records),
        ok=len(ok),
        errors=len(records) - len(ok),
        elapsed_s=elapsed_s,
        throughput_rps=throughput,
        startup_s=startup_s,
        latency_ms={
            q: percentile(latencies, n)
            for q, n in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
        },
        ideal_rps=ideal.rps,
        efficiency=throughput / ideal.rps if ideal.rps > 0 else 0.0,
        bottleneck=ideal.bottleneck,
        service_ms=service_s * 1e3,
        cpu_ms=cpu_ms / len(ok) if ok else 0.0,
        cpu_ratio=cpu_ms / run_ms if run_ms > 0 else 0.0,
        queue_ms_p50=percentile([r.queue_ms for r in ok], 50),
        max_loop_lag_ms=max(lags, default=0.0),
        loop_lag_ms=lags,
        worker_rss_mb=[s.get("rss_bytes", 0) / 2**20 for s in worker_stats],
        upstream_peak_in_flight=upstream_peak,
        error_samples=errors[:3],
        is_async=is_async,
        python=next((s["python"] for s in worker_stats if "python" in s), None),
        event_loop=next((s["event_loop"] for s in worker_stats if "event_loop" in s), None),
    )
