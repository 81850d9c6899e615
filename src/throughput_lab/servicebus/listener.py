"""The host's Service Bus listener: how many messages a worker gets at once, and settlement.

A Service Bus trigger is run by the Functions host's extension, not by the worker. Its
settings live in host.json ``extensions.serviceBus`` (extension 5.x, the one in extension
bundle 4.x). What this module follows, with its source (Azure/azure-sdk-for-net,
``sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/``):

- ``Config/ServiceBusOptions.cs``: ``maxConcurrentCalls`` default 16 x processor count
  (``Utility.GetProcessorCount``: the machine's cores, 1 on Consumption), at least 1;
  ``maxConcurrentSessions`` default 8; ``maxConcurrentCallsPerSession`` 1;
  ``prefetchCount`` 0; ``autoCompleteMessages`` true; ``maxAutoLockRenewalDuration``
  5 minutes; ``sessionIdleTimeout`` unset, so the client's ``TryTimeout`` (60 s). With
  dynamic concurrency on, maxConcurrentCalls starts at 1 and moves (not modelled here).
- ``Listeners/ServiceBusListener.cs`` hands these to one ``ServiceBusProcessor`` (or
  ``ServiceBusSessionProcessor``) per function and host instance: at most
  maxConcurrentCalls messages in the function at once on an instance, whatever the
  worker processes and threads (it is one cap per host, not per worker process).
  Sessions: at most maxConcurrentSessions sessions held at once, one message at a time
  each, in order; a session with no message for sessionIdleTimeout is let go.
- ``Primitives/MessageProcessor.cs``, ``CompleteProcessingMessageAsync``: a failed
  invocation's exception goes back to the processor, which abandons the message
  (Azure.Messaging.ServiceBus ``ServiceBusProcessor``: a message the handler did not
  settle is abandoned when the handler throws); with autoCompleteMessages the processor
  completes it after a success. With autoCompleteMessages false a Python function that
  does not settle the message leaves it locked until the lock expires: it comes back.
- ``ServiceBusListener.RunBatchReceiveLoopAsync`` (``cardinality="many"``): one loop
  receives up to ``maxMessageBatchSize`` (default 1000) messages and runs the function on
  them, "at a concurrency level of 1": one batch at a time per function and instance,
  maxConcurrentCalls does not apply. After a success every message is completed; after a
  failure every message is abandoned, whatever autoCompleteMessages says
  (``TriggerAndCompleteMessagesInternal``). minMessageBatchSize and maxBatchWaitTime are
  not modelled.

The entity is the in-process ``broker.ServiceBusQueue``; invocations go to the worker
processes round-robin through the lab's ``Host``, as every trigger's do. The lab's
functions run far shorter than the lock (1 minute), so locks are not renewed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..host import Host
from ..invocation import InvocationRecord, clock
from ..learner_errors import LearnerError
from .broker import BrokeredMessage, MessageLockLostError, ServiceBusQueue
from .message import ServiceBusBatchFields, ServiceBusMessageFields

DEFAULT_CALLS_PER_CORE = 16  # ServiceBusOptions: Utility.GetProcessorCount() * 16
DEFAULT_MAX_CONCURRENT_SESSIONS = 8
DEFAULT_MAX_MESSAGE_BATCH_SIZE = 1000  # ServiceBusOptions.MaxMessageBatchSize
DEFAULT_SESSION_IDLE_TIMEOUT_S = 60.0  # ServiceBusRetryOptions.TryTimeout
IDLE_POLL_S = 0.02  # how often an idle pump looks again (the SDK's receive waits instead)


class ServiceBusSettingError(LearnerError, ValueError):
    """A host.json serviceBus setting outside what the extension accepts."""


def _timespan_s(value: Any, name: str) -> float:
    try:
        hours, minutes, seconds = (float(p) for p in str(value).split(":"))
    except ValueError:
        raise ServiceBusSettingError(
            f"{name} must be a time like 00:01:00, got {value!r}"
        ) from None
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class ServiceBusOptions:
    """host.json ``extensions.serviceBus``, with the extension's defaults and limits."""

    max_concurrent_calls: int | None = None  # None: 16 x processor count
    max_concurrent_sessions: int = DEFAULT_MAX_CONCURRENT_SESSIONS
    prefetch_count: int = 0
    auto_complete_messages: bool = True
    session_idle_timeout_s: float = DEFAULT_SESSION_IDLE_TIMEOUT_S
    max_message_batch_size: int = DEFAULT_MAX_MESSAGE_BATCH_SIZE
    processor_count: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.max_concurrent_calls is not None and self.max_concurrent_calls < 1:
            raise ServiceBusSettingError(
                f"maxConcurrentCalls must be >= 1, got {self.max_concurrent_calls}"
            )
        if self.max_concurrent_sessions < 1:
            raise ServiceBusSettingError(
                f"maxConcurrentSessions must be >= 1, got {self.max_concurrent_sessions}"
            )
        if self.prefetch_count < 0:
            raise ServiceBusSettingError(f"prefetchCount must be >= 0, got {self.prefetch_count}")
        if self.max_message_batch_size < 1:
            raise ServiceBusSettingError(
                f"maxMessageBatchSize must be >= 1, got {self.max_message_batch_size}"
            )
        if self.session_idle_timeout_s <= 0:
            raise ServiceBusSettingError("sessionIdleTimeout must be over 0")

    @property
    def calls(self) -> int:
        """maxConcurrentCalls as the processor uses it."""
        if self.max_concurrent_calls is not None:
            return self.max_concurrent_calls
        return DEFAULT_CALLS_PER_CORE * self.processor_count

    def max_in_flight(self, sessions_enabled: bool, many: bool = False) -> int:
        """The most invocations of one function in progress at once on one host instance."""
        if many:
            return 1  # the batch receive loop: one batch at a time
        return self.max_concurrent_sessions if sessions_enabled else self.calls

    @classmethod
    def from_host_json(cls, app: str | Path, **overrides: Any) -> ServiceBusOptions:
        """Read ``extensions.serviceBus`` from the app's host.json; keyword overrides win."""
        settings: dict[str, Any] = {}
        path = Path(app) / "host.json"
        if path.is_file():
            section = json.loads(path.read_text()).get("extensions", {}).get("serviceBus", {})
            ints = {
                "maxConcurrentCalls": "max_concurrent_calls",
                "maxConcurrentSessions": "max_concurrent_sessions",
                "prefetchCount": "prefetch_count",
                "maxMessageBatchSize": "max_message_batch_size",
            }
            for key, value in section.items():
                if key in ints:
                    settings[ints[key]] = int(value)
                elif key == "autoCompleteMessages":
                    settings["auto_complete_messages"] = bool(value)
                elif key == "sessionIdleTimeout":
                    settings["session_idle_timeout_s"] = _timespan_s(value, key)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)


