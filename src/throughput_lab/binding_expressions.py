"""``%SETTING%`` in a binding's properties: replaced by that app setting's value, as the host does.

A queue name, a blob path, ... written ``%QUEUE_NAME%`` (or with text around it, such as
``%CONTAINER%/{name}``) is resolved from the app settings when the host indexes the
function. A name with no setting makes that function "in error": the host logs "The 'F'
function is in error: '%X%' does not resolve to a value." and does not run it; the rest of
the app runs. ``{name}``-style expressions are the trigger's own and are left alone.
Sources: azure-webjobs-sdk ``NameResolverExtensions.ResolveWholeString`` and
``DefaultNameResolver`` (app settings, i.e. the environment); the host's
``ScriptHostLoggerExtension.FunctionError`` ("The '{functionName}' function is in error:
{errorMessage}").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from .learner_errors import LearnerError

_SETTING = re.compile(r"%([^%]+)%")


class UnresolvedSettingError(LearnerError, ValueError):
    """A ``%NAME%`` with no app setting of that name."""


def resolve(text: str, settings: Mapping[str, str] | None = None) -> str:
    """``text`` with each ``%NAME%`` replaced by the app setting NAME (the environment)."""
    settings = os.environ if settings is None else settings

    def value(match: re.Match[str]) -> str:
        found = settings.get(match.group(1))
        if found is None:
            raise UnresolvedSettingError(f"'{match.group(0)}' does not resolve to a value.")
        return found

    return _SETTING.sub(value, text)


def function_error(function: str, why: str) -> str:
    """The host's one line for a function it will not run."""
    return f"The '{function}' function is in error: {why}"
