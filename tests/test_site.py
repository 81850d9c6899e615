"""The built site (`make book`) in Chromium: pages render with their figures, offline.

`make book-test` (CI's test-all runs it once) builds the site and runs this file with
THROUGHPUT_LAB_SITE set, so a missing site fails. Under plain `make test` the file checks
build/book/html when an earlier `make book` left it there, and skips otherwise.
Also: the link check (Sphinx with warnings as errors) fails a build on a dead internal link,
and the launch buttons follow the checkout's git remote (book/binder.py): a CI clone, whose
origin is a folder, gets none.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "book"))
import binder  # book/binder.py

pytestmark = pytest.mark.site
CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = "THROUGHPUT_LAB_SITE" in os.environ
SITE = Path(os.environ.get("THROUGHPUT_LAB_SITE", REPO / "build" / "book" / "html"))
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# What `make book` built the launch links from: this checkout's public home, if it has one.
HOME = binder.find_home(REPO)

if not REQUIRED and not (SITE / "index.html").exists():
    pytest.skip("no site built: make book (make book-test runs this file)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="the browser extra is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


# The only address a page may fetch: the README's own Binder badge image.
ALLOWED = set(re.findall(r"!\[[^\]]*\]\((https://[^)\s]+)\)", (REPO / "README.md").read_text()))


def open_page(browser: Any, relative: str) -> tuple[Any, list[str]]:
    """The page loaded from disk; what it asked of the network, or failed to load, is listed."""
    assert (SITE / relative).exists(), f"the site has no {relative}"
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    local = lambda url: url.startswith("file:") or url in ALLOWED  # noqa: E731
    page.on("request", lambda r: local(r.url) or problems.append(f"fetch {r.url}"))
    page.on("requestfailed", lambda r: r.url in ALLOWED or problems.append(f"failed {r.url}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto((SITE / relative).as_uri(), wait_until="load")
    return page, problems


def images(page: Any) -> list[dict[str, Any]]:
    """Every image in the page's content: its source, alt text, and whether it decoded."""
    return page.eval_on_selector_all(
        "main img",
        "els => els.map(e => ({src: e.getAttribute('src').slice(0, 60), alt: e.alt,"
        " ok: e.complete && e.naturalWidth > 0}))",
    )


def test_landing_page_is_the_readme_with_its_picture(browser: Any) -> None:
    page, problems = open_page(browser, "index.html")
    assert "Throughput Lab" in page.title()
    heading = page.locator("main h1").first.text_content() or ""
    assert heading.startswith("Throughput Lab: make Azure Functions Python apps fast")
    shown = images(page)
    picture = [i for i in shown if "control-panel" in i["src"]]
    assert picture and picture[0]["ok"], f"the README's picture did not render: {shown}"
    # The table of contents reaches the guide, every notebook, and the glossary.
    links = page.eval_on_selector_all("nav a.reference.internal", "els => els.map(e => e.href)")
    for path in NOTEBOOKS:
        assert any(f"notebooks/{path.stem}.html" in href for href in links), path.name
    assert any("notebooks/glossary.html" in href for href in links)
    assert any("notebooks/README.html" in href for href in links)
    assert not problems, problems


@pytest.mark.parametrize("page_name", ["notebooks/README.html", "notebooks/glossary.html"])
def test_the_guide_and_the_glossary_launch_the_workbook_on_binder(
    browser: Any, page_name: str
) -> None:
    page, problems = open_page(browser, page_name)
    links = page.eval_on_selector_all("main a[href*='mybinder.org']", "els => els.map(e => e.href)")
    assert links == ([HOME.launch_url()] if HOME else []), links
    assert not problems, problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem[:2] for p in NOTEBOOKS])
def test_notebook_page_has_outputs_figures_and_binder(browser: Any, path: Path) -> None:
    page, problems = open_page(browser, f"notebooks/{path.stem}.html")
    # Outputs are there: the closing cell's verdict, as Run All printed it.
    assert page.get_by_text(re.compile(r"LESSON HELD:")).count() >= 1, "no executed outputs"
    shown = images(page)
    broken = [i["src"] for i in shown if not i["ok"]]
    # Sphinx's stand-in for a missing alt text is the image's own path.
    no_alt = [i["src"] for i in shown if not i["alt"].strip() or i["alt"].endswith(".png")]
    assert not broken, f"images that did not render: {broken}"
    assert not no_alt, f"images without alt text: {no_alt}"
    links = page.eval_on_selector_all("a[href*='mybinder.org']", "els => els.map(e => e.href)")
    assert links == ([HOME.launch_url(f"notebooks/{path.name}")] if HOME else []), links
    assert page.get_by_text("Error displaying widget").count() == 0
    assert not problems, problems


