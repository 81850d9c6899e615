"""A person in JupyterLab: open a notebook, Run All, move a slider, press Run, Stop, interrupt.

Every notebook is opened once more on its own: it must not be marked changed when its kernel
starts, and each one with a control panel has a slider moved and Run pressed.

Drives Debian's Chromium with Playwright (no browser download). JupyterLab serves a
temporary copy of the workbook, so autosave never writes into the repository. The panel's
screenshot is the README's picture (docs/control-panel.png).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import REPO
from test_cli import free_port

# Behaves the same on every Python: CI runs it once, with the first of CI_PYTHONS.
pytestmark = [pytest.mark.browser, pytest.mark.once]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "notebooks/02_sync_and_the_thread_pool.ipynb"
SCREENSHOT = REPO / "docs" / "control-panel.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
IDLE = "Python 3 (ipykernel) | Idle"

playwright = pytest.importorskip("playwright.sync_api", reason="the browser extra is not installed")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)", allow_module_level=True
    )


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on a free loopback port, serving a copy of the workbook; yields its URL."""
    with serve_lab(tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One JupyterLab for the tests that open every notebook: its URL and its folder."""
    root = tmp_path_factory.mktemp("lab")
    with serve_lab(root) as url:
        yield url, root


@contextlib.contextmanager
def serve_lab(tmp_path: Path) -> Iterator[str]:
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for folder in ("notebooks", "sample_functions"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=ignore)
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={tmp_path}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (tmp_path / "jupyterlab.log").open("w")
    # A user-settings folder of its own: no news pop-up over the panel, no settings of yours.
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "jupyterlab.log").read_text()
                assert time.monotonic() < deadline, "JupyterLab did not start in 60 s"
                time.sleep(0.5)
        yield f"{base}/lab/tree/{{notebook}}?token={token}"
    finally:
        # The server's own PID (it shuts its kernels down on SIGTERM); then make sure.
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@contextlib.contextmanager
def notebook_page(
    url: str, problems: list[str], cells: tuple[int, ...] | None = None
) -> Iterator[Any]:
    """Chromium at ``url`` after Run All has finished: yields (page, kernel status).

    With ``cells``: only those cells are run (faster), and the page is yielded once the
    first control panel shows.
    """
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(url)
            # The execution indicator says idle before the kernel is connected; this does not.
            status = page.locator(".jp-StatusBar-TextItem", has_text=IDLE)
            status.wait_for(timeout=120_000)
            if cells is not None:
                for index in cells:
                    run_cell(page, index)
                first_panel(page).wait_for(timeout=120_000)
                status.wait_for(timeout=60_000)
                yield page, status
                return
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
            try:
                # Not anchored: a verdict may follow other printed lines in one output.
                verdict = page.get_by_text(re.compile(r"LESSON (HELD|DID NOT HOLD):")).first
                verdict.wait_for(timeout=240_000)
            except playwright.Error:
                shot = Path(tempfile.gettempdir()) / "run-all-failed.png"
                page.screenshot(path=str(shot), full_page=True)
                raise AssertionError(f"Run All gave no verdict in 240 s; see {shot}") from None
            status.wait_for(timeout=60_000)
            yield page, status
        finally:
            with contextlib.suppress(Exception):
                browser.close()


def first_panel(page: Any) -> Any:
    return page.locator(".widget-vbox", has=page.locator(".widget-button", has_text="Run")).first


def test_move_the_threads_slider_and_run(jupyterlab: str) -> None:
    problems: list[str] = []
    with notebook_page(jupyterlab.format(notebook=NOTEBOOK), problems) as (page, _):
        panel = first_panel(page)
        slider = panel.locator(".widget-hslider", has_text="threads").first
        slider.scroll_into_view_if_needed()
        handle = slider.locator(".noUi-handle")
        before = int(float(handle.get_attribute("aria-valuenow") or "0"))
        handle.focus()
        for _ in range(2):
            page.keyboard.press("ArrowRight")
        slider.locator(".widget-readout", has_text=str(before + 2)).wait_for()

        panel.locator(".widget-button", has_text="Run").click()
        summary = panel.locator(".widget-html", has_text=f"x {before + 2} threads")
        summary.wait_for(timeout=120_000)
        assert "req/s" in (summary.text_content() or "")
        panel.locator(".widget-label", has_text="done in").wait_for(timeout=30_000)

        assert page.get_by_text("Error displaying widget").count() == 0
        SCREENSHOT.parent.mkdir(exist_ok=True)
        panel.screenshot(path=str(SCREENSHOT))
    assert not problems, f"browser console errors: {problems}"


def _workers(folder: Path) -> list[psutil.Process]:
    """Worker processes serving the app in ``folder`` (the notebook's kernel starts them)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        command = " ".join(proc.info["cmdline"] or ())
        alive = proc.info["status"] != psutil.STATUS_ZOMBIE
        if alive and "throughput_lab.worker_process" in command and str(folder) in command:
            found.append(proc)
    return found


def _wait_no_workers(folder: Path, timeout_s: float = 5.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while (left := _workers(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _runs_so_far(panel: Any) -> int:
    if panel.locator(".widget-label", has_text="ready: press Run").count():
        return 0  # a panel that has not run yet
    text = panel.locator(".widget-label", has_text="runs so far").first.text_content() or ""
    match = re.search(r"runs so far: (\d+)", text)
    assert match, f"no 'runs so far' in the panel's status: {text!r}"
    return int(match.group(1))


@pytest.mark.parametrize(
    "notebook",
    [NOTEBOOK, "notebooks/06_worker_processes.ipynb", "notebooks/12_scaling_out.ipynb"],
    ids=["02", "06", "12"],
)
def test_stop_and_kernel_interrupt_end_a_panel_run(
    jupyterlab: str, notebook: str, tmp_path: Path
) -> None:
    """Stop and Kernel > Interrupt: "stopped" within a second, no run added, no worker left."""
    problems: list[str] = []
    # The panel's own cells only: Run All is driven once, by the test above.
    cells = panel_cells(REPO / notebook)
    assert cells, f"{notebook} has no panel"
    with notebook_page(jupyterlab.format(notebook=notebook), problems, cells) as (page, _):
        assert not _wait_no_workers(tmp_path), "the panel's cells left worker processes"
        panel = first_panel(page)
        panel.scroll_into_view_if_needed()
        runs = _runs_so_far(panel)
        label = panel.locator(".widget-label", has_text=re.compile("requests done|stopped"))

        for how in ("Stop", "Kernel > Interrupt"):
            panel.locator(".widget-button", has_text="Run").click()
            # As soon as the run's workers exist: the browser's view of the run can lag by
            # seconds on a busy machine, and a run at the panel's defaults lasts about 3 s.
            deadline = time.monotonic() + 60
            while not _workers(tmp_path):
                assert time.monotonic() < deadline, f"{how}: no worker process started"
                time.sleep(0.05)
            began = time.monotonic()
            if how == "Stop":
                panel.locator(".widget-button", has_text="Stop").click()
            else:
                page.get_by_role("menuitem", name="Kernel", exact=True).click()
                page.get_by_role("menuitem", name=re.compile(r"^Interrupt Kernel")).click()
            try:
                panel.locator(".widget-label", has_text="stopped").wait_for(timeout=10_000)
            except playwright.Error:
                status = panel.locator(".widget-label").all_text_contents()
                page.screenshot(path=str(tmp_path / "stop-failed.png"))
                raise AssertionError(
                    f"{how}: no 'stopped' in 10 s; the panel says {status}"
                ) from None
            took = time.monotonic() - began
            assert took < 2.0, f"{how}: 'stopped' took {took:.1f} s"
            assert f"runs so far: {runs}" in (label.first.text_content() or "")
            assert not _wait_no_workers(tmp_path), f"{how}: worker processes left running"
            run_button = panel.locator(".widget-button", has_text="Run")
            assert run_button.is_enabled(), f"{how}: Run stays disabled"
        assert page.get_by_text("Error displaying widget").count() == 0
    assert not problems, f"browser console errors: {problems}"


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PANEL = re.compile(r"\b(\w*Panel)\(")
# A panel's summary line, as ControlPanel and the queue panel print it: "... (ideal 12.3 ± ...",
# or as the scale panel prints it: "spike to 40 req/s for 20 s (live): up to 7 instances ..."
SUMMARY = re.compile(r"/s \(ideal [0-9.]+ ±|req/s for [0-9.]+ s \(live\): up to \d+ instances")


def panel_cells(path: Path) -> tuple[int, int] | None:
    """(the cell that imports the panel's class, the first cell that builds a panel)."""
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(c["source"]) if c["cell_type"] == "code" else "" for c in cells]
    built = next(((i, m.group(1)) for i, s in enumerate(sources) if (m := PANEL.search(s))), None)
    if built is None:
        return None
    index, cls = built
    imports = [i for i, s in enumerate(sources[:index]) if "import" in s and cls in s]
    assert imports, f"{path.name}: no cell before cell {index} imports {cls}"
    return imports[0], index


def run_cell(page: Any, index: int) -> None:
    """Select cell ``index`` (0-based, Markdown cells counted) and run it in place."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+Enter")


def error_outputs(page: Any) -> list[str]:
    texts = page.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    ).all_text_contents()
    return [t[-500:] for t in texts if re.search(r"Traceback|Error|Exception", t)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem[:2] for p in NOTEBOOKS])
def test_notebook_opens_unmodified_and_its_panel_runs(
    shared_lab: tuple[str, Path], path: Path
) -> None:
    """Open: no change marker while the kernel starts. With a panel: move a slider, Run, and
    the summary shows, with no error output."""
    url, root = shared_lab
    copy = root / "notebooks" / path.name
    stored = copy.read_bytes()
    problems: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            # reset: a workspace of its own, not the tabs the notebook before left open.
            page.goto(url.format(notebook=f"notebooks/{path.name}") + "&reset")
            page.locator(".jp-StatusBar-TextItem", has_text=IDLE).wait_for(timeout=120_000)
            time.sleep(1.0)  # JupyterLab writes the kernel's metadata just after it connects
            tab = page.locator("li.lm-TabBar-tab.jp-mod-current", has_text=path.name)
            dirty = "jp-mod-dirty" in (tab.get_attribute("class") or "")
            language = json.loads(stored)["metadata"].get("language_info", {})
            if language.get("version") == platform.python_version():
                assert not dirty, f"{path.name} is marked changed as soon as it opens"
            elif dirty:
                # Another Python than the one stored: its version must be the only change.
                page.keyboard.press("Control+s")
                deadline = time.monotonic() + 10
                while copy.read_bytes() == stored and time.monotonic() < deadline:
                    time.sleep(0.2)
                saved, before = json.loads(copy.read_text()), json.loads(stored)
                assert saved["metadata"]["language_info"]["version"] == platform.python_version()
                saved["metadata"]["language_info"]["version"] = language.get("version")
                assert saved == before, f"{path.name}: opening changed more than the version"
            else:
                assert copy.read_bytes() == stored, f"{path.name} changed on disk when opened"

            cells = panel_cells(path)
            if cells is None:
                return
            for index in cells:
                run_cell(page, index)
            panel = first_panel(page)
            panel.wait_for(timeout=120_000)
            slider = panel.locator(".widget-hslider").first
            slider.scroll_into_view_if_needed()
            handle = slider.locator(".noUi-handle")
            before = int(float(handle.get_attribute("aria-valuenow") or "0"))
            low = int(float(handle.get_attribute("aria-valuemin") or "0"))
            handle.focus()
            # One step down when the slider is not at its bottom: a run no longer than its default.
            page.keyboard.press("ArrowLeft" if before > low else "ArrowRight")
            playwright.expect(slider.locator(".widget-readout")).not_to_have_text(str(before))
            panel.locator(".widget-button", has_text="Run").click()
            try:
                panel.get_by_text(SUMMARY).first.wait_for(timeout=120_000)
            except playwright.Error:
                shown = panel.text_content()
                raise AssertionError(f"{path.name}: no summary after Run; panel: {shown}") from None
            assert "failed" not in (panel.text_content() or "")
            assert not error_outputs(page), f"{path.name}: error output: {error_outputs(page)}"
            assert page.get_by_text("Error displaying widget").count() == 0
        finally:
            with contextlib.suppress(Exception):
                browser.close()
    assert not problems, f"{path.name}: {problems}"
