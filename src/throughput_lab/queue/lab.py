"""Drain a queue: put N messages on it, let the host's listener run them, time it.

``QueueLab`` owns what a queue-triggered app needs locally: Azurite (the queue service),
the slow upstream the handlers call, and the worker processes (a ``Host`` per setting).
``drain()`` enqueues the messages first, then starts the listener; the measured window
runs from the listener's start to the last message done (deleted after success, or moved
to the poison queue). Worker start-up and a few invocations timed alone, for the ideal,
come before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError

from ..app_loader import AppLoadError, FunctionInfo
from ..azurite import Azurite
from ..invocation import InvocationRecord, clock
from ..metrics import EXPLAIN_BELOW, SATURATED, Summary, latency_percentiles
from ..run import (
    Measured,
    RunHandle,
    code_stamp,
)
from ..trigger_lab import DrainStopped, ListenerTrigger, TriggerLab
from .listener import (
    MessageRecord,
    QueueListener,
    QueuesOptions,
    mean_in_flight,
    queue_clients,
    wait_drained,
)
from .message import QueueMessageFields

# A body the sample queue functions cannot parse: their invocation raises.
BAD_MESSAGE = b"this is not JSON"
# What a message timed alone carries (the sample functions read "n").
ALONE_BODY = json.dumps({"n": -1}).encode()


def find_queue_function(functions: dict[str, dict[str, Any]], name: str) -> FunctionInfo:
    """The queue-triggered function called ``name``, or an error that lists them."""
    infos = {n: FunctionInfo.from_description(f) for n, f in functions.items()}
    queued = {n: i for n, i in infos.items() if i.queue}
    if name not in queued:
        known = ", ".join(sorted(queued)) or "none"
        what = "is not queue-triggered" if name in infos else "is unknown"
        raise AppLoadError(f"function {name!r} {what}; this app's queue functions: {known}")
    info = queued[name]
    if info.error or info.load_error:  # e.g. a %QUEUE_NAME% with no app setting
        raise AppLoadError(info.error or info.load_error or "")
    return info


@dataclass
class DrainResult:
    summary: Summary
    messages: list[MessageRecord]
    in_flight_curve: list[tuple[float, int]]  # (seconds since the window began, in progress)
    options: QueuesOptions
    poison: int  # messages moved to <queue>-poison
    retries: int  # tries after a message's first
    left_in_queue: int  # counted in the queue service after the run
    in_poison_queue: int  # counted in the poison queue after the run
    queue_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The bench JSON: the HTTP keys where they apply, and the queue's own."""
        latencies = [m.latency_ms for m in self.messages if m.done and not m.poisoned]
        return {
            **self.summary.as_dict(),
            "messages": len(self.messages),
            "poison": self.poison,
            "retries": self.retries,
            "left_in_queue": self.left_in_queue,
            "in_poison_queue": self.in_poison_queue,
            "batch_size": self.options.batch_size,
            "new_batch_threshold": self.options.threshold,
            "max_in_flight": self.options.max_in_flight,
            "in_flight_peak": max((n for _, n in self.in_flight_curve), default=0),
            "in_flight_mean": self.mean_in_flight,
            "message_latency_ms": latency_percentiles(latencies),
            "queue_errors": self.queue_errors[:3],
        }

    def line(self) -> str:
        """The run's line (as for HTTP, per message), then the queue's own figures."""
        s = self.summary
        return (
            f"{s.function}: {s.rate_text('messages')} - {len(self.messages)} messages, "
            f"{self.poison} poison, {self.retries} retries; batchSize {self.options.batch_size}, "
            f"newBatchThreshold {self.options.threshold} (at most "
            f"{self.options.max_in_flight} at once, {self.mean_in_flight:.1f} on average), "
            f"{s.settings_text().rstrip(', ')}"
        )

    @property
    def mean_in_flight(self) -> float:
        return mean_in_flight(self.in_flight_curve)


