"""What ``func start`` and the host do around the code: local.settings.json, %SETTING%
expressions, host.json's functions list, route conflicts, a v1 function that fails to load."""

from __future__ import annotations

import json

import pytest
from conftest import APPS
from test_cli import cli
from test_own_apps import Served

from throughput_lab import load_app
from throughput_lab.host import Host
from throughput_lab.invocation import HttpRequestFields
from throughput_lab.local_settings import LocalSettingsError, app_environment, read_values

pytestmark = pytest.mark.timeout(120)
SETTINGS_APP = APPS / "settings_app"
LOCAL_ONLY = "local-value-never-printed"  # TOKEN_FOR_TESTS in local.settings.json


def test_local_settings_fill_what_the_environment_does_not_set():
    said: list[str] = []
    env = app_environment(
        SETTINGS_APP, {"GREETING": "from the shell", "WORK_QUEUE": ""}, said.append
    )
    assert env["GREETING"] == "from the shell"  # the environment wins ...
    assert env["WORK_QUEUE"] == "work-items"  # ... when set and not empty, as Core Tools
    assert env["TOKEN_FOR_TESTS"] == LOCAL_ONLY
    skip = "Skipping 'GREETING' from local settings as it's already defined in current"
    assert [line for line in said if "GREETING" in line] == [skip + " environment variables."]
    assert not any("from the shell" in line or LOCAL_ONLY in line for line in said)


def test_encrypted_or_broken_local_settings(tmp_path):
    (tmp_path / "local.settings.json").write_text('{"Values": {"A": "AQAAANCMnd8B"}}')
    with pytest.raises(LocalSettingsError, match="IsEncrypted is absent"):
        read_values(tmp_path)
    (tmp_path / "local.settings.json").write_text("{not json")
    said: list[str] = []
    assert app_environment(tmp_path, {}, said.append) == {}
    assert len(said) == 1 and "not valid JSON" in said[0]


def test_workers_get_local_settings_as_app_settings():
    fields = HttpRequestFields(route="greet")
    with Host(SETTINGS_APP, processes=1, timeout_s=10) as host:
        record, response = host.invoke("greet", fields).result(30)
    assert response.status == 200, record.error
    assert response.body == b"hello from local.settings.json"


def test_setting_expressions_route_conflicts_and_reserved_routes(monkeypatch):
    monkeypatch.setenv("WORK_QUEUE", "work-items")
    monkeypatch.delenv("NO_SUCH_SETTING", raising=False)
    functions = load_app(SETTINGS_APP)
    assert functions["work"].queue == "work-items" and functions["work"].error is None
    assert functions["lost"].error == (
        "The 'lost' function is in error: '%NO_SUCH_SETTING%' does not resolve to a value."
    )
    assert functions["same_b"].error == (
        "The 'same_b' function is in error: "
        "The route specified conflicts with the route defined by function 'same_a'."
    )
    assert functions["same_a"].error is None and functions["same_c"].error is None
    assert "built in routes" in (functions["tools"].error or "")
    assert "'%NO_OUTPUT_QUEUE%' does not resolve" in (functions["forward"].error or "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--function", "same_b"], "conflicts with the route defined by function 'same_a'"),
        (["--function", "lost", "--messages", "3"], "'%NO_SUCH_SETTING%' does not resolve"),
    ],
)
def test_a_function_in_error_is_one_line_and_exit_2(args, message):
    done = cli("bench", "--app", str(SETTINGS_APP), *args, "--requests", "2")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("throughput_lab: error")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in done.stderr and "<?xml" not in done.stderr


def test_bench_reads_local_settings_and_names_only_what_it_skips():
    env = {"TOKEN_FOR_TESTS": "the shell's own value"}
    done = cli(
        "bench",
        "--app",
        str(SETTINGS_APP),
        "--function",
        "greet",
        "--requests",
        "4",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] == 4  # GREETING came from local.settings.json
    assert "Skipping 'TOKEN_FOR_TESTS' from local settings" in done.stderr
    assert LOCAL_ONLY not in done.stderr + done.stdout
    assert "the shell's own value" not in done.stderr + done.stdout
    assert "same_b' function is in error" in done.stderr  # the host's line, once


def test_v1_app_serves_around_a_function_that_fails_to_load():
    functions = load_app(APPS / "v1_partly_broken")
    assert set(functions) == {"Good", "Broken"}  # host.json lists these (any case)
    assert "Worker failed to load function: 'Broken'" in (functions["Broken"].load_error or "")
    served = Served("v1_partly_broken")
    try:
        assert served.request("GET", "/api/Good")[2] == b"good"
        status, _, body = served.request("GET", "/api/Broken")
        assert status == 500 and b"a_package_this_app_forgot" in body
        assert served.request("GET", "/api/Unlisted")[0] == 404
    finally:
        out, err = served.stop()
    named = [line for line in err.splitlines() if "'Broken'" in line]
    assert len(named) == 1 and "ModuleNotFoundError" in named[0]
    assert "  Unlisted:" not in out and "  Good: [GET]" in out


def test_bench_refuses_the_broken_v1_function_in_one_line():
    done = cli("bench", "--app", str(APPS / "v1_partly_broken"), "--function", "Broken")
    assert done.returncode == 2
    assert (
        done.stderr.count("\n") <= 2 and "Worker failed to load function: 'Broken'" in done.stderr
    )


def test_a_queue_named_by_a_setting_drains():
    done = cli(
        "bench", "--app", str(SETTINGS_APP), "--function", "work", "--messages", "5", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] == 5  # work-items, from %WORK_QUEUE%
