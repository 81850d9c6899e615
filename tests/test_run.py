"""The one measured run: both labs summarize through it, and its settings are checked once."""

from __future__ import annotations

import shutil

import pytest
from conftest import ENGINE_APP, SAMPLE_APP

from throughput_lab import Lab
from throughput_lab.app_settings import SettingError
from throughput_lab.lab import HttpTrigger, RunSpec
from throughput_lab.queue.lab import QueueLab, QueueTrigger
from throughput_lab.run import MeasuredRun, WorkerSettings


@pytest.fixture
def measured_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Every MeasuredRun.measure call: the trigger's kind and the summary it returned."""
    seen: list[tuple[str, object]] = []
    real = MeasuredRun.measure

    async def spy(self: MeasuredRun):  # type: ignore[no-untyped-def]
        measured = await real(self)
        seen.append((type(self.trigger).__name__, measured.summary))
        return measured

    monkeypatch.setattr(MeasuredRun, "measure", spy)
    return seen


def test_an_http_run_is_summarized_by_the_measured_run(measured_runs):
    with Lab(ENGINE_APP, upstream_delay_ms=20) as lab:
        result = lab.run("noop", concurrency=2, requests=6)
    assert [kind for kind, _ in measured_runs] == [HttpTrigger.__name__]
    assert measured_runs[0][1] is result.summary
    assert result.summary.ok == 6 and result.summary.ideal_rps > 0


@pytest.mark.skipif(shutil.which("npm") is None, reason="Azurite needs Node.js")
def test_a_queue_drain_is_summarized_by_the_same_measured_run(measured_runs):
    with QueueLab(SAMPLE_APP, upstream_delay_ms=20) as lab:
        result = lab.drain("queue_sync_io", 12, threads=4)
    assert [kind for kind, _ in measured_runs] == [QueueTrigger.__name__]
    assert measured_runs[0][1] is result.summary
    assert result.summary.ok == 12 and result.summary.ideal_rps > 0
    assert "queue batch" in result.summary.bounds  # the listener's own bound, from its trigger


def test_a_queue_function_is_timed_alone_once_per_what_decides_that_time(monkeypatch):
    """A new host (other threads) reuses the times alone; another upstream delay does not.
    Keyed by the host's identity, a freed host's address could hand its times to another."""
    import throughput_lab.run as run

    timed: list[int] = []
    real = run.time_alone

    async def counting(trigger, processes):  # type: ignore[no-untyped-def]
        timed.append(processes)
        return await real(trigger, processes)

    monkeypatch.setattr(run, "time_alone", counting)
    with QueueLab(SAMPLE_APP, upstream_delay_ms=20) as lab:
        lab.drain("queue_sync_io", 4, threads=2)
        lab.drain("queue_sync_io", 4, threads=4)
        assert len(timed) == 1
        lab.drain("queue_sync_io", 4, threads=4, upstream_delay_ms=40)
    assert len(timed) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"processes": 0}, "FUNCTIONS_WORKER_PROCESS_COUNT"),
        ({"processes": 11}, "FUNCTIONS_WORKER_PROCESS_COUNT"),
        ({"threads": 0}, "PYTHON_THREADPOOL_THREAD_COUNT"),
    ],
)
def test_worker_settings_are_checked_where_they_are_made(settings, message):
    with pytest.raises(SettingError, match=message):
        WorkerSettings(**settings)


def test_a_run_spec_is_checked_once_and_fills_in_its_defaults():
    spec = RunSpec(WorkerSettings(), "noop", concurrency=50, requests=7)
    assert spec.concurrency == 7  # no more in flight than there are requests
    assert RunSpec(WorkerSettings(), "noop", concurrency=3).requests == 30
    with pytest.raises(ValueError, match="concurrency"):
        RunSpec(WorkerSettings(), "noop", concurrency=0)
    with pytest.raises(ValueError, match="requests must be >= 1"):
        RunSpec(WorkerSettings(), "noop", requests=0)
    with pytest.raises(ValueError, match="name the function"):
        RunSpec(WorkerSettings())
    with pytest.raises(ValueError, match="in-process worker"):
        RunSpec(WorkerSettings(processes=2), handler=lambda req: req)


def drained(throughput: float, bottleneck: str, free_cores: float, lab_cores: float):
    """A queue run's summary: 200 ms alone, cap 24 (16 + 8), ideal 120 messages/s."""
    from throughput_lab.metrics import Summary

    return Summary(
        function="queue_sync_io",
        processes=1,
        threads=32,
        concurrency=24,
        requests=160,
        ok=160,
        errors=0,
        elapsed_s=160 / throughput,
        throughput_rps=throughput,
        startup_s=0.5,
        latency_ms={"p50": 200.0, "p95": 210.0, "p99": 220.0, "max": 230.0},
        ideal_rps=120.0,
        efficiency=throughput / 120.0,
        bottleneck=bottleneck,
        service_ms=200.0,
        cpu_ms=1.0,
        cpu_ratio=0.01,
        queue_ms_p50=1.0,
        max_loop_lag_ms=1.0,
        cores=2.0,
        free_cores=free_cores,
        lab_cores=lab_cores,
    )


def test_a_full_listener_whose_messages_are_held_longer_is_named():
    """The case that printed 'nothing the lab can name': 22 of 24 in progress, each held
    ~310 ms against 200 ms alone by the queue service's round trips, CPU not saturated."""
    from throughput_lab.queue.lab import listener_shortfall
    from throughput_lab.queue.listener import QueuesOptions

    options = QueuesOptions(batch_size=16, new_batch_threshold=8)
    held = listener_shortfall(drained(70.0, "queue batch", 2.0, 0.5), options, busy=22.0)
    assert held.startswith("the listener's batches: 22.0 messages in progress")
    assert "held 314 ms against 200 ms alone" in held
    # Fewer in progress than allowed (the waves) is the listener's too.
    assert listener_shortfall(drained(70.0, "queue batch", 2.0, 0.5), options, busy=12.0)
    # Not the listener's: a saturated CPU, other programs' CPU, another bound, or no shortfall.
    assert not listener_shortfall(drained(70.0, "queue batch", 1.0, 0.8), options, busy=22.0)
    assert not listener_shortfall(drained(70.0, "queue batch", 1.2, 0.3), options, busy=22.0)
    assert not listener_shortfall(drained(70.0, "thread pool", 2.0, 0.5), options, busy=22.0)
    assert not listener_shortfall(drained(100.0, "queue batch", 2.0, 0.5), options, busy=22.0)