@dataclass
class QueueTrigger(ListenerTrigger["QueueLab", str]):
    """A queue's part of a measured run: the messages are enqueued before the window, then
    the host's listener drains them; the window ends with the last message done."""

    options: QueuesOptions
    clients: tuple[Any, Any]  # the queue and its poison queue
    messages: int
    bad_messages: int
    timeout_s: float
    listener: QueueListener | None = None

    @property
    def concurrency(self) -> int:
        return self.messages

    @property
    def queue_batch(self) -> int:
        return self.options.max_in_flight

    @property
    def bound_name(self) -> str:
        return "queue batch"

    @property
    def alone_key(self) -> Hashable:
        # What decides the time alone, as for HTTP: the handler, the upstream's delay, and
        # the app's code (an edited app is timed anew). Not the host: its settings do not.
        return (self.function, float(self.lab.upstream.delay_ms), code_stamp(self.lab.app))

    async def invoke(self, index: int) -> InvocationRecord:
        fields = QueueMessageFields(id=f"alone-{index}", body=ALONE_BODY, dequeue_count=1)
        return await self.send(fields)

    async def before_window(self) -> None:
        queue = self.clients[0]
        self.enqueued = await asyncio.to_thread(
            _enqueue, queue, self.messages, self.bad_messages, self.cancelled
        )

    async def drive(
        self, record: Callable[[InvocationRecord], None]
    ) -> tuple[list[InvocationRecord], float]:
        listener = QueueListener(
            self.host,
            self.function,
            *self.clients,
            self.options,
            enqueued=self.enqueued,
            on_done=self.on_done,
        )
        self.listener, self.began = listener, clock()
        listener.start()

        try:
            drained = await asyncio.to_thread(
                wait_drained, listener, self.messages, self.timeout_s, self.cancelled
            )
        finally:
            listener.stop(timeout_s=2.0)
        if self.cancelled():
            raise DrainStopped("the drain was stopped")
        if not drained:
            done = sum(1 for m in listener.messages.values() if m.done)
            raise TimeoutError(
                f"{done} of {self.messages} messages done after {self.timeout_s:g} s"
            )
        last = max((m.done for m in listener.messages.values()), default=self.began)
        invocations = [i for m in listener.messages.values() for i in m.invocations]
        return invocations, self.window_s(last)

    def other_cpu_s(self) -> float:
        # Azurite's CPU is the lab's too (in Azure the queue service runs elsewhere).
        return self.lab.storage.cpu_s()

    def explain(self, summary: Summary) -> str:
        """The listener's waves, when they (and not the CPU) kept messages from the worker."""
        assert self.listener is not None
        busy = mean_in_flight(self.listener.in_flight_curve)
        return listener_shortfall(summary, self.options, busy)

    def result(self, measured: Measured) -> DrainResult:
        assert self.listener is not None
        queue, poison = self.clients
        records = sorted(self.listener.messages.values(), key=lambda m: m.enqueued)
        return DrainResult(
            summary=measured.summary,
            messages=records,
            in_flight_curve=self.since_began(self.listener.in_flight_curve),
            options=self.options,
            poison=sum(1 for m in records if m.poisoned),
            retries=sum(max(0, m.tries - 1) for m in records),
            left_in_queue=queue.get_queue_properties().approximate_message_count or 0,
            in_poison_queue=poison.get_queue_properties().approximate_message_count or 0,
            queue_errors=self.listener.errors,
        )


def listener_shortfall(summary: Summary, options: QueuesOptions, busy: float) -> str:
    """Name the listener's batches when they, not the CPU, held a run under its ideal.

    They do it two ways: fewer messages in progress than they allow (a batch arrives at
    once, runs, and the next waits for newBatchThreshold), or, with the listener full and
    its cap the bound, each message held longer than alone (the receive and delete round
    trips to the queue service count as in progress). A run whose messages merely wait
    for a busy CPU, the lab's or other programs', is the CPU's.
    """
    if summary.efficiency >= EXPLAIN_BELOW or summary.errors or summary.throughput_rps <= 0:
        return ""
    cpu_busy = summary.free_cores > 0 and summary.lab_cores / summary.free_cores >= SATURATED
    others_busy = summary.cores - summary.free_cores >= 0.5
    held_ms = busy / summary.throughput_rps * 1e3
    waves = busy < 0.8 * options.max_in_flight
    round_trips = (
        summary.bottleneck == "queue batch"
        and held_ms > summary.service_ms / 0.8
        and not others_busy
    )
    if cpu_busy or not (waves or round_trips):
        return ""
    return (
        f"the listener's batches: {busy:.1f} messages in progress on average of the "
        f"{options.max_in_flight} allowed, each held {held_ms:.0f} ms against "
        f"{summary.service_ms:.0f} ms alone (a batch of {options.batch_size} arrives at "
        "once and waits its turn for the worker and the queue service; the next comes "
        f"only when those in progress fall to {options.threshold})"
    )


