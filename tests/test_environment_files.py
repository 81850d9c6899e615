"""The ways in agree: pyproject.toml, environment.yml, binder/, README.md and .ci/run.

No conda solver can run here, so these checks are what keeps the conda and Binder
environments honest: the same packages as pyproject.toml's runtime dependencies and its
`lab` extra (the notebooks'), with the same version ranges, under their conda-forge names.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

# Behaves the same on every Python: CI runs it once, with the first of CI_PYTHONS.
pytestmark = pytest.mark.once

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"
BINDER_ENVIRONMENT = ROOT / "binder" / "environment.yml"
POSTBUILD = ROOT / "binder" / "postBuild"
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
MAKEFILE = ROOT / "Makefile"
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)

# PyPI name -> conda-forge name, where they differ.
CONDA_FORGE_NAMES = {
    "matplotlib": "matplotlib-base",  # the library without the Qt backend
    "blockbuster": "python-blockbuster",
}
# Runtime dependencies that conda-forge does not carry: they belong in the pip section.
PIP_ONLY = {"azure-functions"}
# Conda packages that are not Python packages, so pyproject.toml cannot list them.
NOT_PYTHON = {"nodejs"}  # runs Azurite, the queue emulator (Makefile installs it with npm)
# conda and Binder run the 3.13+ worker model: azure-functions 2.x, uvloop.
PYTHON_PIN = "3.13"
PROJECT_INSTALL_LINES = {".", "-e ."}
# What pyproject.toml's environment markers are evaluated against for those environments.
CONDA_MARKER_ENV = {
    "python_version": PYTHON_PIN,
    "python_full_version": f"{PYTHON_PIN}.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
}


def _pyproject() -> dict:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def _runtime_requirements() -> dict[str, SpecifierSet]:
    """What a learner's environment holds, on the Python the environment files pin:
    pyproject.toml's runtime dependencies (the engine, its CLI) and its lab extra."""
    project = _pyproject()["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["lab"]]
    reqs = [Requirement(line) for line in lines]
    return {
        canonicalize_name(r.name): r.specifier
        for r in reqs
        if r.marker is None or r.marker.evaluate(CONDA_MARKER_ENV)
    }


def test_sample_app_requirements_match_pyproject() -> None:
    """What Azure installs for the app (requirements.txt) is what the engine runs it with."""
    lines = (ROOT / "sample_functions" / "requirements.txt").read_text().splitlines()
    app = {str(Requirement(line)) for line in lines if line.strip() and not line.startswith("#")}
    engine = {str(Requirement(line)) for line in _pyproject()["project"]["dependencies"]}
    assert app, "sample_functions/requirements.txt lists nothing"
    assert app <= engine, f"not as in pyproject.toml (markers included): {sorted(app - engine)}"


def test_azure_functions_follows_the_python_version() -> None:
    """azure-functions 1.x below Python 3.13, 2.x from 3.13 (its 2.0.0 release notes)."""
    reqs = [Requirement(line) for line in _pyproject()["project"]["dependencies"]]
    for python, major in (("3.10", "1"), ("3.12", "1"), ("3.13", "2"), ("3.14", "2")):
        env = {**CONDA_MARKER_ENV, "python_version": python, "python_full_version": python + ".0"}
        chosen = [
            r
            for r in reqs
            if r.name == "azure-functions" and (r.marker is None or r.marker.evaluate(env))
        ]
        assert len(chosen) == 1, f"Python {python}: one azure-functions requirement, not {chosen}"
        assert Version(f"{major}.99") in chosen[0].specifier, (python, str(chosen[0]))
        assert Version(f"{int(major) + 1}.0") not in chosen[0].specifier, (python, str(chosen[0]))


def _load_env(path: Path) -> dict:
    with path.open() as f:
        env = yaml.safe_load(f)
    assert isinstance(env, dict), f"{path.name}: not a YAML mapping"
    return env


def _split_env(path: Path) -> tuple[dict[str, str], list[str]]:
    """Return ({conda name: conda spec}, [pip lines]) of an environment file."""
    conda: dict[str, str] = {}
    pip: list[str] = []
    for entry in _load_env(path)["dependencies"]:
        if isinstance(entry, dict):
            assert set(entry) == {"pip"}, f"{path}: unexpected entry {entry}"
            pip.extend(str(line).strip() for line in entry["pip"])
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", str(entry).strip())
        assert match, f"{path}: cannot read conda spec {entry!r}"
        name, spec = match.group(1).lower(), match.group(2).strip()
        assert name not in conda, f"{path}: {name} is listed twice"
        conda[name] = spec
    return conda, pip


def _conda_specifier(path: Path, name: str, spec: str) -> SpecifierSet:
    # conda's "=1.2" means 1.2.*, and "|" means or: neither has a PEP 440 twin that
    # compares cleanly with pyproject.toml, so keep to PEP 440 style ranges.
    assert "|" not in spec and not re.match(r"=[^=]", spec), (
        f"{path.name}: write {name}'s range as in pyproject.toml (e.g. '>=1.2,<2'), not {spec!r}"
    )
    return SpecifierSet(spec)


def _packages(path: Path) -> dict[str, SpecifierSet]:
    """PyPI name -> specifier, for every package the file installs except Python, pip and
    the project itself."""
    conda, pip = _split_env(path)
    conda_to_pypi = {v: k for k, v in CONDA_FORGE_NAMES.items()}
    packages: dict[str, SpecifierSet] = {}
    for name, spec in conda.items():
        if name in ("python", "pip") or name in NOT_PYTHON:
            continue
        pypi = canonicalize_name(conda_to_pypi.get(name, name))
        assert pypi not in PIP_ONLY, f"{path.name}: {pypi} is not on conda-forge; list it under pip"
        packages[pypi] = _conda_specifier(path, name, spec)
    for line in pip:
        if line in PROJECT_INSTALL_LINES:
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in packages, f"{path.name}: {name} is listed twice"
        assert name in PIP_ONLY or name not in _runtime_requirements(), (
            f"{path.name}: {name} is on conda-forge; list it as a conda package"
        )
        packages[name] = req.specifier
    return packages


@pytest.mark.parametrize("path", [ENVIRONMENT, BINDER_ENVIRONMENT], ids=lambda p: p.name)
def test_environment_matches_pyproject(path: Path) -> None:
    expected = _runtime_requirements()
    found = _packages(path)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    assert not missing, f"{path.relative_to(ROOT)} lacks pyproject dependencies: {missing}"
    assert not extra, f"{path.relative_to(ROOT)} has packages pyproject.toml lacks: {extra}"
    different = {
        name: (str(found[name]), str(expected[name]))
        for name in expected
        if found[name] != expected[name]
    }
    assert not different, (
        f"{path.relative_to(ROOT)}: version ranges differ from pyproject.toml "
        f"(file, pyproject): {different}"
    )


@pytest.mark.parametrize("path", [ENVIRONMENT, BINDER_ENVIRONMENT], ids=lambda p: p.name)
def test_environment_pins_python_and_uses_conda_forge(path: Path) -> None:
    env = _load_env(path)
    conda, _ = _split_env(path)
    assert env.get("channels", [None])[0] == "conda-forge", f"{path.name}: conda-forge first"
    assert "defaults" not in env["channels"], f"{path.name}: do not mix in the defaults channel"
    assert conda.get("python") == f"={PYTHON_PIN}", f"{path.name}: pin python={PYTHON_PIN}"
    assert "pip" in conda, f"{path.name}: a pip section needs pip itself"
    requires_python = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert Version(PYTHON_PIN) in requires_python, (
        f"python={PYTHON_PIN} is outside requires-python {requires_python}"
    )


def test_binder_environment_is_the_same_environment() -> None:
    top_conda, top_pip = _split_env(ENVIRONMENT)
    binder_conda, binder_pip = _split_env(BINDER_ENVIRONMENT)
    assert binder_conda == top_conda
    assert [line for line in top_pip if line not in PROJECT_INSTALL_LINES] == binder_pip
    assert _load_env(BINDER_ENVIRONMENT)["channels"] == _load_env(ENVIRONMENT)["channels"]


def test_environment_installs_the_project() -> None:
    _, pip = _split_env(ENVIRONMENT)
    assert PROJECT_INSTALL_LINES & set(pip), "environment.yml must pip-install the project (-e .)"


def test_binder_installs_the_project_in_postbuild() -> None:
    _, pip = _split_env(BINDER_ENVIRONMENT)
    # repo2docker builds the environment before it copies the repository in.
    assert not PROJECT_INSTALL_LINES & set(pip), (
        "binder/environment.yml cannot install the project; binder/postBuild does"
    )
    commands = _commands(POSTBUILD)
    assert commands and commands[0].startswith("set -e"), "binder/postBuild must start with set -e"
    installs = [c for c in commands if re.match(r"(python -m )?pip install\b", c)]
    assert any("--no-deps" in c.split() and ({".", "-e"} & set(c.split())) for c in installs), (
        f"binder/postBuild must install the project without dependencies: {installs}"
    )
    assert any("@jupyterlab/apputils-extension:announcements" in c for c in commands), (
        "binder/postBuild must switch off JupyterLab's news pop-up"
    )
    assert os.access(POSTBUILD, os.X_OK), "binder/postBuild must be executable"


def _commands(path: Path) -> list[str]:
    """Shell lines of a script, without the shebang, comments and blank lines."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _readme_start_commands() -> list[str]:
    """The commands in the first fenced code block of README's '## Start' section."""
    text = README.read_text()
    section = re.search(r"^## Start\b(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md needs a '## Start' section"
    block = re.search(r"^```\w*\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, "README.md's Start section needs a code block with the two commands"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_exactly_two_commands() -> None:
    commands = _readme_start_commands()
    assert len(commands) == 2, f"README's Start block must hold two commands: {commands}"
    assert commands[0] == "make lab"
    assert commands[1].startswith("make test")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE.read_text(), re.M))
    for command in commands:
        assert shlex.split(command)[1] in targets, f"Makefile has no target for {command!r}"


def _readme_ci_command() -> str:
    """The command README says CI runs: "CI (`.ci/run`) ... runs exactly `COMMAND`"."""
    found = re.search(r"CI \(`\.ci/run`\)[^`]*?runs exactly `([^`]+)`", README.read_text())
    assert found, "README.md must say what CI runs: 'CI (`.ci/run`) ... runs exactly `...`'"
    return found.group(1)


def test_ci_runs_the_readme_ci_command() -> None:
    commands = _commands(CI_RUN)
    assert commands[0] == "set -euo pipefail", ".ci/run must start with set -euo pipefail"
    ci_command = _readme_ci_command()
    assert commands[-1] == ci_command, (
        f".ci/run must end with README's CI command {ci_command!r}, not {commands[-1]!r}"
    )
    # CI proves the README: besides installing Chromium, it runs nothing that tests.
    others = [c for c in commands[:-1] if re.search(r"\b(pytest|ruff|make)\b", c)]
    assert not others, f".ci/run runs more than the README's CI command: {others}"


def test_ci_command_is_the_readme_test_command_on_each_ci_python() -> None:
    """`make test-all` is README's `make test`, once per Python in CI_PYTHONS."""
    makefile = MAKEFILE.read_text()
    target = shlex.split(_readme_ci_command())[1]
    recipe = re.search(rf"^{re.escape(target)}:.*?\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, f"Makefile has no recipe for {target!r}"
    test_command = _readme_start_commands()[1]
    assert f"$(MAKE) --no-print-directory {shlex.split(test_command)[1]} " in recipe.group(1)
    assert "for py in $(CI_PYTHONS)" in recipe.group(1)
    pythons = re.search(r"^CI_PYTHONS \?= (.+)$", makefile, re.M)
    assert pythons and pythons.group(1).split() == ["python3.11", "python3.13"], (
        "CI tests the default Python (3.11, azure-functions 1.x) and 3.13 (the 3.13+ worker)"
    )


# What differs between 3.11 and 3.13 (the worker, its event loop, the oracle, the install,
# the notebooks' lessons) must run on both: these modules may never be marked `once`.
ON_EVERY_PYTHON = [
    "test_notebooks.py",
    "test_fidelity.py",
    "oracle/test_oracle_fidelity.py",
    "test_install.py",
    "test_supervision.py",
    "test_lifecycle.py",
    "test_queue.py",
    "test_sample_app.py",
    "test_servicebus.py",
    "test_eventhubs.py",
]


@pytest.mark.parametrize("module", ON_EVERY_PYTHON)
def test_what_differs_between_pythons_runs_on_each(module: str) -> None:
    text = (ROOT / "tests" / module).read_text()
    assert "mark.once" not in text, f"tests/{module} tests the worker: it runs on every Python"


def test_ci_runs_once_marked_tests_with_the_first_python_only() -> None:
    """test-all runs `once` tests with the first Python only, and prints phase times."""
    recipe = re.search(r"^test-all:.*?\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.M)
    assert recipe, "Makefile has no test-all recipe"
    assert """only='-m "not once"'""" in recipe.group(1)
    assert '[ "$$py" = "$$first" ]' in recipe.group(1)
    assert "phase times" in recipe.group(1)
    assert "`once`" in README.read_text(), "README.md must say which tests CI runs once"


def test_make_test_runs_the_solo_tests_after_the_rest_in_one_process() -> None:
    """Two workers for the rest (--solo=exclude), then the `solo` tests alone (--solo=only),
    so a test that needs both cores gets them; one process (PYTEST_WORKERS=) runs all."""
    recipe = re.search(r"^test:.*?\n((?:(?:\t|if|else|endif).*\n)+)", MAKEFILE.read_text(), re.M)
    assert recipe, "Makefile has no test recipe"
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    parallel = lines.index("$(VPY) -m pytest $(PYTEST_WORKERS) --solo=exclude $(PYTEST_ARGS)")
    assert lines[parallel + 1] == "$(VPY) -m pytest --solo=only $(PYTEST_ARGS)"
    assert "$(VPY) -m pytest $(PYTEST_ARGS)" in lines[:parallel], "PYTEST_WORKERS= runs all"
    assert "`solo`" in README.read_text(), "README.md must say which tests run alone"


def _skips_for_free_cores(test: ast.FunctionDef) -> bool:
    """A ``pytest.skip(...)`` in the test whose message speaks of free cores."""
    return any(
        isinstance(node, ast.Call)
        and ast.unparse(node.func) == "pytest.skip"
        and "free" in ast.unparse(node)
        and "core" in ast.unparse(node)
        for node in ast.walk(test)
    )


def test_every_test_that_skips_for_want_of_free_cores_is_marked_solo() -> None:
    """Beside the other pytest worker's tests such a test finds too few cores free and skips
    every time: `make test` must run it alone."""
    unmarked = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and _skips_for_free_cores(node):
                marks = [ast.unparse(d) for d in node.decorator_list]
                if "pytest.mark.solo" not in marks:
                    unmarked.append(f"{path.relative_to(ROOT)}::{node.name}")
    assert unmarked == [], f"mark these @pytest.mark.solo: {unmarked}"


def test_no_quietly_call_is_split_by_a_comma() -> None:
    """`$(call quietly,CMD)` takes everything after its first comma as CMD; a literal comma
    in CMD (".[lab,book]") starts a second argument, and the shell gets half a quote."""
    calls = re.findall(r"\$\(call quietly,(.*)\)", MAKEFILE.read_text())
    assert calls, "Makefile: no $(call quietly,...) found"
    split = [c for c in calls if "," in c]
    assert not split, f"put the comma in a variable (as TEST_SPEC): {split}"


def test_readme_explains_make_binder_and_carries_no_fixed_launch_link() -> None:
    """The Binder link depends on where the clone lives (book/binder.py), so the README gives
    the command that prints it, not a link that is dead in every other fork."""
    text = README.read_text()
    fixed = re.findall(r"\]\((https://mybinder\.org/v2/[^)\s]+)\)", FENCE.sub("", text))
    assert not fixed, f"README.md links to a fixed Binder address: {fixed}"
    assert "make binder" in text, "README.md must say how to get the Binder link: make binder"
    recipe = re.search(r"^binder:.*?\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.M)
    assert recipe and "book/binder.py" in recipe.group(1), "make binder runs book/binder.py"


def test_the_workbook_installs_with_its_lab_extra() -> None:
    """The notebooks' packages are the lab extra: every install that opens them asks for it."""
    makefile = MAKEFILE.read_text()
    specs = dict(re.findall(r"^(\w+_SPEC) := (.+)$", makefile, re.M))
    assert "TEST_SPEC" in specs, "Makefile: TEST_SPEC"
    installs = [
        re.sub(r"\$\((\w+_SPEC)\)", lambda m: specs.get(m.group(1), m.group(0)), line)
        for line in re.findall(r"pip install -e (\S+)", makefile)
    ]
    assert installs, "Makefile installs the workbook with pip install -e"
    for install in installs:
        extras = re.search(r"\[([^\]]*)\]", install)
        assert extras and "lab" in extras.group(1).split(","), (
            f"Makefile installs {install} without the lab extra (the notebooks' packages)"
        )


# Spelled in two halves, so that this file does not hold the placeholder it looks for.
PLACEHOLDER_ADDRESS = "OWNER" + "/REPO"


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=False
    )
    if listed.returncode == 0 and listed.stdout:
        return [ROOT / name for name in listed.stdout.split("\0") if name]
    skip = {".git", ".venv", "build", "dist", "node_modules"}  # not a git checkout (an sdist)
    return [
        p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts[:-1])
    ]


def test_no_placeholder_repository_address_anywhere() -> None:
    """A made-up address (the old dead badge) is nowhere: links come from the git remote."""
    found = []
    for path in _tracked_files():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue  # a picture, or gone from the work tree
        if PLACEHOLDER_ADDRESS in text:
            found.append(str(path.relative_to(ROOT)))
    assert not found, f"{PLACEHOLDER_ADDRESS} is written in: {found}"


@pytest.mark.parametrize("path", [ENVIRONMENT, BINDER_ENVIRONMENT], ids=lambda p: p.name)
def test_environment_has_node_for_azurite(path: Path) -> None:
    conda, _ = _split_env(path)
    assert "nodejs" in conda, f"{path.name}: Azurite (notebook 11) needs conda-forge's nodejs"


def test_binder_installs_azurite_from_its_lock_file() -> None:
    assert (ROOT / ".azurite" / "package-lock.json").is_file()
    assert any(c.startswith("npm ci --prefix .azurite") for c in _commands(POSTBUILD))
