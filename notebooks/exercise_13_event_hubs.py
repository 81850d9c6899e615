"""Notebook 13's exercise: reach a throughput on an event hub whose partitions are fixed.

``from exercise_13_event_hubs import ex13``. The answer is a dict: ``function`` (one of the
sample app's two Event Hubs functions, ``eh_one_at_a_time`` or ``eh_batch_awaited``),
``max_event_batch_size`` (host.json's ``extensions.eventHubs``) and ``threads``
(``PYTHON_THREADPOOL_THREAD_COUNT``). The check sends 240 events over 4 partitions (the
event hub's, not the learner's to change) and measures events per second.
"""

from __future__ import annotations

from typing import Any

from throughput_lab.checks import Criterion, Evidence, Exercise, near, no_errors
from throughput_lab.eventhubs.lab import EventHubLab, EventHubResult

TARGET = 120.0  # events per second
EVENTS = 240
PARTITIONS = 4
FUNCTIONS = ("eh_one_at_a_time", "eh_batch_awaited")


def events_per_second(target: float) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str, bool]:
        result: EventHubResult = e.result
        got = result.events_per_s
        return (
            got >= target,
            f"{got:.0f} events/s over {result.partitions} partitions, "
            f"{result.as_dict()['mean_batch']:.1f} events per invocation",
            near(got, target),
        )

    return Criterion(
        f"at least {target:.0f} events/s",
        test,
        "each partition runs one invocation at a time: events/s = partitions x events per "
        "invocation / the time one invocation takes",
    )


def ex13(lab: EventHubLab) -> Exercise:
    def run(lab: EventHubLab, settings: Any) -> EventHubResult:
        if not isinstance(settings, dict) or settings.get("function") not in FUNCTIONS:
            raise TypeError(
                "give a dict: dict(function=..., max_event_batch_size=..., threads=...), "
                f"with function one of {', '.join(FUNCTIONS)}"
            )
        return lab.drain(
            settings["function"],
            EVENTS,
            partitions=PARTITIONS,
            max_event_batch_size=settings.get("max_event_batch_size"),
            threads=settings.get("threads"),
        )

    return Exercise(
        name="13_event_hub_settings",
        task=(
            f"set `event_hub_settings` (function, max_event_batch_size, threads) so that "
            f"{EVENTS} events over {PARTITIONS} partitions, each taking one 100 ms upstream "
            f"call, drain at {TARGET:.0f} events/s or more."
        ),
        criteria=[no_errors("invocation"), events_per_second(TARGET)],
        hints=[
            "Count what runs at once: one invocation per partition, whatever the threads "
            "and processes. How long does one invocation take, and how many events does it "
            "carry?",
            "eh_one_at_a_time takes (events in its batch) x 100 ms, so a bigger batch "
            "changes nothing; eh_batch_awaited takes about 100 ms whatever its batch.",
        ],
        run=run,
        lab=lab,
        explanation=(
            "Four partitions run four invocations at once at most. Walking the batch, each "
            "event costs its partition 100 ms: 40 events/s at best, any threads, any batch. "
            "Awaited together, a batch of B costs about 100 ms: 4 x B / 0.1 s, so B >= 3 "
            "passes 120 events/s, and threads play no part in an async def handler."
        ),
    )