class QueueLab(TriggerLab):
    """Azurite, the upstream and worker processes for queue-triggered functions."""

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        upstream_delay_ms: float = 100.0,
        timeout_s: float | None = None,
    ) -> None:
        super().__init__(
            app, upstream_delay_ms=upstream_delay_ms, timeout_s=timeout_s, azurite=Azurite()
        )

    @property
    def storage(self) -> Azurite:
        assert self.azurite is not None
        return self.azurite

    def start(self) -> QueueLab:
        super().start()
        try:
            self._warm_up()
        except BaseException:
            self.close()
            raise
        return self

    def _warm_up(self, messages: int = 64) -> None:
        """Send, receive and delete a few messages: Node compiles Azurite's code paths on
        first use, which would otherwise slow the first drain alone."""
        queue, _ = queue_clients(self.storage.connection_string, "warm-up", QueuesOptions())
        queue.create_queue()
        _enqueue(queue, messages, 0)
        for _ in range(messages // 32):
            for message in next(queue.receive_messages(messages_per_page=32).by_page()):
                queue.delete_message(message.id, message.pop_receipt)
        queue.delete_queue()

    def drain(
        self,
        function: str,
        messages: int = 400,
        *,
        processes: int = 1,
        threads: int | None = None,
        batch_size: int | None = None,
        new_batch_threshold: int | None = None,
        max_dequeue_count: int | None = None,
        bad_messages: int = 0,
        upstream_delay_ms: float | None = None,
        timeout_s: float = 300.0,
        on_done: Callable[[MessageRecord], None] | None = None,
    ) -> DrainResult:
        """Enqueue ``messages`` (``bad_messages`` of them unparseable) and drain them."""
        if messages < 1:
            raise ValueError(f"messages must be >= 1, got {messages}")
        if not 0 <= bad_messages <= messages:
            raise ValueError(f"bad messages must be 0-{messages}, got {bad_messages}")
        options = QueuesOptions.from_host_json(
            self.app,
            batch_size=batch_size,
            new_batch_threshold=new_batch_threshold,
            max_dequeue_count=max_dequeue_count,
        )
        self.prepare(upstream_delay_ms)
        host = self.host(processes, threads)
        info = find_queue_function(host.functions, function)
        handle = RunHandle(messages)
        queues = self._empty_queues(info, options)
        trigger = QueueTrigger(
            self, host, info, options, queues, messages, bad_messages, timeout_s,
            handle=handle, on_done=on_done,
        )  # fmt: skip
        return self.measure(host, trigger, handle, trigger.result)

    def _empty_queues(self, info: FunctionInfo, options: QueuesOptions) -> tuple[Any, Any]:
        """The function's queue and its poison queue, created if need be, emptied."""
        assert info.queue is not None
        queue, poison = queue_clients(self.storage.connection_string, info.queue, options)
        for client in (queue, poison):  # an empty queue for every drain
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            client.clear_messages()
        return queue, poison


def _enqueue(
    queue: Any, messages: int, bad_messages: int, stopped: Callable[[], bool] = lambda: False
) -> dict[str, float]:
    """Send the messages (the bad ones spread evenly); message id -> clock() when sent.
    Once ``stopped()`` says so, the rest are not sent."""
    step = messages / bad_messages if bad_messages else 0
    bad = {round(i * step) for i in range(bad_messages)}

    def send(i: int) -> tuple[str, float] | None:
        if stopped():
            return None
        body = BAD_MESSAGE if i in bad else json.dumps({"n": i}).encode()
        sent = queue.send_message(body)
        return sent.id, clock()

    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="enqueue")
    try:
        return dict(sent for sent in pool.map(send, range(messages)) if sent is not None)
    finally:  # on Ctrl-C, send no more
        pool.shutdown(wait=True, cancel_futures=True)
