"""Drain a queue: put N messages on it, let the host's listener run them, time it.

``QueueLab`` owns what a queue-triggered app needs locally: Azurite (the queue service),
the slow upstream the handlers call, and the worker processes (a ``Host`` per setting).
``drain()`` enqueues the messages first, then starts the listener; the measured window
runs from the listener's start to the last message done (deleted after success, or moved
to the poison queue). Worker start-up and a few invocations timed alone, for the ideal,
come before it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError

from ..app_loader import AppLoadError, FunctionInfo
from ..app_settings import UPSTREAM_URL_SETTING, check_processes, check_threads_flag
from ..azurite import Azurite
from ..cpu_share import CpuMeter, own_cpu_s
from ..host import Host
from ..invocation import InvocationRecord, clock
from ..lab import ALONE_MIN, DEFAULT_TIMEOUT_S, _lab_cpu_s, find_app, function_timeout_s
from ..metrics import EXPLAIN_BELOW, Demand, Ideal, Summary, percentile, summarize
from ..upstream import Upstream
from .listener import (
    MessageRecord,
    QueueListener,
    QueuesOptions,
    mean_in_flight,
    queue_clients,
    wait_drained,
)
from .message import QueueMessageFields


class DrainStopped(RuntimeError):
    """The drain was stopped before its messages were done (the panel's Stop)."""


# A body the sample queue functions cannot parse: their invocation raises.
BAD_MESSAGE = b"this is not JSON"


def find_queue_function(functions: dict[str, dict[str, Any]], name: str) -> FunctionInfo:
    """The queue-triggered function called ``name``, or an error that lists them."""
    infos = {n: FunctionInfo.from_description(f) for n, f in functions.items()}
    queued = {n: i for n, i in infos.items() if i.queue}
    if name not in queued:
        known = ", ".join(sorted(queued)) or "none"
        what = "is not queue-triggered" if name in infos else "is unknown"
        raise AppLoadError(f"function {name!r} {what}; this app's queue functions: {known}")
    return queued[name]


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
            "message_latency_ms": {
                q: percentile(latencies, n)
                for q, n in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
            },
            "queue_errors": self.queue_errors[:3],
        }

    def line(self) -> str:
        """The run's line (as for HTTP, per message), then the queue's own figures."""
        s = self.summary
        held = f"; held back by {s.limited_by}" if s.limited_by else ""
        return (
            f"{s.function}: {s.throughput_rps:.1f} ± {s.throughput_error_rps:.1f} messages/s "
            f"(ideal {s.ideal_rps:.1f} ± {s.ideal_error_rps:.1f}, {s.efficiency_text()}; "
            f"limit: {s.bottleneck}{held}) - {len(self.messages)} messages, {self.poison} "
            f"poison, {self.retries} retries; batchSize {self.options.batch_size}, "
            f"newBatchThreshold {self.options.threshold} (at most "
            f"{self.options.max_in_flight} at once, {self.mean_in_flight:.1f} on average), "
            f"{s.settings_text().rstrip(', ')}"
        )

    @property
    def mean_in_flight(self) -> float:
        return mean_in_flight(self.in_flight_curve)


