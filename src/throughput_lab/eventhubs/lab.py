"""Drain an event hub: send N events over its partitions, let the host's partition
processors run them, time it.

The event hub is emulated in process (``broker``); the partition processors follow the
extension's code (``listener``); the handler and the worker processes are real. The
measured window runs from the listener's start to the last event's invocation done.
Throughput is counted in invocations (a batch is one); ``events_per_s`` is per event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ..invocation import InvocationRecord, clock
from ..messaging_lab import find_triggered
from ..metrics import Summary, latency_percentiles
from ..queue.listener import mean_in_flight
from ..run import Measured, RunHandle, code_stamp
from ..trigger_lab import DrainStopped, ListenerTrigger, TriggerLab
from .broker import CheckpointStore, EventHub
from .listener import EventHubListener, EventHubOptions, EventHubSettingError, EventRecord
from .message import EventBatchFields, EventFields

TRIGGER_TYPE = "eventHubTrigger"
BAD_EVENT = b"this is not JSON"  # the sample functions cannot parse it: they raise
DEFAULT_PARTITIONS = 4


@dataclass
class EventHubResult:
    summary: Summary
    events: list[EventRecord]
    in_flight_curve: list[tuple[float, int]]
    options: EventHubOptions
    partitions: int
    many: bool
    batches: list[int]  # events per invocation
    checkpoints: dict[int, int | None]  # partition -> last checkpointed sequence number
    checkpoint_writes: int
    lost: int  # events whose invocation failed: checkpointed past, never retried
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.summary.throughput_rps * (len(self.events) / max(1, len(self.batches)))

    @property
    def mean_in_flight(self) -> float:
        return mean_in_flight(self.in_flight_curve)

    def as_dict(self) -> dict[str, Any]:
        latencies = [e.latency_ms for e in self.events if e.done and not e.failed]
        return {
            **self.summary.as_dict(),
            "trigger": TRIGGER_TYPE,
            "broker": "emulated in process",
            "events": len(self.events),
            "events_per_s": self.events_per_s,
            "invocations": len(self.batches),
            "mean_batch": len(self.events) / max(1, len(self.batches)),
            "partitions": self.partitions,
            "cardinality": "many" if self.many else "one",
            "max_event_batch_size": self.options.max_event_batch_size,
            "batch_checkpoint_frequency": self.options.batch_checkpoint_frequency,
            "checkpoint_writes": self.checkpoint_writes,
            "lost": self.lost,
            "in_flight_peak": max((n for _, n in self.in_flight_curve), default=0),
            "in_flight_mean": self.mean_in_flight,
            "event_latency_ms": latency_percentiles(latencies),
            "errors_sample": self.errors[:3],
        }

    def line(self) -> str:
        s = self.summary
        return (
            f"{s.function}: {self.events_per_s:.1f} events/s in {s.rate_text('invocations')} - "
            f"{len(self.events)} events in {len(self.batches)} invocations over "
            f"{self.partitions} partitions (cardinality "
            f"{'many' if self.many else 'one'}, maxEventBatchSize "
            f"{self.options.max_event_batch_size}), {self.lost} lost to failed invocations; "
            f"{s.settings_text().rstrip(', ')}; event hub emulated in process"
        )


@dataclass
class EventHubTrigger(ListenerTrigger["EventHubLab", tuple[int, int]]):
    """Event Hubs' part of a measured run: events sent before the window, then one
    partition processor per partition runs them, one invocation at a time each. An event
    is known by (partition, sequence number)."""

    options: EventHubOptions
    hub: EventHub
    checkpoints: CheckpointStore
    events: int
    bad_events: int
    timeout_s: float
    listener: EventHubListener | None = None

    @property
    def many(self) -> bool:
        return str(self.info.setting("cardinality", "one")).lower() == "many"

    @property
    def batch(self) -> int:
        """Events per invocation in this run: the events are all sent before the window, so
        each partition's batches are full (maxEventBatchSize) or hold what it has."""
        if not self.many:
            return 1
        per_partition = -(-self.events // self.hub.partition_count)
        return min(self.options.max_event_batch_size, per_partition)

    @property
    def concurrency(self) -> int:
        return self.events  # more than the invocations: the partitions bind first

    @property
    def queue_batch(self) -> int:
        return self.hub.partition_count  # one invocation at a time per partition

    @property
    def bound_name(self) -> str:
        return "partitions, one invocation at a time each"

    @property
    def alone_key(self) -> Hashable:
        return (
            self.function,
            self.batch,
            float(self.lab.upstream.delay_ms),
            code_stamp(self.lab.app),
        )

    async def invoke(self, index: int) -> InvocationRecord:
        """One full batch (one event for cardinality one) with nothing else in flight."""
        body = json.dumps({"n": -1}).encode()
        fields = EventBatchFields([EventFields(body=body)] * self.batch, many=self.many)
        return await self.send(fields)

    async def before_window(self) -> None:
        step = self.events / self.bad_events if self.bad_events else 0
        bad = {round(i * step) for i in range(self.bad_events)}
        for i in range(self.events):
            event = self.hub.send(BAD_EVENT if i in bad else json.dumps({"n": i}).encode())
            self.enqueued[(event.partition_id, event.sequence_number)] = clock()

    async def drive(
        self, record: Callable[[InvocationRecord], None]
    ) -> tuple[list[InvocationRecord], float]:
        listener = EventHubListener(
            self.host,
            self.function,
            self.hub,
            self.checkpoints,
            self.options,
            many=self.many,
            enqueued=self.enqueued,
            on_invocation=record,
        )
        self.listener, self.began = listener, clock()
        try:
            await asyncio.wait_for(listener.run(self.events, self.cancelled), self.timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            raise TimeoutError(
                f"{listener.done_count()} of {self.events} events done after {self.timeout_s:g} s"
            ) from None
        if self.cancelled():
            raise DrainStopped("the drain was stopped")
        last = max((e.done for e in listener.events.values()), default=self.began)
        return list(listener.invocations), self.window_s(last)

    def other_cpu_s(self) -> float:
        return 0.0  # the event hub runs in the lab's own process, already metered

    def explain(self, summary: Summary) -> str:
        return ""

    def result(self, measured: Measured) -> EventHubResult:
        assert self.listener is not None
        events = sorted(
            self.listener.events.values(), key=lambda e: (e.partition, e.sequence_number)
        )
        partitions = range(self.hub.partition_count)
        return EventHubResult(
            summary=measured.summary,
            events=events,
            in_flight_curve=self.since_began(self.listener.in_flight_curve),
            options=self.options,
            partitions=self.hub.partition_count,
            many=self.many,
            batches=[n for p in self.listener.partitions for n in p.batches]
            if self.many
            else [1] * len(events),
            checkpoints={p: self.checkpoints.get(p) for p in partitions},
            checkpoint_writes=self.checkpoints.writes,
            lost=sum(1 for e in events if e.failed),
            errors=[i.error for i in self.listener.invocations if i.error][:3],
        )


class EventHubLab(TriggerLab):
    """Event Hubs-triggered functions on an in-process event hub, run by real workers."""

    def drain(
        self,
        function: str,
        events: int = 400,
        *,
        processes: int = 1,
        threads: int | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        max_event_batch_size: int | None = None,
        batch_checkpoint_frequency: int | None = None,
        min_event_batch_size: int | None = None,
        max_wait_time_s: float | None = None,
        bad_events: int = 0,
        upstream_delay_ms: float | None = None,
        timeout_s: float = 300.0,
    ) -> EventHubResult:
        """Send ``events`` round-robin over ``partitions`` (``bad_events`` unparseable)
        and let the partition processors run them."""
        if events < 1:
            raise EventHubSettingError(f"events must be >= 1, got {events}")
        if not 0 <= bad_events <= events:
            raise EventHubSettingError(f"bad events must be 0-{events}, got {bad_events}")
        options = EventHubOptions.from_host_json(
            self.app,
            max_event_batch_size=max_event_batch_size,
            batch_checkpoint_frequency=batch_checkpoint_frequency,
            min_event_batch_size=min_event_batch_size,
            max_wait_time_s=max_wait_time_s,
        )
        hub = EventHub("events", partitions)  # checks the partition count first
        self.prepare(upstream_delay_ms)
        host = self.host(processes, threads)
        info = find_triggered(host.functions, function, TRIGGER_TYPE, "Event Hubs")
        hub.name = str(info.setting("eventHubName") or function)
        handle = RunHandle(events)
        trigger = EventHubTrigger(
            self, host, info, options, hub, CheckpointStore(), events, bad_events, timeout_s,
            handle=handle,
        )  # fmt: skip
        return self.measure(host, trigger, handle, trigger.result)
