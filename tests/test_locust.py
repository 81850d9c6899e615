"""`locustfile`: the bench's scenario as a Locust test, run by Locust against `serve`.

The generated file must run unchanged under Locust, send the key from $FUNCTION_KEY
without ever writing it, and measure what `bench` measures (loopback only, a few seconds).
Locust is the `load` extra: the tests that run it are skipped where it is not installed
(`make test` installs it). Locust is never imported here: it patches the standard library
with gevent on import; it runs in its own process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import yaml
from conftest import SAMPLE_APP, session_processes, wait_gone
from test_cli import cli, cli_process, free_port, start_serve

from throughput_lab.locust_export import (
    LOCUSTFILE,
    TEST_CONFIG,
    locust_installed,
    render_locustfile,
    run_locust,
    scenario,
)

needs_locust = pytest.mark.skipif(
    not locust_installed(), reason='Locust is not installed (pip install -e ".[load]")'
)
SECRET = "test-key-123"  # what `keyed` in tests/apps/engine_app (served by start_serve) accepts


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=20)


def test_locustfile_writes_the_scenario_and_never_the_key(tmp_path):
    out = tmp_path / "lt"
    done = cli(
        "locustfile",
        "--url",
        "https://myapp.azurewebsites.net/api/ignored",
        "--path",
        "/api/echo?name=x",
        "--method",
        "post",
        "--body",
        "hello",
        "--header",
        "Content-Type: text/plain",
        "--users",
        "300",
        "--engine-instances",
        "3",
        "--key-vault-secret",
        "https://kv-lab.vault.azure.net/secrets/function-key",
        "--out",
        str(out),
        env={"FUNCTION_KEY": SECRET},
    )
    assert done.returncode == 0, done.stderr
    written = {p.name: p.read_text() for p in out.iterdir()}
    assert set(written) == {LOCUSTFILE, TEST_CONFIG}
    assert not any(SECRET in text for text in [*written.values(), done.stdout, done.stderr])

    source = written[LOCUSTFILE]
    compile(source, LOCUSTFILE, "exec")
    assert "constant(0)" in source and "os.environ.get('FUNCTION_KEY')" in source
    assert "METHOD = 'POST'" in source and "PATH = '/api/echo?name=x'" in source
    assert "BODY = 'hello'" in source and "'Content-Type': 'text/plain'" in source

    config = yaml.safe_load(written[TEST_CONFIG])
    assert config["version"] == "v0.1"
    assert config["testType"] == "Locust" and config["testPlan"] == LOCUSTFILE
    assert config["engineInstances"] == 3
    env = {e["name"]: e["value"] for e in config["env"]}
    assert env["LOCUST_HOST"] == "https://myapp.azurewebsites.net"
    assert env["LOCUST_USERS"] == "300" and env["LOCUST_RUN_TIME"] == "60s"
    assert config["secrets"] == [
        {"name": "FUNCTION_KEY", "value": "https://kv-lab.vault.azure.net/secrets/function-key"}
    ]
    assert 2 <= len(config["testId"]) <= 50


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "https://a.net/api/f?code=abc"], "function key (?code=)"),
        (["--url", "https://a.net/api/f", "--header", "x-functions-key: abc"], "never written"),
        (["--url", "ftp://a.net/api/f"], "http:// or https://"),
        (["--url", "https://a.net/api/f", "--path", "api/f"], "must start with '/'"),
        (["--url", "https://a.net/api/f", "--users", "0"], "must be >= 1"),
        (["--url", "https://a.net/api/f", "--header", "no colon"], "'Name: value'"),
        (["--url", "https://a.net/api/f", "--key-vault-secret", "abc"], "Key Vault secret"),
        (["--url", "https://a.net/api/f", "--test-id", "Bad Id!"], "--test-id"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    done = cli("locustfile", *args, "--out", str(tmp_path / "lt"))
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "lt").exists()


@needs_locust
def test_generated_file_runs_unchanged_under_locust_against_serve(tmp_path):
    port = free_port()
    proc = start_serve(port)
    try:
        host = f"http://127.0.0.1:{port}"
        keyed = tmp_path / "keyed"
        done = cli("locustfile", "--url", f"{host}/api/keyed", "--users", "2", "--out", str(keyed))
        assert done.returncode == 0, done.stderr
        # A few seconds each, and any number of requests: a busy machine may send few.
        with_key = run_locust(
            keyed / LOCUSTFILE, host, 2, 3, tmp_path / "with", env={"FUNCTION_KEY": SECRET}
        )
        assert with_key.requests > 0 and with_key.failures == 0
        no_key = {"FUNCTION_KEY": ""}
        without = run_locust(keyed / LOCUSTFILE, host, 2, 3, tmp_path / "without", env=no_key)
        assert without.requests > 0 and without.failures == without.requests  # 401 each

        echo = scenario(f"{host}/api/echo?name=x", method="POST", body="hello", users=2)
        (tmp_path / "echo.py").write_text(render_locustfile(echo))
        posted = run_locust(tmp_path / "echo.py", host, 2, 3, tmp_path / "echo")
        assert posted.requests > 0 and posted.failures == 0  # GET would be a 405
    finally:
        _stop(proc)


@needs_locust
def test_ctrl_c_stops_locust_and_leaves_no_process(tmp_path):
    def locusts() -> list:
        return session_processes(lambda cmdline: "locust" in cmdline, zombies=False)

    before = {p.pid for p in locusts()}
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens: each request fails, quickly
    (tmp_path / LOCUSTFILE).write_text(render_locustfile(scenario(f"{host}/api/x", users=2)))
    main = threading.main_thread().ident
    assert main is not None
    ctrl_c = threading.Timer(4.0, signal.pthread_kill, args=(main, signal.SIGINT))
    ctrl_c.start()
    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_locust(tmp_path / LOCUSTFILE, host, 2, 120, tmp_path / "stats")
    finally:
        ctrl_c.cancel()
    assert time.monotonic() - began < 15
    assert not wait_gone(locusts, before), "Locust outlived the interrupted call"


@needs_locust
@pytest.mark.timing
def test_locust_agrees_with_bench_at_the_same_concurrency(tmp_path, summary):
    """Locust over loopback HTTP against `serve`, and `bench` in process, measure the same.

    async_io waits 200 ms on the upstream: both tools then measure the function's waiting,
    not their own CPU. They run at the same time, so whatever else this machine's cores are
    doing slows both alike, and the test compares their ratio.
    """
    users, upstream_ms, seconds = 16, 200, 8
    port = free_port()
    proc = cli_process(
        "serve", "--app", str(SAMPLE_APP), "--port", str(port),
        "--upstream-delay-ms", str(upstream_ms),
    )  # fmt: skip
    engine_run = None
    try:
        host = f"http://127.0.0.1:{port}"
        _wait_listening(proc, port)
        done = cli("locustfile", "--url", f"{host}/api/async_io", "--users", str(users),
                   "--out", str(tmp_path))  # fmt: skip
        assert done.returncode == 0, done.stderr
        engine_run = cli_process(
            "bench", "--app", str(SAMPLE_APP), "--function", "async_io",
            "--concurrency", str(users), "--duration", str(seconds),
            "--upstream-delay-ms", str(upstream_ms), "--json",
        )  # fmt: skip
        locust = run_locust(tmp_path / LOCUSTFILE, host, users, seconds, tmp_path / "stats")
        out, err = engine_run.communicate(timeout=120)
        assert engine_run.returncode == 0, err
    finally:
        if engine_run is not None and engine_run.poll() is None:
            _stop(engine_run)
        _stop(proc)
    engine = json.loads(out)
    rps = locust.throughput_rps / engine["throughput_rps"]
    p50 = locust.latency_ms["p50"] / engine["latency_ms"]["p50"]
    summary(
        f"[locust cross-check] async_io, {users} in flight, upstream {upstream_ms} ms: "
        f"bench {engine['throughput_rps']:.1f} req/s p50 {engine['latency_ms']['p50']:.0f} ms"
        f" | locust {locust.throughput_rps:.1f} req/s p50 {locust.latency_ms['p50']:.0f} ms"
        f" | ratios {rps:.2f}, {p50:.2f}"
    )
    assert locust.failures == 0 and engine["errors"] == 0
    assert 0.85 <= rps <= 1.15, f"throughput: Locust / bench = {rps:.2f}"
    assert 0.85 <= p50 <= 1.15, f"p50: Locust / bench = {p50:.2f}"


def _wait_listening(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not listen within 30 s")
