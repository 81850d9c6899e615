"""Find and index a function app, as the worker does when it starts.

Python v2 model: the worker imports ``function_app.py`` from the app's folder (the script
root, on ``sys.path``), finds the one top-level ``azure.functions.FunctionRegister`` in it
(``FunctionApp``, ``AsgiFunctionApp``, ``WsgiFunctionApp``, Durable's ``DFApp``) and asks
it for its functions with ``get_functions()``; blueprints registered on it are included
(azure-functions-python-worker ``loader.index_function_app``).

Python v1 model: one folder per function with a ``function.json`` (bindings, and the
``scriptFile``/``entryPoint`` to call, default ``__init__.py``/``main``); the worker imports
it as the package ``__app__.<folder>`` (``loader.load_function``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import azure.functions as func

from .binding_expressions import UnresolvedSettingError, function_error, resolve
from .host_index import host_index
from .learner_errors import LearnerError

SCRIPT_FILE = "function_app.py"
FUNCTION_JSON = "function.json"
V1_PACKAGE = "__app__"  # the worker's package name for a v1 app's folder
BLOB_SOURCE_DEFAULT = "LogsAndContainerScan"  # the classic, polling blob trigger
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")


class AppLoadError(LearnerError):
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
    trigger_type: str = "httpTrigger"
    context_param: str | None = None  # ``context``, when the function declares it
    outputs: tuple[tuple[str, str], ...] = ()  # output bindings: (argument name, binding type)
    http_output: str = "$return"  # where the HTTP response comes from: return value or an Out
    unsupported: str | None = None  # why the engine cannot call it, e.g. an input binding
    directory: str = ""  # the function's folder, for ``context.function_directory``
    queue: str | None = None  # a storage queue trigger's queue name (queueTrigger only)
    # The trigger binding's other settings as function.json spells them (e.g. queueName,
    # isSessionsEnabled, eventHubName, cardinality): what a non-HTTP listener reads.
    trigger_settings: tuple[tuple[str, Any], ...] = ()
    # The host's "function is in error" (a route conflict, an unresolvable %SETTING%): the
    # host does not register it, so no request reaches it.
    error: str | None = None
    # The worker failed to load it (v1: its script failed to import): the host still routes
    # it, and each invocation fails with this (GrpcWorkerChannel.SendInvocationRequest).
    load_error: str | None = None
    # A blob trigger: its path ("images/{name}", %SETTING% resolved) and source
    # ("EventGrid" or "LogsAndContainerScan"); its blob bindings: (argument, "in"/"out", path).
    blob_path: str | None = None
    blob_source: str | None = None
    blob_bindings: tuple[tuple[str, str, str], ...] = ()

    def setting(self, key: str, default: Any = None) -> Any:
        """A trigger setting by its function.json name, case-insensitive (as the host)."""
        wanted = key.lower()
        return next((v for k, v in self.trigger_settings if k.lower() == wanted), default)

    def describe(self) -> dict[str, Any]:
        """Plain fields, safe to send between processes."""
        return {
            "name": self.name,
            "is_async": self.is_async,
            "is_http": self.is_http,
            "route": self.route,
            "methods": list(self.methods),
            "auth_level": self.auth_level,
            "trigger_type": self.trigger_type,
            "outputs": [list(o) for o in self.outputs],
            "unsupported": self.unsupported,
            "queue": self.queue,
            "error": self.error,
            "load_error": self.load_error,
            "blob_path": self.blob_path,
            "blob_source": self.blob_source,
            "blob_bindings": [list(b) for b in self.blob_bindings],
            "trigger_settings": [list(kv) for kv in self.trigger_settings],
        }

    @classmethod
    def from_description(cls, fields: dict[str, Any]) -> FunctionInfo:
        """The host's view of a function a worker indexed: everything but the code."""
        tuples = {
            "methods": tuple(fields.get("methods", ())),
            "outputs": tuple(tuple(o) for o in fields.get("outputs", ())),
            "blob_bindings": tuple(tuple(b) for b in fields.get("blob_bindings", ())),
            "trigger_settings": tuple(tuple(kv) for kv in fields.get("trigger_settings", ())),
        }
        return cls(**{**fields, **tuples}, func=None, trigger_param=None)

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
            context_param="context" if "context" in params[1:] else None,
        )


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value)).upper()


