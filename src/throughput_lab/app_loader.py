"""Find and index a Python v2-model function app, as the worker does when it starts.

The worker imports ``function_app.py`` from the app's folder (the script root, on
``sys.path``), finds the one ``azure.functions.FunctionApp`` in it and asks it for its
functions with ``get_functions()``. Blueprints registered on the app are included there.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

SCRIPT_FILE = "function_app.py"
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")


class AppLoadError(Exception):
    """The function app could not be found, imported or indexed."""


@dataclass(frozen=True)
class FunctionInfo:
    """One indexed function: what the worker keeps to invoke it."""

    name: str
    func: Callable[..., Any] | None = field(repr=False, compare=False)  # None: described only
    is_async: bool
    trigger_param: str | None  # the argument that receives the trigger's input (e.g. ``req``)
    is_http: bool
    route: str | None = None
    methods: tuple[str, ...] = ()
    auth_level: str | None = None
    queue: str | None = None  # a queue trigger's queue name

    def describe(self) -> dict[str, Any]:
        """Plain fields, safe to send between processes."""
        return {
            "name": self.name,
            "is_async": self.is_async,
            "is_http": self.is_http,
            "route": self.route,
            "methods": list(self.methods),
            "auth_level": self.auth_level,
            "queue": self.queue,
        }

    @classmethod
    def from_description(cls, fields: dict[str, Any]) -> FunctionInfo:
        """The host's view of a function a worker indexed: everything but the code."""
        return cls(**{**fields, "methods": tuple(fields["methods"])}, func=None, trigger_param=None)

    @classmethod
    def from_callable(cls, fn: Callable[..., Any], route: str | None = None) -> FunctionInfo:
        """An HTTP function from a plain handler, e.g. one a learner wrote in a notebook cell."""
        params = list(inspect.signature(fn).parameters)
        return cls(
            name=fn.__name__,
            func=fn,
            is_async=inspect.iscoroutinefunction(fn),
            trigger_param=params[0] if params else None,
            is_http=True,
            route=route or fn.__name__,
            methods=("GET", "POST"),
            auth_level="ANONYMOUS",
        )


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value)).upper()


def index_function(fn: func.decorators.function_app.Function, app_auth: Any) -> FunctionInfo:
    trigger = fn.get_trigger()
    user_function = fn.get_user_function()
    is_http = fn.is_http_function()
    methods: tuple[str, ...] = ()
    route = auth = None
    if is_http and trigger is not None:
        raw_methods = getattr(trigger, "methods", None)
        methods = tuple(_enum_name(m) or "" for m in raw_methods) if raw_methods else ALL_METHODS
        route = getattr(trigger, "route", None) or fn.get_function_name()
        auth = _enum_name(getattr(trigger, "auth_level", None) or app_auth)
    return FunctionInfo(
        name=fn.get_function_name() or user_function.__name__,
        func=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        trigger_param=getattr(trigger, "name", None),
        is_http=is_http,
        route=route,
        methods=methods,
        auth_level=auth,
        queue=getattr(trigger, "queue_name", None),
    )


def index_app(app: func.FunctionApp) -> dict[str, FunctionInfo]:
    """Index an app object already in hand (e.g. one built in a notebook cell)."""
    # get_functions() remembers the names it has seen and refuses them the second time; the
    # worker indexes once per process, but a notebook may index the same app object again.
    app.functions_bindings = None
    try:
        functions = app.get_functions()
    except Exception as exc:  # the library's own validation, e.g. duplicate names
        raise AppLoadError(f"the function app could not be indexed: {exc}") from exc
    auth = getattr(app, "auth_level", None)
    return {info.name: info for info in (index_function(f, auth) for f in functions)}


def _import_script(script: Path) -> Any:
    folder = str(script.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # A fresh module each time, so a notebook that edits the app sees the edit.
    sys.modules.pop("function_app", None)
    spec = importlib.util.spec_from_file_location("function_app", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop("function_app", None)
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(folder)
        ]
        where = f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""
        raise AppLoadError(
            f"{script} failed to import: {type(exc).__name__}: {exc}{where}"
        ) from exc
    return module


def load_app(folder: str | Path) -> dict[str, FunctionInfo]:
    """Import ``function_app.py`` from ``folder`` and index its one FunctionApp."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise AppLoadError(f"function app folder not found: {folder}")
    script = root / SCRIPT_FILE
    if not script.is_file():
        raise AppLoadError(
            f"no {SCRIPT_FILE} in {root}: a Python v2-model function app keeps its functions there"
        )
    module = _import_script(script)
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
    if not apps:
        raise AppLoadError(f"{script} defines no azure.functions.FunctionApp object")
    if len(apps) > 1:
        raise AppLoadError(
            f"{script} defines {len(apps)} FunctionApp objects; the worker needs one"
        )
    return index_app(apps[0])


def find_function(functions: dict[str, FunctionInfo], name: str) -> FunctionInfo:
    """The function called ``name``, or an error that lists the known ones."""
    info = functions.get(name)
    if info is None:
        known = ", ".join(sorted(functions)) or "none"
        raise AppLoadError(f"unknown function {name!r}; this app has: {known}")
    if not info.is_http:
        raise AppLoadError(f"function {name!r} is not HTTP-triggered; only HTTP functions are run")
    return info
