"""Hand the bench's scenario to Locust, for more load than one machine can send.

``bench --url`` is one process on one machine. Locust runs the same closed loop from many
machines (a master and its workers), and Azure Load Testing runs Locust scripts on its own
engines. This module writes that test: a ``locustfile.py`` whose users each keep one
request in flight with no think time (so users = requests in flight, like ``bench
--concurrency``), and the Azure Load Testing YAML that runs it. It also runs a Locust test
on this machine and reads Locust's CSV statistics back.

The function key is never written into a file: the locustfile reads the environment
variable ``FUNCTION_KEY`` (as ``bench --url`` does) and sends it as ``x-functions-key``.
On Azure Load Testing that variable is a secret whose value is a Key Vault reference; the
service hands secrets to a Locust script as environment variables.
Sources (Microsoft Learn): "Configure a load test in YAML"
(azure/load-testing/reference-test-config-yaml: testType Locust, testPlan, engineInstances,
env, secrets as Key Vault secret identifiers); "Load test secured endpoints" (Locust-based
tests read a secret with getenv); "Configure Azure Load Testing for high-scale load"
(Locust: total users in the configuration, engines in engineInstances).

Locust is an extra (``pip install -e ".[load]"``): it is imported only by the files this
writes and by the ``locust`` process, never here (it patches the standard library with
gevent on import).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from .learner_errors import LearnerError
from .remote import KEY_VARIABLE
from .supervisor import StopStep, SupervisedProcess, free_port

KEY_HEADER = "x-functions-key"
LOCUSTFILE = "locustfile.py"
TEST_CONFIG = "loadtest.yaml"
INSTALL_HINT = (
    'Locust is not installed; at the repository root: pip install -e ".[load]" '
    "(or anywhere: pip install locust)"
)
_TEST_ID = re.compile(r"[a-z0-9_-]{2,50}")
# Ctrl-C, as in a terminal: Locust stops its users and writes its statistics.
STOP_STEPS: tuple[StopStep, ...] = ((signal.SIGINT, 5.0),)


class LocustMissingError(LearnerError, RuntimeError):
    """Locust is not installed in this environment."""


@dataclass(frozen=True)
class Scenario:
    """One request, sent in a closed loop by ``users`` users: what ``bench --url`` sends."""

    host: str  # scheme://host[:port], Locust's --host
    path: str  # path and query, e.g. /api/sync_io?ms=100
    method: str = "GET"
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    users: int = 8
    run_time_s: int = 60

    @property
    def url(self) -> str:
        return self.host + self.path


def scenario(
    url: str,
    path: str | None = None,
    method: str = "GET",
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
    users: int = 8,
    run_time_s: int = 60,
) -> Scenario:
    """Check and split a target; ``path`` (with its query), when given, replaces the URL's."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url must be an http:// or https:// address, got {url!r}")
    if path is not None and not path.startswith("/"):
        raise ValueError(f"--path must start with '/', got {path!r}")
    if users < 1:
        raise ValueError(f"--users must be >= 1, got {users}")
    if run_time_s < 1:
        raise ValueError(f"--run-time must be >= 1 second, got {run_time_s}")
    method = method.upper()
    if not re.fullmatch(r"[A-Z]+", method):
        raise ValueError(f"--method must be an HTTP method such as GET or POST, got {method!r}")
    target = (
        path
        if path is not None
        else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    )
    headers = dict(headers or {})
    _refuse_written_key(target, headers)
    return Scenario(
        host=f"{parts.scheme}://{parts.netloc}",
        path=target,
        method=method,
        body=body,
        headers=headers,
        users=users,
        run_time_s=run_time_s,
    )


def _refuse_written_key(path: str, headers: Mapping[str, str]) -> None:
    # A key in a written file ends up in a repository or a shared test: refuse it outright.
    query = urlsplit(path).query
    if any(name.lower() == "code" for name, _ in parse_qsl(query)):
        raise ValueError(
            f"the URL carries a function key (?code=); leave it out and set ${KEY_VARIABLE}: "
            "the key is never written into the test files"
        )
    if any(name.lower() == KEY_HEADER for name in headers):
        raise ValueError(
            f"the {KEY_HEADER} header is taken from ${KEY_VARIABLE} when the test runs; "
            "it is never written into the test files"
        )


