import pytest
from conftest import APPS, ENGINE_APP

from throughput_lab import AppLoadError, load_app
from throughput_lab.app_loader import find_function


def test_indexes_functions_as_the_worker_does():
    functions = load_app(ENGINE_APP)
    assert {"noop", "sync_sleep", "async_sleep", "cpu", "echo"} <= set(functions)
    assert functions["async_sleep"].is_async and not functions["sync_sleep"].is_async
    assert functions["sync_sleep"].trigger_param == "req"
    assert functions["echo"].methods == ("POST",)
    assert functions["sync_sleep"].auth_level == "FUNCTION"


def test_blueprints_and_non_http_functions():
    functions = load_app(APPS / "blueprint_app")
    assert set(functions) == {"home", "item", "tick"}
    item = functions["item"]
    assert item.route == "items/{id}" and item.methods == ("GET", "POST") and item.is_async
    assert functions["home"].auth_level == "ANONYMOUS"
    with pytest.raises(AppLoadError, match="not HTTP-triggered"):
        find_function(functions, "tick")


def test_unknown_function_lists_the_known_ones():
    functions = load_app(ENGINE_APP)
    with pytest.raises(AppLoadError, match=r"unknown function .nope..*async_sleep"):
        find_function(functions, "nope")


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("does_not_exist", "folder not found"),
        (".", "Python v2-model app has function_app.py, a v1-model app has one folder"),
        ("neither", "no function app in"),
        ("import_error", "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"),
        ("no_app", "defines no function app object"),
        ("two_apps", "defines 2 FunctionApp objects"),
    ],
)
def test_clear_errors(folder, message):
    with pytest.raises(AppLoadError, match=message):
        load_app(APPS / folder)


def test_import_error_names_the_apps_line():
    with pytest.raises(AppLoadError, match=r"function_app.py, line 5"):
        load_app(APPS / "import_error")


@pytest.mark.parametrize(
    ("folder", "kind"),
    [("fastapi_app", "AsgiFunctionApp"), ("flask_app", "WsgiFunctionApp")],
)
def test_any_function_register_loads_as_the_worker_accepts_it(folder, kind):
    pytest.importorskip("fastapi" if kind.startswith("Asgi") else "flask")
    functions = load_app(APPS / folder)
    (info,) = functions.values()
    # azure.functions registers one catch-all function for the whole ASGI/WSGI app.
    assert info.name == "http_app_func" and info.route == "/{*route}"
    assert info.context_param == "context" and info.is_async == kind.startswith("Asgi")


def test_durable_app_lists_its_functions_and_names_what_is_not_emulated():
    pytest.importorskip("azure.durable_functions")
    functions = load_app(APPS / "durable_app")
    assert set(functions) == {"http_start", "hello_orchestrator", "hello", "ping"}
    assert functions["hello"].trigger_type == "activityTrigger"
    assert find_function(functions, "ping").unsupported is None
    with pytest.raises(AppLoadError, match="durableClient input binding 'client'"):
        find_function(functions, "http_start")


def test_rest_app_context_output_bindings_and_timer():
    functions = load_app(APPS / "rest_app")
    create = functions["create_user"]
    assert create.outputs == (("msg", "queue"),) and create.context_param == "context"
    assert functions["list_users"].route == functions["create_user"].route == "users"
    assert functions["cleanup"].trigger_type == "timerTrigger"
    with pytest.raises(AppLoadError, match=r"not HTTP-triggered \(timerTrigger\)"):
        find_function(functions, "cleanup")


def test_v1_folders_load_with_script_file_entry_point_and_route():
    functions = load_app(APPS / "v1_article")
    assert set(functions) == {"HttpAsync", "HttpEventLoop"}
    assert functions["HttpAsync"].route == "HttpAsync"  # default: the folder's name
    assert functions["HttpAsync"].methods == ("GET", "POST")
    assert functions["HttpEventLoop"].route == "eventloop"
    assert functions["HttpEventLoop"].auth_level == "ANONYMOUS"
    assert all(f.is_async for f in functions.values())
