"""Drain a Service Bus queue: send N messages, let the host's listener run them, time it.

The entity is emulated in process (``broker``); the listener follows the extension's code
(``listener``); the handler and the worker processes are real. ``ServiceBusLab.drain()``
sends the messages before the window, then the measured window runs from the listener's
start to the last message done (completed, or dead-lettered).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ..app_loader import FunctionInfo
from ..invocation import InvocationRecord, clock
from ..messaging_lab import find_triggered
from ..metrics import EXPLAIN_BELOW, Summary, latency_percentiles
from ..queue.listener import mean_in_flight
from ..run import Measured, RunHandle, code_stamp
from ..trigger_lab import DrainStopped, ListenerTrigger, TriggerLab
from .broker import DEFAULT_MAX_DELIVERY_COUNT, ServiceBusQueue
from .listener import MessageRecord, ServiceBusListener, ServiceBusOptions, ServiceBusSettingError
from .message import ServiceBusBatchFields, ServiceBusMessageFields

TRIGGER_TYPE = "serviceBusTrigger"
BAD_MESSAGE = b"this is not JSON"  # the sample functions cannot parse it: they raise
ALONE_BODY = json.dumps({"n": -1}).encode()
DEFAULT_SESSIONS = 4


def session_of(index: int, messages: int, sessions: int, hot_share: float) -> str | None:
    """Message ``index``'s session: the first ``hot_share`` of them in session s0 (the hot
    one), the rest spread round-robin over all ``sessions``; None without sessions."""
    if sessions < 1:
        return None
    hot = round(messages * hot_share)
    if index < hot:
        return "s0"
    return f"s{(index - hot) % sessions}"


def check_messages(messages: int, bad_messages: int, hot_share: float) -> None:
    """A drain's counts: at least one message, no more bad ones than that, a share 0-1."""
    if messages < 1:
        raise ServiceBusSettingError(f"messages must be >= 1, got {messages}")
    if not 0 <= bad_messages <= messages:
        raise ServiceBusSettingError(f"bad messages must be 0-{messages}, got {bad_messages}")
    if not 0 <= hot_share <= 1:
        raise ServiceBusSettingError(f"the hot session's share must be 0-1, got {hot_share}")


def drain_sessions(info: FunctionInfo, sessions: int | None) -> int:
    """The sessions a drain's messages carry: 0 for a queue without sessions, else
    ``sessions`` (DEFAULT_SESSIONS if None). Sessions on a queue without them, or a batch
    function on a session-enabled queue (not modelled), are one line each."""
    function = info.name
    if not info.setting("isSessionsEnabled", False):
        if sessions is not None:
            raise ServiceBusSettingError(
                f"function {function!r} is not session-enabled (isSessionsEnabled): "
                "its messages carry no session"
            )
        return 0
    if str(info.setting("cardinality", "one")).lower() == "many":
        raise ServiceBusSettingError(
            f"function {function!r} takes batches of a session-enabled queue, which the "
            "lab does not model (the batch receive loop with sessions)"
        )
    k = DEFAULT_SESSIONS if sessions is None else sessions
    if k < 1:
        raise ServiceBusSettingError(f"sessions must be >= 1, got {sessions}")
    return k


