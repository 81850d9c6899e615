"""Sphinx settings for the workbook's site (`make book`; book/build.py stages the sources).

Sphinx + MyST-NB + sphinx-book-theme are what Jupyter Book 1 is made of, all from PyPI.
Jupyter Book 2 (mystmd) downloads its site theme when it builds, which an offline build
machine cannot do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from binder import opening  # book/binder.py, beside this file

project = "Throughput Lab"
author = "Throughput Lab contributors"
extensions = ["myst_nb"]

root_doc = "index"
# build.py stages only pages as .md and .ipynb; every other file is a download.
include_patterns = ["**.md", "**.ipynb"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# The notebooks were executed before the build (tests/test_notebooks.py or book/build.py).
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3  # so [glossary: GIL](glossary.md#gil) is checked too

# A dead internal link is a warning, and build.py runs Sphinx with -W: the build fails.
suppress_warnings: list[str] = []

html_theme = "sphinx_book_theme"
html_title = "Throughput Lab"
html_copy_source = False
html_show_sourcelink = False
# From book/build.py, which finds them with book/binder.py (the checkout's git remote):
# empty when the checkout has no public home, and then the site has no such buttons.
BINDER = os.environ.get("THROUGHPUT_LAB_BINDER", "")  # a launch link without its urlpath
REPOSITORY = os.environ.get("THROUGHPUT_LAB_REPOSITORY", "")  # the repository's web page
# Long output lines wrap instead of being clipped (book/_static/workbook.css).
html_static_path = ["_static"]
html_css_files = ["workbook.css"]
html_theme_options = {
    "repository_url": REPOSITORY,
    "path_to_docs": "",
    "use_repository_button": bool(REPOSITORY),
    "show_toc_level": 2,
}


def add_launch_button(
    app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """A "Launch on Binder" button in a notebook page's header: it opens that notebook.

    Not the theme's own launch_buttons: it knows GitHub and gitlab.com shapes only, and
    escapes a plain git URL half (https%3A//...), which mybinder.org cannot resolve.
    """
    if not BINDER or context.get("page_source_suffix") != ".ipynb":
        return
    button = {
        "type": "link",
        "text": "Binder",
        "tooltip": "Launch on Binder",
        "icon": "_static/images/logo_binder.svg",
        "url": opening(BINDER, f"{pagename}.ipynb"),
    }
    context["header_buttons"].append(
        {
            "type": "group",
            "tooltip": "Launch interactive content",
            "icon": "fas fa-rocket",
            "buttons": [button],
            "label": "launch-buttons",
        }
    )


def setup(app: Any) -> None:
    # After the theme's own header buttons (priority 501), which start the list.
    app.connect("html-page-context", add_launch_button, priority=502)
