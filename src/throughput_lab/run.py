"""One measured run, whatever the trigger: the part every lab shares.

A run keeps a host open across runs while its settings stay the same (``HostCache``),
warms each worker up, times the invocation alone (once per what decides that time), then
measures a window metered for CPU: the records, their demand and the ideal it allows
(``metrics``), summarized, with what held the run back named. A trigger supplies only
what differs (``Trigger``): how one invocation is sent, how the window's work arrives
(HTTP: a closed loop of requests; a queue: the host's listener draining it), the bound it
adds and its own explanation of a shortfall.

Runs go on a thread of their own with their own event loop (``start_on_thread``), so they
work from a notebook, whose kernel loop is already running, without blocking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .app_settings import check_processes, check_threads_flag
from .channel import WorkerStats
from .cpu_share import CpuMeter, own_cpu_s
from .host import SIGNAL_SLICE_S, Host
from .invocation import InvocationRecord, clock
from .metrics import Demand, Ideal, Summary, summarize
from .upstream import Upstream

# Invocations timed alone before a run: at least ALONE_MIN (and one per worker), up to
# ALONE_MAX while they take less than ALONE_BUDGET_S in all; once per what decides it.
ALONE_MIN, ALONE_MAX, ALONE_BUDGET_S = 3, 15, 0.5


@dataclass(frozen=True)
class WorkerSettings:
    """The app settings that shape the workers, validated once, here."""

    processes: int = 1  # FUNCTIONS_WORKER_PROCESS_COUNT
    threads: int | None = None  # PYTHON_THREADPOOL_THREAD_COUNT; None: as the worker defaults
    cpu_affinity: frozenset[int] = frozenset()  # cores the workers may use; empty: any

    def __post_init__(self) -> None:
        check_processes(self.processes)
        check_threads_flag(self.threads)


class Trigger(Protocol):
    """What differs between triggers in a measured run."""

    function: str
    is_async: bool
    concurrency: int  # work in flight the load allows (requests; a queue's messages)
    queue_batch: float | None  # a listener's cap on invocations at once, if it has one
    bound_name: str  # that cap's name in the ideal's bounds (e.g. "queue batch")
    alone_key: Hashable  # what decides the time alone: equal keys share one timing

    async def invoke(self, index: int) -> InvocationRecord:
        """One invocation with nothing else in flight (warm-up, timing alone)."""

    async def before_window(self) -> None:
        """Set up what must not be metered (e.g. enqueue the messages)."""

    async def drive(
        self, record: Callable[[InvocationRecord], None]
    ) -> tuple[list[InvocationRecord], float]:
        """The measured work: its invocations and the window's seconds."""

    def other_cpu_s(self) -> float:
        """CPU seconds of the lab's helpers outside host and workers (e.g. Azurite)."""

    def explain(self, summary: Summary) -> str:
        """This trigger's reason for a shortfall the summary could not name, or ""."""


@dataclass
class Measured:
    summary: Summary
    records: list[InvocationRecord]
    worker_stats: list[WorkerStats] = field(default_factory=list)


class RunHandle:
    """A run going on in the background: poll it, wait for it, await it or cancel it."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.records: list[InvocationRecord] = []  # grows while the run goes
        self.ideal: Ideal | None = None  # known once the warm-up has timed the function
        self.future: Future[Any] = Future()
        self.on_record: Callable[[InvocationRecord], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self.cancelled = False

    @property
    def completed(self) -> int:
        return len(self.records)

    def done(self) -> bool:
        return self.future.done()

    def record(self, rec: InvocationRecord) -> None:
        self.records.append(rec)
        if self.on_record is not None:
            self.on_record(rec)

    def result(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SIGNAL_SLICE_S if deadline is None else deadline - time.monotonic()
            try:  # waking every slice runs any signal handler another thread tripped
                return self.future.result(max(0.0, min(SIGNAL_SLICE_S, left)))
            except FutureTimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def __await__(self) -> Any:
        return asyncio.wrap_future(self.future).__await__()

    def attach(self) -> None:
        """Called by the run's coroutine as it begins, on its loop: cancel() can reach it."""
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        self.check()

    def check(self) -> None:
        """Raise CancelledError if the run was cancelled (between invocations)."""
        if self.cancelled:
            raise asyncio.CancelledError

    def cancel(self) -> None:
        """Stop the run; invocations in flight are abandoned, the result is an error."""
        self.cancelled = True
        if self._loop is not None and self._task is not None and not self.done():
            with contextlib.suppress(RuntimeError):  # its loop closed as the run ended
                self._loop.call_soon_threadsafe(self._task.cancel)


def start_on_thread(
    handle: RunHandle,
    run: Callable[[], Coroutine[Any, Any, Any]],
    failed: Callable[[BaseException], None],
) -> None:
    """Run ``run()`` on a thread with its own loop; its result or error lands on ``handle``.
    ``failed`` is told of an error first (a Stop button waits for the handle)."""

    def thread() -> None:
        try:
            result = asyncio.run(run())
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                exc = RuntimeError("the run was stopped")
            failed(exc)
        else:
            handle.future.set_result(result)

    threading.Thread(target=thread, name="lab-run", daemon=True).start()


def wait_or_cancel(handle: RunHandle, cancelled: Callable[[], None]) -> Any:
    """Wait for a run; on Ctrl-C (a kernel interrupt) cancel it, let it end, re-raise."""
    try:
        return handle.result()
    except KeyboardInterrupt:
        handle.cancel()
        with contextlib.suppress(BaseException):  # cancelled: the expected outcome
            handle.result(timeout=10)
        cancelled()
        raise


