"""Notebook 11's exercise: keep an async queue handler busy with the host's batch settings.

``from exercise_11_queue import ex11``. The answer is host.json's ``extensions.queues``
settings as a dict (``batch_size``, ``new_batch_threshold``). The check drains a queue
through ``queue_async_io`` in one worker process and measures how many messages were in
progress on average, from the listener's own count, and what the batches cost.
"""

from __future__ import annotations

from typing import Any

from throughput_lab.checks import Criterion, Evidence, Exercise, near, no_errors
from throughput_lab.queue.lab import DrainResult, QueueLab

TARGET = 40  # messages in progress on average
MESSAGES = 240


def busy_on_average(target: float) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str, bool]:
        result: DrainResult = e.result
        mean = result.mean_in_flight
        return (
            mean >= target,
            f"{mean:.1f} in progress on average (at most {result.options.max_in_flight} "
            "at once with these settings)",
            near(mean, target),
        )

    return Criterion(
        f"at least {target} messages in progress on average",
        test,
        "batchSize + newBatchThreshold caps it; the average also depends on when a new batch "
        "is fetched",
    )


def ex11(lab: QueueLab) -> Exercise:
    def run(lab: QueueLab, settings: Any) -> DrainResult:
        if not isinstance(settings, dict):
            raise TypeError("give a dict: dict(batch_size=..., new_batch_threshold=...)")
        return lab.drain(
            "queue_async_io",
            MESSAGES,
            processes=1,
            batch_size=settings.get("batch_size"),
            new_batch_threshold=settings.get("new_batch_threshold"),
        )

    return Exercise(
        name="11_queue_settings",
        task=(
            "set `queue_settings` (batch_size, new_batch_threshold) so that queue_async_io "
            f"keeps at least {TARGET} messages in progress on average in one worker process."
        ),
        criteria=[no_errors("message"), busy_on_average(TARGET)],
        hints=[
            "batchSize is at most 32; no more than batchSize + newBatchThreshold run at once.",
            "The listener fetches again only when the messages in progress drop to "
            "newBatchThreshold. Handlers that take the same time finish together: if "
            "newBatchThreshold is below batchSize, the listener waits for most of a batch.",
        ],
        run=run,
        lab=lab,
        explanation=(
            "With newBatchThreshold >= batchSize the listener fetches the next batch while "
            "the last one still runs, so in-flight stays near batchSize + newBatchThreshold."
        ),
    )