def render_locustfile(s: Scenario) -> str:
    """The Locust test for ``s``: closed-loop users, the key read from the environment."""
    return f'''"""Locust test written by `python -m throughput_lab locustfile`: the bench's load.

Each user keeps one request in flight and sends the next as soon as the answer arrives
(no think time), so users = requests in flight, as in `bench --concurrency`.
The function key is read from ${KEY_VARIABLE} when the test runs; it is not in this file.

On this machine:
    locust -f {LOCUSTFILE} --headless -u {s.users} -r {s.users} -t {s.run_time_s}s
Distributed, a master and a worker on each load machine:
    locust -f {LOCUSTFILE} --master --headless -u USERS -r USERS -t 5m --expect-workers N
    locust -f {LOCUSTFILE} --worker --master-host MASTER_ADDRESS
"""

import os

from locust import FastHttpUser, constant, task

METHOD = {s.method!r}
PATH = {s.path!r}
BODY = {s.body!r}
HEADERS = {dict(s.headers)!r}


class FunctionUser(FastHttpUser):
    host = {s.host!r}  # --host or LOCUST_HOST overrides it
    wait_time = constant(0)  # closed loop: no think time

    def on_start(self):
        key = os.environ.get({KEY_VARIABLE!r})
        self.send_headers = {{**HEADERS, {KEY_HEADER!r}: key}} if key else dict(HEADERS)

    @task
    def invoke(self):
        self.client.request(METHOD, PATH, data=BODY, headers=self.send_headers, name=PATH)
'''


def test_id_for(s: Scenario) -> str:
    """An Azure Load Testing testId (2-50 of [a-z0-9_-]) named after the function's path."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", s.path.split("?")[0].lower()).strip("-")
    return f"throughput-lab-{stem}"[:50].rstrip("-") or "throughput-lab"


def render_test_config(
    s: Scenario,
    engine_instances: int = 1,
    key_vault_secret: str | None = None,
    test_id: str | None = None,
) -> str:
    """Azure Load Testing's YAML test configuration that runs ``locustfile.py``.

    Locust takes its options from ``LOCUST_*`` environment variables, which the ``env`` list
    sets on the engines. ``LOCUST_USERS`` is Locust's ``-u``: the total of a distributed
    Locust run; Learn's Locust quickstart calls the portal's user count "per test engine
    instance", its high-scale article "total", so the YAML says to check the run.
    """
    test_id = test_id or test_id_for(s)
    _check_test_config(test_id, engine_instances, key_vault_secret)
    q = json.dumps  # a JSON string is a valid double-quoted YAML scalar
    lines = [
        "# Azure Load Testing test configuration: `python -m throughput_lab locustfile` wrote it.",
        "# Reference: https://learn.microsoft.com/azure/load-testing/reference-test-config-yaml",
        "# Create and run it:",
        "#   az load test create --load-test-resource RESOURCE --resource-group RG \\",
        f"#       --test-id {test_id} --load-test-config-file {TEST_CONFIG}",
        "#   az load test-run create --load-test-resource RESOURCE --resource-group RG \\",
        f"#       --test-id {test_id} --test-run-id run-1",
        "version: v0.1",
        f"testId: {test_id}",
        f"displayName: {q(('Throughput Lab: ' + s.method + ' ' + s.path)[:100])}",
        f"description: {q(f'{s.users} closed-loop users, no think time: the bench scenario')}",
        "testType: Locust",
        f"testPlan: {LOCUSTFILE}",
        f"engineInstances: {engine_instances}",
        "env:",
        "  - name: LOCUST_HOST",
        f"    value: {q(s.host)}",
        "  # Locust's -u. Learn's pages differ on whether Azure Load Testing applies it per engine",
        "  # (Locust quickstart) or in total (high-scale article): check the run's user count.",
        "  - name: LOCUST_USERS",
        f"    value: {q(str(s.users))}",
        "  - name: LOCUST_SPAWN_RATE",
        f"    value: {q(str(s.users))}",
        "  - name: LOCUST_RUN_TIME",
        f"    value: {q(f'{s.run_time_s}s')}",
    ]
    lines += _key_lines(key_vault_secret)
    lines += ["failureCriteria:", "  - percentage(error) > 5"]
    return "\n".join(lines) + "\n"


def _check_test_config(test_id: str, engine_instances: int, key_vault_secret: str | None) -> None:
    if not _TEST_ID.fullmatch(test_id):
        raise ValueError(f"--test-id must be 2-50 of a-z, 0-9, _ and -; got {test_id!r}")
    if engine_instances < 1:
        raise ValueError(f"--engine-instances must be >= 1, got {engine_instances}")
    if key_vault_secret is not None and not re.fullmatch(
        r"https://[^/\s]+\.vault\.azure\.net/secrets/[^\s]+", key_vault_secret
    ):
        raise ValueError(
            "--key-vault-secret must be a Key Vault secret identifier, "
            f"https://<vault>.vault.azure.net/secrets/<name>; got {key_vault_secret!r}"
        )


def _key_lines(key_vault_secret: str | None) -> list[str]:
    """The YAML's secret for the function key: where it lives, or how to add it."""
    if key_vault_secret:
        return [
            f"# {KEY_VARIABLE} reaches the script as an environment variable; the value below",
            "# is where the key lives (a Key Vault secret identifier), not the key.",
            "secrets:",
            f"  - name: {KEY_VARIABLE}",
            f"    value: {key_vault_secret}",
        ]
    return [
        "# A function key: store it in Key Vault and pass its secret identifier, e.g.",
        "#   python -m throughput_lab locustfile ... --key-vault-secret \\",
        "#       https://<vault>.vault.azure.net/secrets/<name>",
        f"# which adds a secret named {KEY_VARIABLE} (the script reads it with os.environ).",
    ]


