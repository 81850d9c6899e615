"""Scale-out for real, on this machine: host instances started and stopped by the controller.

Each instance is ``serve`` (``served.start_serve``): a host process with its own worker
processes and its own upstream, on a port of its own, as an instance of the platform runs
a host with its workers. One HTTP router on 127.0.0.1 stands in for the platform's front
end (``frontend.FrontEnd``: per-instance concurrency, first come first served, rejects
after a timeout) and forwards each request to an instance. The controller
(``controller.Controller``) decides every ``decision_s`` from the requests in flight at the
router. A new instance first waits the allocation delay (an assumption), then starts: its
start-up (process started, workers started, app imported, port answering) is measured.

An instance that dies (e.g. SIGKILL of its host) is dropped at once: its requests in flight
fail (the router answers 502 and counts them), the others go on, and the next decision
starts a replacement if the load still needs it. Stop (a cancelled run, Ctrl-C) stops
every instance in order; each also ends when this process is gone (its stdin closes).

Sized for a 2-core machine: an I/O-bound handler (the upstream's delay) and 4-8 small
instances. A CPU-bound handler cannot show scale-out here: every instance would share the
same two cores, so adding instances adds no capacity, as it would on the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from ..invocation import clock
from ..metrics import percentile
from ..served import start_serve
from ..supervisor import SupervisedProcess, answers, free_port
from .controller import Controller, ScaleRules, http_desired
from .frontend import FrontEnd
from .service import ServiceTimes
from .simulation import Sample, ScaleResult, sample_interval
from .traffic import Traffic

START_TIMEOUT_S = 60.0
T = TypeVar("T")
REQUEST_TIMEOUT_S = 60.0
STOP_GRACE_S = 1.0


@dataclass(eq=False)
class LiveInstance:
    index: int
    allocated: float
    port: int = 0
    process: SupervisedProcess | None = None
    ready: bool = False
    gone: bool = False
    stopping: bool = False
    busy: int = 0
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LiveScaleOut:
    """The controller over real instances of ``app`` for one run of ``traffic``."""

    app: Path
    rules: ScaleRules
    service: ServiceTimes  # the engine's calibration, reported with the result
    path: str
    processes: int = 1
    threads: int | None = None
    upstream_delay_ms: float = 100.0
    allocation_s: float = 1.0
    on_sample: Callable[[Sample], None] | None = None
    instances: list[LiveInstance] = field(default_factory=list)
    draining: list[LiveInstance] = field(default_factory=list)  # scaled in, finishing
    series: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.front = FrontEnd(self.rules.per_instance_concurrency, self.rules.queue_timeout_s)
        self.controller = Controller(self.rules)
        self.latencies: list[float] = []
        self._window: list[float] = []
        self.rejected = self.failed = self.cold_starts = self.died = 0
        self._window_rejected = 0
        self.errors: list[str] = []  # the first few failures, as the router saw them
        self.startups: list[float] = []  # cold starts only: always-ready ones start unloaded
        self.area = 0.0
        self._last = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
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
        inst = LiveInstance(self._count, clock())
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
        inst.port = free_port()
        began = clock()
        loop = asyncio.get_running_loop()

        def exited(_: SupervisedProcess) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
                loop.call_soon_threadsafe(self._died, inst)

        def boot() -> bool:
            process = start_serve(
                self.app, inst.port, self.processes, self.threads, self.upstream_delay_ms, exited
            )
            inst.process = process  # before the check: a Stop now sees it, or it sees Stop
            if inst.stopping:
                process.stop()
                return False
            late = f"instance {inst.index} did not start within {START_TIMEOUT_S:g} s"
            return process.wait_ready(lambda: answers(inst.port, 0.5), START_TIMEOUT_S, late)

        if not await self._in_thread(boot) or inst.gone:
            return
        inst.startup_s = clock() - began
        if cold:
            self.startups.append(inst.startup_s)
        inst.ready = True
        self.front.add(inst)

    def _died(self, inst: LiveInstance) -> None:
        if inst.stopping or inst not in self.instances:
            return
        self._account()
        self.died += 1
        self.front.remove(inst)
        self.instances.remove(inst)

    async def _retire(self, inst: LiveInstance) -> None:
        """Out of the rotation at once; stopped once it has answered what it holds."""
        self._account()
        inst.stopping = True
        self.front.remove(inst)
        if inst in self.instances:
            self.instances.remove(inst)
        self.draining.append(inst)
        try:
            while inst.busy and not self.front.closed:  # a Stop does not wait for them
                await asyncio.sleep(0.05)
            if inst.process is not None:
                await self._in_thread(inst.process.stop)
        finally:
            self._account()
            self.draining.remove(inst)

    def kill(self, index: int) -> None:
        """SIGKILL instance ``index``'s host (its workers end with it): a fault to recover
        from. ``index`` -1: the instance holding the most requests now."""
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
            desired = http_desired(self.front.in_flight, self.rules.per_instance_concurrency)
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
            sample = Sample(
                clock() - began,
                len(self.instances) + len(self.draining),
                sum(1 for i in self.instances if i.ready),
                self.front.in_flight,
                self.front.waiting,
                self.front.oldest_wait_s(),
                1e3 * percentile(self._window, 95),
                self._window_rejected,
            )
            self._window, self._window_rejected = [], 0
            self.series.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)

    # -- the router and the load -------------------------------------------------------

    async def _route(self, request: web.Request) -> web.StreamResponse:
        inst = await self.front.acquire()
        if inst is None:
            self.rejected += 1
            self._window_rejected += 1
            return web.Response(status=429, text="no instance took it in time\n")
        try:
            async with self._session.request(
                request.method, inst.url + request.path_qs, data=await request.read()
            ) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"instance {inst.index}: {type(exc).__name__}: {exc}")
            lost = isinstance(exc, (aiohttp.ClientConnectionError, OSError))
            if lost and not inst.gone:  # as a front end's health check would: no more to it
                self.front.remove(inst)
            return web.Response(status=502, text=f"instance {inst.index} failed: {exc}\n")
        finally:
            self.front.release(inst)

    async def _send(self, client: aiohttp.ClientSession, url: str) -> None:
        began = clock()
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with client.get(url) as answer:
                await answer.read()
                if answer.status < 400:
                    latency = clock() - began
                    self.latencies.append(latency)
                    self._window.append(latency)

    async def _load(self, traffic: Traffic, url: str, seed: int) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as client:
            began, sends = clock(), []
            for t in traffic.arrivals(random.Random(seed)):
                await asyncio.sleep(max(0.0, began + t - clock()))
                sends.append(asyncio.create_task(self._send(client, url)))
            await asyncio.gather(*sends)

    async def run(
        self, traffic: Traffic, *, seed: int = 1, faults: dict[float, int] | None = None
    ) -> ScaleResult:
        """Start the always-ready instances, run the traffic, stop every instance.

        ``faults`` maps seconds into the run to the instance index to SIGKILL then."""

        async def load(url: str) -> None:
            await self._load(traffic, url, seed)

        _, elapsed = await self.serve(load, traffic.duration_s, faults)
        return self._result(traffic, elapsed)

    async def serve(
        self,
        load: Callable[[str], Awaitable[T]],
        duration_s: float,
        faults: dict[float, int] | None = None,
    ) -> tuple[T, float]:
        """The router, the always-ready instances and the controller, while ``load(url)``
        (the function's URL at the router) runs; then every instance stops. Another load
        generator (Locust) can be the load. Returns its result and the seconds it took."""
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=0),
        )
        # Stopping waits at most STOP_GRACE_S for the router's requests still being answered.
        runner = web.AppRunner(
            web.Application(), access_log=None, handle_signals=False, shutdown_timeout=STOP_GRACE_S
        )
        runner.app.router.add_route("*", "/{tail:.*}", self._route)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        try:
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            await asyncio.gather(*(self._spawn(cold=False) for _ in range(self.rules.always_ready)))
            began = self._last = clock()
            background = [
                asyncio.create_task(self._decide(began)),
                asyncio.create_task(self._sample(began, min(sample_interval(duration_s), 1.0))),
                *(self._fault(at, index) for at, index in (faults or {}).items()),
            ]
            try:
                result = await load(f"http://127.0.0.1:{port}{self.path}")
            finally:
                for task in background:
                    task.cancel()
            elapsed = clock() - began
            self._account()
        finally:
            await self._stop_all()
            await self._session.close()
            await runner.cleanup()
            await asyncio.get_running_loop().run_in_executor(None, self._threads.shutdown)
        return result, elapsed

    def _fault(self, at_s: float, index: int) -> asyncio.Task[None]:
        async def later() -> None:
            await asyncio.sleep(at_s)
            await self._in_thread(lambda: self.kill(index))

        return asyncio.create_task(later())

    async def _stop_all(self) -> None:
        self.front.close()  # requests still waiting are answered now, not after their timeout
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
        return ScaleResult(
            rules,
            traffic,
            self.service,
            "live",
            self.latencies,
            0.0,
            len(self.latencies),
            self.rejected,
            self.cold_starts,
            self.area,
            0.0,
            elapsed,
            self.series,
            busy_peak=self.front.busy_peak,
            failed=self.failed,
            startups_s=list(self.startups),
            errors=list(self.errors),
        )
