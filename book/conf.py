"""Sphinx settings for the workbook's site (`make book`; book/build.py stages the sources).

Sphinx + MyST-NB + sphinx-book-theme are what Jupyter Book 1 is made of, all from PyPI.
Jupyter Book 2 (mystmd) downloads its site theme when it builds, which an offline build
machine cannot do.
"""

from __future__ import annotations

import os

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
# Long output lines wrap instead of being clipped (book/_static/workbook.css).
html_static_path = ["_static"]
html_css_files = ["workbook.css"]
REPOSITORY = os.environ.get("THROUGHPUT_LAB_REPOSITORY", "https://github.com/OWNER/REPO")
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "HEAD",
    "path_to_docs": "",
    "use_repository_button": True,
    # "Launch on Binder" on every notebook page opens that notebook in JupyterLab.
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
}