class HostCache:
    """One host kept open across runs while the key (its settings) stays the same."""

    def __init__(self) -> None:
        self.host: Host | None = None
        self._key: Hashable = None
        self.lock = threading.RLock()  # one thread at a time starts or stops workers

    def get(self, key: Hashable, start: Callable[[], Host]) -> Host:
        with self.lock:
            if self.host is not None and self._key == key and not self.host.closed:
                return self.host
            self.close()
            self.host = start().start()
            self._key = key
            return self.host

    def close(self) -> None:
        with self.lock:
            if self.host is not None:
                self.host.close()
            self.host, self._key = None, None


def code_stamp(app: Path) -> float:
    """When the app's Python files last changed (v2 modules, blueprints, v1 folders)."""
    files = [*app.glob("*.py"), *app.glob("*/*.py")]
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


async def time_alone(trigger: Trigger, processes: int) -> list[InvocationRecord]:
    """At least three and one per worker, more while they are quick, for medians that a
    busy machine cannot sway; three failures alone end it (no use timing it further)."""
    alone: list[InvocationRecord] = []
    began = clock()
    while len(alone) < max(processes, ALONE_MIN) or (
        len(alone) < ALONE_MAX and clock() - began < ALONE_BUDGET_S
    ):
        alone.append(await trigger.invoke(-100 - len(alone)))
        if len(alone) == ALONE_MIN and not any(r.ok for r in alone):
            break
    return alone


def lab_cpu_s(worker_stats: list[WorkerStats]) -> float:
    """CPU seconds of the lab so far: this process and its worker processes."""
    me = os.getpid()
    return own_cpu_s() + sum(s.cpu_s for s in worker_stats if s.pid != me)


def busiest_loop(before: list[WorkerStats], after: list[WorkerStats], elapsed_s: float) -> float:
    """Share of the window the busiest worker's event-loop thread spent computing."""
    start = {s.worker: s.loop_cpu_s for s in before}
    busy = [s.loop_cpu_s - start.get(s.worker, 0.0) for s in after]
    return max(busy, default=0.0) / elapsed_s if elapsed_s > 0 else 0.0


def involuntary_switches(before: list[WorkerStats], after: list[WorkerStats]) -> int:
    """Context switches the OS forced on the worker processes during the window."""
    start = {s.worker: s.involuntary_switches for s in before}
    return sum(max(0, s.involuntary_switches - start.get(s.worker, 0)) for s in after)


@dataclass
class MeasuredRun:
    """One run of ``trigger`` through ``host``: warm-up, time alone, the metered window."""

    host: Host
    trigger: Trigger
    upstream: Upstream
    handle: RunHandle
    alone_cache: dict[Hashable, list[InvocationRecord]]
    cpu_affinity: frozenset[int] = frozenset()

    def ideal(self, demand: Demand, cores: float) -> Ideal:
        if not demand.samples:
            if not getattr(self.trigger, "times_alone", True):
                return Ideal(0.0, "unknown: nothing was timed alone (alone='none')")
            return Ideal(0.0, "unknown: the function failed when run alone")
        return demand.ideal(
            concurrency=self.trigger.concurrency,
            processes=self.host.processes,
            pool_threads=None if self.trigger.is_async else self.host.threads,
            cores=cores,
            queue_batch=self.trigger.queue_batch,
            bound_name=self.trigger.bound_name,
        )

    async def alone(self) -> list[InvocationRecord]:
        """Warm-up (imports, first connections; not timed), then the times alone; neither
        for a trigger that says it must not be sent outside the window (``times_alone``)."""
        if not getattr(self.trigger, "times_alone", True):
            return []
        for i in range(self.host.processes):
            await self.trigger.invoke(-1 - i)
        alone = self.alone_cache.get(self.trigger.alone_key)
        if alone is None:
            alone = await time_alone(self.trigger, self.host.processes)
            if any(r.ok for r in alone):
                self.alone_cache[self.trigger.alone_key] = alone
        return alone

    async def measure(self) -> Measured:
        alone = await self.alone()
        meter = CpuMeter(set(self.cpu_affinity) or None)
        self.handle.ideal = self.ideal(Demand.measure(alone), meter.cores)  # until the run
        await self.trigger.before_window()
        before = await asyncio.to_thread(self.host.stats)  # also resets each loop's lag
        self.upstream.reset_stats()
        meter.start(lab_cpu_s(before) + self.trigger.other_cpu_s())
        own_before = own_cpu_s()
        records, elapsed = await self.trigger.drive(self.handle.record)
        after = await asyncio.to_thread(self.host.stats)
        cpu = meter.stop(lab_cpu_s(after) + self.trigger.other_cpu_s())
        own_busy = (own_cpu_s() - own_before) / elapsed if elapsed > 0 else 0.0
        demand = Demand.measure(alone, records)
        self.handle.ideal = self.ideal(demand, cpu.free)
        summary = summarize(
            records,
            function=self.trigger.function,
            processes=self.host.processes,
            threads=self.host.threads,
            concurrency=math.ceil(self.trigger.queue_batch or self.trigger.concurrency),
            elapsed_s=elapsed,
            startup_s=self.host.startup_s,
            ideal=self.handle.ideal,
            service_s=demand.service_s,
            worker_stats=after,
            upstream_peak=self.upstream.stats.peak_in_flight,
            is_async=self.trigger.is_async,
            cpu=cpu,
            loop_busy=busiest_loop(before, after, elapsed),
            lab_process_busy=own_busy,
            switches=involuntary_switches(before, after),
        )
        summary.limited_by = self.trigger.explain(summary) or summary.limited_by
        return Measured(summary, records, after)
