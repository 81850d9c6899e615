"""Queue triggers: the host's listener settings, drains against a real Azurite, cleanup.

Facts checked here come from Azure/azure-sdk-for-net, WebJobs Storage Queues extension
(``QueuesOptions.cs``, ``QueueListener.cs``, ``QueueProcessor.cs``,
``RandomizedExponentialBackoffStrategy.cs``). Every drain starts its own Azurite.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Set as AbstractSet

import psutil
import pytest
from conftest import (
    APPS,
    SAMPLE_APP,
    azurite_processes,
    wait_gone,
    wait_no_workers,
    worker_processes,
)

from throughput_lab.azurite import Azurite
from throughput_lab.metrics import ideal_throughput
from throughput_lab.queue.lab import QueueLab
from throughput_lab.queue.listener import Backoff, QueueSettingError, QueuesOptions


def wait_no_azurite(
    before: AbstractSet[int] = frozenset(), timeout_s: float = 10.0
) -> list[psutil.Process]:
    """Azurite processes of this session not in ``before``, once they had time to stop."""
    return wait_gone(azurite_processes, before, timeout_s)


@pytest.fixture
def azurite_before() -> set[int]:
    return {p.pid for p in azurite_processes()}


@pytest.fixture(scope="module")
def lab():
    with QueueLab(SAMPLE_APP, upstream_delay_ms=20) as queue_lab:
        yield queue_lab
    assert not wait_no_azurite(), "Azurite outlived its lab"


# -- the settings, without a queue --------------------------------------------------------


def test_queues_options_defaults_are_the_extensions():
    options = QueuesOptions(processor_count=4)
    assert options.batch_size == 16
    assert options.threshold == 8 * 4  # (batchSize / 2) x processor count
    assert options.max_in_flight == 16 + 32
    assert options.max_dequeue_count == 5
    assert options.visibility_timeout_s == 0
    assert options.max_polling_interval_s == 60
    assert options.message_encoding == "base64"
    assert QueuesOptions(batch_size=7, processor_count=1).threshold == 3  # integer division


@pytest.mark.parametrize(
    "settings",
    [{"batch_size": 0}, {"batch_size": 33}, {"new_batch_threshold": -1}, {"max_dequeue_count": 0}],
)
def test_queues_options_limits(settings):
    with pytest.raises(QueueSettingError):
        QueuesOptions(**settings)


def test_queues_options_read_from_host_json(tmp_path):
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {
                        "batchSize": 4,
                        "newBatchThreshold": 2,
                        "maxPollingInterval": "00:00:02",
                        "visibilityTimeout": "00:00:30",
                        "maxDequeueCount": 3,
                        "messageEncoding": "none",
                    }
                },
            }
        )
    )
    options = QueuesOptions.from_host_json(tmp_path)
    assert (options.batch_size, options.threshold, options.max_dequeue_count) == (4, 2, 3)
    assert (options.max_polling_interval_s, options.visibility_timeout_s) == (2.0, 30.0)
    assert options.message_encoding == "none"
    assert QueuesOptions.from_host_json(tmp_path, batch_size=8).batch_size == 8


def test_empty_queue_backs_off_exponentially_up_to_the_maximum():
    backoff = Backoff(maximum_s=1.0)
    delays = [backoff.next(found=False) for _ in range(8)]
    assert delays[0] == pytest.approx(0.1)
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert delays[-1] == 1.0
    assert backoff.next(found=True) == pytest.approx(0.1)


def test_the_ideal_has_a_queue_batch_bound():
    ideal = ideal_throughput(400, 0.1, slots=32, queue_batch=24)
    assert ideal.bottleneck == "queue batch"
    assert ideal.rps == pytest.approx(240)
    assert ideal_throughput(400, 0.1, slots=16, queue_batch=24).bottleneck == "thread pool"


# -- drains against Azurite ----------------------------------------------------------------


@pytest.mark.parametrize("function", ["queue_sync_io", "queue_async_io"])
def test_no_more_than_batch_size_plus_threshold_run_at_once(lab, function):
    result = lab.drain(function, 60, threads=64, batch_size=4, new_batch_threshold=2)
    assert result.summary.ok == 60 and result.poison == 0
    peak = max(n for _, n in result.in_flight_curve)
    assert 4 <= peak <= 6
    assert result.left_in_queue == 0


def test_a_failing_message_goes_to_the_poison_queue_and_nothing_is_lost(lab):
    result = lab.drain(
        "queue_sync_io", 40, threads=16, batch_size=8, max_dequeue_count=3, bad_messages=2
    )
    poisoned = [m for m in result.messages if m.poisoned]
    assert len(poisoned) == 2 == result.poison
    assert all(m.tries == 3 for m in poisoned)  # maxDequeueCount tries, then poison
    good = [m for m in result.messages if not m.poisoned]
    assert len(good) == 38
    assert all(m.tries == 1 and len(m.invocations) == 1 and m.invocations[0].ok for m in good)
    assert result.retries == 2 * 2
    # Counted in the queue service itself: nothing left, both in <queue>-poison.
    assert result.left_in_queue == 0
    assert result.in_poison_queue == 2


def test_a_function_that_is_not_queue_triggered_is_refused(lab):
    with pytest.raises(Exception, match="not queue-triggered"):
        lab.drain("sync_io", 5)


def test_azurite_stops_when_its_owner_is_killed(tmp_path, azurite_before):
    script = tmp_path / "own.py"
    script.write_text(
        "import os, signal\n"
        "from throughput_lab.azurite import Azurite\n"
        "a = Azurite().start()\n"
        "print(a.process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().isdigit(), done.stderr
    assert not wait_no_azurite(azurite_before)


def test_an_azurite_that_exits_at_once_is_tried_three_times_then_named(tmp_path, monkeypatch):
    tries = tmp_path / "tries"
    script = tmp_path / "azurite-queue"
    script.write_text(
        f"#!/bin/sh\necho try >> {tries}\necho 'Azurite Queue service is starting'\n"
        "echo 'Exit due to unhandled error: listen EADDRINUSE' >&2\nexit 1\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("AZURITE_QUEUE", str(script))
    azurite = Azurite()
    with pytest.raises(RuntimeError) as caught:
        azurite.start()
    why = "Exit due to unhandled error: listen EADDRINUSE"  # its stderr, not its stdout
    assert str(caught.value) == f"Azurite did not start: {why}"
    assert tries.read_text().count("try") == 3
    assert not azurite.running and azurite.cpu_s() == 0.0


def test_azurite_binds_loopback_only(azurite_before):
    with Azurite() as azurite:
        addresses = {
            c.laddr.ip
            for c in psutil.Process(azurite.process.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert addresses == {"127.0.0.1"}
    assert not wait_no_azurite(azurite_before)


# -- the command line ----------------------------------------------------------------------


def queue_bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "throughput_lab", "bench", "--app", str(SAMPLE_APP), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bench_messages_json(azurite_before):
    done = queue_bench(
        "--function",
        "queue_sync_io",
        "--messages",
        "30",
        "--bad-messages",
        "1",
        "--batch-size",
        "8",
        "--upstream-delay-ms",
        "20",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("function", "processes", "threads", "throughput_rps", "ideal_rps", "latency_ms"):
        assert key in result
    assert result["messages"] == 30 and result["poison"] == 1
    assert result["ok"] == 29 and result["left_in_queue"] == 0
    assert result["bounds"]["queue batch"] > 0
    assert not wait_no_azurite(azurite_before)


def test_a_v1_model_queue_function_drains_with_its_host_json(azurite_before):
    """function.json's queueTrigger names the queue; host.json's batch applies to it too."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "throughput_lab",
            "bench",
            "--app",
            str(APPS / "v1_queue"),
            "--function",
            "WorkItem",
            "--messages",
            "12",
            "--bad-messages",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["batch_size"], result["new_batch_threshold"]) == (4, 2)
    assert result["ok"] == 11 and result["poison"] == 1 and result["left_in_queue"] == 0
    assert result["in_flight_peak"] <= 4 + 2
    assert not wait_no_azurite(azurite_before)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--function", "queue_sync_io", "--messages", "0"], "--messages must be >= 1"),
        (["--function", "queue_sync_io", "--messages", "5", "--batch-size", "33"], "batchSize"),
        (["--function", "sync_io", "--messages", "5"], "not queue-triggered"),
        (["--function", "nope", "--messages", "5"], "unknown"),
    ],
)
def test_bad_queue_input_is_one_line_and_exit_2(args, message, azurite_before):
    done = queue_bench(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not wait_no_azurite(azurite_before)


@pytest.mark.parametrize("to_group", [False, True], ids=["parent-only", "process-group"])
def test_ctrl_c_stops_a_drain_and_leaves_no_process(to_group, azurite_before):
    before = {p.pid for p in worker_processes()}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "throughput_lab", "bench", "--app", str(SAMPLE_APP)),
            *("--function", "queue_sync_io", "--messages", "5000", "--batch-size", "4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (
        set(p.pid for p in azurite_processes()) - azurite_before
        and [p for p in worker_processes() if p.pid not in before]
    ):
        assert time.monotonic() < deadline, "the drain did not start"
        time.sleep(0.1)
    time.sleep(2.0)
    stopped = time.monotonic()
    if to_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - stopped < 15
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not wait_no_workers(before)
    assert not wait_no_azurite(azurite_before)


def test_exercise_11_fails_at_the_start_and_passes_with_its_solution(lab, capsys):
    sys.path.insert(0, str(SAMPLE_APP.parent / "notebooks"))
    try:
        from exercise_11_queue import ex11
    finally:
        sys.path.pop(0)
    lab.upstream.delay_ms = 200
    try:
        exercise = ex11(lab)
        exercise.check(dict(batch_size=16, new_batch_threshold=8))
        assert exercise.passed is False
        exercise.check(exercise.solution_answer())
        assert exercise.passed, capsys.readouterr().out
    finally:
        lab.upstream.delay_ms = 20
