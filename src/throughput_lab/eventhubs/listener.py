"""The host's Event Hubs listener: one batch at a time per partition, checkpoints, no retry.

An Event Hubs trigger is run by the Functions host's extension, not by the worker. Its
settings live in host.json ``extensions.eventHubs`` (extension 5.x, the one in extension
bundle 4.x). What this module follows, with its source (Azure/azure-sdk-for-net,
``sdk/eventhub/Microsoft.Azure.WebJobs.Extensions.EventHubs/src/``):

- ``Config/EventHubOptions.cs``: ``maxEventBatchSize`` default 100 (extension 4.x and
  earlier: ``eventProcessorOptions.maxBatchSize`` 10), at least 1; ``minEventBatchSize``
  1; ``maxWaitTime`` 60 s, at most 10 minutes, used only when minEventBatchSize > 1;
  ``batchCheckpointFrequency`` 1, at least 1; ``prefetchCount`` 300.
- ``Listeners/EventHubListener.PartitionProcessor.cs``, ``ProcessEventsAsync``: one
  partition processor per partition the instance owns, and each awaits its invocation
  before it takes the next batch, so at most one invocation per partition at once.
  ``cardinality="many"``: one invocation with the whole batch; ``"one"``: one
  invocation per event, in order, one after another. After the batch it checkpoints
  *whether or not the function succeeded* ("EventHub doesn't support any sort of poison
  event model ... they won't be retried"); with batchCheckpointFrequency N only every
  Nth batch (``UpdateCheckpointContext``). With minEventBatchSize > 1 it waits for that
  many events, or maxWaitTime, before invoking with what it has.

So an instance runs at most as many invocations at once as it owns partitions, whatever
its worker processes and threads; instances beyond the partition count own none.
The event hub is the in-process ``broker.EventHub``; prefetching is not modelled (the
in-process hub has no network to hide).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..host import Host
from ..invocation import InvocationRecord, clock
from ..learner_errors import LearnerError
from .broker import CheckpointStore, EventData, EventHub
from .message import EventBatchFields, EventFields

DEFAULT_MAX_EVENT_BATCH_SIZE = 100  # EventHubOptions (extension 5.x)
MAX_WAIT_TIME_LIMIT_S = 600.0  # "The longest allowed wait time is 10 minutes"
IDLE_POLL_S = 0.02  # how often an idle partition looks again (the SDK's receive waits)


class EventHubSettingError(LearnerError, ValueError):
    """A host.json eventHubs setting outside what the extension accepts."""


def _timespan_s(value: Any, name: str) -> float:
    try:
        hours, minutes, seconds = (float(p) for p in str(value).split(":"))
    except ValueError:
        raise EventHubSettingError(f"{name} must be a time like 00:01:00, got {value!r}") from None
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class EventHubOptions:
    """host.json ``extensions.eventHubs``, with the extension's defaults and limits."""

    max_event_batch_size: int = DEFAULT_MAX_EVENT_BATCH_SIZE
    min_event_batch_size: int = 1
    max_wait_time_s: float = 60.0
    batch_checkpoint_frequency: int = 1
    prefetch_count: int = 300

    def __post_init__(self) -> None:
        if self.max_event_batch_size < 1:
            raise EventHubSettingError(
                f"maxEventBatchSize must be >= 1, got {self.max_event_batch_size}"
            )
        if not 1 <= self.min_event_batch_size <= self.max_event_batch_size:
            raise EventHubSettingError(
                f"minEventBatchSize must be 1-{self.max_event_batch_size} (maxEventBatchSize), "
                f"got {self.min_event_batch_size}"
            )
        if not 0 <= self.max_wait_time_s <= MAX_WAIT_TIME_LIMIT_S:
            raise EventHubSettingError("maxWaitTime must be from 0 to 10 minutes")
        if self.batch_checkpoint_frequency < 1:
            raise EventHubSettingError(
                f"batchCheckpointFrequency must be >= 1, got {self.batch_checkpoint_frequency}"
            )

    @classmethod
    def from_host_json(cls, app: str | Path, **overrides: Any) -> EventHubOptions:
        """Read ``extensions.eventHubs`` from the app's host.json; keyword overrides win."""
        settings: dict[str, Any] = {}
        path = Path(app) / "host.json"
        if path.is_file():
            section = json.loads(path.read_text()).get("extensions", {}).get("eventHubs", {})
            ints = {
                "maxEventBatchSize": "max_event_batch_size",
                "minEventBatchSize": "min_event_batch_size",
                "batchCheckpointFrequency": "batch_checkpoint_frequency",
                "prefetchCount": "prefetch_count",
            }
            for key, value in section.items():
                if key in ints:
                    settings[ints[key]] = int(value)
                elif key == "maxWaitTime":
                    settings["max_wait_time_s"] = _timespan_s(value, key)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)


