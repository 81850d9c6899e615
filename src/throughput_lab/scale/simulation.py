"""The scale controller and its instances as a discrete-event model (SimPy), request by request.

Requests arrive as ``traffic`` says. The front end gives each a free slot (an instance
holds ``per_instance_concurrency`` at once) or keeps it waiting, first come first served,
and rejects one that waited ``queue_timeout_s``. A request holds its slot for a service
time drawn from the engine's measurements at its instance's concurrency
(``service.ServiceTimes``). Every ``decision_s`` the controller (``controller``) compares
the requests in flight with the instances and starts or removes some; a started instance
serves after ``startup_s`` (a cold start). What comes out is sampled every ``sample_s``.

A queue (``ScaleRules.for_queue``) has no front end: messages wait in the queue, and each
instance runs its own listener, which takes a batch and waits for newBatchThreshold before
the next, as ``queue.listener`` does; without that the model's instances would hold more
than the live ones do and it would scale out less.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import simpy

from ..metrics import percentile
from ..queue.listener import Backoff
from .controller import Controller, ScaleRules, http_desired
from .service import ServiceTimes
from .traffic import Traffic


@dataclass
class Sample:
    """The model at one moment, and the requests completed since the last sample."""

    t_s: float
    instances: int  # allocated: starting or serving (what is billed)
    ready: int
    in_flight: int  # waiting at the front end + being served
    waiting: int
    oldest_wait_s: float
    p95_ms: float  # of the requests completed since the last sample; 0 for none
    rejected: int  # since the last sample

    def as_dict(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t_s, 3),
            "instances": self.instances,
            "ready": self.ready,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "oldest_wait_s": round(self.oldest_wait_s, 3),
            "p95_ms": round(self.p95_ms, 1),
            "rejected": self.rejected,
        }


@dataclass
class ScaleResult:
    """What a scale-out did: latencies, rejects, instances over time, their cost."""

    rules: ScaleRules
    traffic: Traffic
    service: ServiceTimes
    model: str  # "per-request" or "aggregate"
    latencies_s: list[float]  # completed requests (per-request model)
    waits_s_mean: float
    completed: int
    rejected: int
    cold_starts: int
    instance_seconds: float
    mean_in_flight: float  # time-average of requests in flight (Little's L)
    elapsed_s: float
    series: list[Sample] = field(default_factory=list)
    quantiles_ms: dict[str, float] = field(default_factory=dict)
    busy_peak: int = 0  # most requests being served at once: what a downstream service sees
    failed: int = 0  # live: requests whose instance died under them
    startups_s: list[float] = field(default_factory=list)  # live: each cold start, measured
    errors: list[str] = field(default_factory=list)  # live: the first failures' reasons
    redelivered: int = 0  # live queue: taken again (a failed try; a killed holder's)
    twice: int = 0  # live queue: messages finished a second time (at-least-once delivery)
    unfinished: int = 0  # live queue: messages sent and not done when the run ended

    def latency_ms(self, q: float) -> float:
        key = f"p{q:g}"
        if key in self.quantiles_ms:
            return self.quantiles_ms[key]
        return 1e3 * percentile(self.latencies_s, q)

    @property
    def mean_latency_s(self) -> float:
        return sum(self.latencies_s) / len(self.latencies_s) if self.latencies_s else 0.0

    @property
    def instances_max(self) -> int:
        return max((s.instances for s in self.series), default=0)

    @property
    def instances_mean(self) -> float:
        return self.instance_seconds / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        """One line: the load, the instances, the latencies, what failed, the cost."""
        t, r = self.traffic, self.rules
        failed = f", {self.failed} failed" if self.failed else ""
        if self.redelivered or self.twice or self.unfinished:
            failed += (
                f", {self.redelivered} redelivered ({self.twice} run twice), "
                f"{self.unfinished} not done"
            )
        unit = "messages/s" if r.trigger == "queue" else "req/s"
        return (
            f"{t.shape} to {t.peak_rps:g} {unit} for {t.duration_s:g} s ({self.model}): "
            f"up to {self.instances_max} instances (mean {self.instances_mean:.1f}, "
            f"{self.cold_starts} cold starts, {self.instance_seconds:,.0f} instance-seconds); "
            f"p50 {self.latency_ms(50):.0f} ms, p95 {self.latency_ms(95):.0f}, "
            f"p99 {self.latency_ms(99):.0f}; {self.rejected} rejected{failed}; service "
            f"{1e3 * self.service.mean(r.per_instance_concurrency):.0f} ms at "
            f"{r.per_instance_concurrency} per instance"
        )

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON (docs/cli.md, ``scale``)."""
        return {
            "model": self.model,
            "trigger": self.rules.trigger,
            "traffic": self.traffic.shape,
            "peak_rps": self.traffic.peak_rps,
            "duration_s": self.traffic.duration_s,
            "per_instance_concurrency": self.rules.per_instance_concurrency,
            "max_instances": self.rules.max_instances,
            "always_ready": self.rules.always_ready,
            "startup_s": round(self.rules.startup_s, 3),
            "instances_max": self.instances_max,
            "instances_mean": round(self.instances_mean, 2),
            "completed": self.completed,
            "p50_ms": round(self.latency_ms(50), 1),
            "p95_ms": round(self.latency_ms(95), 1),
            "p99_ms": round(self.latency_ms(99), 1),
            "rejected": self.rejected,
            "failed": self.failed,
            "redelivered": self.redelivered,
            "twice": self.twice,
            "unfinished": self.unfinished,
            "busy_peak": self.busy_peak,
            "cold_starts": self.cold_starts,
            "instance_seconds": round(self.instance_seconds, 1),
            "service_ms": round(1e3 * self.service.mean(self.rules.per_instance_concurrency), 2),
            "series": [s.as_dict() for s in self.series],
        }