def _direction(binding: Any) -> str:
    """ "in", "out" or "inout", whether the library keeps an enum or its number."""
    direction = binding.direction
    if isinstance(direction, int):
        direction = func.decorators.core.BindingDirection(direction)
    return str(getattr(direction, "name", direction)).lower()


def _unsupported_inputs(function: str, inputs: list[tuple[str, str]]) -> str | None:
    if not inputs:
        return None
    named = ", ".join(f"{kind} input binding {name!r}" for name, kind in inputs)
    return (
        f"function {function!r} needs {named}, which this engine does not emulate "
        "(it serves HTTP triggers, context and output bindings)"
    )


def _context_param(fn: Callable[..., Any], bound: set[str]) -> str | None:
    """``context`` when the function declares it outside its bindings, as the worker checks."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    return "context" if "context" in params and "context" not in bound else None


def _trigger_settings(binding: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A trigger binding's settings (v1: function.json; v2: the decorator's dict form),
    as plain values that pickle: enums by their value."""
    settings = []
    for key, value in binding.items():
        if key in ("name", "type", "direction"):
            continue
        value = getattr(value, "value", value)
        if isinstance(value, str | int | float | bool) or value is None:
            settings.append((key, value))
    return tuple(settings)


def _is_queue_trigger(trigger_type: str) -> bool:
    """Only a storage queue trigger drains a storage queue: a serviceBusTrigger also has a
    queue name, and runs on the Service Bus listener."""
    return trigger_type.lower() == "queuetrigger"


def index_function(fn: func.decorators.function_app.Function, app_auth: Any) -> FunctionInfo:
    trigger = fn.get_trigger()
    user_function = fn.get_user_function()
    name = fn.get_function_name() or user_function.__name__
    is_http = fn.is_http_function()
    methods: tuple[str, ...] = ()
    route = auth = None
    if is_http and trigger is not None:
        raw_methods = getattr(trigger, "methods", None)
        methods = tuple(_enum_name(m) or "" for m in raw_methods) if raw_methods else ALL_METHODS
        route = getattr(trigger, "route", None) or fn.get_function_name()
        auth = _enum_name(getattr(trigger, "auth_level", None) or app_auth)
    bindings = [b for b in fn.get_bindings() if b is not trigger]
    outputs = tuple(
        (b.name, str(b.type)) for b in bindings if _direction(b) == "out" and b.name != "$return"
    )
    blobs = tuple(
        (b.name, _direction(b), str(getattr(b, "path", "")))
        for b in bindings
        if str(b.type) == "blob" and b.name != "$return"
    )
    is_blob = str(getattr(trigger, "type", "")) == "blobTrigger"
    # A blob trigger's lab reads its blob input bindings as the host does (blob/lab.py).
    inputs = [
        (b.name, str(b.type))
        for b in bindings
        if _direction(b) != "out" and not (is_blob and str(b.type) == "blob")
    ]
    bound = {b.name for b in bindings} | {getattr(trigger, "name", "")}
    trigger_type = str(getattr(trigger, "type", "") or "")
    info = FunctionInfo(
        name=name,
        func=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        trigger_param=getattr(trigger, "name", None),
        is_http=is_http,
        route=route,
        methods=methods,
        auth_level=auth,
        trigger_type=trigger_type,
        context_param=_context_param(user_function, bound),
        outputs=outputs,
        unsupported=_unsupported_inputs(name, inputs),
        blob_bindings=blobs,
        queue=getattr(trigger, "queue_name", None) if _is_queue_trigger(trigger_type) else None,
        trigger_settings=_trigger_settings(trigger.get_dict_repr()) if trigger else (),
    )
    if is_blob:
        source = getattr(trigger, "source", None)
        info = replace(
            info,
            blob_path=str(getattr(trigger, "path", "")),
            blob_source=str(getattr(source, "value", source) or BLOB_SOURCE_DEFAULT),
        )
    dicts = [b.get_dict_repr() for b in fn.get_bindings() if hasattr(b, "get_dict_repr")]
    queue = getattr(trigger, "queue_name", None) if _is_queue_trigger(trigger_type) else None
    return with_trigger_settings(info, queue, _text_values(dicts))


