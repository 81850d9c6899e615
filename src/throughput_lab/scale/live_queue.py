"""A Storage queue's part of the live scale-out: every instance its own listener on one queue.

The lab sends the traffic's messages to a queue on Azurite, each at its arrival time. Each
instance is ``queue_instance``: a host, its worker processes and its own queue listener
(``queue.listener``, after the Storage Queues extension) polling that queue, as every
instance of a queue-triggered app does in Azure. Instances report each message they begin
and finish on stdout; the lab times a message from its send to its end.

The controller reads the queue as target-based scaling does (the extension's
``QueueMetricsProvider``): the approximate message count, which counts invisible messages
(in progress) too, and 0 when a peek finds no visible message ("ApproximateMessageCount
often returns a stale value"); desired instances are that / (batchSize +
newBatchThreshold) (``controller.queue_desired``). Scaling in stops an instance with
Ctrl-C: its listener fetches no more and finishes what it holds.

An instance killed outright (SIGKILL) leaves the messages it held invisible until their
visibility ends (the listener's 10 minutes; a lab may shorten it and says so); then
another instance's listener takes them again: at-least-once delivery. They are counted
as redelivered, and a message whose first try had finished but was not yet deleted runs
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from ..app_loader import load_app
from ..azurite import Azurite
from ..queue.lab import find_queue_function
from ..queue.listener import LISTENER_VISIBILITY_S, POISON_SUFFIX, QueuesOptions
from ..supervisor import StopStep, SupervisedProcess
from ..worker_start import worker_environment
from .controller import ScaleRules, queue_desired
from .live import LiveInstance, Tally, start_instance
from .queue_instance import CONNECTION_SETTING, REPORT, STOP_S
from .traffic import Traffic

# The instance with the workers' watch on stdin first, as ``served`` runs serve.
_INSTANCE = (
    "import sys; from throughput_lab.worker_process import watch_host;"
    " watch_host(open(0, 'rb', buffering=0, closefd=False));"
    " from throughput_lab.scale.queue_instance import main; sys.exit(main(sys.argv[1:]))"
)
STOP_STEPS: tuple[StopStep, ...] = ((signal.SIGINT, STOP_S + 5.0),)
DRAIN_S = 60.0  # after the last send, how long the run waits for the messages to be done


def queue_of(app: Path, function: str) -> str:
    """The queue ``function`` is triggered by, or one line why it has none."""
    functions = load_app(app)
    info = find_queue_function({n: i.describe() for n, i in functions.items()}, function)
    assert info.queue is not None
    return info.queue


class LiveQueue:
    """Messages on ``function``'s queue, run by the instances' own listeners."""

    wait_idle_to_retire = False  # Ctrl-C: the instance finishes what it holds, then stops

    def __init__(
        self,
        app: Path,
        function: str,
        queue: str,
        options: QueuesOptions,
        *,
        processes: int = 1,
        threads: int | None = None,
        upstream_delay_ms: float = 100.0,
        visibility_s: int = LISTENER_VISIBILITY_S,
        drain_s: float = DRAIN_S,
    ) -> None:
        self.app, self.function, self.queue_name = app, function, queue
        self.options = options
        self.processes, self.threads = processes, threads
        self.upstream_delay_ms = upstream_delay_ms
        self.visibility_s, self.drain_s = visibility_s, drain_s
        self.azurite = Azurite()
        self.tally = Tally()
        self.busy_peak = 0
        self.enqueued: dict[str, float] = {}  # message id -> wall clock when it was sent
        self.done: set[str] = set()
        self.holder: dict[str, LiveInstance] = {}  # message id -> the instance running it
        self.redelivered: set[str] = set()  # begun again: a failed try, a killed holder
        self.twice = 0  # finished a second time (at-least-once)
        self._ready: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- instances ---------------------------------------------------------------------

    def start(self, inst: LiveInstance, on_exit: Callable[[SupervisedProcess], None]) -> bool:
        args = ["--app", str(self.app), "--function", self.function]
        args += ["--processes", str(self.processes)]
        args += ["--upstream-delay-ms", str(self.upstream_delay_ms)]
        args += ["--batch-size", str(self.options.batch_size)]
        args += ["--new-batch-threshold", str(self.options.threshold)]
        args += ["--max-polling-interval-s", str(self.options.max_polling_interval_s)]
        args += ["--visibility-s", str(self.visibility_s)]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        env = worker_environment({**os.environ, CONNECTION_SETTING: self._connection})

        def launch() -> SupervisedProcess:
            return SupervisedProcess(
                [sys.executable, "-c", _INSTANCE, *args],
                env,
                f"instance-{inst.index}",
                on_exit=on_exit,
                echo=False,  # the workers' lines: shown only if it stops before it is ready
                tail_lines=20,
                stop_steps=STOP_STEPS,
                on_line=lambda line: self._line(inst, line),
            )

        return start_instance(inst, launch, lambda: inst.index in self._ready)

    def admit(self, inst: LiveInstance) -> None:
        """Nothing to do: a ready instance's listener is already polling."""

    def drop(self, inst: LiveInstance) -> None:
        """Died: what it held is invisible until its visibility ends, then comes back.
        Retiring: it finishes what it holds (its reports still arrive)."""
        if inst.process is not None and inst.process.has_exited():
            for message_id in [m for m, i in self.holder.items() if i is inst]:
                del self.holder[message_id]
            inst.busy = 0

    def _line(self, inst: LiveInstance, line: str) -> None:
        """An instance's output line, on its reading thread: its reports go to the loop.

        A report is written whole (one write, shorter than a pipe's atomic size), but a
        worker's output on the same pipe may precede it on a line without its end."""
        at = line.find(REPORT)
        if at < 0 or self._loop is None:
            return
        try:
            report = json.loads(line[at + len(REPORT) :])
        except ValueError:  # not a report after all: never stop reading over it
            return
        if report["event"] == "ready":
            self._ready.add(inst.index)
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            self._loop.call_soon_threadsafe(self._report, inst, report)

    def _report(self, inst: LiveInstance, report: dict[str, Any]) -> None:
        message_id, event = report["id"], report["event"]
        if event == "began":
            if report["dequeue_count"] > 1:
                self.redelivered.add(message_id)
            self.holder[message_id] = inst
            inst.busy += 1
            self.busy_peak = max(self.busy_peak, len(self.holder))
            return
        if event == "poisoned":
            self.tally.fail(f"message {message_id}: moved to the poison queue")
            self.done.add(message_id)
            return
        holder = self.holder.pop(message_id, None)  # "ran": this try ended
        if holder is not None:
            holder.busy -= 1
        if not report["ok"]:  # it comes back for another try, or goes to the poison queue
            return
        if message_id in self.done:
            self.twice += 1
            return
        self.done.add(message_id)
        sent = self.enqueued.get(message_id)
        if sent is not None:
            self.tally.completed(max(0.0, report["t"] - sent))

    # -- what the controller and the samples read ----------------------------------------

    async def desired(self, rules: ScaleRules) -> int:
        """QueueMetricsProvider's length (0 when nothing is visible), then QueueTargetScaler."""
        try:
            length = (await self._queue.get_queue_properties()).approximate_message_count or 0
            if length > 0:
                visible = await self._queue.peek_messages(max_messages=1)
                length = length if visible else 0
        except Exception:  # as the extension: a failed read counts as an empty queue
            length = 0
        return queue_desired(length, self.options.batch_size, self.options.threshold)

    def demand(self) -> tuple[int, int, float]:
        """Messages sent and not yet done, those of them no instance runs now, and the age
        of the oldest of those."""
        in_flight = len(self.enqueued) - len(self.done & self.enqueued.keys())
        now = time.time()
        oldest = next(
            (
                now - sent
                for message_id, sent in self.enqueued.items()
                if message_id not in self.done and message_id not in self.holder
            ),
            0.0,
        )
        return in_flight, max(0, in_flight - len(self.holder)), oldest

    # -- the queue and the load ----------------------------------------------------------

    async def open(self) -> str:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.azurite.start)
        self._connection = self.azurite.connection_string
        policies: dict[str, Any] = {}
        if self.options.message_encoding == "base64":
            policies = {
                "message_encode_policy": BinaryBase64EncodePolicy(),
                "message_decode_policy": BinaryBase64DecodePolicy(),
            }
        self._queue = QueueClient.from_connection_string(
            self._connection, self.queue_name, **policies
        )
        for name in (self.queue_name, self.queue_name + POISON_SUFFIX):
            async with QueueClient.from_connection_string(self._connection, name) as client:
                with contextlib.suppress(ResourceExistsError):
                    await client.create_queue()
                await client.clear_messages()
        return self.queue_name

    def closing(self) -> None:
        """Nothing waits at a front end: the messages stay in the queue."""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._queue.close()
        await asyncio.to_thread(self.azurite.close)

    async def _send(self, n: int) -> None:
        sent = time.time()
        with contextlib.suppress(Exception):  # a failed send is a message never sent
            message = await self._queue.send_message(json.dumps({"n": n}).encode())
            self.enqueued[message.id] = sent

    async def load(self, traffic: Traffic, where: str, seed: int) -> None:
        """Each message sent at its arrival time; then wait (at most ``drain_s``) until
        every one is done."""
        began, sends = time.monotonic(), []
        for n, t in enumerate(traffic.arrivals(random.Random(seed))):
            await asyncio.sleep(max(0.0, began + t - time.monotonic()))
            sends.append(asyncio.create_task(self._send(n)))
        await asyncio.gather(*sends)
        deadline = time.monotonic() + self.drain_s
        while time.monotonic() < deadline and not self.enqueued.keys() <= self.done:
            await asyncio.sleep(0.1)

    def result_fields(self) -> dict[str, Any]:
        return {
            "redelivered": len(self.redelivered),
            "twice": self.twice,
            "unfinished": len(self.enqueued.keys() - self.done),
        }
