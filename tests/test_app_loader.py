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
        (".", "no function_app.py"),
        ("import_error", "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"),
        ("no_app", "defines no azure.functions.FunctionApp"),
        ("two_apps", "defines 2 FunctionApp objects"),
    ],
)
def test_clear_errors(folder, message):
    with pytest.raises(AppLoadError, match=message):
        load_app(APPS / folder)


def test_import_error_names_the_apps_line():
    with pytest.raises(AppLoadError, match=r"function_app.py, line 5"):
        load_app(APPS / "import_error")
