"""Event Hubs triggers: the extension's settings, partition processors with real workers on
the in-process event hub, and the done-when measurements of issue 25 (as ratios).

Facts checked here come from Azure/azure-sdk-for-net, WebJobs Event Hubs extension
(``Config/EventHubOptions.cs``, ``Listeners/EventHubListener.PartitionProcessor.cs``).
"""

from __future__ import annotations

import json
import sys

import azure.functions as func
import pytest
from conftest import SAMPLE_APP

from throughput_lab.app_loader import AppLoadError
from throughput_lab.eventhubs.broker import PartitionCountError
from throughput_lab.eventhubs.lab import EventHubLab
from throughput_lab.eventhubs.listener import EventHubOptions, EventHubSettingError
from throughput_lab.eventhubs.message import EventBatchFields, EventFields


@pytest.fixture(scope="module")
def lab():
    with EventHubLab(SAMPLE_APP, upstream_delay_ms=100) as hub_lab:
        yield hub_lab


def test_event_hub_options_defaults_are_the_extensions():
    """EventHubOptions.cs (extension 5.x): batch 100, min 1, maxWaitTime 60 s, checkpoint
    every batch, prefetch 300."""
    options = EventHubOptions()
    assert options.max_event_batch_size == 100
    assert options.min_event_batch_size == 1
    assert options.max_wait_time_s == 60
    assert options.batch_checkpoint_frequency == 1
    assert options.prefetch_count == 300


def test_event_hub_options_read_host_json(tmp_path):
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "eventHubs": {
                        "maxEventBatchSize": 10,
                        "batchCheckpointFrequency": 5,
                        "maxWaitTime": "00:00:02",
                    }
                },
            }
        )
    )
    options = EventHubOptions.from_host_json(tmp_path)
    assert (options.max_event_batch_size, options.batch_checkpoint_frequency) == (10, 5)
    assert options.max_wait_time_s == 2


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"max_event_batch_size": 0}, "maxEventBatchSize must be >= 1"),
        ({"batch_checkpoint_frequency": 0}, "batchCheckpointFrequency must be >= 1"),
        ({"max_wait_time_s": 601}, "10 minutes"),
        ({"min_event_batch_size": 5, "max_event_batch_size": 4}, "minEventBatchSize"),
    ],
)
def test_bad_settings_are_one_line(kwargs, says):
    with pytest.raises(EventHubSettingError, match=says) as caught:
        EventHubOptions(**kwargs)
    assert "\n" not in str(caught.value)


def test_the_worker_gets_a_list_for_cardinality_many():
    """azure-functions eventhub.py: a list of EventHubEvent for "many", one for "one"."""
    fields = [EventFields(b"a", sequence_number=3), EventFields(b"b", sequence_number=4)]
    batch = EventBatchFields(fields, many=True).to_request()
    assert [type(e) for e in batch] == [func.EventHubEvent] * 2
    assert [e.sequence_number for e in batch] == [3, 4]
    single = EventBatchFields(fields[:1], many=False).to_request()
    assert isinstance(single, func.EventHubEvent) and single.get_body() == b"a"


@pytest.mark.timing
def test_awaiting_the_batch_together_beats_one_at_a_time_by_5x(lab):
    """4 partitions, batch 10, 100 ms per event: each partition runs one invocation at a
    time, so a batch walked one event at a time takes 10 x 100 ms, one awaited together
    about 100 ms."""
    walked = lab.drain("eh_one_at_a_time", 80, partitions=4, max_event_batch_size=10, threads=4)
    awaited = lab.drain("eh_batch_awaited", 160, partitions=4, max_event_batch_size=10)
    assert walked.summary.errors == awaited.summary.errors == 0
    assert max(n for _, n in walked.in_flight_curve) <= 4
    assert awaited.events_per_s >= 5 * walked.events_per_s, (walked.line(), awaited.line())


@pytest.mark.timing
def test_threads_beyond_the_partitions_add_nothing(lab):
    """A def handler, 4 partitions: 32 threads change throughput by under 10 % against 4."""
    runs = {
        t: lab.drain("eh_one_at_a_time", 80, partitions=4, max_event_batch_size=10, threads=t)
        for t in (4, 32)
    }
    ratio = runs[32].events_per_s / runs[4].events_per_s
    assert 0.9 <= ratio <= 1.1, [r.line() for r in runs.values()]
    assert runs[4].summary.bottleneck.startswith("partitions")


def test_a_failed_batch_is_checkpointed_past_and_not_retried(lab):
    """PartitionProcessor: the batch is checkpointed whether or not the function
    succeeded; its events are not retried (lost to the function: say so)."""
    result = lab.drain(
        "eh_batch_awaited", 40, partitions=2, max_event_batch_size=10, bad_events=2,
        upstream_delay_ms=5,
    )  # fmt: skip
    assert result.summary.errors == 2  # two invocations failed
    assert result.lost == 20  # both whole batches: every event in them
    assert len(result.batches) == 4  # 2 partitions x 2 batches, none run again
    assert result.checkpoints == {0: 19, 1: 19}  # past the failed batches too


def test_checkpoints_every_batch_checkpoint_frequency_batches(lab):
    """UpdateCheckpointContext: with frequency 3, a checkpoint after the 3rd batch only;
    the 4th batch's events would be read again after a restart."""
    result = lab.drain(
        "eh_batch_awaited", 40, partitions=1, max_event_batch_size=10,
        batch_checkpoint_frequency=3, upstream_delay_ms=5,
    )  # fmt: skip
    assert result.batches == [10, 10, 10, 10]
    assert result.checkpoint_writes == 1 and result.checkpoints == {0: 29}


def test_min_event_batch_size_waits_up_to_max_wait_time_for_a_fuller_batch(lab):
    """PartitionProcessor with minEventBatchSize > 1: fewer events than that wait up to
    maxWaitTime, then go as a partial batch."""
    result = lab.drain(
        "eh_batch_awaited", 12, partitions=1, max_event_batch_size=10,
        min_event_batch_size=5, max_wait_time_s=0.5, upstream_delay_ms=5,
    )  # fmt: skip
    assert result.batches == [10, 2]
    first, last = result.events[0], result.events[-1]
    assert last.done - first.done >= 0.5  # the 2 waited for more, then went


def test_bad_drain_values_are_one_line(lab):
    with pytest.raises(PartitionCountError, match="1-32"):
        lab.drain("eh_batch_awaited", 5, partitions=33)
    with pytest.raises(AppLoadError, match="is not Event Hubs-triggered"):
        lab.drain("sb_sync_io", 5)
    with pytest.raises(EventHubSettingError, match="events must be >= 1"):
        lab.drain("eh_batch_awaited", 0)


def test_exercise_13_fails_with_a_small_batch_and_passes_with_its_solution(lab, capsys):
    sys.path.insert(0, str(SAMPLE_APP.parent / "notebooks"))
    try:
        from exercise_13_event_hubs import ex13
    finally:
        sys.path.pop(0)
    lab.upstream.delay_ms = 100  # the exercise's: earlier tests may have set another
    exercise = ex13(lab)
    exercise.check(dict(function="eh_batch_awaited", max_event_batch_size=2, threads=4))
    assert exercise.passed is False
    exercise.check(exercise.solution_answer())
    assert exercise.passed, capsys.readouterr().out
