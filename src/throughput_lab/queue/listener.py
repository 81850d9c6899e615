"""The host's queue listener: how many queue messages a worker gets at once, and retries.

A queue trigger is polled by the Functions host, not by the worker. Its settings live in
host.json ``extensions.queues``, and they cap the invocations in flight long before the
thread pool or the worker processes do. What this module reproduces, with its source
(Azure/azure-sdk-for-net, ``sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/
src/Shared/Queues/``; Learn "host.json reference", queues):

- ``QueuesOptions.cs``: ``batchSize`` default 16, 1-32 (the queue service hands out at
  most 32 messages a call); ``newBatchThreshold`` default (batchSize / 2) x processor
  count (``SkuUtility.ProcessorCount``: the machine's cores, but 1 on Consumption);
  ``maxPollingInterval`` default 1 minute, at least 100 ms; ``visibilityTimeout`` default
  0; ``maxDequeueCount`` default 5; ``messageEncoding`` default Base64.
- ``QueueListener.cs``: fetch up to batchSize messages, each made invisible for 10 minutes
  (renewed while the function runs); start each one; then wait until the messages in
  progress drop to newBatchThreshold before fetching again (``WaitForNewBatchThreshold``).
  So at most batchSize + newBatchThreshold run at once per instance. An empty queue backs
  off exponentially (``RandomizedExponentialBackoffStrategy``: from 100 ms, x2 with +-20 %
  jitter, up to maxPollingInterval); a found message resets it.
- ``QueueProcessor.cs``: success deletes the message. A failure with dequeue count
  >= maxDequeueCount copies the body to ``<queue>-poison`` and deletes the message; an
  earlier failure makes it visible again after visibilityTimeout. A message fetched with
  a dequeue count above maxDequeueCount goes to the poison queue without running.
- With dynamic concurrency on (host.json ``concurrency.dynamicConcurrencyEnabled``),
  ``GetMessageReceiveCount`` asks the concurrency manager instead, and batchSize and
  newBatchThreshold are not used. The lab does not model that mode.

Invocations go to the worker processes round-robin through the lab's ``Host``, as every
trigger's do. Deleting, releasing and poisoning run on a small thread pool here (the real
listener awaits them), so that the host's receiving threads never block on the queue
service. The lab runs functions far shorter than 10 minutes and does not renew visibility.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    BinaryBase64EncodePolicy,
    QueueClient,
)
from azure.storage.queue import QueueMessage as StorageQueueMessage

from ..host import Host
from ..invocation import HttpResponseFields, InvocationRecord, clock
from ..learner_errors import LearnerError
from .message import QueueMessageFields

MAX_BATCH_SIZE = 32  # QueuesOptions.MaxBatchSize: the queue service's limit per call
MIN_POLLING_S = 0.1  # QueuePollingIntervals.Minimum
LISTENER_VISIBILITY_S = 600  # QueueListener: fetched messages stay invisible 10 minutes
POISON_SUFFIX = "-poison"


class QueueSettingError(LearnerError, ValueError):
    """A host.json queues setting outside what the extension accepts."""


def _timespan_s(value: Any, name: str) -> float:
    """host.json gives times as "hh:mm:ss" (maxPollingInterval also as milliseconds)."""
    if isinstance(value, int | float):
        return float(value) / 1e3
    try:
        parts = [float(p) for p in str(value).split(":")]
    except ValueError:
        raise QueueSettingError(f"{name} must be a time like 00:00:30, got {value!r}") from None
    if len(parts) != 3:
        raise QueueSettingError(f"{name} must be a time like 00:00:30, got {value!r}")
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


@dataclass(frozen=True)
class QueuesOptions:
    """host.json ``extensions.queues``, with the extension's defaults and limits."""

    batch_size: int = 16
    new_batch_threshold: int | None = None  # None: (batch_size // 2) x processor count
    max_polling_interval_s: float = 60.0
    visibility_timeout_s: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"
    processor_count: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise QueueSettingError(
                f"batchSize must be 1-{MAX_BATCH_SIZE} (the queue service's limit per call), "
                f"got {self.batch_size}"
            )
        if self.new_batch_threshold is not None and self.new_batch_threshold < 0:
            raise QueueSettingError(
                f"newBatchThreshold must be >= 0, got {self.new_batch_threshold}"
            )
        if self.max_dequeue_count < 1:
            raise QueueSettingError(f"maxDequeueCount must be >= 1, got {self.max_dequeue_count}")
        if self.max_polling_interval_s < MIN_POLLING_S:
            raise QueueSettingError("maxPollingInterval must not be less than 100 ms")
        if self.message_encoding not in ("base64", "none"):
            raise QueueSettingError(
                f"messageEncoding must be base64 or none, got {self.message_encoding!r}"
            )

    @property
    def threshold(self) -> int:
        """newBatchThreshold as the listener uses it."""
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return (self.batch_size // 2) * self.processor_count

    @property
    def max_in_flight(self) -> int:
        """The most messages one queue-triggered function runs at once on one instance.

        The cap is per function ("per job method", ``QueuesOptions.BatchSize``): an app
        with two queue-triggered functions may run twice this on one instance.
        """
        return self.batch_size + self.threshold

    @classmethod
    def from_host_json(cls, app: str | Path, **overrides: Any) -> QueuesOptions:
        """Read ``extensions.queues`` from the app's host.json; keyword overrides win."""
        settings: dict[str, Any] = {}
        path = Path(app) / "host.json"
        if path.is_file():
            queues = json.loads(path.read_text()).get("extensions", {}).get("queues", {})
            names = {
                "batchSize": "batch_size",
                "newBatchThreshold": "new_batch_threshold",
                "maxDequeueCount": "max_dequeue_count",
            }
            for key, value in queues.items():
                if key in names:
                    settings[names[key]] = int(value)
                elif key == "maxPollingInterval":
                    settings["max_polling_interval_s"] = _timespan_s(value, key)
                elif key == "visibilityTimeout":
                    settings["visibility_timeout_s"] = _timespan_s(value, key)
                elif key == "messageEncoding":
                    settings["message_encoding"] = str(value).lower()
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)


