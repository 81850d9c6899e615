"""Misbehaving handlers cannot hang the CLI, orphan a process, corrupt --json or leak a key.

Each handler of tests/apps/misbehaving runs under ``bench``, under ``serve`` stopped with
Ctrl-C, and under a host stopped with SIGTERM or killed with SIGKILL. Every run must end
within END_BOUND_S of its normal end and leave no process: neither a worker nor any child
or fork of a handler (found by the test session's mark in their environment).
SUPERVISION_REPEAT=5 runs each case five times.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from conftest import APPS, session_processes, wait_gone
from test_cli import cli

from throughput_lab import Host, Lab, WorkerDiedError, worker_start
from throughput_lab.invocation import HttpRequestFields

APP = APPS / "misbehaving"
END_BOUND_S = 15.0
REPEAT = int(os.environ.get("SUPERVISION_REPEAT", "1"))
HANDLERS = [
    "raises",
    "hangs_sync",
    "hangs_async",
    "blocks_loop",
    "exits",
    "sys_exit",
    "segfaults",
    "leaks",
    "prints",
    "child_inherits",
    "child_devnull",
    "forks",
]
FIGURES: list[str] = []  # printed at the end with -s: what the runs measured


# -- helpers -------------------------------------------------------------------------------


def marked_processes() -> list[psutil.Process]:
    """Every process of this test session (workers, CLIs, handlers' children)."""
    return session_processes(lambda cmdline: True, zombies=False)


def wait_none_left(before: set[int], timeout_s: float) -> list[psutil.Process]:
    return wait_gone(marked_processes, before, timeout_s)


def baseline() -> set[int]:
    """Processes of this session that exist before a case (pytest itself and its helpers)."""
    return {p.pid for p in marked_processes()} | {os.getpid()}


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The CLI in a session of its own, as a terminal runs it (Ctrl-C: the whole group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "throughput_lab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


class Reader:
    """Read a pipe to its end on a thread; note when the first line came."""

    def __init__(self, stream) -> None:
        self.data = b""
        self.first_line_at: float | None = None
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            self.data += chunk
            if self.first_line_at is None and b"\n" in self.data:
                self.first_line_at = time.monotonic()

    def text(self) -> str:
        self.thread.join(timeout=10)
        return self.data.decode(errors="replace")


def ended(proc: subprocess.Popen[bytes], err: Reader, what: str, timeout_s: float = 30) -> str:
    """Wait for the CLI to exit; its stderr, or a failure that shows it (stacks included)."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        tail = err.text()[-6000:]
        raise AssertionError(f"{what}: no exit in {timeout_s:g} s; stderr: {tail}") from None
    text = err.text()
    if "still stopping after" in text:  # the CLI's stop limit ended it: say where it waited
        FIGURES.append(f"{what}: the stop limit ended it; {text[text.index('still stopping') :]}")
    return text


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def workers_of(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return [
            c
            for c in psutil.Process(proc.pid).children()
            if "throughput_lab.worker_process" in c.cmdline()
        ]
    except psutil.Error:
        return []


def handler_options(handler: str) -> list[str]:
    return ["--max-worker-mb", "150"] if handler == "leaks" else []


def get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def quiet_get(url: str) -> None:
    """A request whose answer does not matter (the handler may never give one)."""
    with contextlib.suppress(OSError):
        get(url, 3.0)


# -- every handler, every way of ending ------------------------------------------------------


@pytest.mark.parametrize("run", range(REPEAT))
@pytest.mark.parametrize("handler", HANDLERS)
def test_bench_ends_with_one_json_object_and_no_process(handler, run):
    before = baseline()
    began = time.monotonic()
    proc = start_cli(
        "bench",
        "--app",
        str(APP),
        "--function",
        handler,
        "--processes",
        "2",
        "--timeout",
        "1",
        "--requests",
        "6",
        "--concurrency",
        "2",
        "--json",
        *handler_options(handler),
    )
    out, err = Reader(proc.stdout), Reader(proc.stderr)
    proc.wait(timeout=240)  # generous: a busy machine is slow; the bound is on the lag
    ended = time.monotonic()
    left = wait_none_left(before, 5.0)
    stdout, stderr = out.text(), err.text()
    assert proc.returncode == 0, stderr[-2000:]
    result = json.loads(stdout)  # exactly one object, whatever the handler printed
    assert stdout.count("\n") == 1 and result["function"] == handler
    assert result["ok"] + result["errors"] == 6
    assert "Traceback" not in stderr, stderr[-2000:]
    lag = ended - (out.first_line_at or ended)
    FIGURES.append(f"bench {handler}: {ended - began:.1f} s, exit {lag:.1f} s after the JSON")
    assert lag < END_BOUND_S
    assert not left, [p.cmdline() for p in left]


@pytest.mark.parametrize("run", range(REPEAT))
@pytest.mark.parametrize("handler", HANDLERS)
def test_serve_stops_on_ctrl_c_and_leaves_no_process(handler, run):
    before = baseline()
    proc = start_cli(
        "serve",
        "--app",
        str(APP),
        "--port",
        "0",
        "--processes",
        "2",
        "--timeout",
        "1",
        *handler_options(handler),
    )
    out, err = Reader(proc.stdout), Reader(proc.stderr)
    wait_for(lambda: b"Press Ctrl-C" in out.data or proc.poll() is not None, 30, "serve")
    port = re.search(rb"127\.0\.0\.1:(\d+)/api/", out.data).group(1).decode()
    url = f"http://127.0.0.1:{port}/api/{handler}"
    calls = [threading.Thread(target=quiet_get, args=(url,), daemon=True) for _ in range(4)]
    for call in calls:
        call.start()
    time.sleep(1.0)  # the handler runs (and misbehaves)
    assert get(f"http://127.0.0.1:{port}/api/ok", 10.0)[0] in (200, 500)
    stopped = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C
    stderr = ended(proc, err, f"serve {handler} after Ctrl-C")
    left = wait_none_left(before, END_BOUND_S)
    took = time.monotonic() - stopped
    FIGURES.append(f"serve {handler}: stopped {took:.1f} s after Ctrl-C")
    assert proc.returncode in (0, 130), stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert took < END_BOUND_S
    assert not left, [p.cmdline() for p in left]


@pytest.mark.parametrize("run", range(REPEAT))
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("handler", HANDLERS)
def test_a_host_stopped_or_killed_leaves_no_process(handler, how, run):
    before = baseline()
    proc = start_cli(
        "bench",
        "--app",
        str(APP),
        "--function",
        handler,
        "--processes",
        "2",
        "--timeout",
        "1",
        "--duration",
        "60",
        "--concurrency",
        "2",
        *handler_options(handler),
    )
    err = Reader(proc.stderr)
    wait_for(lambda: len(workers_of(proc)) == 2 or proc.poll() is not None, 30, "workers")
    time.sleep(1.5)  # invocations are running (and misbehaving)
    stopped = time.monotonic()
    proc.send_signal(how)  # the host alone, not its group
    stderr = ended(proc, err, f"bench {handler} after {how.name}")
    left = wait_none_left(before, END_BOUND_S)
    took = time.monotonic() - stopped
    FIGURES.append(f"{how.name} {handler}: nothing left {took:.1f} s after the signal")
    if how == signal.SIGTERM:
        assert proc.returncode == 143, stderr[-2000:]
        assert "Traceback" not in stderr
    assert not left, [p.cmdline() for p in left]
    assert took < END_BOUND_S


def test_a_second_ctrl_c_during_shutdown_still_ends_everything():
    before = baseline()
    proc = start_cli(
        "bench",
        "--app",
        str(APP),
        "--function",
        "blocks_loop",
        "--timeout",
        "30",
        "--duration",
        "60",
    )
    err = Reader(proc.stderr)
    wait_for(lambda: len(workers_of(proc)) == 1, 30, "the worker")
    time.sleep(1.0)
    stopped = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    ended(proc, err, "bench blocks_loop after two Ctrl-C")
    left = wait_none_left(before, END_BOUND_S)
    assert time.monotonic() - stopped < END_BOUND_S
    assert proc.returncode == 130, err.text()
    assert "Traceback" not in err.text() and "Event loop is closed" not in err.text()
    assert not left, [p.cmdline() for p in left]


# -- a dead worker: reported at once, replaced --------------------------------------------------


def test_a_dead_worker_fails_its_invocations_at_once_and_is_replaced():
    with Host(APP, processes=2, timeout_s=30) as host:
        first_pids = {w.pid for w in host.workers}
        began = time.monotonic()
        future = host.invoke("exits", HttpRequestFields(route="exits"))
        with pytest.raises(WorkerDiedError, match=r"exited with code 3"):
            future.result(timeout=10)
        assert time.monotonic() - began < 3.0, "the failure waited for a timeout"
        wait_for(lambda: all(w.alive() for w in host.workers), 30, "a replacement")
        assert {w.pid for w in host.workers} != first_pids
        results = [host.invoke("ok", HttpRequestFields(route="ok")) for _ in range(6)]
        assert [f.result(timeout=10)[1].status for f in results] == [200] * 6
        assert len(host.worker_exits) == 1


def test_a_lab_run_after_a_crash_is_healthy():
    with Lab(APP, timeout_s=5) as lab:
        crashed = lab.run("segfaults", processes=2, requests=2, concurrency=1)
        assert crashed.summary.ok == 0
        assert any("SIGSEGV" in e for e in crashed.summary.error_samples)
        healthy = lab.run("ok", processes=2, requests=5)
        assert healthy.summary.ok == 5


def test_a_worker_over_its_memory_limit_is_ended_and_reported():
    with Host(APP, processes=1, timeout_s=30, max_worker_mb=120) as host:
        deadline = time.monotonic() + 30
        while not host.worker_exits:  # 40 MB more a call; the host samples every 0.2 s
            assert time.monotonic() < deadline, "the limit was not enforced"
            with contextlib.suppress(WorkerDiedError):  # ended while it ran: also fine
                host.invoke("leaks", HttpRequestFields(route="leaks")).result(timeout=20)
            time.sleep(0.3)
        assert "over --max-worker-mb 120" in host.worker_exits[0]
        wait_for(lambda: all(w.alive() for w in host.workers), 30, "a replacement")


def test_start_up_failures_are_one_clear_error():
    with pytest.raises(worker_start.WorkerStartError, match=r"exited with code 7.*about to leave"):
        Host(APPS / "import_exits").start()
    began = time.monotonic()
    with pytest.raises(worker_start.WorkerStartError, match=r"not ready after 3 s"):
        Host(APPS / "import_hangs", start_timeout_s=3).start()
    assert time.monotonic() - began < 10


# -- the start-up channel ------------------------------------------------------------------


def test_the_start_up_channel_cannot_be_held_or_aborted(monkeypatch):
    """Silent, junk and wrong-key connections arrive before the real worker does."""
    intruders: list[socket.socket] = []
    real = worker_start.SupervisedProcess

    def intruding(command, env, tag, first_line, **kw):
        address, port, _ = first_line.decode().split()
        for payload in (None, b"GET / HTTP/1.0\r\n\r\n" * 50, None):
            s = socket.create_connection((address, int(port)))
            if payload:
                s.sendall(payload)
            intruders.append(s)
        return real(command, env, tag, first_line, **kw)

    monkeypatch.setattr(worker_start, "SupervisedProcess", intruding)
    began = time.monotonic()
    with Host(APP, processes=1) as host:
        took = time.monotonic() - began
        assert host.invoke("ok", HttpRequestFields(route="ok")).result(timeout=10)[1].status == 200
    assert took < 10, f"start-up took {took:.1f} s"
    for s in intruders:  # each was dropped within the handshake limit
        s.settimeout(worker_start.HANDSHAKE_TIMEOUT_S + 3)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        s.close()
    FIGURES.append(f"start-up with 3 intruders: {took:.1f} s")


# -- the function key ----------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str]]]
    redirect_to: str = ""

    def do_GET(self) -> None:
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path.startswith("/r/"):
            self.send_response(302)
            self.send_header("Location", self.redirect_to + "/final" + self.path)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


def _server(redirect_to: str = "") -> tuple[http.server.ThreadingHTTPServer, list]:
    seen: list = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "redirect_to": redirect_to})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_the_key_is_not_sent_to_another_origin_and_is_masked():
    other, other_seen = _server()
    other_origin = f"http://localhost:{other.server_address[1]}"  # another host name
    first, first_seen = _server(redirect_to=other_origin)
    try:
        url = f"http://127.0.0.1:{first.server_address[1]}/r/api/f?code=SECRETCODE"
        done = cli(
            "bench",
            "--url",
            url,
            "--requests",
            "3",
            "--concurrency",
            "1",
            "--json",
            env={"FUNCTION_KEY": "SECRETKEY"},
        )
    finally:
        first.shutdown()
        other.shutdown()
    assert first_seen and all(h.get("x-functions-key") == "SECRETKEY" for _, h in first_seen)
    assert other_seen == [], "followed a redirect to another origin with the key"
    for secret in ("SECRETCODE", "SECRETKEY"):
        assert secret not in done.stdout and secret not in done.stderr
    if done.returncode == 0:
        assert "code=***" in json.loads(done.stdout)["function"]
    else:  # the first request failed: one line, exit 2
        assert done.returncode == 2 and "another origin" in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2


def test_a_same_origin_redirect_keeps_the_key():
    server, seen = _server()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass.redirect_to = base  # /r/x -> /final/r/x, same origin
    try:
        done = cli(
            "bench",
            "--url",
            f"{base}/r/x",
            "--requests",
            "2",
            "--concurrency",
            "1",
            "--json",
            env={"FUNCTION_KEY": "K"},
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] == 2
    finals = [h for path, h in seen if path.startswith("/final/")]
    assert finals and all(h.get("x-functions-key") == "K" for h in finals)


def test_a_password_in_the_url_is_masked():
    done = cli(
        "bench",
        "--url",
        "http://user:PASSWORD@127.0.0.1:1/api/f?code=CODE",
        "--requests",
        "1",
    )
    assert done.returncode == 2
    assert "PASSWORD" not in done.stderr and "CODE" not in done.stderr.replace("code", "")
    assert len(done.stderr.strip().splitlines()) <= 2


# -- input checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--duration", "nan"],
        ["--duration", "-1"],
        ["--timeout", "-1"],
        ["--timeout", "nan"],
        ["--timeout", "0"],
        ["--upstream-delay-ms", "-5"],
        ["--upstream-delay-ms", "nan"],
        ["--upstream-delay-ms", "inf"],
        ["--upstream-delay-ms", "1e15"],
        ["--concurrency", "100000"],
        ["--max-worker-mb", "-1"],
    ],
)
def test_every_bad_number_is_exit_2_and_one_line(args):
    done = cli(
        "bench",
        "--app",
        str(APP),
        "--function",
        "ok",
        *args,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_bad_port_and_broken_imports_are_exit_2_and_one_line():
    for args in (
        ["serve", "--app", str(APP), "--port", "70000"],
        ["bench", "--app", str(APPS / "import_exits"), "--function", "x"],
    ):
        done = cli(*args)
        assert done.returncode == 2, done.stderr
        lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("[worker")]
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr


# -- serve's details ---------------------------------------------------------------------------


def test_serve_port_0_host_names_malformed_requests_and_silent_connections():
    before = baseline()
    proc = start_cli("serve", "--app", str(APP), "--port", "0")
    out, err = Reader(proc.stdout), Reader(proc.stderr)
    try:
        wait_for(lambda: b"Press Ctrl-C" in out.data or proc.poll() is not None, 30, "serve")
        port = int(re.search(rb"127\.0\.0\.1:(\d+)/api/", out.data).group(1))
        assert port != 0
        base = f"http://127.0.0.1:{port}/api/ok"
        assert get(base) == (200, b"ok")
        assert get(base, headers={"Host": "localhost"})[0] == 200
        assert get(base, headers={"Host": "attacker.example"})[0] == 403
        silent = socket.create_connection(("127.0.0.1", port))
        opened = time.monotonic()
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as bad:
                bad.sendall(b"GET /api/ok HTTP/1.1\r\nX-Big: " + b"z" * 50_000 + b"\r\n\r\n")
                bad.settimeout(5)
                with pytest.raises(OSError):
                    while bad.recv(4096):
                        pass
                    raise OSError("closed")
        silent.settimeout(30)
        assert silent.recv(1) == b""  # closed by serve, not by us
        held = time.monotonic() - opened
        silent.close()
        assert held < 15, f"a silent connection was held {held:.1f} s"
        FIGURES.append(f"serve: silent connection closed after {held:.1f} s")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    stderr = err.text()
    bad_lines = [ln for ln in stderr.splitlines() if "Error handling request" in ln]
    assert len(bad_lines) == 3 and all(len(ln) < 400 for ln in bad_lines), stderr[-3000:]
    assert "Traceback" not in stderr
    left = wait_none_left(before, END_BOUND_S)
    assert not left


def teardown_module() -> None:
    if FIGURES:
        print("\n" + "\n".join(FIGURES))
