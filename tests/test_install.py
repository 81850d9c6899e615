"""The engine as a package a user installs: build it, install the wheel, run it.

`python -m build` makes the sdist and, from it, the wheel (so a file the sdist lacks fails
here); `twine check` passes; a fresh virtual environment installs the wheel with its
dependencies, as a user's `pip install` does, and runs `bench` on the sample app the wheel
carries, `tune --app .` in an app folder of its own, and `locustfile`. Marked `install`
(`pytest -m install`); pip's cache makes a second run faster, nothing else is skipped.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_APP

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SOURCE = REPO / "src" / "throughput_lab"
BIN = "Scripts" if sys.platform == "win32" else "bin"
# What a function app folder holds besides its code (Core Tools' and Azure's files).
APP_FILES = {
    "function_app.py",
    "host.json",
    "requirements.txt",
    "README.md",
    "local.settings.example.json",
    ".funcignore",
}


def written_version() -> str:
    """``__version__`` as written in the source, the one place it is."""
    found = re.search(r'^__version__ = "([^"]+)"$', (SOURCE / "__init__.py").read_text(), re.M)
    assert found, "src/throughput_lab/__init__.py must set __version__"
    return found.group(1)


def test_every_package_of_the_engine_is_in_the_wheel() -> None:
    """pyproject.toml lists the packages (the sample app is mapped in): a new subpackage
    must be listed, or the installed tool would lack it."""
    with (REPO / "pyproject.toml").open("rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(SOURCE.parent).parts)
        for init in SOURCE.rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | {"throughput_lab.sample_functions"}
    assert setuptools["package-dir"]["throughput_lab.sample_functions"] == "sample_functions"
    data = set(setuptools["package-data"]["throughput_lab.sample_functions"])
    assert data == APP_FILES - {"function_app.py"}, "the app's files, by name (no secrets)"
    # local.settings.json holds a developer's secrets: git ignores it, the wheel never names it.
    present = {p.name for p in SAMPLE_APP.iterdir() if p.is_file()} - {"local.settings.json"}
    assert present <= APP_FILES, f"sample_functions/ has files the wheel lacks: {present}"


def test_the_sample_app_is_found_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a folder of its own the default app is the checkout's (or the installed) copy;
    a sample_functions/ where the command runs, or above it, comes first."""
    from throughput_lab import find_app

    monkeypatch.chdir(tmp_path)
    assert find_app() == SAMPLE_APP
    (tmp_path / "sample_functions").mkdir()
    (tmp_path / "sample_functions" / "function_app.py").write_text("")
    (tmp_path / "deeper").mkdir()
    assert find_app(tmp_path / "deeper") == tmp_path / "sample_functions"


def run(*command: str | Path, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # By its distribution, not `import build`: the checkout's build/ folder imports as well.
    try:
        importlib.metadata.version("build")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the test extra (build, twine) is not installed")
    out = tmp_path_factory.mktemp("dist")
    # Not from the checkout: `python -m` looks in the current folder first, where the
    # workbook's own build/ (executed notebooks, the site) would stand in for PyPI's build.
    run(sys.executable, "-m", "build", "--outdir", out, REPO, cwd=out)
    return out


@pytest.mark.install
def test_sdist_and_wheel_carry_the_engine_and_the_sample_app(dist: Path) -> None:
    version = written_version()
    sdist = dist / f"throughput_lab-{version}.tar.gz"
    wheel = dist / f"throughput_lab-{version}-py3-none-any.whl"
    assert sdist.is_file() and wheel.is_file(), sorted(p.name for p in dist.iterdir())
    run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel, cwd=dist)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {f"throughput_lab/sample_functions/{f}" for f in APP_FILES} <= names
    assert not [n for n in names if n.startswith("sample_functions/")], "no top-level package"
    with tarfile.open(sdist) as t:
        in_sdist = {Path(*Path(n).parts[1:]).as_posix() for n in t.getnames()}
    assert {f"sample_functions/{f}" for f in APP_FILES} | {"CHANGELOG.md", "LICENSE"} <= in_sdist


@pytest.mark.install
def test_a_fresh_venv_installs_the_wheel_and_runs_it(dist: Path, tmp_path: Path) -> None:
    began = time.monotonic()
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, tool = venv / BIN / "python", venv / BIN / "throughput-lab"
    wheel = next(dist.glob("throughput_lab-*.whl"))
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=tmp_path)
    installed = time.monotonic() - began
    elsewhere = tmp_path / "elsewhere"  # no sample_functions/ here or above
    elsewhere.mkdir()

    assert run(tool, "--version", cwd=elsewhere).split() == ["throughput_lab", written_version()]
    found = run(
        python, "-c", "import throughput_lab; print(throughput_lab.find_app())", cwd=elsewhere
    )
    assert Path(found.strip()).is_relative_to(venv), f"not the installed sample app: {found}"

    fast = ("--concurrency", "4", "--upstream-delay-ms", "5", "--json")
    short = ("--processes", "1", "--duration", "0.3", *fast)
    bench = json.loads(
        run(tool, "bench", "--function", "sync_io", "--requests", "20", *fast, cwd=elsewhere)
    )
    assert (bench["ok"], bench["errors"], bench["function"]) == (20, 0, "sync_io")

    own_app = tmp_path / "my_app"  # an app folder of the user's: tune --app .
    shutil.copytree(
        SAMPLE_APP, own_app, ignore=shutil.ignore_patterns("__pycache__", "local.settings.json")
    )
    tune = json.loads(
        run(
            tool,
            "tune",
            "--app",
            ".",
            "--function",
            "sync_io",
            "--threads",
            "1,4",
            *short,
            cwd=own_app,
        )
    )
    assert tune["function"] == "sync_io" and tune["settings"], tune

    out = tmp_path / "loadtest"
    url = "http://127.0.0.1:7071/api/sync_io"
    run(tool, "locustfile", "--url", url, "--users", "4", "--out", out, cwd=elsewhere)
    py_compile.compile(str(out / "locustfile.py"), doraise=True)
    assert (out / "loadtest.yaml").is_file()
    print(f"install {installed:.0f} s, whole test {time.monotonic() - began:.0f} s")
