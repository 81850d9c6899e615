"""Route a request to a function as the Functions host does.

The host maps each HTTP function's route template, behind the ``routePrefix`` of host.json
(``extensions.http.routePrefix``, default ``api``), as an ASP.NET Core ``Route`` with an
``HttpMethodRouteConstraint`` for its methods, and tries the routes in order: the first
whose template, constraints and method match takes the request. Several functions can
therefore share a route with different methods. When none matches, the request finds no
function and the host answers 404, for a wrong method too (no 405).
Sources: azure-functions-host ``WebScriptHostHttpRoutesManager.InitializeHttpFunctionRoutes``,
``FunctionInvocationMiddleware.GetResultAsync`` (``NotFoundResult``);
azure-webjobs-sdk-extensions ``WebJobsRouteBuilder`` (prefix + "/" + template,
``RouteCollection``); ASP.NET Core route templates and constraints (``{id:int}``,
``{id?}``, ``{id=7}``, ``{*path}``).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .invocation import HttpRequestFields
from .learner_errors import LearnerError

DEFAULT_ROUTE_PREFIX = "api"
_INT32, _INT64 = 2**31, 2**63
_GUID = re.compile(
    r"[0-9a-f]{32}|(?P<b>[{(])?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[})]?",
    re.IGNORECASE,
)


class RouteError(LearnerError, ValueError):
    """A route template the host would refuse at start."""


def route_prefix(app: str | Path | None) -> str:
    """``extensions.http.routePrefix`` from the app's host.json; ``api`` when not set."""
    if app is None:
        return DEFAULT_ROUTE_PREFIX
    try:
        config = json.loads((Path(app) / "host.json").read_text(encoding="utf-8-sig"))
        value = config.get("extensions", {}).get("http", {}).get("routePrefix")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_ROUTE_PREFIX
    return DEFAULT_ROUTE_PREFIX if value is None else str(value).strip("/")


def _whole(pattern: str, flags: int = 0) -> Callable[[str], bool]:
    compiled = re.compile(pattern, flags)
    return lambda v: compiled.fullmatch(v) is not None


def _integer(limit: int) -> Callable[[str], bool]:
    def check(v: str) -> bool:
        return re.fullmatch(r"\s*[+-]?\d+\s*", v) is not None and -limit <= int(v) < limit

    return check


def _number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _datetime(v: str) -> bool:
    try:
        datetime.datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _guid(v: str) -> bool:
    match = _GUID.fullmatch(v)
    if match is None:
        return False
    braces = match.group("b")  # {...} and (...) must close with their own kind
    return braces is None or v[-1] == {"{": "}", "(": ")"}[braces]


# ASP.NET Core's inline constraints (DefaultInlineConstraintResolver), without arguments.
_SIMPLE: dict[str, Callable[[str], bool]] = {
    "int": _integer(_INT32),
    "long": _integer(_INT64),
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": _whole(r"[a-z]*", re.IGNORECASE),
    "guid": _guid,
    "decimal": _number,
    "double": _number,
    "float": _number,
    "datetime": _datetime,
    "required": lambda v: v != "",
    "file": lambda v: "." in v.rsplit("/", 1)[-1].strip("."),
    "nonfile": lambda v: "." not in v.rsplit("/", 1)[-1].strip("."),
}


