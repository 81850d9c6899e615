"""Errors a learner can fix from their message alone (bad input, a missing tool).

In a notebook IPython shows an exception as a traceback, unless the exception renders
itself (``_render_traceback_``, which IPython's shell calls when it is there): these show
their one line, as the CLI prints them, with no frames of the lab's code to wade through.
"""

from __future__ import annotations


class LearnerError(Exception):
    """One line says what went wrong and what to do; no traceback in a notebook."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]
