"""Every link a reader can follow points somewhere, and no template placeholder is left.

Checked offline: relative links in the READMEs and in the notebooks' Markdown cells must
name a file or folder of the repository; external links (http, https, mailto) are not
fetched. A ``{PLACEHOLDER}`` (an upper-case name in braces, as in ``{HOST}/Config/...``) in
that prose, or in any link target, is a template nobody filled in. A solution or an exercise
check named anywhere in them, code cells too (``%load solutions/00_hello.py``), exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

# Behaves the same on every Python: CI runs it once, with the first of CI_PYTHONS.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    [
        *ROOT.glob("*.md"),
        *(ROOT / "notebooks").glob("*.md"),
        *(ROOT / "sample_functions").glob("*.md"),
        *(ROOT / "notebooks").glob("*.ipynb"),
    ]
)
# [text](target) and [text](target "title"); <https://...> autolinks are external anyway.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
PLACEHOLDER = re.compile(r"\{[A-Z][A-Z0-9_]*\}")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
# notebooks/solutions/NN_answer.py and notebooks/exercise_NN_name.py, named by their number.
NOTEBOOK_FILE = re.compile(r"\b(?:solutions/\d\d_\w+|exercise_\d\d_\w+)\.py\b")


def markdown_of(path: Path) -> str:
    """The prose of a document: a Markdown file whole, a notebook's Markdown cells."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


def everything_of(path: Path) -> str:
    """A Markdown file whole, every cell of a notebook (code cells name solutions too)."""
    if path.suffix == ".ipynb":
        return "\n\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    return path.read_text()


def links(text: str) -> list[str]:
    # Code blocks show commands and code, not links to follow.
    return LINK.findall(FENCE.sub("", text))


def is_external(target: str) -> bool:
    return urlsplit(target).scheme in {"http", "https", "mailto"}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(path: Path) -> None:
    dead = []
    for target in links(markdown_of(path)):
        if is_external(target) or target.startswith("#"):
            continue
        relative = unquote(urlsplit(target).path)
        if not (path.parent / relative).exists():
            dead.append(target)
    assert not dead, f"{path.relative_to(ROOT)} links to what does not exist: {dead}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_placeholder_left(path: Path) -> None:
    text = markdown_of(path)
    found = PLACEHOLDER.findall(FENCE.sub("", text)) + [
        t for t in links(text) if PLACEHOLDER.search(unquote(t))
    ]
    assert not found, f"{path.relative_to(ROOT)} has unfilled placeholders: {found}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_solutions_and_exercise_checks_exist(path: Path) -> None:
    named = NOTEBOOK_FILE.findall(everything_of(path))
    missing = [name for name in named if not (ROOT / "notebooks" / name).is_file()]
    assert not missing, f"{path.relative_to(ROOT)} names what notebooks/ does not hold: {missing}"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A dead relative link and a placeholder are found; code blocks and URLs are not."""
    text = (
        "See [the app](../sample_functions/nothing_here.py) and [x]({HOST}/a.cs).\n"
        "```bash\necho '[not](a/link)' {NOT_PROSE}\n```\n[web](https://example.org/{Q})\n"
    )
    assert links(text) == [
        "../sample_functions/nothing_here.py",
        "{HOST}/a.cs",
        "https://example.org/{Q}",
    ]
    assert PLACEHOLDER.findall(FENCE.sub("", text)) == ["{HOST}", "{Q}"]
    assert not (ROOT / "notebooks" / links(text)[0]).exists()
    named = "# (or: %load solutions/04_fix_aiohttp.py) exercise_04_x.py, solutions/NN_answer.py"
    assert NOTEBOOK_FILE.findall(named) == ["solutions/04_fix_aiohttp.py", "exercise_04_x.py"]
