"""HTTP streaming (azurefunctions-extensions-http-fastapi), run as the worker runs it: the
extension's web server in the worker, the request forwarded to it, the response relayed
chunk by chunk. Time to first byte against the whole response, within one run."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from conftest import APPS
from test_cli import cli
from test_own_apps import Served

pytest.importorskip("azurefunctions.extensions.http.fastapi")
pytestmark = pytest.mark.timeout(120)
APP = APPS / "streaming_app"  # five chunks 50 ms apart


def test_bench_times_the_first_byte_and_the_whole_response():
    done = cli(
        "bench",
        "--app",
        str(APP),
        "--function",
        "stream",
        "--requests",
        "12",
        "--concurrency",
        "4",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] == 12, summary["error_samples"]
    first, whole = summary["first_byte_ms"]["p50"], summary["latency_ms"]["p50"]
    assert whole >= 200  # the last chunk comes after four 50 ms pauses
    assert first < whole / 3, (first, whole)  # the first comes at once
    assert "uvicorn" not in done.stderr.lower().replace("uvicorn running", "")


def test_serve_relays_chunks_as_they_come_and_streams_the_request_body():
    served = Served("streaming_app")
    try:
        began = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/api/stream") as answer:
            first = answer.readline()
            first_at = time.monotonic() - began
            rest = answer.read()
        whole_at = time.monotonic() - began
        assert first == b"chunk 0\n" and rest.count(b"chunk") == 4
        assert first_at < whole_at / 2, (first_at, whole_at)
        body = b"x" * 300_000
        status, _, answer_body = served.request("POST", "/api/upload/photo", body)
        assert status == 200 and json.loads(answer_body) == {"name": "photo", "bytes": 300_000}
    finally:
        out, _ = served.stop()
    assert "GET /api/stream -> 200" in out and "stream" in out
