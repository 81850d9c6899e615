"""The verdict machinery itself: measure again near the line, never print a misleading ratio."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from throughput_lab.checks import (
    HELD,
    NOT_HELD,
    Criterion,
    CriterionResult,
    Exercise,
    RunVerdict,
    Verdict,
    digits,
    feedback,
    lesson,
)


def test_digits_never_print_a_miss_equal_to_its_limit():
    assert digits(1.2996, 1.3) == "1.300" or digits(1.2996, 1.3) == "1.2996"
    assert digits(1.2996, 1.3) != "1.30"
    assert digits(2.5, 1.3) == "2.50"


def test_a_lesson_near_its_line_is_measured_again_and_the_median_decides(capsys):
    ratios = iter([1.25, 1.5, 1.45, 9.0, 9.0])
    lesson("x", lambda: next(ratios), 1.3, "claim")
    out = capsys.readouterr().out
    assert out.startswith(HELD) and "median of 4 measurements" in out


def test_a_clear_lesson_is_measured_once(capsys):
    calls = []
    lesson("x", lambda: calls.append(1) or 5.0, 1.3, lambda r: f"r={r}")
    assert calls == [1]
    out = capsys.readouterr().out
    assert out.startswith(HELD) and "r=5.0" in out


def test_a_lesson_that_stays_under_its_line_does_not_hold(capsys):
    lesson("x", lambda: 1.1, 1.3, "claim", attempts=3)
    out = capsys.readouterr().out
    assert out.startswith(NOT_HELD) and "median of 3" in out


def test_a_first_measurement_already_made_is_used_and_measure_runs_only_again(capsys):
    calls = []
    lesson("x", lambda: calls.append(1) or 9.0, 1.3, "claim", first=5.0)
    assert calls == []  # clear of the line: the notebook's own measurement decides
    assert capsys.readouterr().out.startswith(f"{HELD} x: ratio 5.00 (expected >= 1.3)")
    ratios = iter([1.5, 9.0])
    lesson("x", lambda: calls.append(1) or next(ratios), 1.3, "claim", first=1.25)
    out = capsys.readouterr().out
    assert calls == [1, 1] and out.startswith(HELD) and "median of 3 measurements" in out
    with pytest.raises(TypeError):
        lesson("x", 1.0, 1.3, "claim", first=1.0)


def _exercise(values: list[float], limit: float) -> tuple[Exercise, list[float]]:
    """An exercise whose runs measure ``values`` in turn, checked against ``limit``."""
    runs = iter(values)
    measured: list[float] = []

    def run(lab, answer):
        value = next(runs)
        measured.append(value)
        # a run's result: RunResult and DrainResult both have line() and a summary
        line = lambda: f"{value}"  # noqa: E731
        return SimpleNamespace(value=value, line=line, summary=SimpleNamespace(line=line))

    def test(e):
        value = e.result.value
        return value >= limit, f"value {value}", abs(value - limit) <= 0.25 * limit

    lab = SimpleNamespace(upstream=SimpleNamespace(stats=SimpleNamespace(requests=0), delay_ms=1))
    exercise = Exercise("x", "t", [Criterion("at least the limit", test)], run=run, lab=lab)
    return exercise, measured


def test_a_check_near_its_limit_measures_again_before_it_says_no(capsys):
    exercise, measured = _exercise([0.9, 0.95, 1.2], limit=1.0)
    verdict = exercise.check("answer")
    assert verdict.passed and exercise.passed is True and measured == [0.9, 0.95, 1.2]
    assert verdict.retried and len(verdict.runs) == 3
    assert [(r.passed, r.near_limit) for run in verdict.runs for r in run.results] == [
        (False, True),
        (False, True),
        (True, True),
    ]
    assert "measuring again" in capsys.readouterr().out


def test_a_clear_miss_is_final_and_a_close_one_stops_after_three_runs():
    exercise, measured = _exercise([0.1, 5.0], limit=1.0)
    verdict = exercise.check("answer")
    assert not verdict.passed and exercise.passed is False and measured == [0.1]
    assert not verdict.retried and not verdict.results[0].near_limit
    exercise, measured = _exercise([0.9, 0.9, 0.9, 5.0], limit=1.0)
    verdict = exercise.check("answer")
    assert not verdict.passed and exercise.passed is False and len(measured) == 3
    assert len(verdict.runs) == 3 and all(run.close for run in verdict.runs)


def test_each_run_is_printed_as_soon_as_it_is_measured(capsys):
    """A run takes seconds: its "Running" line shows before it starts, its result after."""
    seen: list[str] = []
    exercise, _ = _exercise([0.9, 1.2], limit=1.0)
    run = exercise.run

    def watched(lab, answer):
        seen.append(capsys.readouterr().out)
        return run(lab, answer)

    exercise.run = watched
    verdict = exercise.check("answer")
    seen.append(capsys.readouterr().out)
    assert seen[0] == "[x] Running 'answer' ...\n"
    assert seen[1].startswith("  measured: 0.9\n") and seen[1].endswith("measuring again ...\n")
    assert "".join(seen).splitlines() == feedback(verdict)


def _run(line: str, *results: CriterionResult) -> RunVerdict:
    return RunVerdict(line, results, evidence=SimpleNamespace())


def test_the_feedback_of_a_verdict_word_for_word():
    near = CriterionResult("at least 4 at once", False, "3.5 at once", True, "Little's law")
    ok = CriterionResult("every request succeeds", True, "8 of 8 requests succeeded", False)
    verdict = Verdict(
        "04_fix_aiohttp",
        described="fix_aiohttp under load (8 in flight)",
        attempts=3,
        runs=(_run("9.0 req/s", ok, near), _run("12.0 req/s", ok, replace(near, passed=True))),
        explanation="The loop is free.",
    )
    assert feedback(verdict) == [
        "[04_fix_aiohttp] Running fix_aiohttp under load (8 in flight) ...",
        "  measured: 9.0 req/s",
        "  ✓ every request succeeds: 8 of 8 requests succeeded",
        "  ✗ at least 4 at once: 3.5 at once (Little's law)",
        "  That was close to the line, and one run on a busy machine can be slow.",
        "  measuring again ...",
        "  measured: 12.0 req/s",
        "  ✓ every request succeeds: 8 of 8 requests succeeded",
        "  ✓ at least 4 at once: 3.5 at once",
        "Correct! The loop is free.",
    ]
    assert verdict.passed and verdict.results[1].passed
    failed = replace(verdict, runs=verdict.runs[:1], error="TypeError: no")
    assert feedback(failed)[-3:] == [
        "  measuring again ...",
        "  ✗ the run failed: TypeError: no",
        "Not yet. Fix the error above and check again.",
    ]
    assert not failed.passed
    last = replace(verdict, runs=verdict.runs[:1], attempts=1)
    assert feedback(last)[-1] == "Not yet: see the ✗ lines above. Call .hint() for a hint."
    assert "That was close" not in "".join(feedback(last))
    nothing = Verdict("00_hello", task="write hello(req).", answered=False)
    assert feedback(nothing) == ["[00_hello] Nothing to check yet: write hello(req)."]