class Backoff:
    """RandomizedExponentialBackoffStrategy: 100 ms, then +100 ms x 2^(n-1) +-20 %, capped."""

    def __init__(self, maximum_s: float, rng: random.Random | None = None) -> None:
        self.maximum_s = maximum_s
        self.rng = rng or random.Random()
        self.current_s = MIN_POLLING_S
        self.exponent = 0

    def next(self, found: bool) -> float:
        if found:
            self.current_s, self.exponent = MIN_POLLING_S, 1
        elif self.current_s != self.maximum_s:
            delay = MIN_POLLING_S
            if self.exponent > 0:
                delay += self.rng.uniform(0.8, 1.2) * 2 ** (self.exponent - 1) * MIN_POLLING_S
            if delay < self.maximum_s:
                self.current_s, self.exponent = delay, self.exponent + 1
            else:
                self.current_s = self.maximum_s
        return self.current_s


@dataclass
class MessageRecord:
    """One queue message's life: every try, and how it ended."""

    message_id: str
    enqueued: float = 0.0  # clock() when the lab sent it (0 if someone else did)
    done: float = 0.0  # deleted after success, or moved to the poison queue
    tries: int = 0
    poisoned: bool = False
    invocations: list[InvocationRecord] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return (self.done - self.enqueued) * 1e3 if self.enqueued and self.done else 0.0


def queue_clients(
    connection_string: str, queue: str, options: QueuesOptions
) -> tuple[QueueClient, QueueClient]:
    """The queue and its poison queue, encoding messages as host.json says."""
    policies: dict[str, Any] = {}
    if options.message_encoding == "base64":
        policies = {
            "message_encode_policy": BinaryBase64EncodePolicy(),
            "message_decode_policy": BinaryBase64DecodePolicy(),
        }
    make = QueueClient.from_connection_string
    return (
        make(connection_string, queue, **policies),
        make(connection_string, queue + POISON_SUFFIX, **policies),
    )