@dataclass
class EventRecord:
    """One event's life: the invocation that carried it, and how it ended."""

    partition: int
    sequence_number: int
    enqueued: float = 0.0
    done: float = 0.0  # its invocation ended (success or not: it is not retried)
    failed: bool = False  # its invocation failed: checkpointed past, so lost to the function
    invocation_id: int = -1

    @property
    def latency_ms(self) -> float:
        return (self.done - self.enqueued) * 1e3 if self.enqueued and self.done else 0.0


@dataclass
class PartitionState:
    position: int = 0  # the next sequence number to read
    batches_since_checkpoint: int = 0
    batches: list[int] = field(default_factory=list)  # events per invocation


class EventHubListener:
    """One partition processor per partition, as the extension runs them on one instance."""

    def __init__(
        self,
        host: Host,
        function: str,
        hub: EventHub,
        checkpoints: CheckpointStore,
        options: EventHubOptions,
        *,
        many: bool,
        enqueued: dict[tuple[int, int], float] | None = None,
        on_invocation: Callable[[InvocationRecord], None] | None = None,
    ) -> None:
        self.host, self.function, self.hub, self.options = host, function, hub, options
        self.checkpoints, self.many = checkpoints, many
        self.enqueued = enqueued if enqueued is not None else {}
        self.on_invocation = on_invocation
        self.events: dict[tuple[int, int], EventRecord] = {}
        self.invocations: list[InvocationRecord] = []
        self.partitions = [PartitionState() for _ in range(hub.partition_count)]
        self.in_flight_curve: list[tuple[float, int]] = []
        self._in_flight = 0

    def done_count(self) -> int:
        return sum(1 for e in self.events.values() if e.done)

    async def run(self, expected: int, stopped: Callable[[], bool] = lambda: False) -> None:
        """Run every partition until ``expected`` events are done (or ``stopped()``)."""
        tasks = [
            asyncio.get_running_loop().create_task(self._partition(p))
            for p in range(self.hub.partition_count)
        ]
        try:
            while self.done_count() < expected and not stopped():
                failed = [t for t in tasks if t.done() and t.exception()]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
                await asyncio.sleep(IDLE_POLL_S)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _partition(self, partition: int) -> None:
        """ProcessEventsAsync, over and over: one batch, awaited, then the next."""
        state = self.partitions[partition]
        state.position = self.checkpoints.starting_position(partition)
        waiting_since: float | None = None
        while True:
            available = self.hub.available(partition, state.position)
            wanted = self.options.min_event_batch_size
            if available == 0 or available < wanted:
                # Fewer than minEventBatchSize: wait for more, up to maxWaitTime.
                waiting_since = waiting_since or clock()
                waited = clock() - waiting_since
                if available == 0 or waited < self.options.max_wait_time_s:
                    await asyncio.sleep(IDLE_POLL_S)
                    continue
            waiting_since = None
            batch = self.hub.read(partition, state.position, self.options.max_event_batch_size)
            await self._process(partition, batch)
            state.position = batch[-1].sequence_number + 1  # not retried, whatever happened
            state.batches.append(len(batch))
            self._checkpoint(partition, batch[-1])

    def _checkpoint(self, partition: int, last: EventData) -> None:
        """UpdateCheckpointContext + CheckpointAsync: every batchCheckpointFrequency batches."""
        state = self.partitions[partition]
        state.batches_since_checkpoint += 1
        if state.batches_since_checkpoint >= self.options.batch_checkpoint_frequency:
            self.checkpoints.checkpoint(partition, last.sequence_number)
            state.batches_since_checkpoint = 0

    async def _process(self, partition: int, batch: list[EventData]) -> None:
        if self.many:
            await self._invoke(partition, batch)
        else:  # single dispatch: one invocation per event, in order, one after another
            for event in batch:
                await self._invoke(partition, [event])

    async def _invoke(self, partition: int, events: list[EventData]) -> None:
        fields = EventBatchFields(
            [
                EventFields(
                    body=e.body,
                    sequence_number=e.sequence_number,
                    offset=e.offset,
                    partition_key=e.partition_key,
                    enqueued_time=e.enqueued_time,
                )
                for e in events
            ],
            many=self.many,
        )
        self._change(+1)
        dispatched = clock()
        try:
            invocation, _ = await asyncio.wrap_future(self.host.invoke(self.function, fields))
        except Exception as exc:  # the worker died, or the host is closing: a failed try
            invocation = InvocationRecord(
                -1,
                self.function,
                dispatched=dispatched,
                completed=clock(),
                status=500,
                error=f"{type(exc).__name__}: {exc}",
            )
        finally:
            self._change(-1)
        self.invocations.append(invocation)
        if self.on_invocation is not None:
            self.on_invocation(invocation)
        for e in events:
            key = (partition, e.sequence_number)
            self.events[key] = EventRecord(
                partition,
                e.sequence_number,
                enqueued=self.enqueued.get(key, 0.0),
                done=clock(),
                failed=not invocation.ok,
                invocation_id=invocation.invocation_id,
            )

    def _change(self, delta: int) -> None:
        self._in_flight += delta
        self.in_flight_curve.append((clock(), self._in_flight))
