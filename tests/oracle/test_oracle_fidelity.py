"""Fidelity oracle: the engine against Microsoft's own dispatch code (issue 6).

The same function app (``oracle_app/``), loaded by each side's own loader, gets the same
burst of concurrent invocations on each side: through ``azure-functions-runtime``'s
``invocation_request_native`` (the Python worker's dispatch without host or gRPC), through
the engine's ``Worker``, and through the engine's ``Host`` with a real worker process. The
bursts must take the same time within 15% in every case. Timings are compared as ratios
measured in one run, so a slow or busy machine moves both sides alike.

Microsoft's runtime is a test-only dependency. Where it cannot be imported these tests
are skipped with the reason and the install command (``pytest -ra`` lists it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import oracle_driver as oracle
import pytest

from throughput_lab.worker import Worker

pytestmark = pytest.mark.oracle

MISSING = oracle.runtime_missing_reason()
CASES = oracle.default_cases()


def need_runtime() -> None:
    if MISSING:
        pytest.skip(MISSING)


@pytest.fixture(scope="module")
def rows() -> dict[str, oracle.Row]:
    need_runtime()
    return {row.case.key: row for row in oracle.compare(CASES, host=True)}


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_engine_agrees_with_microsoft(
    rows: dict[str, oracle.Row], case: oracle.Case, summary: Callable[[str], None]
) -> None:
    if case is CASES[0]:  # the side-by-side table, once, in the run's summary
        table = oracle.format_table(list(rows.values()))
        summary(f"fidelity oracle: engine vs Microsoft's dispatch code\n{table}")
    row = rows[case.key]
    assert row.microsoft_s is not None and row.ratio is not None
    detail = (
        f"{case.title}, {case.invocations} invocations of {case.wait_ms} ms: "
        f"engine {row.engine_s:.3f} s, Microsoft's runtime {row.microsoft_s:.3f} s, "
        f"ideal {row.ideal_s:.3f} s (best of {row.attempts} attempts)"
    )
    assert abs(row.ratio - 1) <= oracle.TOLERANCE, f"engine/Microsoft = {row.ratio:.2f}: {detail}"


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_host_agrees_with_microsoft(rows: dict[str, oracle.Row], case: oracle.Case) -> None:
    row = rows[case.key]
    assert row.host_s is not None and row.host_ratio is not None
    assert abs(row.host_ratio - 1) <= oracle.TOLERANCE, (
        f"Host/Microsoft = {row.host_ratio:.2f} for {case.title}: through the Host "
        f"{row.host_s:.3f} s, Microsoft's runtime {row.microsoft_s:.3f} s"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_microsoft_matches_what_its_code_implies(
    rows: dict[str, oracle.Row], case: oracle.Case
) -> None:
    """The oracle itself is sane: Microsoft's timing is the staircase its code implies
    (ceil(N / pool) waits for ``def``, one wait for awaiting ``async def``, N waits for a
    blocking one), so the agreement above is about the model, not about both being slow."""
    row = rows[case.key]
    assert row.microsoft_s is not None
    assert 0.95 <= row.microsoft_s / row.ideal_s <= 1 + oracle.TOLERANCE, (
        f"{case.title}: Microsoft's runtime took {row.microsoft_s:.3f} s, "
        f"its code implies {row.ideal_s:.3f} s"
    )


@pytest.mark.parametrize("setting", ["1", "4", "1000", None, "", "0", "-3", "abc", "4.0", " 8 "])
def test_thread_setting_read_alike(setting: str | None) -> None:
    """PYTHON_THREADPOOL_THREAD_COUNT gives the same pool size on both sides, valid or not."""
    need_runtime()
    assert oracle.engine_pool_size(setting) == oracle.microsoft_pool_size(setting), (
        f"PYTHON_THREADPOOL_THREAD_COUNT={setting!r}: engine pool "
        f"{oracle.engine_pool_size(setting)}, Microsoft's {oracle.microsoft_pool_size(setting)}"
    )


class OneThreadWorker(Worker):
    """A wrong model on purpose: the pre-3.9 default (1 thread) whatever the setting says."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.pool.shutdown()
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.threads = 1


def test_oracle_catches_a_wrong_model() -> None:
    """The comparison has teeth: a worker model with the wrong default pool disagrees."""
    need_runtime()
    case = next(c for c in CASES if c.key == "sync-unset")
    wrong = oracle.EngineSide(worker_class=OneThreadWorker)
    [row] = oracle.compare([case], engine=wrong, attempts=1)
    assert row.ratio is not None
    assert row.ratio > 1 + oracle.TOLERANCE, (
        f"a one-thread worker took {row.engine_s:.3f} s and Microsoft's runtime "
        f"{row.microsoft_s:.3f} s: the oracle cannot tell them apart"
    )
    expected = math.ceil(case.invocations / 1) * case.wait_ms / 1e3
    assert row.engine_s >= 0.9 * expected


@pytest.mark.parametrize(
    "function", ["returns_response", "returns_text", "returns_none", "returns_bytes"]
)
def test_return_value_outcome_alike(function: str) -> None:
    """A handler's return value becomes the same response (or the same failure)."""
    need_runtime()
    microsoft = oracle.MicrosoftSide().respond_once(function)
    engine = oracle.EngineSide().respond_once(function)
    assert engine.ok == microsoft.ok, f"{function}: Microsoft {microsoft}, engine {engine}"
    assert (engine.status, engine.body) == (microsoft.status, microsoft.body)


def test_response_headers_alike() -> None:
    """The response's headers are the ones the worker would send (names compared
    case-insensitively, as HTTP does)."""
    need_runtime()
    microsoft = oracle.MicrosoftSide().respond_once("returns_response")
    engine = oracle.EngineSide().respond_once("returns_response")
    assert engine.headers == microsoft.headers
