"""What a function logs and how it failed, tied to its invocation, as the worker reports them.

The real worker sends each ``logging`` record of an invocation to the host (which prints it
under ``func start``) and, for a failed invocation, the exception with its stack. Here the
records are kept on the invocation's record and travel back with its result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .invocation import InvocationRecord

# The invocation whose code runs in this task (async def) or this pool thread (def).
current_invocation: ContextVar[InvocationRecord | None] = ContextVar(
    "current_invocation", default=None
)

_ENGINE = os.path.dirname(os.path.abspath(__file__))
_STDLIB = os.path.dirname(os.path.dirname(os.path.abspath(asyncio.__file__)))


class InvocationLogHandler(logging.Handler):
    """Keep each log record on the invocation that wrote it (records outside one are left)."""

    def emit(self, record: logging.LogRecord) -> None:
        invocation = current_invocation.get()
        if invocation is not None:
            invocation.logs.append(f"{record.levelname}: {record.getMessage()}")


def capture_logs(level: int = logging.INFO) -> None:
    """Capture the functions' logging from ``level`` up, as the host shows it locally."""
    root = logging.getLogger()
    for handler in root.handlers:  # the worker's own stderr lines: not a function's records
        handler.setLevel(max(handler.level, root.level))
        handler.addFilter(lambda _record: current_invocation.get() is None)
    root.addHandler(InvocationLogHandler())
    root.setLevel(min(root.level or level, level))


def user_traceback(exc: BaseException) -> str:
    """The traceback from the function's first frame on: the engine's and asyncio's left out."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith((_ENGINE, _STDLIB)):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
