"""The emulated event hub keeps the documented rules, one test per rule.

Sources (Learn): "Features and terminology in Azure Event Hubs" (partitions are ordered,
a partition key maps to one partition, reading does not remove events, checkpoints per
consumer group and partition), Event Hubs quotas (1-32 partitions on Standard), and
EventHubOptions.cs (DefaultStartingPosition = Earliest).
"""

from __future__ import annotations

import pytest

from throughput_lab.eventhubs.broker import CheckpointStore, EventHub, PartitionCountError

# Pure Python, no worker: the same on every Python.
pytestmark = pytest.mark.once


def test_partition_count_is_the_standard_tiers_range() -> None:
    EventHub("h", 1), EventHub("h", 32)
    for bad in (0, 33):
        with pytest.raises(PartitionCountError, match="1-32"):
            EventHub("h", bad)


def test_a_partition_key_always_lands_in_the_same_partition() -> None:
    hub = EventHub("h", 4)
    partitions = {hub.send(b"x", partition_key="device-7").partition_id for _ in range(10)}
    assert len(partitions) == 1


def test_events_without_a_key_spread_round_robin() -> None:
    hub = EventHub("h", 4)
    assert [hub.send(b"x").partition_id for _ in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_each_partition_numbers_its_events_from_zero_in_order() -> None:
    hub = EventHub("h", 2)
    for i in range(6):
        hub.send(str(i).encode())
    events = hub.read(1, 0, 10)
    assert [e.sequence_number for e in events] == [0, 1, 2]
    assert [e.body for e in events] == [b"1", b"3", b"5"]
    assert [e.offset for e in events] == [0, 1, 2]


def test_reading_does_not_remove_events() -> None:
    hub = EventHub("h", 1)
    for i in range(5):
        hub.send(str(i).encode())
    assert hub.read(0, 0, 3) == hub.read(0, 0, 3)
    assert [e.body for e in hub.read(0, 3, 10)] == [b"3", b"4"]
    assert hub.event_count() == 5


def test_a_checkpoint_is_where_a_reader_starts_again_else_the_earliest() -> None:
    store = CheckpointStore()
    assert store.starting_position(0) == 0  # no checkpoint: Earliest
    store.checkpoint(0, 9)
    assert store.starting_position(0) == 10
    assert store.starting_position(1) == 0  # per partition
    assert store.starting_position(0, group="other") == 0  # per consumer group
