"""A learner's error shows in a notebook as its one line, not as a traceback of the lab."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from throughput_lab.app_loader import AppLoadError
from throughput_lab.app_settings import SettingError
from throughput_lab.azurite import AzuriteNotFoundError
from throughput_lab.routing import RouteError


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """IPython's shell for this test only: left in place, it would change what display()
    does in every later test of this session."""
    yield InteractiveShell.instance()
    InteractiveShell.clear_instance()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # IPython's colours


@pytest.mark.parametrize("error", [AppLoadError, SettingError, AzuriteNotFoundError, RouteError])
def test_ipython_shows_one_line(shell: InteractiveShell, error: type[Exception]) -> None:
    shell.user_ns["error"] = error
    with capture_output() as shown:
        shell.run_cell("def deep():\n    raise error('what to do about it')\ndeep()")
    text = plain(shown.stdout + shown.stderr)
    assert f"{error.__name__}: what to do about it" in text
    assert "Traceback" not in text and "deep()" not in text


def test_other_errors_keep_their_traceback(shell: InteractiveShell) -> None:
    with capture_output() as shown:
        shell.run_cell("def deep():\n    raise KeyError('a bug of ours')\ndeep()")
    text = plain(shown.stdout + shown.stderr)
    assert "Traceback" in text and "deep()" in text