def test_a_page_with_a_panel_shows_its_last_state(browser: Any) -> None:
    """02's panel: its last run's plot as an image, and its summary line as text."""
    page, problems = open_page(browser, "notebooks/02_sync_and_the_thread_pool.html")
    assert len(images(page)) >= 4, "02 shows a panel and several plots"
    note = page.get_by_text("A control panel, shown as it was after its last run").first
    assert note.is_visible()
    panel_plot = [i for i in images(page) if i["alt"].startswith("The control panel's plot")]
    assert panel_plot and panel_plot[0]["ok"]
    assert "req/s" in panel_plot[0]["alt"], "the panel's summary line is in its alt text"
    assert not problems, problems


def test_long_output_lines_wrap_instead_of_being_clipped(browser: Any) -> None:
    """A summary line is wider than the page: the site wraps it (book/_static/workbook.css)."""
    page, problems = open_page(browser, "notebooks/02_sync_and_the_thread_pool.html")
    widths = page.eval_on_selector_all(
        "div.cell_output pre", "els => els.map(e => [e.scrollWidth, e.clientWidth])"
    )
    assert widths, "02 shows printed output"
    clipped = [w for w in widths if w[0] > w[1] + 1]
    assert not clipped, f"output lines wider than their box: {clipped}"
    assert not problems, problems


def book_build() -> ModuleType:
    """book/build.py, loaded by its path: `import build` could find PyPI's `build` (the test
    extra's packaging tool) instead, whichever was imported first in this process."""
    spec = importlib.util.spec_from_file_location("book_build", REPO / "book" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its own `from binder import ...` finds book/ on sys.path
    return module


def test_a_dead_internal_link_fails_the_build(tmp_path: Path) -> None:
    """The site's link check: Sphinx runs with -W, so a link to no page stops the build."""
    pytest.importorskip("myst_nb", reason="the book extra is not installed (make book)")
    build = book_build()

    def site(link: str) -> Path:
        src = tmp_path / link.strip("./#").replace("/", "_") / "src"
        (src / "notebooks").mkdir(parents=True)
        (src / "index.md").write_text("# Home\n\n```{toctree}\nnotebooks/README\n```\n")
        (src / "notebooks" / "README.md").write_text(f"# Guide\n\n## Part\n\nSee [it]({link}).\n")
        return src

    for good in ("../index.md", "#part"):
        src = site(good)
        build.sphinx(src, src.parent / "html", src.parent / "doctrees")
        assert (src.parent / "html" / "notebooks" / "README.html").exists()
    for dead in ("00_not_a_notebook.ipynb", "../index.md#no-such-heading"):
        src = site(dead)
        with pytest.raises(SystemExit, match="Sphinx failed"):
            build.sphinx(src, src.parent / "html", src.parent / "doctrees")
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize(
    "origin",
    ["git@github.com:ada/throughput-lab.git", "https://codeberg.org/ada/throughput-lab.git", None],
)
def test_launch_buttons_follow_the_remote(tmp_path: Path, origin: str | None) -> None:
    """A notebook page's launch button opens that notebook on Binder, for any public remote
    (book/conf.py builds it, not the theme, which knows GitHub and gitlab.com only)."""
    pytest.importorskip("myst_nb", reason="the book extra is not installed (make book)")
    import nbformat

    build = book_build()

    home = binder.Home(binder.public_remote(origin), "main") if origin else None
    src = tmp_path / "src"
    (src / "notebooks").mkdir(parents=True)
    (src / "index.md").write_text("# Home\n\n```{toctree}\nnotebooks/00_one\n```\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# One")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, src / "notebooks" / "00_one.ipynb")
    build.sphinx(src, tmp_path / "html", tmp_path / "doctrees", home)
    page = (tmp_path / "html" / "notebooks" / "00_one.html").read_text()
    found = [html.unescape(u) for u in re.findall(r'href="(https://mybinder\.org/[^"]+)"', page)]
    assert found == ([home.launch_url("notebooks/00_one.ipynb")] if home else []), found