class _Instance:
    __slots__ = ("busy", "ready", "removed", "wake")

    def __init__(self, ready: bool) -> None:
        self.busy, self.ready, self.removed = 0, ready, False
        self.wake: Any = None  # a queue listener waiting for newBatchThreshold


class _Model:
    """The front end, the instances and the controller, on one SimPy environment."""

    def __init__(
        self, rules: ScaleRules, traffic: Traffic, service: ServiceTimes, seed: int
    ) -> None:
        self.env = simpy.Environment()
        self.rules, self.traffic, self.service = rules, traffic, service
        self.rng = random.Random(seed)
        self.controller = Controller(rules)
        self.instances: list[_Instance] = []
        self.free: deque[_Instance] = deque()  # one entry per free slot
        self.waiting: deque[float] = deque()  # arrival times, oldest first
        self.busy = self.busy_peak = 0
        self.draining = 0  # instances out of the rotation, finishing what they hold
        self.latencies: list[float] = []
        self.window: list[float] = []
        self.wait_sum = 0.0
        self.rejected = self.window_rejected = self.cold_starts = 0
        self.area = self.in_flight_area = 0.0  # instance-seconds; request-seconds
        self.last_change = self.last_flight = 0.0
        self.series: list[Sample] = []
        for _ in range(rules.always_ready):
            self._add(_Instance(ready=True))

    # -- bookkeeping of integrals ------------------------------------------------------

    def _account(self) -> None:
        now = self.env.now
        self.area += (len(self.instances) + self.draining) * (now - self.last_change)
        self.in_flight_area += (len(self.waiting) + self.busy) * (now - self.last_flight)
        self.last_change = self.last_flight = now

    # -- instances ---------------------------------------------------------------------

    def _add(self, inst: _Instance) -> None:
        self._account()
        self.instances.append(inst)
        if inst.ready:
            self._open(inst)

    def _open(self, inst: _Instance) -> None:
        if self.rules.batch_size:  # its own listener polls the queue
            self.env.process(self._listen(inst))
            return
        for _ in range(self.rules.per_instance_concurrency):
            self._slot_freed(inst)

    def _listen(self, inst: _Instance) -> Any:
        """An instance's queue listener (``queue.listener.QueueListener``): take up to
        batchSize messages, run them, wait until those in progress fall to
        newBatchThreshold; an empty poll backs off (100 ms, doubling, up to the maximum
        polling interval). The queue service's round trips are left out."""
        threshold = self.rules.per_instance_concurrency - self.rules.batch_size
        backoff = Backoff(self.rules.max_polling_s, self.rng)
        while not inst.removed:
            self._expire()
            taken = 0
            while self.waiting and taken < self.rules.batch_size:
                self._account()
                self._serve(inst, self.waiting.popleft())
                taken += 1
            if not taken:
                yield self.env.timeout(backoff.next(found=False))
                continue
            backoff.next(found=True)
            while inst.busy > threshold and not inst.removed:
                inst.wake = self.env.event()
                yield inst.wake

    def _start_instance(self) -> None:
        inst = _Instance(ready=False)
        self.cold_starts += 1
        self._add(inst)
        done = self.env.timeout(self.rules.startup_s)
        done.callbacks.append(lambda _: self._ready(inst))

    def _ready(self, inst: _Instance) -> None:
        if not inst.removed:
            inst.ready = True
            self._open(inst)

    def _drain(self, count: int) -> None:
        """Take ``count`` serving instances, the least busy first, out of the rotation: they
        get no new request, finish what they hold and go (they are billed until then)."""
        ready = sorted((i for i in self.instances if i.ready), key=lambda i: i.busy)[:count]
        if not ready:
            return
        self._account()
        gone = set(map(id, ready))
        for inst in ready:
            inst.removed = True
        self.instances = [i for i in self.instances if id(i) not in gone]
        self.free = deque(i for i in self.free if id(i) not in gone)
        self.draining += sum(1 for i in ready if i.busy)

    # -- requests ----------------------------------------------------------------------

    def _expire(self) -> None:
        """Drop waiting requests past the front end's timeout (they are rejected)."""
        limit = self.env.now - self.rules.queue_timeout_s
        while self.waiting and self.waiting[0] < limit:
            self._account()
            self.waiting.popleft()
            self.rejected += 1
            self.window_rejected += 1

    def _arrive(self) -> None:
        self._account()
        if self.free and not self.rules.batch_size:
            self._serve(self.free.popleft(), self.env.now)
        else:
            self.waiting.append(self.env.now)

    def _serve(self, inst: _Instance, arrived: float) -> None:
        now = self.env.now
        self._account()
        inst.busy += 1
        self.busy += 1
        self.busy_peak = max(self.busy_peak, self.busy)
        self.wait_sum += now - arrived
        done = self.env.timeout(self.service.sample(inst.busy, self.rng))
        done.callbacks.append(lambda _: self._finish(inst, arrived))

    def _finish(self, inst: _Instance, arrived: float) -> None:
        self._account()
        inst.busy -= 1
        self.busy -= 1
        latency = self.env.now - arrived
        self.latencies.append(latency)
        self.window.append(latency)
        self._slot_freed(inst)

    def _slot_freed(self, inst: _Instance) -> None:
        if inst.removed:  # draining: its last request gone, it goes
            if inst.busy == 0:
                self._account()
                self.draining -= 1
            return
        if self.rules.batch_size:  # a listener: it fetches for itself
            if inst.wake is not None and not inst.wake.triggered:
                inst.wake.succeed()
            return
        self._expire()
        if self.waiting:
            self._account()
            self._serve(inst, self.waiting.popleft())
        else:
            self.free.append(inst)

    # -- processes ---------------------------------------------------------------------

    def arrivals(self) -> Any:
        for t in self.traffic.arrivals(self.rng):
            yield self.env.timeout(t - self.env.now)
            self._arrive()

    def decisions(self) -> Any:
        while True:
            self._expire()
            length = len(self.waiting) + self.busy
            if self.rules.trigger == "queue" and not self.waiting:
                # QueueMetricsProvider counts the messages in progress (invisible) too, but
                # reports 0 when a peek finds no visible message; then QueueTargetScaler's
                # ceil(length / (batchSize + newBatchThreshold)), this instance concurrency.
                length = 0
            desired = http_desired(length, self.rules.per_instance_concurrency)
            current = len(self.instances)
            target = self.controller.decide(self.env.now, current, desired)
            for _ in range(target - current):
                self._start_instance()
            if target < current:
                self._drain(current - target)
            yield self.env.timeout(self.rules.decision_s)

    def samples(self, every_s: float) -> Any:
        while True:
            yield self.env.timeout(every_s)
            self._expire()
            oldest = self.env.now - self.waiting[0] if self.waiting else 0.0
            self.series.append(
                Sample(
                    self.env.now,
                    len(self.instances) + self.draining,
                    sum(1 for i in self.instances if i.ready),
                    len(self.waiting) + self.busy,
                    len(self.waiting),
                    oldest,
                    1e3 * percentile(self.window, 95),
                    self.window_rejected,
                )
            )
            self.window, self.window_rejected = [], 0


