"""``ScaleLab``: calibrate a function in the engine, then scale it out, simulated or live.

The engine (``lab.Lab``, the one measured run) measures the function on one instance at
each per-instance concurrency; the simulation draws its service times from those
measurements, and starts an instance after the start-up this machine measured (workers
started, app imported) plus the platform's allocation delay (an assumption). ``live``
runs the same controller over real host instances (``live``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..invocation import InvocationRecord
from ..lab import Lab
from ..queue.lab import QueueLab
from ..queue.listener import LISTENER_VISIBILITY_S, QueuesOptions
from ..run import RunHandle, start_on_thread, wait_or_cancel
from ..upstream import Upstream
from .controller import ALLOCATION_S, ScaleRules
from .live import LiveScaleOut, LiveTrigger
from .live_http import LiveHttp
from .live_queue import LiveQueue, queue_of
from .service import ServiceTimes, calibrate
from .simulation import Sample, ScaleResult, simulate_requests
from .traffic import Traffic

CALIBRATE_S = 2.0  # seconds of closed-loop load per calibrated concurrency
QUEUE_CALIBRATION_BATCHES = 4  # a queue's calibration drains this many listener-fulls


class ScaleLab:
    """One function of an app, calibrated once per setting and scaled out on demand."""

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        upstream_delay_ms: float = 100.0,
        processes: int = 1,
        threads: int | None = None,
        allocation_s: float = ALLOCATION_S,
    ) -> None:
        self.engine = Lab(app, upstream_delay_ms=upstream_delay_ms)
        self.app = self.engine.app
        self.upstream_delay_ms = upstream_delay_ms
        self.processes, self.threads = processes, threads
        self.allocation_s = allocation_s
        # Records measured at each concurrency, by function and request: each level once.
        self._measured: dict[tuple[Any, ...], dict[int, list[InvocationRecord]]] = {}
        self._startup_s: float | None = None
        self._queue_measured: dict[tuple[Any, ...], list[InvocationRecord]] = {}

    def __enter__(self) -> ScaleLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.close()

    def service(
        self,
        function: str | None,
        per_instance_concurrency: int,
        *,
        seconds_per_level: float = CALIBRATE_S,
        **request: Any,
    ) -> ServiceTimes:
        """The function's service times at each concurrency up to the per-instance one,
        measured in the engine (each concurrency once for the same function and request)."""
        given = {k: v for k, v in request.items() if v not in (None, b"", "", {})}
        key = (function, self.upstream_delay_ms, repr(sorted(given.items())))
        measured = self._measured.setdefault(key, {})
        levels = set(measured)
        service = calibrate(
            self.engine,
            function,
            per_instance_concurrency,
            seconds_per_level=seconds_per_level,
            measured=measured,
            processes=self.processes,
            threads=self.threads,
            upstream_delay_ms=self.upstream_delay_ms,
            **request,
        )
        if set(measured) != levels:  # the engine ran: keep its start-up, stop its workers
            self._startup_s = (
                self._startup_s or self.engine.host(self.processes, self.threads).startup_s
            )
            self.engine.close()
        return service

    @property
    def upstream(self) -> Upstream:
        """The engine's upstream (an exercise counts its calls)."""
        return self.engine.upstream

    def measured_startup_s(self) -> float:
        """How long this machine took to start one instance's host: workers started and the
        app imported (the first calibration's host; measured now if none ran yet)."""
        if self._startup_s is None:
            self._startup_s = self.engine.host(self.processes, self.threads).startup_s
            self.engine.close()
        return self._startup_s

    def rules(self, startup_s: float | None = None, **settings: Any) -> ScaleRules:
        """The controller's settings; start-up defaults to measured + allocation."""
        if startup_s is None:
            startup_s = self.measured_startup_s() + self.allocation_s
        return ScaleRules(startup_s=startup_s, **settings)

    def live(self, function: str | None, traffic: Traffic, **options: Any) -> ScaleResult:
        """Real instances of the app on this machine, and wait (see ``start_live``)."""
        return wait_or_cancel(self.start_live(function, traffic, **options), lambda: None)

    def start_live(
        self,
        function: str | None,
        traffic: Traffic,
        *,
        startup_s: float | None = None,
        seed: int = 1,
        faults: dict[float, int] | None = None,
        on_sample: Callable[[Sample], None] | None = None,
        path: str | None = None,
        **settings: Any,
    ) -> RunHandle:
        """Begin a live scale-out on a thread; the handle's ``cancel()`` stops it and every
        instance. Real instances of the app on this machine (see ``live``). ``startup_s`` is
        the allocation delay added before each instance starts (default ALLOCATION_S);
        the start-up itself is measured. Settings as ``ScaleRules``."""
        rules = ScaleRules(startup_s=0.0, **settings)
        request = {"path": path} if path else {}

        def make() -> tuple[ServiceTimes, LiveHttp]:
            service = self.service(function, rules.per_instance_concurrency, **request)
            http = LiveHttp(
                self.app,
                rules,
                path or f"/api/{function}",
                processes=self.processes,
                threads=self.threads,
                upstream_delay_ms=self.upstream_delay_ms,
            )
            return service, http

        return self._start_live(rules, make, traffic, startup_s, seed, faults, on_sample)

    def live_queue(self, function: str, traffic: Traffic, **options: Any) -> ScaleResult:
        """A queue-triggered function on real instances, and wait (``start_live_queue``)."""
        return wait_or_cancel(self.start_live_queue(function, traffic, **options), lambda: None)

    def start_live_queue(
        self,
        function: str,
        traffic: Traffic,
        *,
        batch_size: int | None = None,
        new_batch_threshold: int | None = None,
        max_polling_interval_s: float | None = None,
        visibility_s: int = LISTENER_VISIBILITY_S,
        startup_s: float | None = None,
        seed: int = 1,
        faults: dict[float, int] | None = None,
        on_sample: Callable[[Sample], None] | None = None,
        **settings: Any,
    ) -> RunHandle:
        """Begin a live scale-out of a queue-triggered function: ``traffic`` is messages
        sent to its queue on Azurite, each instance runs its own listener, and the
        controller follows target-based scaling (``ScaleRules.for_queue``; settings
        override it, e.g. a shorter ``decision_s`` than the platform's 30 s). The queue
        options are host.json's unless given. ``visibility_s`` shortens how long a killed
        instance's messages stay invisible (the listener's 10 minutes)."""
        queue = queue_of(self.app, function)
        options = self.queue_options(batch_size, new_batch_threshold, max_polling_interval_s)
        rules = ScaleRules.for_queue(
            options.batch_size,
            options.threshold,
            **{"startup_s": 0.0, "max_polling_s": options.max_polling_interval_s, **settings},
        )

        def make() -> tuple[ServiceTimes, LiveQueue]:
            service = self.queue_service(function, options)
            live = LiveQueue(
                self.app,
                function,
                queue,
                options,
                processes=self.processes,
                threads=self.threads,
                upstream_delay_ms=self.upstream_delay_ms,
                visibility_s=visibility_s,
            )
            return service, live

        return self._start_live(rules, make, traffic, startup_s, seed, faults, on_sample)

    def queue_options(
        self,
        batch_size: int | None = None,
        new_batch_threshold: int | None = None,
        max_polling_interval_s: float | None = None,
    ) -> QueuesOptions:
        """host.json's queue settings, with what is given instead."""
        return QueuesOptions.from_host_json(
            self.app,
            batch_size=batch_size,
            new_batch_threshold=new_batch_threshold,
            max_polling_interval_s=max_polling_interval_s,
        )

    def simulate_queue(
        self,
        function: str,
        traffic: Traffic,
        *,
        batch_size: int | None = None,
        new_batch_threshold: int | None = None,
        startup_s: float | None = None,
        seed: int = 1,
        **settings: Any,
    ) -> ScaleResult:
        """Target-based scaling of a queue-triggered function, simulated: the service times
        from one drain in the engine (``queue_service``), each instance's listener in the
        model (a batch, then wait for newBatchThreshold; back off when the queue is empty)."""
        queue_of(self.app, function)  # one line if it is not queue-triggered
        options = self.queue_options(batch_size, new_batch_threshold)
        if startup_s is None:
            startup_s = self.measured_startup_s() + self.allocation_s
        rules = ScaleRules.for_queue(
            options.batch_size,
            options.threshold,
            **{"startup_s": startup_s, "max_polling_s": options.max_polling_interval_s, **settings},
        )
        service = self.queue_service(function, options)
        return simulate_requests(rules, traffic, service, seed=seed)

    def queue_service(self, function: str, options: QueuesOptions) -> ServiceTimes:
        """A queue function's service times on one instance, measured by the engine: one
        drain (``queue.lab``) with the listener full, every invocation's time kept. Each
        function and setting once."""
        key = (function, self.upstream_delay_ms, options)
        if key not in self._queue_measured:
            with QueueLab(self.app, upstream_delay_ms=self.upstream_delay_ms) as lab:
                drained = lab.drain(
                    function,
                    QUEUE_CALIBRATION_BATCHES * options.max_in_flight,
                    processes=self.processes,
                    threads=self.threads,
                    batch_size=options.batch_size,
                    new_batch_threshold=options.threshold,
                )
            self._queue_measured[key] = [i for m in drained.messages for i in m.invocations]
        return ServiceTimes.from_records({options.max_in_flight: self._queue_measured[key]})

    def _start_live(
        self,
        rules: ScaleRules,
        make: Callable[[], tuple[ServiceTimes, LiveTrigger]],
        traffic: Traffic,
        startup_s: float | None,
        seed: int,
        faults: dict[float, int] | None,
        on_sample: Callable[[Sample], None] | None,
    ) -> RunHandle:
        handle = RunHandle(None)

        async def go() -> ScaleResult:
            handle.attach()
            # The calibration (engine runs, if this setting was not measured yet) runs
            # here, off the caller's thread: a Stop meanwhile ends the run before it starts.
            service, trigger = await asyncio.to_thread(make)
            handle.check()
            scale_out = LiveScaleOut(
                rules,
                service,
                trigger,
                allocation_s=self.allocation_s if startup_s is None else startup_s,
                on_sample=on_sample,
            )
            return await scale_out.run(traffic, seed=seed, faults=faults)

        start_on_thread(handle, go, handle.future.set_exception)
        return handle

    def simulate(
        self,
        function: str | None,
        traffic: Traffic,
        rules: ScaleRules,
        *,
        seed: int = 1,
        sample_s: float | None = None,
        **request: Any,
    ) -> ScaleResult:
        service = self.service(function, rules.per_instance_concurrency, **request)
        return simulate_requests(rules, traffic, service, seed=seed, sample_s=sample_s)
