"""An emulated event hub, in process: partitions, sequence numbers, and a checkpoint store.

No Event Hubs emulator installs from PyPI or npm (Microsoft's runs as a container image),
so the lab keeps the event hub here, with the semantics the trigger depends on (Learn,
"Features and terminology in Azure Event Hubs": partitions, event retention, consumer
groups and checkpointing; "Balance partition load across multiple instances"):

- **Partitions** are ordered logs: an event sent with a partition key always lands in
  the same partition (the key is hashed); one without goes round-robin. Each partition
  numbers its events from 0 (sequence number) and gives each an offset.
- **Reading does not remove**: events stay for the retention period, whatever the readers
  do; a reader asks for events from a position, and gets them in order.
- **Checkpoints** are the reader's own bookmark per consumer group and partition, kept
  outside the hub (the extension keeps them in blobs of AzureWebJobsStorage): a reader
  that starts again reads from the event after the checkpoint, or, with none, from the
  earliest event (EventHubOptions: ``DefaultStartingPosition = EventPosition.Earliest``).

Left out: retention expiry, the network, capture, ownership leases between instances
(the lab runs one host instance, which owns every partition).
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ..learner_errors import LearnerError

MAX_PARTITIONS_STANDARD = 32  # Learn, Event Hubs quotas: 1-32 partitions on Standard
DEFAULT_CONSUMER_GROUP = "$Default"


class PartitionCountError(LearnerError, ValueError):
    """A partition count the Standard tier does not offer."""


@dataclass(frozen=True)
class EventData:
    body: bytes
    partition_id: int
    sequence_number: int
    offset: int
    enqueued_at: float  # ``now()`` when accepted
    enqueued_time: datetime.datetime
    partition_key: str | None = None


class EventHub:
    """An event hub's partitions. Thread-safe."""

    def __init__(
        self, name: str, partitions: int = 4, *, now: Callable[[], float] = time.monotonic
    ) -> None:
        if not 1 <= partitions <= MAX_PARTITIONS_STANDARD:
            raise PartitionCountError(
                f"partitions must be 1-{MAX_PARTITIONS_STANDARD} (the Standard tier's range), "
                f"got {partitions}"
            )
        self.name = name
        self.partition_count = partitions
        self.now = now
        self._logs: list[list[EventData]] = [[] for _ in range(partitions)]
        self._round_robin = itertools.cycle(range(partitions))
        self._lock = threading.Lock()

    def partition_for(self, key: str) -> int:
        """The same key, the same partition (a stable hash; the service's own is internal)."""
        return zlib.crc32(key.encode()) % self.partition_count

    def send(self, body: bytes, *, partition_key: str | None = None) -> EventData:
        with self._lock:
            partition = (
                self.partition_for(partition_key)
                if partition_key is not None
                else next(self._round_robin)
            )
            log = self._logs[partition]
            previous = log[-1] if log else None
            event = EventData(
                body=body,
                partition_id=partition,
                sequence_number=len(log),
                offset=previous.offset + len(previous.body) if previous else 0,
                enqueued_at=self.now(),
                enqueued_time=datetime.datetime.now(datetime.UTC),
                partition_key=partition_key,
            )
            log.append(event)
            return event

    def read(self, partition: int, from_sequence: int, max_count: int) -> list[EventData]:
        """Up to ``max_count`` events from ``from_sequence`` on, in order; nothing removed."""
        with self._lock:
            return self._logs[partition][from_sequence : from_sequence + max_count]

    def available(self, partition: int, from_sequence: int) -> int:
        with self._lock:
            return max(0, len(self._logs[partition]) - from_sequence)

    def event_count(self) -> int:
        with self._lock:
            return sum(len(log) for log in self._logs)


class CheckpointStore:
    """Checkpoints per (consumer group, partition): the sequence number last processed."""

    def __init__(self) -> None:
        self._checkpoints: dict[tuple[str, int], int] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def checkpoint(
        self, partition: int, sequence_number: int, group: str = DEFAULT_CONSUMER_GROUP
    ) -> None:
        with self._lock:
            self._checkpoints[(group, partition)] = sequence_number
            self.writes += 1

    def get(self, partition: int, group: str = DEFAULT_CONSUMER_GROUP) -> int | None:
        with self._lock:
            return self._checkpoints.get((group, partition))

    def starting_position(self, partition: int, group: str = DEFAULT_CONSUMER_GROUP) -> int:
        """The event after the checkpoint, or the earliest (sequence 0) without one."""
        last = self.get(partition, group)
        return 0 if last is None else last + 1
