"""What the host does with the functions a worker indexed, before it runs any of them.

- host.json's ``"functions"`` list is an allow list: only the functions it names (any
  case) are loaded; the others are not there at all, and their errors are not reported
  (azure-functions-host ``FunctionMetadataManager.ApplyAllowList``: "A function allow list
  has been specified, excluding all but the following functions").
- HTTP routes are validated in the order of the functions' names (the metadata list is
  sorted ``OrdinalIgnoreCase``): a route under ``admin`` or ``runtime`` is refused ("The
  specified route conflicts with one or more built in routes."), and a route equal to an
  earlier function's (same text, ignoring case and outer slashes) whose methods overlap
  (no methods: all) is refused ("The route specified conflicts with the route defined by
  function 'X'."). A refused function is "in error": logged, not registered, and the
  rest of the app runs (``ScriptHost.ValidateFunction``, ``HttpRoutesConflict``,
  ``ValidateHttpFunction``; ``Utility.AddFunctionError``).
Sources read in azure-functions-host at commit 89dc438 (2024-10-24): ``src/WebJobs.Script/
Host/ScriptHost.cs`` and ``Host/FunctionMetadataManager.cs``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .binding_expressions import function_error

if TYPE_CHECKING:
    from .app_loader import FunctionInfo

RESERVED_ROUTES = ("admin", "runtime")


def allow_list(app: str | Path) -> list[str] | None:
    """host.json's ``"functions"``, or None when it has none."""
    try:
        config = json.loads((Path(app) / "host.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    names = config.get("functions") if isinstance(config, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def _conflicts(route: str, methods: tuple[str, ...], other: tuple[str, tuple[str, ...]]) -> bool:
    if route.strip("/").lower() != other[0].strip("/").lower():
        return False
    return not methods or not other[1] or bool(set(methods) & set(other[1]))


def host_index(functions: dict[str, FunctionInfo], app: str | Path) -> dict[str, FunctionInfo]:
    """``functions`` as the host keeps them: the allow list applied, routes validated."""
    allowed = allow_list(app)
    if allowed is not None:
        wanted = {n.lower() for n in allowed}
        functions = {n: f for n, f in functions.items() if n.lower() in wanted}
    routes: dict[str, tuple[str, tuple[str, ...]]] = {}
    checked: dict[str, FunctionInfo] = {}
    for name in sorted(functions, key=str.upper):  # OrdinalIgnoreCase, as routing.host_order
        info = functions[name]
        if info.is_http and not info.error:
            route = info.route or name
            why = _route_error(route, info.methods, routes)
            if why:
                info = replace(info, error=function_error(name, why))
            else:
                routes[name] = (route, info.methods)
        checked[name] = info
    return {name: checked[name] for name in functions}  # the worker's order, for listings


def _route_error(
    route: str, methods: tuple[str, ...], routes: dict[str, tuple[str, tuple[str, ...]]]
) -> str | None:
    if route.strip("/").lower().startswith(RESERVED_ROUTES):
        return "The specified route conflicts with one or more built in routes."
    for other, seen in routes.items():
        if _conflicts(route, methods, seen):
            return f"The route specified conflicts with the route defined by function '{other}'."
    return None


def error_lines(functions: dict[str, dict[str, Any]]) -> list[str]:
    """One line per function the host will not run as it is, naming it."""
    return [
        f.get("error") or f.get("load_error") or ""
        for f in functions.values()
        if f.get("error") or f.get("load_error")
    ]