class QueueLab:
    """Azurite, the upstream and worker processes for queue-triggered functions."""

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        upstream_delay_ms: float = 100.0,
        timeout_s: float | None = None,
    ) -> None:
        self.app = Path(app) if app is not None else find_app()
        if not self.app.is_dir():
            raise AppLoadError(f"function app folder not found: {app}")
        self.timeout_s = timeout_s or function_timeout_s(self.app) or DEFAULT_TIMEOUT_S
        self.azurite = Azurite()
        self.upstream = Upstream(upstream_delay_ms)
        self._host: Host | None = None
        self._host_key: tuple[int, int | None] | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._closed = False
        self._alone: dict[tuple[str, int, float], list[InvocationRecord]] = {}

    def __enter__(self) -> QueueLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> QueueLab:
        try:
            self.azurite.start()
            self.upstream.start()
            self._warm_up()
        except BaseException:
            self.close()
            raise
        return self

    def _warm_up(self, messages: int = 64) -> None:
        """Send, receive and delete a few messages: Node compiles Azurite's code paths on
        first use, which would otherwise slow the first drain alone."""
        queue, _ = queue_clients(self.azurite.connection_string, "warm-up", QueuesOptions())
        queue.create_queue()
        _enqueue(queue, messages, 0)
        for _ in range(messages // 32):
            for message in next(queue.receive_messages(messages_per_page=32).by_page()):
                queue.delete_message(message.id, message.pop_receipt)
        queue.delete_queue()

    def close(self) -> None:
        """Stop the workers, Azurite and the upstream. Safe to call twice."""
        self._closed = True
        self._cancel.set()
        with self._lock:
            if self._host is not None:
                self._host.close()
                self._host = None
        self.azurite.close()
        self.upstream.stop()

    def cancel(self) -> None:
        """Stop a drain in progress (e.g. the panel's Stop button)."""
        self._cancel.set()

    def host(self, processes: int, threads: int | None) -> Host:
        """Worker processes for these settings; kept until the settings change."""
        key = (check_processes(processes), check_threads_flag(threads))
        with self._lock:
            if self._host is not None and (self._host_key != key or self._host.closed):
                self._host.close()
                self._host = None
            if self._host is None:
                settings = {
                    UPSTREAM_URL_SETTING: self.upstream.url,
                    "AzureWebJobsStorage": self.azurite.connection_string,
                }
                self._host = Host(
                    self.app,
                    processes=processes,
                    threads=threads,
                    timeout_s=self.timeout_s,
                    app_settings=settings,
                ).start()
                self._host_key = key
            return self._host

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
        self._cancel.clear()
        if upstream_delay_ms is not None:
            self.upstream.delay_ms = upstream_delay_ms
        host = self.host(processes, threads)
        info = find_queue_function(host.functions, function)
        assert info.queue is not None
        queue, poison = queue_clients(self.azurite.connection_string, info.queue, options)
        for client in (queue, poison):  # an empty queue for every drain
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            client.clear_messages()

        # Timed alone once per worker processes and upstream delay: a drain needs no new
        # warm-up while they stay the same.
        alone_key = (function, id(host), float(self.upstream.delay_ms))
        demand_alone = self._alone.get(alone_key)
        if demand_alone is None:
            demand_alone = self._alone[alone_key] = self._time_alone(host, function, processes)
        enqueued = _enqueue(queue, messages, bad_messages)
        meter = CpuMeter()
        before = host.stats()
        self.upstream.reset_stats()
        # Azurite's CPU is the lab's too (in Azure the queue service runs elsewhere).
        meter.start(_lab_cpu_s(before) + self.azurite.cpu_s())
        own_before = own_cpu_s()
        listener = QueueListener(
            host, function, queue, poison, options, enqueued=enqueued, on_done=on_done
        )
        began = clock()
        listener.start()
        try:
            drained = wait_drained(listener, messages, timeout_s, self._cancel.is_set)
        finally:
            listener.stop(timeout_s=2.0)
        last = max((m.done for m in listener.messages.values()), default=began)
        elapsed = max(last - began, 1e-9)
        after = host.stats()
        cpu = meter.stop(_lab_cpu_s(after) + self.azurite.cpu_s())
        if self._cancel.is_set() and not self._closed:
            raise DrainStopped("the drain was stopped")
        if not drained:
            done = sum(1 for m in listener.messages.values() if m.done)
            raise TimeoutError(f"{done} of {messages} messages done after {timeout_s:g} s")

        invocations = [i for m in listener.messages.values() for i in m.invocations]
        demand = Demand.measure(demand_alone, invocations)
        pool_threads = None if info.is_async else host.threads
        ideal = (
            demand.ideal(
                concurrency=messages,
                processes=processes,
                pool_threads=pool_threads,
                cores=cpu.free,
                queue_batch=options.max_in_flight,
            )
            if demand.samples
            else Ideal(0.0, "unknown: the function failed when run alone")
        )
        summary = summarize(
            invocations,
            function=function,
            processes=processes,
            threads=host.threads,
            concurrency=options.max_in_flight,
            elapsed_s=elapsed,
            startup_s=host.startup_s,
            ideal=ideal,
            service_s=demand.service_s,
            worker_stats=after,
            upstream_peak=self.upstream.stats.peak_in_flight,
            is_async=info.is_async,
            cpu=cpu,
            lab_process_busy=(own_cpu_s() - own_before) / elapsed,
        )
        busy = mean_in_flight(listener.in_flight_curve)
        # The CPU (the lab's, Azurite's) when it was busy, else the listener's waves.
        cpu_busy = summary.free_cores > 0 and summary.lab_cores / summary.free_cores >= 0.6
        if (
            summary.efficiency < EXPLAIN_BELOW
            and not summary.errors
            and not cpu_busy
            and busy < 0.8 * options.max_in_flight
        ):
            held_ms = busy / summary.throughput_rps * 1e3 if summary.throughput_rps else 0.0
            summary.limited_by = (
                f"the listener's batches: {busy:.1f} messages in progress on average of the "
                f"{options.max_in_flight} allowed, each held {held_ms:.0f} ms against "
                f"{summary.service_ms:.0f} ms alone (a batch of {options.batch_size} arrives at "
                "once and waits its turn for the worker and the queue service; the next comes "
                f"only when those in progress fall to {options.threshold})"
            )
        records = sorted(listener.messages.values(), key=lambda m: m.enqueued)
        props = queue.get_queue_properties()
        poison_props = poison.get_queue_properties()
        return DrainResult(
            summary=summary,
            messages=records,
            in_flight_curve=[(t - began, n) for t, n in listener.in_flight_curve],
            options=options,
            poison=sum(1 for m in records if m.poisoned),
            retries=sum(max(0, m.tries - 1) for m in records),
            left_in_queue=props.approximate_message_count or 0,
            in_poison_queue=poison_props.approximate_message_count or 0,
            queue_errors=listener.errors,
        )

    def _time_alone(self, host: Host, function: str, processes: int) -> list[InvocationRecord]:
        """One warm-up per worker, then a few invocations alone: what one message needs."""
        body = json.dumps({"n": -1}).encode()

        def once(i: int) -> InvocationRecord:
            fields = QueueMessageFields(id=f"alone-{i}", body=body, dequeue_count=1)
            record, _ = host.invoke(function, fields).result(self.timeout_s + 5)
            return record

        for i in range(processes):
            once(-1 - i)
        return [once(i) for i in range(max(processes, ALONE_MIN))]


def _enqueue(queue: Any, messages: int, bad_messages: int) -> dict[str, float]:
    """Send the messages (the bad ones spread evenly); message id -> clock() when sent."""
    step = messages / bad_messages if bad_messages else 0
    bad = {round(i * step) for i in range(bad_messages)}

    def send(i: int) -> tuple[str, float]:
        body = BAD_MESSAGE if i in bad else json.dumps({"n": i}).encode()
        sent = queue.send_message(body)
        return sent.id, clock()

    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="enqueue")
    try:
        return dict(pool.map(send, range(messages)))
    finally:  # on Ctrl-C, send no more
        pool.shutdown(wait=True, cancel_futures=True)
