"""What a run measured, next to what queueing theory says it could have been.

Little's law: throughput = invocations in flight / latency. The ideal is the least of
every limit the worker model puts on a run, each "so many at once / seconds each":

- requests in flight: C / S, with S the time one invocation takes alone;
- the worker pool (``def``): P processes x T threads / time on a pool thread;
- the event loop (``async def``): P loops / time an invocation holds its loop;
- asyncio's default executor (``run_in_executor(None, ...)``): P x its threads / thread
  time each invocation uses there;
- the CPU: the cores free during the run / CPU seconds each invocation's code needs;
- a queue trigger's listener (host.json ``extensions.queues``): batchSize +
  newBatchThreshold messages at once per instance / the time each takes;
- a Service Bus listener: maxConcurrentCalls messages at once per instance (with
  sessions: the sessions held, one message at a time each) / the time each takes;
- an Event Hubs listener: one invocation at a time per partition, so the partitions /
  the time one batch takes.
Each listener's bound carries its own name (``bound_name``), so a run it holds back says so.

What each invocation needs (``Demand``) is measured on invocations run alone, and in the
run itself where it was lower (a machine is never faster alone than under load by
design, but a cold first call can be), so the ideal is an upper bound: a run that
beats it by more than noise is a bug. What the model does not cap (the GIL, the lab's own
CPU) is what ``efficiency`` = measured / ideal exposes, and ``limited_by`` names it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .app_settings import default_executor_threads
from .channel import WorkerStats
from .cpu_share import CpuShare
from .invocation import InvocationRecord

# Below this share of its ideal, a run's summary names what held it back.
EXPLAIN_BELOW = 0.7


def latency_percentiles(latencies: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max, as the CLI's JSON and every summary line give them."""
    quantiles = (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
    return {name: percentile(latencies, q) for name, q in quantiles}


def most_at_once(records: Sequence[InvocationRecord]) -> int:
    """The most invocations whose user code ran at the same time in any one worker process.

    Against the article's "a host instance can process only one invocation at a time": a
    pool of threads, or one event loop awaiting, runs many.
    """
    events: dict[int, list[tuple[float, int]]] = {}
    for r in records:
        if r.started and r.ended:
            events.setdefault(r.pid, []).extend(((r.started, 1), (r.ended, -1)))
    most = 0
    for timeline in events.values():
        now = 0
        for _, step in sorted(timeline):  # an end sorts before a start at the same instant
            now += step
            most = max(most, now)
    return most


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Demand:
    """What one invocation needs, in seconds: measured alone, and in the run."""

    service_s: float  # dispatched -> answered
    pool_s: float = 0.0  # on a pool thread (``def``)
    loop_s: float = 0.0  # holding the event loop (``async def``)
    executor_s: float = 0.0  # thread time in asyncio's default executor
    cpu_s: float = 0.0  # CPU time of the function's own code
    spread: float = 0.0  # relative spread of the service times (half the IQR / median)
    samples: int = 0

    @classmethod
    def measure(
        cls, alone: Iterable[InvocationRecord], run: Iterable[InvocationRecord] = ()
    ) -> Demand:
        """Medians over invocations run alone; the run's median instead where lower."""
        alone = [r for r in alone if r.ok]
        run = [r for r in run if r.ok]
        if not alone:
            return cls(0.0)

        def median(records: list[InvocationRecord], value: str) -> float:
            return statistics.median(getattr(r, value) for r in records) / 1e3

        def least(value: str) -> float:
            best = median(alone, value)
            return min(best, median(run, value)) if run else best

        latencies = sorted(r.latency_ms for r in alone)
        middle = statistics.median(latencies)
        q1, q3 = percentile(latencies, 25), percentile(latencies, 75)
        return cls(
            service_s=least("latency_ms"),
            pool_s=least("run_ms"),
            loop_s=least("loop_ms"),
            executor_s=least("executor_ms"),
            cpu_s=least("cpu_ms"),
            spread=(q3 - q1) / (2 * middle) if middle > 0 else 0.0,
            samples=len(alone),
        )

    def ideal(
        self,
        *,
        concurrency: int,
        processes: int,
        pool_threads: int | None,
        cores: float,
        queue_batch: float | None = None,
        bound_name: str = "queue batch",
    ) -> Ideal:
        """The ideal for this demand: ``pool_threads`` per process for ``def``, else None;
        ``queue_batch`` the most a trigger's listener runs at once, named ``bound_name``."""
        return ideal_throughput(
            concurrency,
            self.service_s,
            None if pool_threads is None else processes * pool_threads,
            cores,
            self.cpu_s,
            processes=processes,
            pool_s=self.pool_s,
            loop_s=self.loop_s,
            executor_threads=default_executor_threads(),
            executor_s=self.executor_s,
            spread=self.spread,
            queue_batch=queue_batch,
            bound_name=bound_name,
        )


@dataclass(frozen=True)
class Ideal:
    rps: float
    bottleneck: str  # the limit that binds: "requests in flight", "thread pool", ...
    bounds: dict[str, float] = field(default_factory=dict)  # every limit, req/s
    error_rps: float = 0.0  # +- from the spread of the times it was computed from


def ideal_throughput(
    concurrency: int,
    service_s: float,
    slots: int | None = None,
    cores: float | None = None,
    cpu_s: float = 0.0,
    *,
    processes: int = 1,
    pool_s: float | None = None,
    loop_s: float = 0.0,
    executor_threads: int | None = None,
    executor_s: float = 0.0,
    spread: float = 0.0,
    queue_batch: float | None = None,
    bound_name: str = "queue batch",
) -> Ideal:
    """The least of every limit on C in flight (see the module's docstring).

    ``slots`` is P x T for a ``def`` function (None for ``async def``: no pool);
    ``cores`` the cores free for the run.
    """
    if service_s <= 0:
        return Ideal(0.0, "nothing measured")
    bounds = {"requests in flight": concurrency / service_s}
    if slots is not None:
        bounds["thread pool"] = slots / (pool_s or service_s)
    if loop_s > 0:
        bounds["event loop"] = processes / loop_s
    if executor_threads and executor_s > 0:
        bounds["asyncio's default executor"] = processes * executor_threads / executor_s
    if cores and cpu_s > 0:
        bounds["CPU cores"] = cores / cpu_s
    if queue_batch is not None:
        bounds[bound_name] = queue_batch / service_s
    bottleneck = min(bounds, key=lambda k: bounds[k])
    rps = bounds[bottleneck]
    return Ideal(rps, bottleneck, bounds, rps * spread)


def throughput_error(records: Sequence[InvocationRecord], elapsed_s: float) -> float:
    """+- of a run's throughput: its standard error, by Little's law from the latencies.

    Throughput = in flight / mean latency, so it is as uncertain as the mean latency:
    the latencies' spread over the square root of their number.
    """
    latencies = [r.latency_ms for r in records if r.ok]
    if len(latencies) < 2 or elapsed_s <= 0:
        return 0.0
    mean = statistics.fmean(latencies)
    relative = statistics.stdev(latencies) / mean / math.sqrt(len(latencies)) if mean > 0 else 0.0
    return len(latencies) / elapsed_s * relative


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
    bottleneck: str  # the limit that binds the ideal
    service_ms: float  # one invocation alone (or in the run, where faster)
    cpu_ms: float  # CPU time of the user code per invocation (the run's mean)
    cpu_ratio: float  # CPU time / run time: near 1 CPU-bound, near 0 I/O-bound
    queue_ms_p50: float  # dispatched -> user code started
    max_loop_lag_ms: float  # worst event-loop lag of any worker during the run
    loop_lag_ms: list[float] = field(default_factory=list)  # per worker
    worker_rss_mb: list[float] = field(default_factory=list)
    upstream_peak_in_flight: int = 0
    error_samples: list[str] = field(default_factory=list)
    is_async: bool = False
    throughput_error_rps: float = 0.0  # +- (the rate's spread over the window)
    ideal_error_rps: float = 0.0  # +- (the spread of the times alone)
    bounds: dict[str, float] = field(default_factory=dict)  # every limit of the ideal, req/s
    limited_by: str = ""  # below 70% of the ideal: what held the run back
    cores: float = 0.0  # cores the lab may use
    free_cores: float = 0.0  # of those, what other programs left free during the run
    lab_cores: float = 0.0  # used by the lab's processes during the run
    lab_cpu_ms: float = 0.0  # the lab's CPU per invocation: function, worker, host, load
    executor_ms: float = 0.0  # thread time in asyncio's default executor per invocation
    executor_peak: int = 0  # most of its threads busy at once, in any worker process
    loop_busy: float = 0.0  # share of the run the busiest worker's event loop thread computed
    lab_process_busy: float = 0.0  # cores' worth the lab's own process (host, load) used
    transit_share: float = 0.0  # share of a request's time spent outside the worker's hands
    longest_step_ms: float = 0.0  # ``async def``: the longest the function held its loop
    # Involuntary context switches of the worker processes per invocation: the OS taking a
    # core from a process that could still run (more runnable processes than free cores).
    switches_per_request: float = 0.0
    # The worker model that ran (None for a URL): e.g. "3.13.0" and "uvloop" on 3.13+.
    python: str | None = None
    event_loop: str | None = None
    # A streamed response (HTTP streaming): dispatched -> its first body byte, percentiles.
    first_byte_ms: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def efficiency_text(self) -> str:
        """``87%``; over 100% only within the ± of both figures, and then it says so.

        Both the rate and the ideal are measured (the ideal from times alone and the free
        cores), so on a busy machine a run can land above its ideal by chance, never by more
        than twice their combined ± (anything beyond is a fault of the model, shown as is).
        """
        text = f"{self.efficiency:.0%}"
        if self.efficiency > 1 and self.within_error_of_ideal():
            text += ", equal within the ±"
        return text

    def within_error_of_ideal(self) -> bool:
        gap = abs(self.throughput_rps - self.ideal_rps)
        return gap <= 2 * math.hypot(self.throughput_error_rps, self.ideal_error_rps)

    def rate_text(self, unit: str) -> str:
        """``12.3 ± 0.4 req/s (ideal 13.0 ± 0.2, 95%; limit: thread pool)``, with what held
        the run back where something did: the head of every run's line, HTTP or drained,
        counted in ``unit`` (req, messages, invocations) per second."""
        held = f"; held back by {self.limited_by}" if self.limited_by else ""
        return (
            f"{self.throughput_rps:.1f} ± {self.throughput_error_rps:.1f} {unit}/s "
            f"(ideal {self.ideal_rps:.1f} ± {self.ideal_error_rps:.1f}, {self.efficiency_text()}; "
            f"limit: {self.bottleneck}{held})"
        )

    def line(self) -> str:
        """One line a learner can read under a plot."""
        cores = f", {self.free_cores:.1f} of {self.cores:g} cores free" if self.cores else ""
        return (
            f"{self.function}: {self.rate_text('req')}, "
            f"p50 {self.latency_ms['p50']:.0f} ms, p95 {self.latency_ms['p95']:.0f} ms, "
            f"{self.first_byte_text()}{self.errors} errors - "
            f"{self.settings_text()}{self.concurrency} in flight{cores}"
        )

    def first_byte_text(self) -> str:
        if not self.first_byte_ms:
            return ""
        return f"first byte p50 {self.first_byte_ms['p50']:.0f} ms, "

    def settings_text(self) -> str:
        if self.processes is None:
            return ""
        if self.is_async:  # the pool exists, but an async def function never runs on it
            pool = f" (pool of {self.threads} threads unused)" if self.threads else ""
            return f"{self.processes} process(es), async def on the event loop{pool}, "
        return f"{self.processes} process(es) x {self.threads} threads, "


def _transit_share(records: Sequence[InvocationRecord]) -> float:
    """Share of the requests' time spent before the worker took them or after it let go."""
    timed = [r for r in records if r.submitted and r.ended]
    total = sum(r.latency_ms for r in timed)
    inside = sum((r.ended - r.submitted) * 1e3 for r in timed)
    return max(0.0, total - inside) / total if total > 0 else 0.0


# A resource this busy during a run can explain why the run fell short of its ideal.
SATURATED = 0.6


def _busy_resources(s: Summary) -> list[tuple[float, str]]:
    """Each resource the worker model leaves out, with how busy the run kept it (0-1+)."""
    processes = s.processes or 1
    candidates: list[tuple[float, str]] = []
    if not s.is_async and (s.threads or 1) > 1 and s.cpu_ms > 0:
        gil = processes / (s.cpu_ms / 1e3)
        if gil < 0.8 * s.ideal_rps:  # only where the GIL would bind before the ideal
            candidates.append(
                (
                    s.throughput_rps / gil,
                    f"the GIL: pure-Python code runs on one core per process at a time, "
                    f"{processes} / {s.cpu_ms:.0f} ms of CPU = {gil:.1f} req/s at most",
                )
            )
    if s.free_cores > 0:
        candidates.append(
            (
                s.lab_cores / s.free_cores,
                f"the CPU: the lab's processes used {s.lab_cores:.1f} of the "
                f"{s.free_cores:.1f} free cores, {s.lab_cpu_ms:.1f} ms per invocation "
                f"({s.cpu_ms:.1f} ms in the function, the rest in the worker, host, upstream "
                "and load)",
            )
        )
    candidates.append(
        (
            s.loop_busy,
            f"the event loop: its one thread was computing {s.loop_busy:.0%} of the run "
            "(the function's steps, and decoding and encoding each request)",
        )
    )
    candidates.append(
        (
            s.transit_share,
            f"the lab itself: {s.transit_share:.0%} of each request's time went between the "
            "load, the host and the worker, not to the function (the engine's own cost per "
            "request; a handler from a notebook also shares the kernel's GIL with them)",
        )
    )
    candidates.append(
        (
            s.lab_process_busy,
            f"the lab's own process: its host, load and upstream share one GIL, busy "
            f"{s.lab_process_busy:.0%} of a core (in Azure these are not on the instance)",
        )
    )
    return candidates


def limited_by(s: Summary) -> str:
    """Name what kept a run under ``EXPLAIN_BELOW`` of its ideal, from what was measured.

    Each candidate is a resource the worker model leaves out, with how busy the run kept
    it; the busiest one at or above ``SATURATED`` is named, with its figure.
    """
    if s.ideal_rps <= 0 or s.efficiency >= EXPLAIN_BELOW:
        return ""
    if s.errors:
        return f"errors ({s.errors} of {s.requests} requests failed)"
    busiest, text = max(_busy_resources(s), key=lambda c: c[0])
    if busiest >= SATURATED:
        return text
    if s.longest_step_ms > 50:  # the function itself held the loop, not the machine
        return (
            f"a blocked event loop: one step of the function held it {s.longest_step_ms:.0f} ms "
            f"(worst lag {s.max_loop_lag_ms:.0f} ms)"
        )
    others = s.cores - s.free_cores
    if others >= 0.5:
        return (
            f"other programs: they kept {others:.1f} core(s) busy during the run, and each of "
            "the lab's processes waited its turn for the CPU"
        )
    return "nothing the lab can name: run it again on a quieter machine"


def _add_worker_stats(summary: Summary, worker_stats: Sequence[WorkerStats]) -> None:
    """What the workers said of themselves: loop lag, memory, executor peak, their model."""
    summary.loop_lag_ms = [s.max_loop_lag_ms for s in worker_stats]
    summary.max_loop_lag_ms = max(summary.loop_lag_ms, default=0.0)
    summary.worker_rss_mb = [s.rss_bytes / 2**20 for s in worker_stats]
    summary.executor_peak = max((s.executor_peak for s in worker_stats), default=0)
    summary.python = next((s.python for s in worker_stats if s.python), None)
    summary.event_loop = next((s.event_loop for s in worker_stats if s.event_loop), None)


def _add_cpu_share(summary: Summary, cpu: CpuShare) -> None:
    """The cores the lab may use, what others left free, what the lab itself used."""
    summary.cores, summary.free_cores, summary.lab_cores = cpu.cores, cpu.free, cpu.ours
    per_request = summary.elapsed_s / summary.requests if summary.requests else 0.0
    summary.lab_cpu_ms = cpu.ours * per_request * 1e3


def _invocation_figures(records: Sequence[InvocationRecord], elapsed_s: float) -> dict[str, Any]:
    """What the invocations' records say of a run: its counts, rate and latencies, and the
    CPU, queueing and executor time of the ones that succeeded."""
    ok = [r for r in records if r.ok]
    run_ms = sum(r.run_ms for r in ok)
    cpu_ms = sum(r.cpu_ms for r in ok)
    streamed = [r.first_byte_ms for r in ok if r.first_byte]
    return {
        "requests": len(records),
        "ok": len(ok),
        "errors": len(records) - len(ok),
        "elapsed_s": elapsed_s,
        "throughput_rps": len(ok) / elapsed_s if elapsed_s > 0 else 0.0,
        "latency_ms": latency_percentiles([r.latency_ms for r in ok]),
        "cpu_ms": cpu_ms / len(ok) if ok else 0.0,
        "cpu_ratio": cpu_ms / run_ms if run_ms > 0 else 0.0,
        "queue_ms_p50": percentile([r.queue_ms for r in ok], 50),
        "error_samples": sorted({r.error for r in records if not r.ok and r.error})[:3],
        "throughput_error_rps": throughput_error(records, elapsed_s),
        "executor_ms": sum(r.executor_ms for r in ok) / len(ok) if ok else 0.0,
        "transit_share": _transit_share(ok),
        "longest_step_ms": max((r.longest_step_ms for r in ok), default=0.0),
        "first_byte_ms": latency_percentiles(streamed) if streamed else None,
    }


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
    worker_stats: Sequence[WorkerStats] = (),
    upstream_peak: int = 0,
    is_async: bool = False,
    cpu: CpuShare | None = None,
    loop_busy: float = 0.0,
    lab_process_busy: float = 0.0,
    switches: int = 0,
) -> Summary:
    """The run's ``Summary``: its invocations' figures against the ideal, what the workers
    and the CPU said of it, and what held it back."""
    figures = _invocation_figures(records, elapsed_s)
    summary = Summary(
        function=function,
        processes=processes,
        threads=threads,
        concurrency=concurrency,
        startup_s=startup_s,
        ideal_rps=ideal.rps,
        efficiency=figures["throughput_rps"] / ideal.rps if ideal.rps > 0 else 0.0,
        bottleneck=ideal.bottleneck,
        service_ms=service_s * 1e3,
        max_loop_lag_ms=0.0,
        upstream_peak_in_flight=upstream_peak,
        is_async=is_async,
        ideal_error_rps=ideal.error_rps,
        bounds=dict(ideal.bounds),
        loop_busy=loop_busy,
        lab_process_busy=lab_process_busy,
        switches_per_request=switches / len(records) if records else 0.0,
        **figures,
    )
    _add_worker_stats(summary, worker_stats)
    if cpu is not None:
        _add_cpu_share(summary, cpu)
    summary.limited_by = limited_by(summary)
    return summary
