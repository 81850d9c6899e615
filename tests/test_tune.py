"""``tune``: classify by CPU time / wall time, sweep, recommend the smallest good setting."""

import json

from conftest import ENGINE_APP
from test_cli import cli

from throughput_lab.metrics import Summary
from throughput_lab.tune import TuneResult, classify, default_grid


def test_classify_by_cpu_ratio():
    assert classify(0.01) == "I/O-bound"
    assert classify(0.35) == "mixed"
    assert classify(0.97) == "CPU-bound"


def test_grid_follows_the_kind_of_function():
    assert default_grid("I/O-bound", False, 2.0, 16) == ([4, 16], [1, 2])
    assert default_grid("CPU-bound", False, 4.0, 16) == ([1, 2, 4], [1, 4])
    assert default_grid("I/O-bound", True, 1.0, 32) == ([None], [1, 2])  # async: no pool
    assert default_grid("CPU-bound", False, 64.0, 16)[1] == [1, 10]  # the host's maximum


def _summary(processes: int, threads: int, rps: float, is_async: bool = False) -> Summary:
    fields = {f: 0 for f in Summary.__dataclass_fields__}
    fields.update(
        function="f",
        processes=processes,
        threads=threads,
        throughput_rps=rps,
        is_async=is_async,
        latency_ms={"p50": 1.0, "p95": 1.0, "p99": 1.0, "max": 1.0},
        error_samples=[],
        bottleneck="",
    )
    return Summary(**fields)


def test_settings_and_az_command():
    result = TuneResult("f", "I/O-bound", _summary(1, 1, 10.0))
    result.best = _summary(2, 16, 100.0)
    assert result.settings == {
        "FUNCTIONS_WORKER_PROCESS_COUNT": "2",
        "PYTHON_THREADPOOL_THREAD_COUNT": "16",
    }
    assert result.az_command("app", "rg") == (
        "az functionapp config appsettings set --name app --resource-group rg "
        "--settings FUNCTIONS_WORKER_PROCESS_COUNT=2 PYTHON_THREADPOOL_THREAD_COUNT=16"
    )
    async_result = TuneResult("f", "I/O-bound", _summary(1, 6, 10.0, is_async=True))
    async_result.best = _summary(1, 6, 10.0, is_async=True)
    assert async_result.settings == {"FUNCTIONS_WORKER_PROCESS_COUNT": "1"}


def test_tune_cli_recommends_threads_for_a_function_that_waits():
    done = cli(
        "tune",
        "--app",
        str(ENGINE_APP),
        "--path",
        "/api/sync_sleep?s=0.05",
        "--processes",
        "1",
        "--concurrency",
        "8",
        "--duration",
        "0.5",
        "--json",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["kind"] == "I/O-bound" and result["function"] == "sync_sleep"
    assert [r["threads"] for r in result["runs"]] == [2, 8]
    assert result["settings"] == {
        "FUNCTIONS_WORKER_PROCESS_COUNT": "1",
        "PYTHON_THREADPOOL_THREAD_COUNT": "8",
    }
    assert "az functionapp config appsettings set" in result["az_command"]
