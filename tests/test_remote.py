"""Measuring a URL: the function key, and the bound on load to addresses beyond loopback."""

from __future__ import annotations

import json
import os
import signal

from conftest import ENGINE_APP
from test_cli import cli, free_port, start_serve

from throughput_lab.lab import function_timeout_s
from throughput_lab.remote import REMOTE_MAX_DURATION_S, REMOTE_MAX_REQUESTS, plan_remote_load


def test_load_beyond_loopback_is_bounded_unless_asked_and_announced(capsys):
    remote = "http://203.0.113.7/api/sync_io"  # TEST-NET-3: documentation only, never sent to
    assert plan_remote_load(remote, 5000, None, asked=False) == (
        REMOTE_MAX_REQUESTS,
        REMOTE_MAX_DURATION_S,
    )
    assert plan_remote_load(remote, 5000, None, asked=True) == (5000, None)
    assert plan_remote_load("http://127.0.0.1:7071/api/x", 5000, None, asked=False) == (5000, None)
    said = capsys.readouterr().err
    assert f"Sending {REMOTE_MAX_REQUESTS} requests for at most 60 s to {remote}" in said


def test_function_key_is_sent_from_the_environment_and_never_printed():
    port = free_port()
    proc = start_serve(port)
    try:
        url = f"http://127.0.0.1:{port}/api/keyed"
        without = json.loads(cli("bench", "--url", url, "--requests", "4", "--json").stdout)
        assert without["errors"] == 4
        done = cli(
            "bench", "--url", url, "--requests", "4", "--json", env={"FUNCTION_KEY": "test-key-123"}
        )
        assert json.loads(done.stdout)["ok"] == 4
        assert "test-key-123" not in done.stdout + done.stderr
        assert "FUNCTION_KEY" in done.stderr
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=20)


def test_function_timeout_read_from_host_json(tmp_path):
    (tmp_path / "host.json").write_text('{"version": "2.0", "functionTimeout": "00:05:30"}')
    assert function_timeout_s(tmp_path) == 330
    (tmp_path / "host.json").write_text('{"version": "2.0", "functionTimeout": "1.02:00:00"}')
    assert function_timeout_s(tmp_path) == 26 * 3600
    assert function_timeout_s(ENGINE_APP) is None