@dataclass
class MessageRecord:
    """One Service Bus message's life: every delivery, and how it ended."""

    message_id: str
    sequence_number: int
    session_id: str | None = None
    enqueued: float = 0.0  # clock() when the lab sent it
    done: float = 0.0  # completed, or dead-lettered
    tries: int = 0
    dead_lettered: bool = False
    invocations: list[InvocationRecord] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return (self.done - self.enqueued) * 1e3 if self.enqueued and self.done else 0.0


class ServiceBusListener:
    """Run one function's messages from one entity, as the extension's processor does."""

    def __init__(
        self,
        host: Host,
        function: str,
        entity: ServiceBusQueue,
        options: ServiceBusOptions,
        *,
        enqueued: dict[str, float] | None = None,
        on_done: Callable[[MessageRecord], None] | None = None,
        on_invocation: Callable[[InvocationRecord], None] | None = None,
        many: bool = False,
    ) -> None:
        self.host, self.function, self.entity, self.options = host, function, entity, options
        self.on_invocation = on_invocation
        self.many = many  # cardinality "many": the batch receive loop
        self.sessions = entity.requires_session
        self.enqueued = enqueued if enqueued is not None else {}
        self.on_done = on_done
        self.messages: dict[str, MessageRecord] = {}
        self.in_flight_curve: list[tuple[float, int]] = []  # (clock(), messages in progress)
        self.errors: list[str] = []
        self._in_flight = 0  # slots taken: calls, or sessions held
        self._processing = 0  # messages in the function
        self._dead_seen = 0
        self._changed: asyncio.Condition | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def cap(self) -> int:
        return self.options.max_in_flight(self.sessions, self.many)

    def done_count(self) -> int:
        return sum(1 for m in self.messages.values() if m.done)

    async def run(self, expected: int, stopped: Callable[[], bool] = lambda: False) -> None:
        """Dispatch until ``expected`` messages are done (or ``stopped()``), then stop."""
        self._changed = asyncio.Condition()
        if self.many and not self.sessions:
            await self._batch_loop(expected, stopped)
            return
        dispatch = self._accept_sessions if self.sessions else self._receive
        try:
            while self.done_count() < expected and not stopped():
                self._collect_dead_letters()  # a lock that expired may have dead-lettered one
                async with self._changed:  # a free slot: a call, or a session
                    await self._changed.wait_for(lambda: self._in_flight < self.cap)
                if not dispatch():
                    await self._wait(IDLE_POLL_S)
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wait(self, timeout_s: float) -> None:
        """Until something settles (a message may be back) or ``timeout_s`` passes."""
        assert self._changed is not None
        async with self._changed:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)

    async def _change(self, delta: int) -> None:
        assert self._changed is not None
        async with self._changed:
            self._in_flight += delta
            self._changed.notify_all()

    def _taken(self) -> None:
        """A slot (a call, or a session held) taken now, before its task runs, so the next
        wait_for sees it."""
        self._in_flight += 1

    def _start(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- without sessions: up to maxConcurrentCalls messages at once -----------------------

    def _receive(self) -> bool:
        batch = self.entity.receive(1)
        if not batch:
            return False
        self._taken()
        self._start(self._one_message(batch[0]))
        return True

    async def _one_message(self, message: BrokeredMessage) -> None:
        try:
            await self._process(message)
        finally:
            await self._change(-1)

    # -- a batch function: one batch at a time ----------------------------------------------

    async def _batch_loop(self, expected: int, stopped: Callable[[], bool]) -> None:
        """RunBatchReceiveLoopAsync: receive a batch, run it, settle it, again."""
        while self.done_count() < expected and not stopped():
            self._collect_dead_letters()
            batch = self.entity.receive(self.options.max_message_batch_size)
            if not batch:
                await asyncio.sleep(IDLE_POLL_S)
                continue
            records = [self._record(m) for m in batch]
            for record in records:
                record.tries += 1
            self._running(+len(batch))
            try:
                invocation = await self._invoke_batch(batch)
            finally:
                self._running(-len(batch))
            for record in records:
                record.invocations.append(invocation)
            if self.on_invocation is not None:
                self.on_invocation(invocation)
            for message, record in zip(batch, records, strict=True):
                self._settle(message, record, invocation.ok)

    # -- with sessions: up to maxConcurrentSessions sessions, one message at a time each ---

    def _accept_sessions(self) -> bool:
        session = self.entity.accept_next_session(receiver=f"{self.function}-{id(self)}")
        if session is None:
            return False
        self._taken()
        self._start(self._one_session(session))
        return True

    async def _one_session(self, session_id: str) -> None:
        idle_since: float | None = None
        try:
            while True:
                batch = self.entity.receive(1, session_id=session_id)
                if batch:
                    idle_since = None
                    await self._process(batch[0])
                    continue
                idle_since = idle_since or clock()
                if clock() - idle_since >= self.options.session_idle_timeout_s:
                    return  # the session is let go; another pump may accept it later
                await asyncio.sleep(IDLE_POLL_S)
        finally:
            self.entity.release_session(session_id)
            await self._change(-1)

    # -- one delivery -------------------------------------------------------------------

    def _record(self, message: BrokeredMessage) -> MessageRecord:
        record = self.messages.get(message.message_id)
        if record is None:
            record = MessageRecord(
                message.message_id,
                message.sequence_number,
                message.session_id,
                enqueued=self.enqueued.get(message.message_id, 0.0),
            )
            self.messages[message.message_id] = record
        return record

    async def _process(self, message: BrokeredMessage) -> None:
        record = self._record(message)
        record.tries += 1
        self._running(+1)
        try:
            invocation = await self._invoke(message)
        finally:
            self._running(-1)
        record.invocations.append(invocation)
        if self.on_invocation is not None:
            self.on_invocation(invocation)
        self._settle(message, record, invocation.ok)

    def _settle(self, message: BrokeredMessage, record: MessageRecord, ok: bool) -> None:
        """Complete after a success (autoCompleteMessages), abandon after a failure."""
        try:
            if ok and self.options.auto_complete_messages:
                self.entity.complete(message)
                record.done = clock()
            elif not ok:  # thrown back to the processor, which abandons it
                self.entity.abandon(message)
            # else: not settled by the function; the lock expires and it comes back
        except MessageLockLostError as exc:
            self.errors.append(str(exc))
        if message.dead_letter_reason:
            self._dead_lettered(record)
        elif record.done and self.on_done is not None:
            self.on_done(record)

    def _dead_lettered(self, record: MessageRecord) -> None:
        if not record.done:
            record.dead_lettered, record.done = True, clock()
            if self.on_done is not None:
                self.on_done(record)

    def _collect_dead_letters(self) -> None:
        for message in self.entity.dead_letters[self._dead_seen :]:
            record = self.messages.get(message.message_id)
            if record is not None:
                self._dead_lettered(record)
        self._dead_seen = len(self.entity.dead_letters)

    def _running(self, delta: int) -> None:
        """Messages in the function now (a session held but idle runs none)."""
        self._processing += delta
        self.in_flight_curve.append((clock(), self._processing))

    async def _invoke(self, message: BrokeredMessage) -> InvocationRecord:
        return await self._send(fields_of(message, self.entity))

    async def _invoke_batch(self, batch: list[BrokeredMessage]) -> InvocationRecord:
        return await self._send(ServiceBusBatchFields([fields_of(m, self.entity) for m in batch]))

    async def _send(
        self, fields: ServiceBusMessageFields | ServiceBusBatchFields
    ) -> InvocationRecord:
        dispatched = clock()
        try:
            invocation, _ = await asyncio.wrap_future(self.host.invoke(self.function, fields))
            return invocation
        except Exception as exc:  # the worker died, or the host is closing: this try failed
            return InvocationRecord(
                -1,
                self.function,
                dispatched=dispatched,
                completed=clock(),
                status=500,
                error=f"{type(exc).__name__}: {exc}",
            )


def fields_of(message: BrokeredMessage, entity: ServiceBusQueue) -> ServiceBusMessageFields:
    """The trigger metadata the host sends for one delivery."""
    locked = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        seconds=max(0.0, message.locked_until - entity.now())
    )
    return ServiceBusMessageFields(
        message_id=message.message_id,
        body=message.body,
        delivery_count=message.delivery_count,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        lock_token=message.lock_token,
        enqueued_time_utc=message.enqueued_time,
        locked_until=locked,
        application_properties=dict(message.application_properties),
    )
