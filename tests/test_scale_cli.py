"""``python -m throughput_lab scale``: its JSON contract and its one-line errors."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from throughput_lab.scale.lab import ScaleLab

SAMPLE_APP = os.path.join(os.path.dirname(__file__), "..", "sample_functions")
SCALE_KEYS = {
    "instances_max",
    "instances_mean",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "rejected",
    "cold_starts",
    "instance_seconds",
    "service_ms",
    "series",
}


def scale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "throughput_lab", "scale", "--app", SAMPLE_APP, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_simulated_scale_out_json_contract() -> None:
    done = scale(
        "--function", "sync_io", "--traffic", "spike", "--peak-rps", "200",
        "--per-instance-concurrency", "4", "--threads", "8", "--duration", "120",
        "--upstream-delay-ms", "50", "--startup-s", "2", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= SCALE_KEYS
    assert out["model"] == "per-request"
    # Calibrated, not assumed: the handler waits 50 ms on the upstream, plus the host's hop.
    assert 50 <= out["service_ms"] < 150
    assert out["p50_ms"] >= out["service_ms"] * 0.8
    # 200 req/s x ~55 ms = ~11 in flight at the peak, 4 per instance: a few instances.
    assert 3 <= out["instances_max"] <= 100
    assert {"t_s", "instances", "in_flight", "p95_ms"} <= set(out["series"][0])
    assert out["cold_starts"] >= out["instances_max"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--traffic", "spike", "--peak-rps", "0"], "--peak-rps"),
        (["--traffic", "wave", "--peak-rps", "5"], "--traffic"),
        (["--traffic", "day", "--peak-rps", "5", "--max-instances", "1001"], "--max-instances"),
        (["--traffic", "day", "--peak-rps", "5", "--always-ready", "-1"], "--always-ready"),
        (["--traffic", "ramp", "--peak-rps", "5", "--per-instance-concurrency", "0"], "--per"),
        (["--traffic", "ramp", "--peak-rps", "5", "--startup-s", "nan"], "--startup-s"),
    ],
)
def test_bad_values_exit_2_with_one_line(args: list[str], says: str) -> None:
    done = scale("--function", "sync_io", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


@pytest.mark.parametrize(
    ("function", "flag", "says"),
    [
        ("queue_async_io", ["--per-instance-concurrency", "4"], "--batch-size"),
        ("sync_io", ["--batch-size", "4"], "queue-triggered"),
        ("queue_async_io", ["--batch-size", "33"], "--batch-size"),
    ],
)
def test_each_trigger_refuses_the_others_flags(function: str, flag: list[str], says: str) -> None:
    done = scale("--function", function, "--traffic", "spike", "--peak-rps", "20", *flag)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


def test_a_queue_function_is_simulated_by_its_queue_length() -> None:
    """Calibrated by one drain in the engine; an instance runs batchSize + newBatchThreshold;
    target-based scaling adds at most 4 instances a decision (one every 30 s here)."""
    done = scale(
        "--function", "queue_async_io", "--traffic", "steady", "--peak-rps", "100",
        "--duration", "300", "--batch-size", "4", "--new-batch-threshold", "2",
        "--startup-s", "2", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["trigger"] == "queue" and out["per_instance_concurrency"] == 6
    assert 90 <= out["service_ms"] < 200  # the upstream's 100 ms, measured
    counts = [s["instances"] for s in out["series"]]
    assert max(b - a for a, b in itertools.pairwise(counts)) <= 4
    assert out["rejected"] == 0 and out["instances_max"] >= 3


def test_exercise_12_fails_at_the_start_and_passes_with_its_solution(
    capsys: pytest.CaptureFixture[str],
) -> None:
    notebooks = os.path.join(os.path.dirname(__file__), "..", "notebooks")
    sys.path.insert(0, notebooks)
    try:
        from exercise_12_scale import ex12
    finally:
        sys.path.pop(0)
    with ScaleLab(SAMPLE_APP, threads=16) as lab:
        exercise = ex12(lab)
        exercise.check(dict(per_instance_concurrency=1, max_instances=100))  # the default
        assert exercise.passed is False
        exercise.check(dict(per_instance_concurrency=8, max_instances=8))  # too little at peak
        assert exercise.passed is False
        exercise.check(exercise.solution_answer())
        assert exercise.passed, capsys.readouterr().out