def _constraint(text: str) -> Callable[[str], bool]:
    name, _, rest = text.partition("(")
    if not rest:
        if name not in _SIMPLE:
            raise RouteError(f"the route constraint {name!r} is not one the host knows")
        return _SIMPLE[name]
    arg = rest[:-1] if rest.endswith(")") else rest
    if name == "regex":
        # RegexRouteConstraint: IsMatch, so unanchored unless the pattern anchors itself.
        pattern = re.compile(arg, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    try:
        numbers = [int(a) for a in arg.split(",")]
    except ValueError:
        raise RouteError(f"the route constraint {text!r} needs whole numbers") from None
    checks: dict[str, Callable[[str], bool]] = {
        "minlength": lambda v: len(v) >= numbers[0],
        "maxlength": lambda v: len(v) <= numbers[0],
        "length": lambda v: numbers[0] <= len(v) <= numbers[-1],
        "min": lambda v: _integer(_INT64)(v) and int(v) >= numbers[0],
        "max": lambda v: _integer(_INT64)(v) and int(v) <= numbers[0],
        "range": lambda v: _integer(_INT64)(v) and numbers[0] <= int(v) <= numbers[-1],
    }
    if name not in checks:
        raise RouteError(f"the route constraint {name!r} is not one the host knows")
    return checks[name]


@dataclass
class _Parameter:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    constraints: list[Callable[[str], bool]] = field(default_factory=list)


def _split_braces(segment: str, template: str) -> list[str | _Parameter]:
    """A segment's literal text and ``{...}`` parameters; ``{{``/``}}`` are literal braces."""
    parts: list[str | _Parameter] = []
    literal, i = "", 0
    while i < len(segment):
        ch = segment[i]
        if segment.startswith(("{{", "}}"), i):
            literal, i = literal + ch, i + 2
        elif ch == "{":
            j, inner = i + 1, ""
            while j < len(segment) and not (segment[j] == "}" and segment[j + 1 : j + 2] != "}"):
                step = 2 if segment.startswith(("{{", "}}"), j) else 1
                inner, j = inner + segment[j], j + step
            if j >= len(segment):
                raise RouteError(f"route {template!r}: unclosed '{{'")
            if literal:
                parts.append(literal)
                literal = ""
            parts.append(_parse_parameter(inner, template))
            i = j + 1
        elif ch == "}":
            raise RouteError(f"route {template!r}: '}}' without '{{'")
        else:
            literal, i = literal + ch, i + 1
    if literal:
        parts.append(literal)
    return parts


def _parse_parameter(inner: str, template: str) -> _Parameter:
    catch_all = inner.startswith("*")
    inner = inner.lstrip("*")
    name, _, constraint_text = inner.partition(":")
    default = None
    if "=" in name:  # {id=7}
        name, default = name.split("=", 1)
    optional = name.endswith("?")
    name = name.rstrip("?")
    constraints = []
    if constraint_text:
        # Constraints are separated by ':' outside parentheses: {id:int:min(1)}.
        pieces = re.findall(r"(?:[^:(]|\([^)]*\))+", constraint_text)
        if pieces and pieces[-1].endswith("?"):
            optional, pieces[-1] = True, pieces[-1][:-1]
        if pieces and "=" in pieces[-1] and not pieces[-1].startswith("regex"):
            pieces[-1], default = pieces[-1].split("=", 1)
        constraints = [_constraint(p) for p in pieces]
    if not re.fullmatch(r"\w+", name):
        raise RouteError(f"route {template!r}: bad parameter name {name!r}")
    optional = optional or catch_all or default is not None  # a default makes it omissible
    return _Parameter(name, optional, catch_all, default, constraints)


@dataclass
class RouteTemplate:
    """One route template, with the prefix in front, matched against a request path."""

    template: str
    regex: re.Pattern[str] = field(init=False, repr=False)
    parameters: list[_Parameter] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.parameters = []
        pattern = ""
        for segment in [s for s in self.template.strip("/").split("/") if s]:
            parts = _split_braces(segment, self.template)
            lone = len(parts) == 1 and isinstance(parts[0], _Parameter)
            piece = ""
            for part in parts:
                if isinstance(part, str):
                    piece += re.escape(part)
                else:
                    self.parameters.append(part)
                    body = ".*" if part.catch_all else "[^/]+"
                    piece += f"(?P<{part.name}>{body})" + (
                        "?" if part.optional and not lone else ""
                    )
            if lone and parts[0].optional:  # type: ignore[union-attr]
                pattern += f"(?:/{piece})?"
            else:
                pattern += "/" + piece
        self.regex = re.compile((pattern or "/") + "/?", re.IGNORECASE)

    def match(self, path: str) -> dict[str, str] | None:
        """The route values for ``path`` (decoded), or None when it does not match."""
        found = self.regex.fullmatch(path if path.startswith("/") else "/" + path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for parameter in self.parameters:
            raw = found.group(parameter.name)
            value = unquote(raw) if raw else parameter.default
            if value is None or (value == "" and not parameter.catch_all):
                if not parameter.optional:
                    return None
                continue  # an optional value not given: the host passes no route value
            if not all(check(value) for check in parameter.constraints):
                return None
            values[parameter.name] = value
        return values


@dataclass(frozen=True)
class RouteMatch:
    function: str
    route_params: dict[str, str]


def host_order(name: str) -> str:
    """The host's order of functions: by name, ``StringComparer.OrdinalIgnoreCase`` (which
    compares upper case: "getitem" comes before "get_item")."""
    return name.upper()


class Router:
    """The host's route table for an app's HTTP functions, tried in the host's order.

    The host maps each function's route in the order of its functions, which
    ``FunctionMetadataManager`` sorts by name (OrdinalIgnoreCase), and the route collection
    tries them in that order (azure-functions-host ``WebScriptHostHttpRoutesManager``,
    azure-webjobs-sdk-extensions ``WebJobsRouteBuilder.Build``: no reordering, read at
    commit 2e7550f, 2024-10-14): ``catalog/{id}`` of ``get_item`` takes ``catalog/health``
    before a function named ``health`` is tried.
    """

    def __init__(self, functions: Iterable[Mapping[str, Any]], prefix: str = "api") -> None:
        self.prefix = prefix.strip("/")
        self.routes: list[tuple[str, RouteTemplate, frozenset[str]]] = []
        for info in sorted(functions, key=lambda f: host_order(str(f["name"]))):
            if not info.get("is_http") or info.get("error"):  # in error: never registered
                continue
            template = RouteTemplate(self.path_template(info.get("route") or info["name"]))
            methods = frozenset(m.upper() for m in info.get("methods") or ())
            self.routes.append((info["name"], template, methods))

    def path_template(self, route: str) -> str:
        """``/<prefix>/<route>``, as the host composes it (no prefix when it is empty)."""
        route = route.strip("/")
        return "/" + "/".join(p for p in (self.prefix, route) if p)

    def match(self, method: str, path: str) -> RouteMatch | None:
        for name, template, methods in self.routes:
            if methods and method.upper() not in methods:
                continue
            values = template.match(path)
            if values is not None:
                return RouteMatch(name, values)
        return None

    def functions_at(self, path: str) -> list[str]:
        """Functions whose template matches ``path`` whatever the method (for messages)."""
        return [name for name, template, _ in self.routes if template.match(path) is not None]


def host_request(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    route_params: Mapping[str, str] | None = None,
) -> HttpRequestFields:
    """The fields the host sends the worker for a request it received at ``url``.

    The full URL as received; header names in lower case; a query key given more than
    once is one value, its values joined by commas (ASP.NET's ``StringValues.ToString()``),
    and a key with an empty value is left out (azure-functions-host
    ``GrpcMessageConversionExtensions.ToRpcHttp``).
    """
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    joined_headers: dict[str, list[str]] = {}
    for name, value in headers:
        joined_headers.setdefault(name.lower(), []).append(value)
    return HttpRequestFields(
        method=method.upper(),
        route=urlsplit(url).path,
        params={k: ",".join(v) for k, v in query.items() if ",".join(v)},
        headers={k: ",".join(v) for k, v in joined_headers.items()},
        route_params=dict(route_params or {}),
        body=body,
        url=url,
    )


LOCAL_BASE = "http://127.0.0.1:7071"  # where ``func start`` would serve the app


def plan_request(
    functions: Mapping[str, Mapping[str, Any]],
    prefix: str,
    function: str | None = None,
    method: str | None = None,
    path: str | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    base: str = LOCAL_BASE,
) -> tuple[str, HttpRequestFields]:
    """The function a request reaches and the fields the host would send it (its URL on
    ``base``: where the host's front end listens).

    With ``path`` (e.g. ``/v1/users/7``) the path is routed like the host; ``function``, if
    also given, must be the one it reaches. Without it, the function's own route is used,
    which must then have no parameters.
    """
    router = Router(functions.values(), prefix)
    if path is None:
        if function is None:
            raise ValueError("name a function, or give a request path such as /api/name")
        info = functions.get(function)
        if info is not None and info.get("error"):  # the host did not register it
            raise ValueError(info["error"])
        if info is None or not info.get("is_http"):
            return function, HttpRequestFields(method=method or "GET", params=dict(params or {}))
        template = router.path_template(info.get("route") or function)
        if "{" in template:
            raise ValueError(
                f"function {function!r} is at {template}: give a concrete --path "
                f"(path=...), e.g. {re.sub(r'{[^}]*}', '1', template)}"
            )
        path = template
        allowed = [m.upper() for m in info.get("methods") or ()]
        method = method or ("GET" if "GET" in allowed or not allowed else allowed[0])
    method = (method or "GET").upper()
    split = urlsplit(path if path.startswith("/") else "/" + path)
    query = parse_qsl(split.query, keep_blank_values=True) + list((params or {}).items())
    match = router.match(method, unquote(split.path))
    if match is None:
        others = router.functions_at(unquote(split.path))
        hint = f" ({', '.join(others)} answer other methods there)" if others else ""
        raise ValueError(f"no function answers {method} {split.path}: the host says 404{hint}")
    if function is not None and match.function != function:
        raise ValueError(f"{method} {split.path} reaches {match.function!r}, not {function!r}")
    url = base + split.path + (f"?{urlencode(query)}" if query else "")
    fields = host_request(method, url, (headers or {}).items(), body, match.route_params)
    return match.function, fields
