"""Event Hubs events crossing the host-worker boundary, and what the worker makes of them.

The host sends one event, or for ``cardinality="many"`` the batch's bodies with their
system properties (``SystemPropertiesArray``); the worker's converter (azure-functions
``eventhub.py``, ``EventHubTriggerConverter.decode_single_event`` and
``decode_multiple_events``) builds ``azure.functions.EventHubEvent`` from each: body,
``enqueued_time``, ``partition_key``, ``sequence_number``, ``offset``. The fields here are
those, plain, so they pickle; ``to_request`` calls the same constructor, and gives a list
for a batch. An exception fails the invocation; the extension does not retry it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from azure.functions import EventHubEvent

from ..invocation import HttpResponseFields


@dataclass
class EventFields:
    body: bytes
    sequence_number: int = 0
    offset: int = 0
    partition_key: str | None = None
    enqueued_time: datetime.datetime | None = None

    def to_event(self) -> EventHubEvent:
        return EventHubEvent(
            body=self.body,
            enqueued_time=self.enqueued_time,
            partition_key=self.partition_key,
            sequence_number=self.sequence_number,
            offset=str(self.offset),
        )


@dataclass
class EventBatchFields:
    """What the host sends to a worker for an Event Hubs-triggered invocation."""

    events: list[EventFields] = field(default_factory=list)
    many: bool = True  # cardinality="many": the function gets a list

    def to_request(self) -> EventHubEvent | list[EventHubEvent]:
        events = [e.to_event() for e in self.events]
        return events if self.many else events[0]

    def encode_return(self, value: Any) -> HttpResponseFields:
        """Success whatever it returned (no output binding)."""
        return HttpResponseFields(200)
