"""The verdict machinery itself: measure again near the line, never print a misleading ratio."""

from __future__ import annotations

from types import SimpleNamespace

from throughput_lab.checks import HELD, NOT_HELD, Criterion, Exercise, digits, lesson


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


def _exercise(values: list[float], limit: float) -> tuple[Exercise, list[float]]:
    """An exercise whose runs measure ``values`` in turn, checked against ``limit``."""
    runs = iter(values)
    measured: list[float] = []

    def run(lab, answer):
        value = next(runs)
        measured.append(value)
        return SimpleNamespace(value=value, summary=SimpleNamespace(line=lambda: f"{value}"))

    def test(e):
        value = e.result.value
        return value >= limit, f"value {value}", abs(value - limit) <= 0.25 * limit

    lab = SimpleNamespace(upstream=SimpleNamespace(stats=SimpleNamespace(requests=0), delay_ms=1))
    exercise = Exercise("x", "t", [Criterion("at least the limit", test)], run=run, lab=lab)
    return exercise, measured


def test_a_check_near_its_limit_measures_again_before_it_says_no(capsys):
    exercise, measured = _exercise([0.9, 0.95, 1.2], limit=1.0)
    exercise.check("answer")
    assert exercise.passed is True and measured == [0.9, 0.95, 1.2]
    assert "measuring again" in capsys.readouterr().out


def test_a_clear_miss_is_final_and_a_close_one_stops_after_three_runs():
    exercise, measured = _exercise([0.1, 5.0], limit=1.0)
    exercise.check("answer")
    assert exercise.passed is False and measured == [0.1]
    exercise, measured = _exercise([0.9, 0.9, 0.9, 5.0], limit=1.0)
    exercise.check("answer")
    assert exercise.passed is False and len(measured) == 3