@dataclass
class ServiceBusResult:
    summary: Summary
    messages: list[MessageRecord]
    in_flight_curve: list[tuple[float, int]]
    options: ServiceBusOptions
    sessions: int  # 0: not session-enabled
    many: bool  # a batch function (cardinality "many"): one invocation per batch
    dead_lettered: int
    retries: int
    left_in_queue: int
    in_dead_letter_queue: int
    errors: list[str] = field(default_factory=list)

    @property
    def mean_in_flight(self) -> float:
        return mean_in_flight(self.in_flight_curve)

    @property
    def max_in_flight(self) -> int:
        return self.options.max_in_flight(self.sessions > 0, self.many)

    @property
    def messages_per_s(self) -> float:
        """Messages done per second (for a batch function, not its invocations')."""
        s = self.summary
        return len(self.messages) / s.elapsed_s if s.elapsed_s > 0 else 0.0

    def order_per_session(self) -> dict[str, bool]:
        """Per session: did its messages start in sequence order (first tries)?"""
        by_session: dict[str, list[tuple[float, int]]] = {}
        for m in self.messages:
            if m.session_id is not None and m.invocations:
                by_session.setdefault(m.session_id, []).append(
                    (m.invocations[0].dispatched, m.sequence_number)
                )
        return {
            sid: [seq for _, seq in sorted(starts)] == sorted(seq for _, seq in starts)
            for sid, starts in by_session.items()
        }

    def as_dict(self) -> dict[str, Any]:
        latencies = [m.latency_ms for m in self.messages if m.done and not m.dead_lettered]
        return {
            **self.summary.as_dict(),
            "trigger": TRIGGER_TYPE,
            "broker": "emulated in process",
            "messages": len(self.messages),
            "dead_lettered": self.dead_lettered,
            "retries": self.retries,
            "left_in_queue": self.left_in_queue,
            "in_dead_letter_queue": self.in_dead_letter_queue,
            "max_concurrent_calls": self.options.calls,
            "max_concurrent_sessions": self.options.max_concurrent_sessions,
            "sessions": self.sessions,
            "cardinality": "many" if self.many else "one",
            "max_message_batch_size": self.options.max_message_batch_size,
            "messages_per_s": self.messages_per_s,
            "auto_complete_messages": self.options.auto_complete_messages,
            "max_in_flight": self.max_in_flight,
            "in_flight_peak": max((n for _, n in self.in_flight_curve), default=0),
            "in_flight_mean": self.mean_in_flight,
            "order_held_per_session": self.order_per_session(),
            "message_latency_ms": latency_percentiles(latencies),
            "errors_sample": self.errors[:3],
        }

    def line(self) -> str:
        s = self.summary
        if self.many:
            cap = f"one batch at a time, maxMessageBatchSize {self.options.max_message_batch_size}"
        elif self.sessions:
            cap = (
                f"{self.sessions} sessions, maxConcurrentSessions "
                f"{self.options.max_concurrent_sessions}, one message at a time each"
            )
        else:
            cap = f"maxConcurrentCalls {self.options.calls}"
        unit = "batches" if self.many else "messages"
        rate = f"{self.messages_per_s:.1f} messages/s in " if self.many else ""
        return (
            f"{s.function}: {rate}{s.rate_text(unit)} - {len(self.messages)} messages, "
            f"{self.dead_lettered} dead-lettered, {self.retries} retries; {cap} "
            f"({self.mean_in_flight:.1f} in progress on average), "
            f"{s.settings_text().rstrip(', ')}; broker emulated in process"
        )


