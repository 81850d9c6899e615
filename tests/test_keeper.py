"""The one child-process keeper (``supervisor.SupervisedProcess``) and ``served_locally``.

The workers' supervision is tested in test_supervision.py, Azurite's in test_queue.py,
Locust's in test_locust.py; here the keeper's stop steps, and ``served_locally``: it
starts ``serve``, answers, and leaves no process and no listening port, however it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import psutil
import pytest
from conftest import (
    APPS,
    SAMPLE_APP,
    session_processes,
    wait_gone,
    wait_no_workers,
    worker_processes,
)

from throughput_lab import served_locally
from throughput_lab.supervisor import SupervisedProcess, answers


def serve_processes() -> list[psutil.Process]:
    """``serve`` processes started by served_locally in this test session."""
    return session_processes(
        lambda cmdline: "throughput_lab.cli" in " ".join(cmdline), zombies=False
    )


def listening(port: int) -> bool:
    return answers(port) or any(
        c.laddr.port == port and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections("tcp")
    )


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_served_locally_answers_then_leaves_no_process_or_port():
    servers, workers = {p.pid for p in serve_processes()}, {p.pid for p in worker_processes()}
    with served_locally(SAMPLE_APP, processes=2, threads=4, upstream_delay_ms=10) as base:
        port = int(base.rsplit(":", 1)[1])
        assert base == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/api/sync_io", timeout=10) as response:
            assert response.status == 200
        assert len([p for p in worker_processes() if p.pid not in workers]) == 2
    assert not wait_gone(serve_processes, servers)
    assert not wait_no_workers(workers)
    assert not listening(port)


def test_served_locally_stops_serve_when_the_block_is_interrupted():
    servers, workers = {p.pid for p in serve_processes()}, {p.pid for p in worker_processes()}
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), served_locally(SAMPLE_APP) as base:
        port = int(base.rsplit(":", 1)[1])
        raise KeyboardInterrupt
    assert time.monotonic() - began < 30
    assert not wait_gone(serve_processes, servers)
    assert not wait_no_workers(workers)
    assert not listening(port)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (APPS / "no_such_app", "serve stopped: throughput_lab: error: function app folder"),
        (APPS / "import_exits", "while loading the app: about to leave"),
    ],
)
def test_served_locally_says_why_serve_did_not_start(app, message):
    servers = {p.pid for p in serve_processes()}
    with pytest.raises(RuntimeError, match="serve stopped") as caught, served_locally(app):
        pytest.fail("served an app that cannot be served")
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert not wait_gone(serve_processes, servers)


def test_serve_ends_when_the_process_that_served_it_is_killed(tmp_path):
    servers, workers = {p.pid for p in serve_processes()}, {p.pid for p in worker_processes()}
    script = tmp_path / "own.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, signal
        from throughput_lab import served_locally
        with served_locally({str(SAMPLE_APP)!r}, processes=2) as base:
            print(base, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.startswith("http://127.0.0.1:"), done.stderr
    assert not wait_gone(serve_processes, servers), "serve outlived its owner"
    assert not wait_no_workers(workers)
    assert not listening(int(done.stdout.strip().rsplit(":", 1)[1]))


@pytest.mark.skipif(os.name == "nt", reason="process groups and signals are POSIX")
def test_a_process_that_ignores_its_stop_is_killed_with_its_group():
    code = textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # its child inherits the ignoring
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("up", flush=True)
        time.sleep(60)
    """)
    proc = SupervisedProcess(
        [sys.executable, "-c", code],
        None,
        "stubborn",
        echo=False,
        stop_steps=((signal.SIGINT, 0.3),),
    )
    deadline = time.monotonic() + 20
    while "up" not in proc.tail:
        assert time.monotonic() < deadline and not proc.has_exited(), list(proc.tail)
        time.sleep(0.05)
    group = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children()]
    began = time.monotonic()
    proc.stop()
    assert time.monotonic() - began < 5
    assert proc.has_exited() and proc.returncode == -signal.SIGKILL
    assert proc.last_output() == "up"
    assert not wait_gone(lambda: [p for p in group if alive(p)], set(), 5.0)
