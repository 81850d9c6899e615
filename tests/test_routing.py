"""Routing like the Functions host: routePrefix, templates, constraints, methods, 404."""

import pytest
from conftest import APPS, SAMPLE_APP

from throughput_lab.routing import RouteError, Router, host_request, plan_request, route_prefix

REST = [
    {"name": "list_users", "is_http": True, "route": "users", "methods": ["GET"]},
    {"name": "create_user", "is_http": True, "route": "users", "methods": ["POST"]},
    {"name": "get_user", "is_http": True, "route": "users/{id:int}", "methods": ["GET"]},
    {"name": "files", "is_http": True, "route": "files/{*path}", "methods": ["GET"]},
    {"name": "pages", "is_http": True, "route": "pages/{page:alpha?}", "methods": []},
    {"name": "tick", "is_http": False, "route": None, "methods": []},
]


def test_route_prefix_from_host_json():
    assert route_prefix(APPS / "rest_app") == "v1"
    assert route_prefix(APPS / "fastapi_app") == ""  # the FastAPI/Flask samples' setting
    assert route_prefix(SAMPLE_APP) == "api"  # not set: the host's default


@pytest.mark.parametrize(
    ("method", "path", "function", "values"),
    [
        ("GET", "/v1/users", "list_users", {}),
        ("POST", "/v1/users/", "create_user", {}),  # a trailing slash still matches
        ("get", "/V1/Users", "list_users", {}),  # literals match without regard to case
        ("GET", "/v1/users/7", "get_user", {"id": "7"}),
        ("GET", "/v1/users/-7", "get_user", {"id": "-7"}),
        ("GET", "/v1/users/x", None, None),  # {id:int}
        ("GET", "/v1/users/2147483648", None, None),  # int is 32-bit
        ("DELETE", "/v1/users", None, None),  # wrong method: no route matches, 404
        ("GET", "/v1/files/a/b c.txt", "files", {"path": "a/b c.txt"}),
        ("GET", "/v1/files", "files", {}),  # a catch-all may be empty
        ("PUT", "/v1/pages", "pages", {}),  # optional value absent: not passed at all
        ("GET", "/v1/pages/about", "pages", {"page": "about"}),
        ("GET", "/v1/pages/a1", None, None),  # {page:alpha?}
        ("GET", "/api/users", None, None),  # routePrefix is v1
    ],
)
def test_router_matches_like_the_host(method, path, function, values):
    found = Router(REST, "v1").match(method, path)
    if function is None:
        assert found is None
    else:
        assert (found.function, found.route_params) == (function, values)


def test_routes_are_tried_in_the_hosts_order_of_names_so_a_catch_all_may_take_everything():
    catch_all = {"name": "app", "is_http": True, "route": "/{*route}", "methods": ["GET"]}
    # "app" sorts before "list_users": it takes the request, whatever the indexing order.
    assert Router([catch_all, *REST], "").match("GET", "/users").function == "app"
    assert Router([*REST, catch_all], "").match("GET", "/users").function == "app"
    last = {**catch_all, "name": "zz_app"}
    assert Router([last, *REST], "").match("GET", "/users").function == "list_users"
    # OrdinalIgnoreCase compares upper case: "getitem" before "get_item" ('I' < '_').
    one = {"name": "get_item", "is_http": True, "route": "x/{id}", "methods": ["GET"]}
    other = {"name": "getItem", "is_http": True, "route": "x/{*rest}", "methods": ["GET"]}
    assert Router([one, other], "").match("GET", "/x/1").function == "getItem"


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("{x:guid}", "0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b"),
        ("{x:bool}", "True", "yes"),
        ("{x:long}", "9000000000", "9.5"),
        ("{x:minlength(3)}", "abc", "ab"),
        ("{x:range(1,5)}", "5", "6"),
        ("{x:regex(^[a-z]{{2}}\\d$)}", "ab3", "abc3"),
        ("{x=7}", "", None),
    ],
)
def test_constraints(template, good, bad):
    router = Router([{"name": "f", "is_http": True, "route": f"c/{template}"}], "")
    assert router.match("GET", f"/c/{good}") is not None
    if bad is not None:
        assert router.match("GET", f"/c/{bad}") is None


def test_unknown_constraint_is_refused():
    with pytest.raises(RouteError, match="'number'"):
        Router([{"name": "f", "is_http": True, "route": "c/{x:number}"}], "")


def test_host_request_fields_are_what_the_host_sends():
    fields = host_request(
        "get",
        "http://127.0.0.1:7071/v1/users?role=a&role=b&empty=",
        [("X-Agent", "t"), ("Accept", "a"), ("accept", "b")],
    )
    assert fields.url == "http://127.0.0.1:7071/v1/users?role=a&role=b&empty="
    assert fields.params == {"role": "a,b"}  # StringValues joined; empty values left out
    assert fields.headers == {"x-agent": "t", "accept": "a,b"}
    request = fields.to_request()
    assert request.url == fields.url and request.params["role"] == "a,b"


def test_plan_request_by_path_or_function():
    functions = {f["name"]: f for f in REST}
    name, fields = plan_request(functions, "v1", path="/v1/users/7?x=1", headers={"A": "b"})
    assert name == "get_user" and fields.route_params == {"id": "7"}
    assert fields.url == "http://127.0.0.1:7071/v1/users/7?x=1" and fields.headers == {"a": "b"}
    name, fields = plan_request(functions, "v1", function="create_user", body=b"{}")
    assert (name, fields.method, fields.body) == ("create_user", "POST", b"{}")
    with pytest.raises(ValueError, match=r"give a concrete --path .*/v1/users/1"):
        plan_request(functions, "v1", function="get_user")
    with pytest.raises(ValueError, match=r"no function answers DELETE /v1/users.*list_users"):
        plan_request(functions, "v1", method="DELETE", path="/v1/users")