class QueueListener:
    """Poll one queue for one function, as the host does, until ``stop()``."""

    def __init__(
        self,
        host: Host,
        function: str,
        queue: QueueClient,
        poison: QueueClient,
        options: QueuesOptions,
        *,
        enqueued: dict[str, float] | None = None,
        on_begin: Callable[[StorageQueueMessage], None] | None = None,
        on_done: Callable[[MessageRecord], None] | None = None,
        on_ran: Callable[[MessageRecord, bool], None] | None = None,
        visibility_s: int = LISTENER_VISIBILITY_S,
    ) -> None:
        """``on_begin`` sees each message taken, ``on_ran`` each try's end (whether it
        succeeded) before the message is deleted or released, ``on_done`` each message
        deleted or poisoned. ``visibility_s``: how long a fetched message stays invisible
        to every other listener (the extension's 10 minutes; a lab that kills an instance
        on purpose may shorten it, so its messages come back within the run, and says so).
        """
        if visibility_s < 1:
            raise ValueError(f"visibility must be >= 1 s, got {visibility_s}")
        self.host, self.function, self.options = host, function, options
        self.visibility_s = visibility_s
        self.on_begin = on_begin
        self.queue, self.poison = queue, poison
        self.enqueued = enqueued if enqueued is not None else {}
        self.on_done, self.on_ran = on_done, on_ran
        self.messages: dict[str, MessageRecord] = {}
        self.in_flight_curve: list[tuple[float, int]] = []  # (clock(), messages in progress)
        self.fetches = 0
        self.errors: list[str] = []  # the queue service's own failures
        self._in_flight = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        # As many as can be in progress: the real listener awaits every delete at once.
        self._completion = ThreadPoolExecutor(
            max_workers=options.max_in_flight, thread_name_prefix="queue-complete"
        )
        self._thread: threading.Thread | None = None
        self._poison_created = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> QueueListener:
        self._thread = threading.Thread(target=self._run, name="queue-listener", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop fetching, let the messages in progress finish (up to ``timeout_s``)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)
        self._completion.shutdown(wait=False, cancel_futures=True)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _change(self, delta: int) -> None:
        with self._changed:
            self._in_flight += delta
            self.in_flight_curve.append((clock(), self._in_flight))
            self._changed.notify_all()

    # -- the listener's loop -----------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.options.max_polling_interval_s)
        while not self._stop.is_set():
            try:
                pages = self.queue.receive_messages(
                    messages_per_page=self.options.batch_size,
                    visibility_timeout=self.visibility_s,
                ).by_page()
                batch = list(next(pages, []))
            except Exception as exc:  # the queue service failed: back off, as the host does
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                batch = []
            self.fetches += 1
            if not batch:
                self._stop.wait(backoff.next(found=False))
                continue
            backoff.next(found=True)
            for message in batch:
                self._begin(message)
            with self._changed:  # WaitForNewBatchThreshold
                self._changed.wait_for(
                    lambda: self._in_flight <= self.options.threshold or self._stop.is_set()
                )

    def _record(self, message: StorageQueueMessage) -> MessageRecord:
        record = self.messages.get(message.id)
        if record is None:
            record = MessageRecord(message.id, enqueued=self.enqueued.get(message.id, 0.0))
            self.messages[message.id] = record
        return record

    def _begin(self, message: StorageQueueMessage) -> None:
        record = self._record(message)
        self._change(+1)
        if self.on_begin is not None:
            self.on_begin(message)
        if message.dequeue_count > self.options.max_dequeue_count:
            self._completion.submit(self._finish, message, record, None)
            return
        record.tries += 1
        body = message.content
        fields = QueueMessageFields(
            id=message.id,
            body=body if isinstance(body, bytes) else str(body).encode(),
            dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt or "",
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
        )
        try:
            future = self.host.invoke(self.function, fields)
        except RuntimeError:  # the host is closing: leave the message for the next run
            self._change(-1)
            return
        future.add_done_callback(
            lambda f: self._completion.submit(self._finish, message, record, f)
        )

    def _finish(
        self,
        message: StorageQueueMessage,
        record: MessageRecord,
        future: Future[tuple[InvocationRecord, HttpResponseFields]] | None,
    ) -> None:
        """CompleteProcessingMessageAsync: delete, release for a retry, or poison."""
        try:
            succeeded = False
            if future is not None:
                try:
                    invocation, _ = future.result()
                    record.invocations.append(invocation)
                    succeeded = invocation.ok
                except Exception as exc:  # the worker died: this try failed
                    record.invocations.append(
                        InvocationRecord(-1, self.function, error=f"{type(exc).__name__}: {exc}")
                    )
            if self.on_ran is not None:
                self.on_ran(record, succeeded)
            if succeeded:
                self.queue.delete_message(message.id, message.pop_receipt)
                record.done = clock()
            elif future is None or message.dequeue_count >= self.options.max_dequeue_count:
                self._move_to_poison(message)
                record.poisoned, record.done = True, clock()
            else:
                self.queue.update_message(
                    message.id,
                    message.pop_receipt,
                    visibility_timeout=int(self.options.visibility_timeout_s),
                )
        except Exception as exc:  # the queue service failed; the message will come back
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
        finally:
            self._change(-1)
        if record.done and self.on_done is not None:
            self.on_done(record)

    def _move_to_poison(self, message: StorageQueueMessage) -> None:
        if not self._poison_created:  # AddMessageAndCreateIfNotExistsAsync
            with contextlib.suppress(ResourceExistsError):
                self.poison.create_queue()
            self._poison_created = True
        self.poison.send_message(message.content)
        self.queue.delete_message(message.id, message.pop_receipt)


def mean_in_flight(curve: list[tuple[float, int]]) -> float:
    """Messages in progress, averaged over time (the curve's steps, weighted by duration)."""
    span = curve[-1][0] - curve[0][0] if len(curve) > 1 else 0.0
    if span <= 0:
        return 0.0
    area = sum((t1 - t0) * n for (t0, n), (t1, _) in itertools.pairwise(curve))
    return area / span


def wait_drained(
    listener: QueueListener,
    expected: int,
    timeout_s: float,
    cancelled: Callable[[], bool] = lambda: False,
) -> bool:
    """Wait until ``expected`` messages are done (processed or poisoned)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not cancelled():
        if sum(1 for m in list(listener.messages.values()) if m.done) >= expected:
            return True
        time.sleep(0.01)
    return False