def write_load_test(
    s: Scenario,
    out_dir: str | Path,
    engine_instances: int = 1,
    key_vault_secret: str | None = None,
    test_id: str | None = None,
) -> tuple[Path, Path]:
    """Write ``locustfile.py`` and ``loadtest.yaml`` into ``out_dir``; return both paths."""
    config = render_test_config(s, engine_instances, key_vault_secret, test_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    locustfile, yaml_file = out / LOCUSTFILE, out / TEST_CONFIG
    locustfile.write_text(render_locustfile(s))
    yaml_file.write_text(config)
    return locustfile, yaml_file


# -- running Locust here, and reading what it measured ------------------------------------


def locust_installed() -> bool:
    return importlib.util.find_spec("locust") is not None


@dataclass(frozen=True)
class LocustStats:
    """The "Aggregated" row of Locust's ``<prefix>_stats.csv``."""

    requests: int
    failures: int
    throughput_rps: float
    latency_ms: dict[str, float]  # p50, p95, p99, max (Locust rounds them, to 2 digits)
    cpu_s: float | None = None  # CPU the locust process used, where the OS reports it

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu_s is None or not self.requests:
            return None
        return 1e3 * self.cpu_s / self.requests


def read_locust_stats(csv_prefix: str | Path, cpu_s: float | None = None) -> LocustStats:
    path = Path(f"{csv_prefix}_stats.csv")
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    if not rows:
        raise ValueError(f"{path} has no Aggregated row: did Locust send any request?")
    row = rows[0]

    def number(column: str) -> float:
        value = row.get(column, "")
        return float(value) if value not in ("", "N/A") else math.nan

    return LocustStats(
        requests=int(number("Request Count")),
        failures=int(number("Failure Count")),
        throughput_rps=number("Requests/s"),
        latency_ms={
            "p50": number("50%"),
            "p95": number("95%"),
            "p99": number("99%"),
            "max": number("Max Response Time"),
        },
        cpu_s=cpu_s,
    )


def locust_command(
    locustfile: str | Path, host: str, users: int, run_time_s: int, csv_prefix: str | Path
) -> list[str]:
    """A headless run on this machine; statistics reset once every user has started.

    Users start within about 0.1 s, as bench starts its requests at once.
    """
    return [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "--host", host, "-u", str(users), "-r", str(10 * users), "-t", f"{run_time_s}s",
        "--reset-stats", "--csv", str(csv_prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip


def _children_cpu_s() -> float | None:
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_locust(
    locustfile: str | Path,
    host: str,
    users: int,
    run_time_s: int,
    csv_prefix: str | Path,
    env: Mapping[str, str] | None = None,
) -> LocustStats:
    """Run Locust headless against ``host`` for ``run_time_s`` seconds; return its figures.

    Bounded: Locust stops itself after ``run_time_s``; past that plus a grace period, or on
    Ctrl-C, it is stopped and its whole process group killed, so no load generator outlives
    the call.
    """
    if not locust_installed():
        raise LocustMissingError(INSTALL_HINT)
    command = locust_command(locustfile, host, users, run_time_s, csv_prefix)
    timeout_s = run_time_s + 30
    cpu_before = _children_cpu_s()
    proc = SupervisedProcess(
        command,
        {**os.environ, **(env or {})},
        "locust",
        echo=False,  # its output matters only when it wrote no statistics
        stop_steps=STOP_STEPS,
    )
    try:
        if not proc.wait(timeout_s):
            raise subprocess.TimeoutExpired(command, timeout_s)
    except BaseException:
        proc.stop()
        raise
    cpu_after = _children_cpu_s()  # it has been reaped: its CPU is counted in
    cpu_s = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    stats_file = Path(f"{csv_prefix}_stats.csv")
    if not stats_file.exists():
        last = proc.last_output() or f"exit status {proc.returncode}"
        raise RuntimeError(f"locust wrote no statistics: {last}")
    return read_locust_stats(csv_prefix, cpu_s)


def run_locust_distributed(
    locustfile: str | Path,
    host: str,
    users: int,
    run_time_s: int,
    csv_prefix: str | Path,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
) -> LocustStats:
    """Locust's distributed mode on this machine: a master and ``workers`` workers on
    127.0.0.1 (as ``distributed_commands`` prints it for many machines). The master writes
    the statistics; every process is stopped (its group killed) when the call ends."""
    if not locust_installed():
        raise LocustMissingError(INSTALL_HINT)
    port = free_port()
    base = [sys.executable, "-m", "locust", "-f", str(locustfile), "--loglevel", "WARNING"]
    master_command = [
        *base, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", str(workers), "--headless", "--host", host, "-u", str(users),
        "-r", str(10 * users), "-t", f"{run_time_s}s", "--reset-stats", "--csv",
        str(csv_prefix), "--only-summary",
    ]  # fmt: skip
    worker_command = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    environment = {**os.environ, **(env or {})}
    started: list[SupervisedProcess] = []
    try:
        master = SupervisedProcess(
            master_command, environment, "locust-master", echo=False, stop_steps=STOP_STEPS
        )
        started.append(master)
        for i in range(workers):
            started.append(
                SupervisedProcess(
                    worker_command,
                    environment,
                    f"locust-worker-{i}",
                    echo=False,
                    stop_steps=STOP_STEPS,
                )
            )
        timeout_s = run_time_s + 60  # the workers' start and their connecting, too
        if not master.wait(timeout_s):
            raise subprocess.TimeoutExpired(master_command, timeout_s)
    finally:
        for proc in started:
            proc.stop()
    stats_file = Path(f"{csv_prefix}_stats.csv")
    if not stats_file.exists():
        raise RuntimeError(f"locust wrote no statistics: {master.last_output() or 'nothing'}")
    return read_locust_stats(csv_prefix)


# -- the commands for more load than this machine --------------------------------------------


def distributed_commands(
    s: Scenario, workers: int, run_time: str = "5m", test_id: str | None = None
) -> dict[str, str]:
    """The shell commands for a distributed Locust run and for Azure Load Testing."""
    test_id = test_id or test_id_for(s)
    return {
        "locust master": (
            f"locust -f {LOCUSTFILE} --master --headless -u {s.users} -r {s.users} "
            f"-t {run_time} --host {s.host} --expect-workers {workers} --csv results"
        ),
        "locust worker (each load machine)": (
            f"FUNCTION_KEY=... locust -f {LOCUSTFILE} --worker --master-host MASTER_ADDRESS"
        ),
        "Azure Load Testing": (
            "az load test create --load-test-resource RESOURCE --resource-group RG "
            f"--test-id {test_id} --load-test-config-file {TEST_CONFIG}\n"
            "az load test-run create --load-test-resource RESOURCE --resource-group RG "
            f"--test-id {test_id} --test-run-id run-1"
        ),
    }
