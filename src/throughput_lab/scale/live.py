"""Scale-out for real, on this machine: host instances started and stopped by the controller.

Each instance is a process of its own with its own worker processes and upstream, as an
instance of the platform runs a host with its workers. What brings work to the instances
is the trigger's (``LiveTrigger``): for HTTP (``live_http``) a router on 127.0.0.1 standing in
for the platform's front end and a load generator; for a Storage queue (``live_queue``) the
queue on Azurite, which every instance's own listener polls. The controller
(``controller.Controller``) decides every ``decision_s`` from the trigger's measure of
demand (requests in flight at the router; the queue's length). A new instance first waits
the allocation delay (an assumption), then starts: its start-up (process started, workers
started, app imported, ready to take work) is measured.

An instance that dies (e.g. SIGKILL of its host) is dropped at once; what it held is the
trigger's to count (HTTP: failed requests; a queue: messages that come back once their
visibility ends), the others go on, and the next decision starts a replacement if the load
still needs it. Stop (a cancelled run, Ctrl-C) stops every instance in order; each also
ends when this process is gone (its stdin closes).

Sized for a 2-core machine: an I/O-bound handler (the upstream's delay) and 4-8 small
instances. A CPU-bound handler cannot show scale-out here: every instance would share the
same two cores, so adding instances adds no capacity, as it would on the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..invocation import clock
from ..metrics import percentile
from ..supervisor import SupervisedProcess
from .controller import Controller, ScaleRules
from .service import ServiceTimes
from .simulation import Sample, ScaleResult, sample_interval
from .traffic import Traffic

T = TypeVar("T")
START_TIMEOUT_S = 60.0


@dataclass(eq=False)
class LiveInstance:
    index: int
    port: int = 0
    process: SupervisedProcess | None = None
    ready: bool = False
    gone: bool = False
    stopping: bool = False
    busy: int = 0  # requests or messages it holds now
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Tally:
    """What the work came to: latencies (and those since the last sample), rejects at the
    front end, failures (with the first few reasons)."""

    latencies: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)
    rejected: int = 0
    window_rejected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def completed(self, latency_s: float) -> None:
        self.latencies.append(latency_s)
        self.window.append(latency_s)

    def reject(self) -> None:
        self.rejected += 1
        self.window_rejected += 1

    def fail(self, reason: str) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(reason)

    def take_window(self) -> tuple[list[float], int]:
        window, rejected = self.window, self.window_rejected
        self.window, self.window_rejected = [], 0
        return window, rejected


class LiveTrigger(Protocol):
    """What one trigger kind adds to the live scale-out: how an instance starts, how work
    reaches the instances, and what the controller reads."""

    tally: Tally
    busy_peak: int  # the most work items being run at once: what a downstream service sees
    wait_idle_to_retire: bool  # scale-in waits for an instance's work, or it finishes it

    async def open(self) -> str: ...  # where the load goes (a URL, a queue's name)
    async def close(self) -> None: ...
    def closing(self) -> None: ...  # a Stop: what waits for an instance gives up now
    def start(self, inst: LiveInstance, on_exit: Callable[[SupervisedProcess], None]) -> bool: ...
    def admit(self, inst: LiveInstance) -> None: ...  # ready: send it work
    def drop(self, inst: LiveInstance) -> None: ...  # died or retiring: send it no more
    async def desired(self, rules: ScaleRules) -> int: ...
    def demand(self) -> tuple[int, int, float]: ...  # in flight, waiting, oldest wait (s)
    async def load(self, traffic: Traffic, where: str, seed: int) -> None: ...
    def result_fields(self) -> dict[str, Any]: ...  # the trigger's own in ``ScaleResult``


@dataclass
class LiveScaleOut:
    """The controller over real instances, the work brought by ``trigger``."""

    rules: ScaleRules
    service: ServiceTimes  # the engine's calibration, reported with the result
    trigger: LiveTrigger
    allocation_s: float = 1.0
    on_sample: Callable[[Sample], None] | None = None
    instances: list[LiveInstance] = field(default_factory=list)
    draining: list[LiveInstance] = field(default_factory=list)  # scaled in, finishing
    series: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.controller = Controller(self.rules)
        self.cold_starts = self.died = 0
        self.startups: list[float] = []  # cold starts only: always-ready ones start unloaded
        self.area = 0.0
        self._last = 0.0
        self._closed = False
        # Threads are made as needed: one per instance starting or stopping at most.
        self._threads = ThreadPoolExecutor(
            2 * self.rules.most_instances + 4, thread_name_prefix="instance"
        )
        self._tasks: set[asyncio.Task[Any]] = set()  # instances starting
        self._retiring: set[asyncio.Task[Any]] = set()  # instances stopping (never cancelled)
        self._count = 0

    # -- instances ---------------------------------------------------------------------

    def _account(self) -> None:
        now = clock()
        self.area += (len(self.instances) + len(self.draining)) * (now - self._last)
        self._last = now

    def _spawn(self, cold: bool) -> asyncio.Task[None]:
        self._account()
        inst = LiveInstance(self._count)
        self._count += 1
        self.instances.append(inst)
        self.cold_starts += cold
        task = asyncio.create_task(self._start(inst, self.allocation_s if cold else 0.0, cold))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start(self, inst: LiveInstance, allocation_s: float, cold: bool) -> None:
        await asyncio.sleep(allocation_s)
        if inst.gone:
            return
        began = clock()
        loop = asyncio.get_running_loop()

        def exited(_: SupervisedProcess) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
                loop.call_soon_threadsafe(self._died, inst)

        if not await self._in_thread(lambda: self.trigger.start(inst, exited)) or inst.gone:
            return
        inst.startup_s = clock() - began
        if cold:
            self.startups.append(inst.startup_s)
        inst.ready = True
        self.trigger.admit(inst)

    def _died(self, inst: LiveInstance) -> None:
        if inst.stopping or inst not in self.instances:
            return
        self._account()
        self.died += 1
        self.trigger.drop(inst)
        self.instances.remove(inst)

    async def _retire(self, inst: LiveInstance) -> None:
        """Out of the rotation at once; stopped once it has finished what it holds."""
        self._account()
        inst.stopping = True
        self.trigger.drop(inst)
        if inst in self.instances:
            self.instances.remove(inst)
        self.draining.append(inst)
        try:
            while self.trigger.wait_idle_to_retire and inst.busy and not self._closed:
                await asyncio.sleep(0.05)  # a Stop does not wait for them
            if inst.process is not None:
                await self._in_thread(inst.process.stop)
        finally:
            self._account()
            self.draining.remove(inst)

    def kill(self, index: int) -> None:
        """SIGKILL instance ``index``'s host (its workers end with it): a fault to recover
        from. ``index`` -1: the instance holding the most work now."""
        if index < 0:
            inst = max(self.instances, key=lambda i: i.busy)
        else:
            inst = next(i for i in self.instances if i.index == index)
        if inst.process is not None:
            inst.process.kill("killed by the lab")

    # -- the controller and the samples --------------------------------------------------

    async def _decide(self, began: float) -> None:
        while True:
            current = len(self.instances)
            desired = await self.trigger.desired(self.rules)
            target = self.controller.decide(clock() - began, current, desired)
            for _ in range(target - current):
                self._spawn(cold=True)
            if target < current:
                ready = sorted((i for i in self.instances if i.ready), key=lambda i: i.busy)
                for inst in ready[: current - target]:
                    retire = asyncio.create_task(self._retire(inst))
                    self._retiring.add(retire)
                    retire.add_done_callback(self._retiring.discard)
            await asyncio.sleep(self.rules.decision_s)

    async def _sample(self, began: float, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            in_flight, waiting, oldest_s = self.trigger.demand()
            window, rejected = self.trigger.tally.take_window()
            sample = Sample(
                clock() - began,
                len(self.instances) + len(self.draining),
                sum(1 for i in self.instances if i.ready),
                in_flight,
                waiting,
                oldest_s,
                1e3 * percentile(window, 95),
                rejected,
            )
            self.series.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)

    # -- the run -----------------------------------------------------------------------

    async def run(
        self, traffic: Traffic, *, seed: int = 1, faults: dict[float, int] | None = None
    ) -> ScaleResult:
        """Start the always-ready instances, run the traffic, stop every instance.

        ``faults`` maps seconds into the run to the instance index to SIGKILL then."""

        async def load(where: str) -> None:
            await self.trigger.load(traffic, where, seed)

        _, elapsed = await self.serve(load, traffic.duration_s, faults)
        return self._result(traffic, elapsed)

    async def serve(
        self,
        load: Callable[[str], Awaitable[T]],
        duration_s: float,
        faults: dict[float, int] | None = None,
    ) -> tuple[T, float]:
        """The trigger's front (a router, a queue), the always-ready instances and the
        controller, while ``load(where)`` runs; then every instance stops. Another load
        generator (Locust) can be the load. Returns its result and the seconds it took."""
        try:
            where = await self.trigger.open()
            await asyncio.gather(*(self._spawn(cold=False) for _ in range(self.rules.always_ready)))
            began = self._last = clock()
            background = [
                asyncio.create_task(self._decide(began)),
                asyncio.create_task(self._sample(began, min(sample_interval(duration_s), 1.0))),
                *(self._fault(at, index) for at, index in (faults or {}).items()),
            ]
            try:
                result = await load(where)
            finally:
                for task in background:
                    task.cancel()
            elapsed = clock() - began
            self._account()
        finally:
            await self._stop_all()
            await self.trigger.close()
            await asyncio.get_running_loop().run_in_executor(None, self._threads.shutdown)
        return result, elapsed

    def _fault(self, at_s: float, index: int) -> asyncio.Task[None]:
        async def later() -> None:
            await asyncio.sleep(at_s)
            await self._in_thread(lambda: self.kill(index))

        return asyncio.create_task(later())

    async def _stop_all(self) -> None:
        self._closed = True
        self.trigger.closing()  # work still waiting is answered now, not after its timeout
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._retiring, return_exceptions=True)
        every = [*self.instances]
        for inst in every:
            inst.stopping = True
        # One still starting has served nothing: end it at once (its workers end themselves
        # when their host is gone), so a Stop does not wait for its start.
        for inst in every:
            if inst.process is not None and not inst.ready:
                inst.process.kill("stopped while starting")
        stops = [self._in_thread(i.process.stop) for i in every if i.process is not None]
        await asyncio.gather(*stops, return_exceptions=True)
        self.instances.clear()

    def _in_thread(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """``work`` on the instances' own threads: starts that wait for a port never keep a
        stop waiting for a thread (the loop's default executor has only a few)."""
        return asyncio.get_running_loop().run_in_executor(self._threads, work)

    def _result(self, traffic: Traffic, elapsed: float) -> ScaleResult:
        mean_startup = sum(self.startups) / len(self.startups) if self.startups else 0.0
        rules = dataclasses.replace(self.rules, startup_s=self.allocation_s + mean_startup)
        tally = self.trigger.tally
        return ScaleResult(
            rules,
            traffic,
            self.service,
            "live",
            tally.latencies,
            0.0,
            len(tally.latencies),
            tally.rejected,
            self.cold_starts,
            self.area,
            0.0,
            elapsed,
            self.series,
            busy_peak=self.trigger.busy_peak,
            failed=tally.failed,
            startups_s=list(self.startups),
            errors=list(tally.errors),
            **self.trigger.result_fields(),
        )


def start_instance(
    inst: LiveInstance,
    launch: Callable[[], SupervisedProcess],
    ready: Callable[[], bool],
) -> bool:
    """Launch one instance's process and wait until ``ready()``; False if it was stopped
    meanwhile or exited first. Runs on an instance thread."""
    process = launch()
    inst.process = process  # before the check: a Stop now sees it, or it sees Stop
    if inst.stopping:
        process.stop()
        return False
    late = f"instance {inst.index} did not start within {START_TIMEOUT_S:g} s"
    return process.wait_ready(ready, START_TIMEOUT_S, late)
