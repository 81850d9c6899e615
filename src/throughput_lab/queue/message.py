"""A queue message crossing the host-worker boundary, and what the worker makes of it.

The host reads the message from the queue, decodes it (Base64 unless host.json says
``"messageEncoding": "none"``), and sends the body with the message's id, pop receipt,
dequeue count and times; the worker builds an ``azure.functions.QueueMessage`` from them
(azure-functions ``queue.py``, ``QueueMessageInConverter``). A queue function has no HTTP
response: what it returns is ignored without an output binding, and an exception fails
the invocation, which is what tells the host to retry the message.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from azure.functions.queue import QueueMessage

from ..invocation import HttpResponseFields


@dataclass
class QueueMessageFields:
    """What the host sends to a worker for a queue-triggered invocation."""

    id: str
    body: bytes
    dequeue_count: int
    pop_receipt: str = ""
    insertion_time: datetime.datetime | None = None
    expiration_time: datetime.datetime | None = None
    time_next_visible: datetime.datetime | None = None

    def to_request(self) -> QueueMessage:
        # The library's full message, with dequeue count and times, as its converter builds it
        return QueueMessage(
            id=self.id,
            body=self.body,
            dequeue_count=self.dequeue_count,
            pop_receipt=self.pop_receipt,
            insertion_time=self.insertion_time,
            expiration_time=self.expiration_time,
            time_next_visible=self.time_next_visible,
        )

    def encode_return(self, value: Any) -> HttpResponseFields:
        """Success whatever it returned (no output binding): the host deletes the message."""
        return HttpResponseFields(200)