@dataclass
class ServiceBusTrigger(ListenerTrigger["ServiceBusLab", str]):
    """Service Bus's part of a measured run: messages sent before the window, then the
    host's listener runs them; the window ends with the last message done."""

    options: ServiceBusOptions
    entity: ServiceBusQueue
    messages: int
    bad_messages: int
    sessions: int
    hot_share: float
    timeout_s: float
    listener: ServiceBusListener | None = None

    @property
    def concurrency(self) -> int:
        return self.messages

    @property
    def many(self) -> bool:
        return str(self.info.setting("cardinality", "one")).lower() == "many"

    @property
    def batch(self) -> int:
        """Messages per invocation: a batch function's are all there when the loop starts."""
        return min(self.options.max_message_batch_size, self.messages) if self.many else 1

    @property
    def queue_batch(self) -> float:
        """The listener's bound on invocations in progress. A batch function: one. With
        sessions, one at a time per session: the sessions held at once, and no more than
        the messages over the largest session's share (its messages run one after
        another)."""
        if self.many:
            return 1
        if not self.sessions:
            return self.options.calls
        held = min(self.sessions, self.options.max_concurrent_sessions)
        largest = max(self.session_sizes().values())
        return min(held, self.messages / largest)

    @property
    def bound_name(self) -> str:
        if self.many:
            return "one batch at a time"
        return "sessions, one message at a time each" if self.sessions else "maxConcurrentCalls"

    @property
    def alone_key(self) -> Hashable:
        return (
            self.function,
            self.batch,
            float(self.lab.upstream.delay_ms),
            code_stamp(self.lab.app),
        )

    def session_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for i in range(self.messages):
            sid = session_of(i, self.messages, self.sessions, self.hot_share) or ""
            sizes[sid] = sizes.get(sid, 0) + 1
        return sizes

    async def invoke(self, index: int) -> InvocationRecord:
        one = ServiceBusMessageFields(
            message_id=f"alone-{index}",
            body=ALONE_BODY,
            session_id="alone" if self.sessions else None,
        )
        return await self.send(ServiceBusBatchFields([one] * self.batch) if self.many else one)

    async def before_window(self) -> None:
        step = self.messages / self.bad_messages if self.bad_messages else 0
        bad = {round(i * step) for i in range(self.bad_messages)}
        for i in range(self.messages):
            session = session_of(i, self.messages, self.sessions, self.hot_share)
            message = self.entity.send(
                BAD_MESSAGE if i in bad else json.dumps({"n": i}).encode(),
                session_id=session,
                message_id=f"m{i}",
            )
            self.enqueued[message.message_id] = clock()

    async def drive(
        self, record: Callable[[InvocationRecord], None]
    ) -> tuple[list[InvocationRecord], float]:
        listener = ServiceBusListener(
            self.host,
            self.function,
            self.entity,
            self.options,
            enqueued=self.enqueued,
            on_done=self.on_done,
            on_invocation=record,
            many=self.many,
        )
        self.listener, self.began = listener, clock()
        try:
            await asyncio.wait_for(listener.run(self.messages, self.cancelled), self.timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            raise TimeoutError(
                f"{listener.done_count()} of {self.messages} messages done after "
                f"{self.timeout_s:g} s"
            ) from None
        if self.cancelled():
            raise DrainStopped("the drain was stopped")
        last = max((m.done for m in listener.messages.values()), default=self.began)
        seen: dict[int, InvocationRecord] = {}  # a batch's invocation is every message's
        for m in listener.messages.values():
            seen.update({id(i): i for i in m.invocations})
        return list(seen.values()), self.window_s(last)

    def other_cpu_s(self) -> float:
        return 0.0  # the broker runs in the lab's own process, already metered

    def explain(self, summary: Summary) -> str:
        """Sessions beyond maxConcurrentSessions, when they held the run back: a session whose
        messages are done is held sessionIdleTimeout longer before the next is accepted.
        (A hot session's share is in the ideal already.)"""
        held = self.options.max_concurrent_sessions
        if summary.efficiency >= EXPLAIN_BELOW or summary.errors or self.sessions <= held:
            return ""
        return (
            f"sessionIdleTimeout: {self.sessions} sessions for {held} at once "
            "(maxConcurrentSessions), and a session whose messages are done is held "
            f"{self.options.session_idle_timeout_s:g} s longer, waiting for another, before "
            "the next session is accepted (host.json extensions.serviceBus.sessionIdleTimeout)"
        )

    def result(self, measured: Measured) -> ServiceBusResult:
        assert self.listener is not None
        records = sorted(self.listener.messages.values(), key=lambda m: m.sequence_number)
        return ServiceBusResult(
            summary=measured.summary,
            messages=records,
            in_flight_curve=self.since_began(self.listener.in_flight_curve),
            options=self.options,
            sessions=self.sessions,
            many=self.many,
            dead_lettered=sum(1 for m in records if m.dead_lettered),
            retries=sum(max(0, m.tries - 1) for m in records),
            left_in_queue=self.entity.active_count,
            in_dead_letter_queue=len(self.entity.dead_letters),
            errors=self.listener.errors,
        )


class ServiceBusLab(TriggerLab):
    """Service Bus-triggered functions on an in-process queue entity, run by real workers."""

    def drain(
        self,
        function: str,
        messages: int = 400,
        *,
        processes: int = 1,
        threads: int | None = None,
        max_concurrent_calls: int | None = None,
        max_concurrent_sessions: int | None = None,
        max_message_batch_size: int | None = None,
        session_idle_timeout_s: float | None = None,
        sessions: int | None = None,
        hot_share: float = 0.0,
        bad_messages: int = 0,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        auto_complete_messages: bool | None = None,
        lock_duration_s: float | None = None,
        upstream_delay_ms: float | None = None,
        timeout_s: float = 300.0,
        on_done: Callable[[MessageRecord], None] | None = None,
    ) -> ServiceBusResult:
        """Send ``messages`` (``bad_messages`` of them unparseable) and drain them."""
        check_messages(messages, bad_messages, hot_share)
        options = ServiceBusOptions.from_host_json(
            self.app,
            max_concurrent_calls=max_concurrent_calls,
            max_concurrent_sessions=max_concurrent_sessions,
            max_message_batch_size=max_message_batch_size,
            session_idle_timeout_s=session_idle_timeout_s,
            auto_complete_messages=auto_complete_messages,
        )
        self.prepare(upstream_delay_ms)
        host = self.host(processes, threads)
        info = find_triggered(host.functions, function, TRIGGER_TYPE, "Service Bus")
        k = drain_sessions(info, sessions)
        entity = ServiceBusQueue(
            str(info.setting("queueName") or info.setting("topicName") or function),
            requires_session=bool(info.setting("isSessionsEnabled", False)),
            max_delivery_count=max_delivery_count,
            **({"lock_duration_s": lock_duration_s} if lock_duration_s else {}),
        )
        handle = RunHandle(messages)
        trigger = ServiceBusTrigger(
            self, host, info, options, entity, messages, bad_messages, k, hot_share, timeout_s,
            handle=handle, on_done=on_done,
        )  # fmt: skip
        return self.measure(host, trigger, handle, trigger.result)
