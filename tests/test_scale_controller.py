"""The scale controller's rules, one test per rule (sources in scale/controller.py)."""

from __future__ import annotations

import pytest

from throughput_lab.scale.controller import (
    HTTP_DECISION_S,
    PYTHON_HTTP_CONCURRENCY,
    QUEUE_DECISION_S,
    Controller,
    ScaleRules,
    http_desired,
    queue_desired,
)

pytestmark = pytest.mark.once


def test_http_instances_are_in_flight_over_per_instance_concurrency() -> None:
    assert PYTHON_HTTP_CONCURRENCY == 1
    assert http_desired(10, 1) == 10
    assert http_desired(10, 16) == 1
    assert http_desired(17, 16) == 2
    assert http_desired(0, 4) == 0
    with pytest.raises(ValueError):
        http_desired(3, 0)


@pytest.mark.parametrize(
    ("length", "instance_concurrency", "expected"),
    # QueueTargetScalerTests: batchSize 8 + newBatchThreshold 8 (the last case passes its own
    # instance concurrency 20, which here is batch 12 + threshold 8).
    [(160, (8, 8), 10), (150, (8, 8), 10), (144, (8, 8), 9), (160, (12, 8), 8)],
)
def test_queue_target_is_batch_size_plus_new_batch_threshold(
    length: int, instance_concurrency: tuple[int, int], expected: int
) -> None:
    assert queue_desired(length, *instance_concurrency) == expected


def test_max_instances_caps_on_demand_and_always_ready_is_the_floor() -> None:
    c = Controller(ScaleRules(max_instances=3, always_ready=2))
    assert c.decide(0.0, 2, 0) == 2  # never below always-ready
    assert c.decide(1.0, 2, 50) == 5  # always-ready + maximum
    with pytest.raises(ValueError):
        ScaleRules(max_instances=1001)
    with pytest.raises(ValueError):
        ScaleRules(max_instances=0, always_ready=0)


def test_target_based_scaling_adds_at_most_four_per_decision_every_30_s() -> None:
    rules = ScaleRules.for_queue(batch_size=8, new_batch_threshold=8, max_instances=100)
    assert rules.per_instance_concurrency == 16
    assert rules.decision_s == QUEUE_DECISION_S == 30.0
    c = Controller(rules)
    assert c.decide(0.0, 0, 10) == 4
    assert c.decide(30.0, 4, 10) == 8
    assert c.decide(60.0, 8, 10) == 10


def test_http_adds_what_it_needs_each_second() -> None:
    rules = ScaleRules()
    assert rules.decision_s == HTTP_DECISION_S == 1.0
    assert Controller(rules).decide(0.0, 1, 40) == 40


def test_scale_in_waits_until_no_decision_in_the_window_wanted_more() -> None:
    c = Controller(ScaleRules(scale_in_after_s=10.0))
    assert c.decide(0.0, 0, 8) == 8
    assert c.decide(5.0, 8, 2) == 8  # wanted 8 five seconds ago: stays
    assert c.decide(9.0, 8, 3) == 8
    assert c.decide(11.0, 8, 2) == 3  # the 8 left the window; 3 (at 9 s) is still in it
    assert c.decide(25.0, 3, 2) == 2
    assert Controller(ScaleRules(scale_in_after_s=0.0)).decide(0.0, 8, 2) == 2


def test_bad_settings_are_one_line_errors() -> None:
    for bad in ({"per_instance_concurrency": 0}, {"always_ready": -1}, {"decision_s": 0.0}):
        with pytest.raises(ValueError):
            ScaleRules(**bad)  # type: ignore[arg-type]