def instances_apart(
    live: ScaleResult, sim: ScaleResult, after_s: float, slack_s: float
) -> list[tuple[float, int]]:
    """The live samples after ``after_s`` whose instance count lies more than one outside
    the range of the simulated counts within ``slack_s`` of it (a decision interval: the
    two runs decide once a second, each on its own clock, so where the simulation stepped
    from 1 to 7 the live run may have stopped at 5 on the way). Each as (time, live count)."""
    apart = []
    for a in live.series:
        if a.t_s <= after_s:
            continue
        near = [b.instances for b in sim.series if abs(b.t_s - a.t_s) <= slack_s]
        if near and not min(near) - 1 <= a.instances <= max(near) + 1:
            apart.append((round(a.t_s, 1), a.instances))
    return apart


def sample_interval(duration_s: float, points: int = 300) -> float:
    """A round sampling interval giving at most about ``points`` samples."""
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if duration_s / step <= points:
            return float(step)
    return math.ceil(duration_s / points)


def simulate_requests(
    rules: ScaleRules,
    traffic: Traffic,
    service: ServiceTimes,
    *,
    seed: int = 1,
    sample_s: float | None = None,
) -> ScaleResult:
    """Run the per-request model for the traffic's duration (requests still in flight at
    the end are left out of the latencies, as a load test's last second is)."""
    model = _Model(rules, traffic, service, seed)
    env = model.env
    env.process(model.arrivals())
    env.process(model.decisions())
    env.process(model.samples(sample_s or sample_interval(traffic.duration_s)))
    env.run(until=traffic.duration_s)
    model._account()
    started = len(model.latencies) + model.busy
    return ScaleResult(
        rules,
        traffic,
        service,
        "per-request",
        model.latencies,
        model.wait_sum / started if started else 0.0,
        len(model.latencies),
        model.rejected,
        model.cold_starts,
        model.area,
        model.in_flight_area / traffic.duration_s,
        traffic.duration_s,
        model.series,
        busy_peak=model.busy_peak,
    )
