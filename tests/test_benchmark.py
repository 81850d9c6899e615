"""The overhead benchmark runs and reports its figures (they are printed, not asserted)."""

import subprocess
import sys

from conftest import REPO


def test_engine_overhead_benchmark_reports():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "engine_overhead.py"), "--invocations", "3000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    for label in (
        "through one worker",
        "bare asyncio.gather",
        "overhead per invocation",
        "10 worker processes ready",
        "peak RSS",
    ):
        assert label in done.stdout
