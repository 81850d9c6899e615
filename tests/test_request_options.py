"""Requests that change state (--alone) and JSON bodies (--json-body) under bench."""

from __future__ import annotations

import json

import pytest
from conftest import APPS
from test_cli import cli

pytestmark = pytest.mark.timeout(120)
STOCK_APP = APPS / "stock_app"  # a stock of 40 per worker; POST /api/buy takes one


def buy(*extra: str):
    return cli(
        "bench",
        "--app",
        str(STOCK_APP),
        "--method",
        "POST",
        "--path",
        "/api/buy",
        "--requests",
        "40",
        "--concurrency",
        "4",
        "--processes",
        "1",
        "--json",
        *extra,
    )


def test_a_state_changing_request_is_named_before_the_run_and_its_stock_runs_short():
    done = buy()
    assert done.returncode == 0, done.stderr
    assert "note: POST is not a safe method" in done.stderr and "--alone" in done.stderr
    summary = json.loads(done.stdout)
    # The warm-up and the times alone (4 to 16 requests) bought before the window.
    assert 24 <= summary["ok"] <= 36 and summary["errors"] == 40 - summary["ok"]


@pytest.mark.parametrize("alone", ["none", "GET /api/stock"])
def test_time_alone_with_another_request_or_not_at_all(alone):
    done = buy("--alone", alone)
    assert done.returncode == 0, done.stderr
    assert "note:" not in done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] == 40  # nothing bought outside the window
    known = summary["ideal_rps"] > 0
    assert known == (alone != "none"), summary


def test_a_malformed_alone_is_one_line():
    done = buy("--alone", "delete everything")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "'GET /api/users/2'" in done.stderr


def test_json_body_sends_its_content_type_and_a_422_says_what_was_sent():
    pytest.importorskip("fastapi")
    body = '{"name": "a", "price": 10}'
    common = ("bench", "--app", str(APPS / "fastapi_app"), "--method", "POST", "--path", "/items")
    plain = cli(*common, "--body", body, "--requests", "4")
    assert plain.returncode == 0, plain.stderr
    assert "HTTP 422" in plain.stdout
    sent = f"sent: POST /items with a {len(body)}-byte body and no Content-Type"
    assert sent in plain.stdout and "--json-body" in plain.stdout
    done = cli(*common, "--json-body", body, "--requests", "4", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] == 4
    bad = cli(*common, "--json-body", "{name: a}")
    assert bad.returncode == 2 and "--json-body is not JSON" in bad.stderr


def test_a_function_that_calls_itself_at_req_url_works_under_bench():
    done = cli(
        "bench",
        "--app",
        str(APPS / "selfcall_app"),
        "--function",
        "outer",
        "--requests",
        "20",
        "--concurrency",
        "2",
        "--json",
    )
    # (More in flight than pool threads would starve the pool: each outer holds a thread
    # while its inner waits for one, as in Azure.)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] == 20, done.stdout
