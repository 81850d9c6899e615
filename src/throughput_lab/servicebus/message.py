"""A Service Bus message crossing the host-worker boundary, and what the worker makes of it.

The host sends the body and the message's system properties as trigger metadata; the
worker's converter (azure-functions ``servicebus.py``,
``ServiceBusMessageInConverter.decode_single_message``, which the Python worker calls for a
``serviceBusTrigger`` binding) builds an ``azure.functions.ServiceBusMessage`` from them:
``message_id``, ``delivery_count``, ``sequence_number``, ``session_id``, ``lock_token``,
``enqueued_time_utc``, ``locked_until``, ``application_properties``. The fields here are
those, plain, so they pickle; ``to_request`` calls the same constructor the converter does.
A Service Bus function has no HTTP response: an exception fails the invocation, which is
what tells the host to abandon the message.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from azure.functions.servicebus import ServiceBusMessage

from ..invocation import HttpResponseFields


@dataclass
class ServiceBusMessageFields:
    """What the host sends to a worker for a Service Bus-triggered invocation."""

    message_id: str
    body: bytes
    delivery_count: int = 1
    sequence_number: int = 0
    session_id: str | None = None
    lock_token: str = ""
    enqueued_time_utc: datetime.datetime | None = None
    locked_until: datetime.datetime | None = None
    application_properties: dict[str, Any] = field(default_factory=dict)

    def to_request(self) -> ServiceBusMessage:
        return ServiceBusMessage(
            body=self.body,
            message_id=self.message_id,
            delivery_count=self.delivery_count,
            sequence_number=self.sequence_number,
            session_id=self.session_id,
            lock_token=self.lock_token,
            enqueued_time_utc=self.enqueued_time_utc,
            locked_until=self.locked_until,
            application_properties=dict(self.application_properties),
            user_properties=dict(self.application_properties),
        )

    def encode_return(self, value: Any) -> HttpResponseFields:
        """Success whatever it returned (no output binding): the host completes the message."""
        return HttpResponseFields(200)


@dataclass
class ServiceBusBatchFields:
    """A batch function's invocation (``cardinality="many"``): the worker's converter
    (``decode_multiple_messages``) gives the function a list of ServiceBusMessage."""

    messages: list[ServiceBusMessageFields] = field(default_factory=list)

    def to_request(self) -> list[ServiceBusMessage]:
        return [m.to_request() for m in self.messages]

    def encode_return(self, value: Any) -> HttpResponseFields:
        return HttpResponseFields(200)
