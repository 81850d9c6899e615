"""The command-line contract in docs/cli.md: JSON keys, exit codes, one-line errors, cleanup."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import APPS, ENGINE_APP, SAMPLE_APP, wait_no_workers, worker_processes

CONTRACT_KEYS = {
    "function",
    "processes",
    "threads",
    "concurrency",
    "requests",
    "ok",
    "errors",
    "elapsed_s",
    "throughput_rps",
    "startup_s",
    "latency_ms",
    "ideal_rps",
    "python",
    "event_loop",
}
# The 3.13+ worker (proxy_worker) runs on uvloop where uvloop installs; older ones on asyncio.
WORKER_LOOP = "uvloop" if sys.version_info >= (3, 13) and sys.platform != "win32" else "asyncio"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "throughput_lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def bench(*args: str, **kw):
    return cli("bench", "--app", str(ENGINE_APP), *args, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bench_json_contract():
    done = bench(
        "--function",
        "sync_sleep",
        "--processes",
        "2",
        "--threads",
        "3",
        "--concurrency",
        "6",
        "--requests",
        "12",
        "--param",
        "s=0.02",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "exactly one JSON object on stdout"
    result = json.loads(lines[0])
    assert result.keys() >= CONTRACT_KEYS
    assert set(result["latency_ms"]) >= {"p50", "p95", "p99", "max"}
    assert (result["function"], result["processes"], result["threads"]) == ("sync_sleep", 2, 3)
    assert (result["concurrency"], result["requests"], result["ok"]) == (6, 12, 12)
    assert result["errors"] == 0 and result["startup_s"] > 0 and result["ideal_rps"] > 0
    assert (result["python"], result["event_loop"]) == (platform.python_version(), WORKER_LOOP)


def test_settings_default_to_the_app_settings_in_the_environment():
    done = bench(
        "--function",
        "noop",
        "--requests",
        "5",
        "--json",
        env={"FUNCTIONS_WORKER_PROCESS_COUNT": "2", "PYTHON_THREADPOOL_THREAD_COUNT": "7"},
    )
    result = json.loads(done.stdout)
    assert (result["processes"], result["threads"]) == (2, 7)


def test_invalid_thread_setting_in_the_environment_is_a_warning_not_an_error():
    done = bench(
        "--function",
        "noop",
        "--requests",
        "5",
        "--json",
        env={"PYTHON_THREADPOOL_THREAD_COUNT": "lots"},
    )
    assert done.returncode == 0, done.stderr
    assert "PYTHON_THREADPOOL_THREAD_COUNT" in done.stderr
    from throughput_lab import python_default_threads

    assert json.loads(done.stdout)["threads"] == python_default_threads()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--function", "noop", "--processes", "0"], "1-10"),
        (["--function", "noop", "--processes", "11"], "1-10"),
        (["--function", "noop", "--threads", "0"], ">= 1"),
        (["--function", "nope"], "unknown function 'nope'"),
        (["--function", "noop", "--concurrency", "0"], ">= 1"),
        (["--function", "noop", "--processes", "two"], "invalid int value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    done = bench(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_missing_app_folder_and_broken_app():
    for app, message in [(APPS / "nowhere", "not found"), (APPS / "import_error", "No module")]:
        done = cli("bench", "--app", str(app), "--function", "x")
        assert done.returncode == 2 and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_unreachable_url_is_exit_2():
    done = cli("bench", "--url", f"http://127.0.0.1:{free_port()}/api/x", "--requests", "3")
    assert done.returncode == 2
    assert "cannot reach" in done.stderr and "Traceback" not in done.stderr


def test_a_raising_handler_is_a_500_and_the_run_goes_on():
    result = json.loads(bench("--function", "boom", "--requests", "10", "--json").stdout)
    assert result["requests"] == 10 and result["errors"] == 10 and result["ok"] == 0


def test_a_hanging_handler_is_cut_at_the_timeout():
    started = time.monotonic()
    done = bench(
        "--function",
        "hang",
        "--requests",
        "2",
        "--concurrency",
        "2",
        "--timeout",
        "0.5",
        "--json",
        timeout=60,
    )
    result = json.loads(done.stdout)
    assert result["errors"] == 2 and "FunctionTimeout" in result["error_samples"][0]
    assert time.monotonic() - started < 20


def test_sweep_grid_json():
    done = cli(
        "sweep",
        "--app",
        str(ENGINE_APP),
        "--function",
        "sync_sleep",
        "--threads",
        "1,2",
        "--processes",
        "1,2",
        "--requests",
        "8",
        "--param",
        "s=0.02",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    assert [(r["processes"], r["threads"]) for r in runs] == [(1, 1), (1, 2), (2, 1), (2, 2)]


def cli_process(*args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """The CLI in a session of its own, as a terminal would run it (Ctrl-C: killpg)."""
    return subprocess.Popen(
        [sys.executable, "-m", "throughput_lab", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def start_serve(port: int, *extra: str) -> subprocess.Popen[str]:
    # serve prints a line per request on stdout: nobody reads it here, and a full pipe
    # would block serve.
    proc = cli_process(
        "serve",
        "--app",
        str(ENGINE_APP),
        "--port",
        str(port),
        "--processes",
        "2",
        *extra,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"serve did not listen: {proc.stderr.read()}")


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_routes_like_func_start_and_bench_url_measures_it():
    port = free_port()
    before = {p.pid for p in worker_processes()}
    proc = start_serve(port)
    try:
        base = f"http://127.0.0.1:{port}/api"
        assert http("GET", f"{base}/noop") == (200, b"ok")
        assert http("POST", f"{base}/echo?name=x", b"hello")[1] == b"hello"
        # The host answers a wrong method 404, not 405: no route matches (see routing.py).
        assert http("GET", f"{base}/echo")[0] == 404
        assert http("GET", f"{base}/nothing_here")[0] == 404
        assert http("GET", f"{base}/boom")[0] == 500
        done = cli(
            "bench",
            "--url",
            f"{base}/sync_sleep?s=0.02",
            "--concurrency",
            "4",
            "--requests",
            "20",
            "--json",
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result.keys() >= CONTRACT_KEYS and result["ok"] == 20
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
    assert not wait_no_workers(before)


@pytest.mark.parametrize("to_group", [False, True], ids=["parent-only", "process-group"])
def test_ctrl_c_stops_a_run_and_leaves_no_process(to_group):
    before = {p.pid for p in worker_processes()}
    proc = cli_process(
        "bench",
        "--app",
        str(ENGINE_APP),
        "--function",
        "sync_sleep",
        "--processes",
        "3",
        "--duration",
        "60",
        "--param",
        "s=0.2",
    )
    deadline = time.monotonic() + 30
    while len([p for p in worker_processes() if p.pid not in before]) < 3:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.1)
    time.sleep(1.0)  # into the measured window
    stopped = time.monotonic()
    if to_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - stopped < 10
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err
    assert not wait_no_workers(before)


def test_a_stop_that_hangs_is_ended_at_the_stop_limit_with_its_stacks():
    """Whatever a stop waits on, the CLI ends STOP_LIMIT_S after the signal and says where."""
    hangs = (
        "import threading, signal, os; from throughput_lab import cli;"
        "cli.STOP_LIMIT_S = 1.0;"
        "signal.signal(signal.SIGTERM, cli._terminate);"
        "os.kill(os.getpid(), signal.SIGTERM)"
    )
    stuck = f"try:\n    exec({hangs!r})\nexcept KeyboardInterrupt:\n    threading.Event().wait(60)"
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", stuck], capture_output=True, text=True, timeout=30)
    took = time.monotonic() - began
    assert proc.returncode == 143, proc.stderr
    assert "still stopping after 1 s; ending now" in proc.stderr
    assert "most recent call first" in proc.stderr  # every thread's stack, for the cause
    assert took < 10


# -- Service Bus and Event Hubs: bench --messages on the in-process brokers ---------------


def broker_bench(*args: str):
    return cli("bench", "--app", str(SAMPLE_APP), "--upstream-delay-ms", "20", *args)


def test_bench_service_bus_json():
    done = broker_bench(
        *("--function", "sb_sync_io", "--messages", "12", "--max-concurrent-calls", "3"),
        *("--threads", "4", "--bad-messages", "1", "--json"),
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()
    result = json.loads(line)
    assert result.keys() >= CONTRACT_KEYS
    assert result["trigger"] == "serviceBusTrigger" and result["broker"] == "emulated in process"
    assert (result["messages"], result["max_concurrent_calls"]) == (12, 3)
    assert result["dead_lettered"] == 1 and result["in_dead_letter_queue"] == 1
    assert result["in_flight_peak"] <= 3 and result["left_in_queue"] == 0


def test_bench_event_hubs_json():
    done = broker_bench(
        *("--function", "eh_batch_awaited", "--messages", "24", "--partitions", "2"),
        *("--max-event-batch-size", "4", "--json"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result.keys() >= CONTRACT_KEYS
    assert (result["events"], result["partitions"], result["invocations"]) == (24, 2, 6)
    assert result["cardinality"] == "many" and result["lost"] == 0
    assert result["in_flight_peak"] <= 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--function", "sb_sync_io", "--messages", "0"], "--messages must be >= 1"),
        (["--function", "sb_sync_io", "--messages", "5", "--max-concurrent-calls", "0"],
         "maxConcurrentCalls must be >= 1"),
        (["--function", "sb_sync_io", "--messages", "5", "--sessions", "2"],
         "not session-enabled"),
        (["--function", "sb_session_io", "--messages", "5", "--sessions", "0"],
         "sessions must be >= 1"),
        (["--function", "sb_sync_io", "--messages", "5", "--partitions", "2"],
         "--partitions is for Event Hubs"),
        (["--function", "eh_batch_awaited", "--messages", "5", "--partitions", "33"], "1-32"),
        (["--function", "eh_batch_awaited", "--messages", "5", "--max-event-batch-size", "0"],
         "maxEventBatchSize must be >= 1"),
        (["--function", "eh_batch_awaited", "--messages", "5", "--batch-size", "4"],
         "--batch-size is for storage queue"),
        (["--function", "sync_io", "--messages", "5"], "not queue-triggered, nor Service Bus"),
    ],
)  # fmt: skip
def test_bad_broker_input_is_one_line_and_exit_2(args, message):
    before = {p.pid for p in worker_processes()}
    done = broker_bench(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not wait_no_workers(before)


def test_tune_says_what_measures_a_broker_function():
    done = cli("tune", "--app", str(SAMPLE_APP), "--function", "sb_sync_io")
    assert done.returncode == 2
    assert "tune measures HTTP functions" in done.stderr and "--messages" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_serve_lists_broker_functions_with_the_command_that_drains_them():
    from types import SimpleNamespace

    from throughput_lab import load_app
    from throughput_lab.serve import function_lines

    functions = {n: f.describe() for n, f in load_app(SAMPLE_APP).items()}
    lines = function_lines(SimpleNamespace(functions=functions, app=SAMPLE_APP), "http://h")
    assert (
        "  eh_batch_awaited: eventHubTrigger (not served over HTTP: bench --function "
        "eh_batch_awaited --messages N drains it)" in lines
    )
    assert any(line.startswith("  sb_sync_io: serviceBusTrigger (not served") for line in lines)
