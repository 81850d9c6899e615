"""``local.settings.json``: the app settings ``func start`` loads from the app's folder.

Core Tools reads the file's ``Values`` and sets each as an environment variable of the
host, which passes its environment to the worker as app settings. A variable already set
(non-empty) in the environment wins, and Core Tools says so, naming it but never its
value: "Skipping 'X' from local settings as it's already defined in current environment
variables." A setting with an empty value is set empty. ``IsEncrypted`` true (or absent)
means the values were encrypted for one Windows user (``func settings encrypt``); Core
Tools then fails with "Failed to decrypt settings" where it cannot decrypt them. A file
that is not valid JSON is a warning, and no settings.
Sources: azure-functions-core-tools ``src/Cli/func/Actions/HostActions/StartHostAction.cs``
(``UpdateEnvironmentVariables``) and ``src/Cli/func/Common/AppSettingsFile.cs``
(``IsEncrypted ?? true``, ``GetValues``), read at commit 3ee97a6 (2026-08-20).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from .learner_errors import LearnerError

LOCAL_SETTINGS = "local.settings.json"

_said: set[tuple[str, str]] = set()  # (app, line): each is said once per process


class LocalSettingsError(LearnerError, ValueError):
    """A local.settings.json that Core Tools could not use either."""


def read_values(app: str | Path, say: Callable[[str], None] | None = None) -> dict[str, str]:
    """The ``Values`` of the app's local.settings.json (none when there is no file)."""
    path = Path(app) / LOCAL_SETTINGS
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError:
        return {}
    try:
        config = json.loads(text)
        values = config.get("Values") or {}
        encrypted = config.get("IsEncrypted", True)
    except (ValueError, AttributeError) as exc:
        say_once(str(app), f"{path} is not valid JSON ({exc}); no local settings are loaded", say)
        return {}
    if not isinstance(values, dict):
        raise LocalSettingsError(f"{path}: 'Values' must be an object of setting names")
    plain = {str(k): "" if v is None else str(v) for k, v in values.items()}
    if encrypted is not False and any(plain.values()):
        raise LocalSettingsError(
            f"{path}: IsEncrypted is {'absent' if 'IsEncrypted' not in config else 'true'}, "
            "so its values are encrypted for one Windows user; Core Tools fails here too "
            '("Failed to decrypt settings"): set "IsEncrypted": false with plain values'
        )
    return plain


def app_environment(
    app: str | Path | None,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """The environment ``func start`` gives the app: ``environ`` plus the local settings
    that it does not already set (non-empty). Names of the skipped ones are said once."""
    env = dict(os.environ if environ is None else environ)
    if app is None:
        return env
    for name, value in read_values(app, say).items():
        if not name:
            say_once(str(app), "Skipping local setting with empty key.", say)
        elif env.get(name):
            line = (
                f"Skipping '{name}' from local settings as it's already defined in "
                "current environment variables."
            )
            say_once(str(app), line, say)
        else:
            env[name] = value
    return env


def say_once(app: str, line: str, say: Callable[[str], None] | None = None) -> None:
    """Say ``line`` about ``app`` on stderr, once in this process (a sweep starts many hosts)."""
    if (app, line) in _said:
        return
    _said.add((app, line))
    if say is None:
        from .supervision import say as host_say

        say = host_say
    say(line)