def index_app(app: func.FunctionRegister) -> dict[str, FunctionInfo]:
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
    """Index the app in ``folder``: v2 (``function_app.py``) if present, else v1 folders."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise AppLoadError(f"function app folder not found: {folder}")
    script = root / SCRIPT_FILE
    if script.is_file():
        return host_index(_load_v2(script), root)
    if sorted(root.glob(f"*/{FUNCTION_JSON}")):
        return host_index(load_v1_app(root), root)
    raise AppLoadError(
        f"no function app in {root}: a Python v2-model app has {SCRIPT_FILE}, "
        f"a v1-model app has one folder per function with {FUNCTION_JSON}"
    )


def _load_v2(script: Path) -> dict[str, FunctionInfo]:
    module = _import_script(script)
    # Any FunctionRegister, as the worker accepts: FunctionApp, AsgiFunctionApp, DFApp, ...
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if not apps:
        raise AppLoadError(
            f"{script} defines no function app object (azure.functions FunctionApp, "
            "AsgiFunctionApp, WsgiFunctionApp or another FunctionRegister)"
        )
    if len(apps) > 1:
        kinds = " and ".join(sorted({type(a).__name__ for a in apps}))
        raise AppLoadError(f"{script} defines {len(apps)} {kinds} objects; the worker needs one")
    folder = str(script.parent)
    return {n: replace(f, directory=folder) for n, f in index_app(apps[0]).items()}


def _v1_package(root: Path) -> None:
    """``__app__`` as a package whose folder is the app, so relative imports work."""
    for name in [m for m in sys.modules if m == V1_PACKAGE or m.startswith(V1_PACKAGE + ".")]:
        del sys.modules[name]  # a fresh import each time, as for function_app.py
    package = types.ModuleType(V1_PACKAGE)
    package.__path__ = [str(root)]
    sys.modules[V1_PACKAGE] = package
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _text_values(bindings: list[dict[str, Any]]) -> list[str]:
    return [v for b in bindings for v in b.values() if isinstance(v, str) and "%" in v]


def with_trigger_settings(
    info: FunctionInfo, queue_name: str | None, others: Sequence[str] = ()
) -> FunctionInfo:
    """The ``%SETTING%`` expressions of its queue name and blob paths resolved, or the
    function in error; ``others``: every other binding property that holds one (the host
    resolves them all when it indexes the function, e.g. an output's queue name)."""
    try:
        for text in others:
            resolve(text)
        return replace(
            info,
            queue=None if queue_name is None else resolve(str(queue_name)),
            blob_path=None if info.blob_path is None else resolve(info.blob_path),
            blob_bindings=tuple((n, d, resolve(p)) for n, d, p in info.blob_bindings),
            # e.g. a Service Bus trigger's queueName: what its listener reads, resolved
            trigger_settings=tuple(
                (k, resolve(v) if isinstance(v, str) else v) for k, v in info.trigger_settings
            ),
        )
    except UnresolvedSettingError as exc:
        queue = None if queue_name is None else str(queue_name)
        return replace(info, queue=queue, error=function_error(info.name, str(exc)))


def _v1_config(config_file: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The function.json and its one trigger binding (the host refuses any other count)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise AppLoadError(f"{config_file} is not valid JSON: {exc}") from exc
    bindings = config.get("bindings") or []
    triggers = [b for b in bindings if str(b.get("type", "")).lower().endswith("trigger")]
    if len(triggers) != 1:
        raise AppLoadError(f"{config_file} needs exactly one trigger binding, has {len(triggers)}")
    return config, triggers[0]


def _v1_entry(root: Path, name: str, config: dict[str, Any], folder: Path) -> Callable[..., Any]:
    """Import the function's script as the worker does (``__app__.<folder>``)."""
    script = folder / config.get("scriptFile", "__init__.py")
    entry = config.get("entryPoint") or "main"
    if script.suffix != ".py" or not script.is_file():
        raise AppLoadError(f"scriptFile {script} is not a Python file")
    parts = [V1_PACKAGE, *script.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    try:
        module = importlib.import_module(".".join(parts))
    except Exception as exc:
        raise AppLoadError(f"{script} failed to import: {type(exc).__name__}: {exc}") from exc
    user_function = getattr(module, entry, None)
    if not callable(user_function):
        raise AppLoadError(f"{script} has no function {entry}()")
    return user_function


def _v1_trigger_fields(name: str, trigger: dict[str, Any]) -> dict[str, Any]:
    """What function.json's trigger binding says: its type and settings, and what the host
    reads of an HTTP trigger (route, methods, auth level), a blob trigger (path, source) or
    a storage queue trigger (queue name)."""
    kind = str(trigger.get("type"))
    is_http = kind.lower() == "httptrigger"
    is_blob = kind.lower() == "blobtrigger"
    methods = tuple(m.upper() for m in trigger.get("methods") or ()) or ALL_METHODS
    return {
        "trigger_param": trigger.get("name"),
        "is_http": is_http,
        "route": (trigger.get("route") or name) if is_http else None,
        "methods": methods if is_http else (),
        "auth_level": str(trigger.get("authLevel", "function")).upper() if is_http else None,
        "trigger_type": kind,
        "blob_path": str(trigger.get("path", "")) if is_blob else None,
        "blob_source": str(trigger.get("source") or BLOB_SOURCE_DEFAULT) if is_blob else None,
        "queue": trigger.get("queueName") if _is_queue_trigger(kind) else None,
        "trigger_settings": _trigger_settings(trigger),
    }


def _v1_binding_fields(
    name: str, trigger: dict[str, Any], bindings: list[dict[str, Any]]
) -> dict[str, Any]:
    """What function.json's other bindings say: the outputs (an HTTP output names where the
    response comes from), the blob bindings a blob trigger's lab reads and writes, and the
    input bindings the engine does not emulate."""
    is_blob = str(trigger.get("type")).lower() == "blobtrigger"
    others = [b for b in bindings if b is not trigger]
    blobs = tuple(
        (str(b.get("name")), str(b.get("direction", "in")).lower(), str(b.get("path", "")))
        for b in others
        if str(b.get("type")).lower() == "blob" and b.get("name") != "$return"
    )
    outs = [b for b in others if str(b.get("direction", "")).lower() == "out"]
    http_outs = [b["name"] for b in outs if str(b.get("type")).lower() == "http"]
    outputs = tuple(
        (b["name"], str(b.get("type"))) for b in outs if b["name"] not in ("$return", *http_outs)
    )
    inputs = [
        (b.get("name", "?"), str(b.get("type")))
        for b in others
        if str(b.get("direction", "")).lower() != "out"
        and not (is_blob and str(b.get("type")).lower() == "blob")  # the blob lab reads these
    ]
    return {
        "outputs": outputs,
        "http_output": http_outs[0] if http_outs else "$return",
        "unsupported": _unsupported_inputs(name, inputs),
        "blob_bindings": blobs,
    }


def _v1_function(root: Path, config_file: Path) -> FunctionInfo:
    """One v1 function. Its function.json is the host's (an error there: in error, not
    routed); its script is the worker's (an error there: routed, each invocation fails)."""
    name = config_file.parent.name
    try:
        config, trigger = _v1_config(config_file)
    except AppLoadError as exc:
        return FunctionInfo(name, None, False, None, False, error=function_error(name, str(exc)))
    try:
        user_function: Callable[..., Any] | None = _v1_entry(root, name, config, config_file.parent)
        load_error = None
    except AppLoadError as exc:
        user_function, load_error = None, f"Worker failed to load function: '{name}': {exc}"
    bindings = config.get("bindings") or []
    context_param = (
        _context_param(user_function, {b.get("name") for b in bindings}) if user_function else None
    )
    info = FunctionInfo(
        name=name,
        func=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        context_param=context_param,
        directory=str(config_file.parent),
        load_error=load_error,
        **_v1_trigger_fields(name, trigger),
        **_v1_binding_fields(name, trigger, bindings),
    )
    return with_trigger_settings(info, info.queue, _text_values(bindings))


def load_v1_app(root: Path) -> dict[str, FunctionInfo]:
    """Index a v1-model app: each ``<folder>/function.json`` is one function."""
    _v1_package(root)
    return {
        info.name: info
        for info in (_v1_function(root, f) for f in sorted(root.glob(f"*/{FUNCTION_JSON}")))
    }


def find_function(functions: dict[str, FunctionInfo], name: str) -> FunctionInfo:
    """The function called ``name``, or an error that lists the known ones."""
    info = functions.get(name)
    if info is None:
        known = ", ".join(sorted(functions)) or "none"
        raise AppLoadError(f"unknown function {name!r}; this app has: {known}")
    if info.error or info.load_error:
        raise AppLoadError(info.error or info.load_error or "")
    if not info.is_http:
        raise AppLoadError(
            f"function {name!r} is not HTTP-triggered ({info.trigger_type}); "
            "only HTTP functions are run"
        )
    if info.unsupported:
        raise AppLoadError(info.unsupported)
    return info
