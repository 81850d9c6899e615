"""One instance of a queue-triggered app, as the platform runs one: a host with its own
worker processes and its own queue listener, polling the queue every instance shares.

The live scale-out (``live_queue``) starts one such process per instance::

    python -m throughput_lab.scale.queue_instance --app DIR --function NAME ...

with the queue service's connection string in ``AzureWebJobsStorage``. It reports on
stdout, one line each, prefixed with ``REPORT``: that it is ready, each message it begins,
each try's end before the message is deleted (with the wall clock, so the lab times a
message across instances), and each message moved to the poison queue.
Ctrl-C (SIGINT, the lab's scale-in) stops fetching, lets the messages it holds finish,
then stops its workers; like a worker, it ends at once when its stdin closes (the lab is
gone). A SIGKILL leaves the messages it held invisible until their visibility ends; then
another instance's listener takes them (at-least-once delivery).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from azure.storage.queue import QueueMessage as StorageQueueMessage

from ..app_settings import UPSTREAM_URL_SETTING
from ..host import Host
from ..queue.lab import find_queue_function
from ..queue.listener import (
    LISTENER_VISIBILITY_S,
    MessageRecord,
    QueueListener,
    QueuesOptions,
    queue_clients,
)
from ..upstream import Upstream
from ..worker_process import watch_host

REPORT = "REPORT "  # the lines the lab reads among the workers' output
CONNECTION_SETTING = "AzureWebJobsStorage"
STOP_S = 15.0  # the messages in progress get this long to finish after a Ctrl-C


class Reporter:
    """Report lines on stdout, whole, from the listener's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, **fields: Any) -> None:
        line = REPORT + json.dumps(fields, separators=(",", ":")) + "\n"
        with self._lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def began(self, message: StorageQueueMessage) -> None:
        self(event="began", id=message.id, dequeue_count=message.dequeue_count)

    def ran(self, record: MessageRecord, ok: bool) -> None:
        """Before the message is deleted: a kill after this leaves it run, and (undeleted)
        run again; a kill before it leaves it to come back. None is lost from the count."""
        self(event="ran", id=record.message_id, t=time.time(), ok=ok)

    def done(self, record: MessageRecord) -> None:
        if record.poisoned:
            self(event="poisoned", id=record.message_id)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="queue_instance", description=__doc__)
    parser.add_argument("--app", required=True, type=Path)
    parser.add_argument("--function", required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--upstream-delay-ms", type=float, default=100.0)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--new-batch-threshold", type=int, default=None)
    parser.add_argument("--max-polling-interval-s", type=float, default=None)
    parser.add_argument("--visibility-s", type=int, default=LISTENER_VISIBILITY_S)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    connection = os.environ[CONNECTION_SETTING]
    report = Reporter()
    upstream = Upstream(args.upstream_delay_ms).start()
    host: Host | None = None
    listener: QueueListener | None = None
    try:
        host = Host(
            args.app,
            processes=args.processes,
            threads=args.threads,
            app_settings={UPSTREAM_URL_SETTING: upstream.url, CONNECTION_SETTING: connection},
        ).start()
        info = find_queue_function(host.functions, args.function)
        assert info.queue is not None
        options = QueuesOptions.from_host_json(
            args.app,
            batch_size=args.batch_size,
            new_batch_threshold=args.new_batch_threshold,
            max_polling_interval_s=args.max_polling_interval_s,
        )
        listener = QueueListener(
            host,
            info.name,
            *queue_clients(connection, info.queue, options),
            options,
            on_begin=report.began,
            on_ran=report.ran,
            on_done=report.done,
            visibility_s=args.visibility_s,
        ).start()
        report(event="ready", pid=os.getpid())
        while True:  # until Ctrl-C (time.sleep is interrupted by it on every platform)
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        if listener is not None:
            listener.stop(timeout_s=STOP_S)
        if host is not None:
            host.close()
        upstream.stop()


if __name__ == "__main__":
    watch_host(open(0, "rb", buffering=0, closefd=False))  # noqa: SIM115 - read for life
    sys.exit(main())
