"""A worker's cold start, measured with the engine's own worker process (notebook 06).

Two apps that differ in one line, pandas imported at the top or inside the handler: the
worker reports the app's import time in Ready, and the lazy app pays the import at its
first invocation instead. Ratios within one run: a busy machine slows both sides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from throughput_lab import measure_cold_start

APPS = Path(__file__).parent / "apps"


def test_a_heavy_import_moves_from_the_start_to_the_first_invocation() -> None:
    eager = measure_cold_start(APPS / "pandas_eager", starts=1, function="summary")
    lazy = measure_cold_start(APPS / "pandas_lazy", starts=1, function="summary")
    assert 0 < eager.app_load_s < eager.startup_s
    # pandas at the top: its import is the app's; in the handler: the first call's
    assert eager.app_load_s > 5 * lazy.app_load_s, (eager.line(), lazy.line())
    assert lazy.first_call_ms is not None and lazy.next_call_ms is not None
    assert lazy.first_call_ms > 5 * max(lazy.next_call_ms, 1.0), lazy.line()
    assert eager.rss_mb > lazy.rss_mb + 10, (eager.line(), lazy.line())  # pandas held, or not
    assert "first invocation" in lazy.line() and eager.python in lazy.line()


def test_starts_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="starts must be >= 1"):
        measure_cold_start(APPS / "pandas_lazy", starts=0)
