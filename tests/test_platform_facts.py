"""Every platform fact a page names is in the project's own table (docs/platform.md).

A notebook (its Markdown and its code), README.md, notebooks/README.md and
sample_functions/README.md may name a Python version ("Python 3.13", "Python 3.10-3.14"),
a hosting plan ("Flex Consumption", "Premium plan") or a host version ("4.1037.0") only
when docs/platform.md lists it, with its source. Fast: nothing is executed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

# Behaves the same on every Python: CI runs it once, with the first of CI_PYTHONS.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = ROOT / "docs" / "platform.md"
DOCUMENTS = [
    *sorted((ROOT / "notebooks").glob("*.ipynb")),
    ROOT / "README.md",
    ROOT / "notebooks" / "README.md",
    ROOT / "sample_functions" / "README.md",
]

# "3.10", "3.10-3.14", "3.10 to 3.14" (dashes are normalized to "-" first).
VERSIONS = re.compile(r"\b3\.(\d+)(?:\.\d+)?(?:\s*(?:-|to)\s*3\.(\d+))?")
PYTHON = re.compile(r"\bPython\s+(3\.\d+(?:\.\d+)?(?:\s*(?:-|to)\s*3\.\d+)?)")
HOST = re.compile(r"\b4\.(\d{3,5})(?:\.\d+)*\b")
# A plan by its own words ("Flex Consumption", "Premium")...
PLAN_WORDS = re.compile(
    r"\b(?:(?:Linux|Windows|Flex|Elastic)\s+)*(?:Consumption|Premium|Dedicated)\b"
)
# ...and any capitalized name followed by "plan" ("App Service plan", "Basic plan").
NAMED_PLAN = re.compile(r"\b((?:[A-Z][\w-]*\s+)+)plans?\b")
# Words that start a sentence or a title, not a plan's name.
NOT_A_NAME = {"a", "an", "any", "azure", "each", "every", "functions", "its", "one", "the"}
NOT_A_NAME |= {"that", "their", "this", "which", "your"}
HEADINGS = ("Python versions", "Hosting plans", "Host versions read")


def normalized(text: str) -> str:
    """One line, plain dashes and spaces, no emphasis marks; a paragraph break or a code
    mark becomes a "|", so that words on either side never read as one name."""
    text = re.sub("[\u2010-\u2015\u2212]", "-", text).replace("\u00a0", " ")
    text = re.sub(r"\n\s*\n", " | ", text).replace("`", "|").replace("*", "")
    return re.sub(r"\s+", " ", text)


def text_of(path: Path) -> str:
    """A document's words: a Markdown file whole; a notebook's Markdown and code cells."""
    if path.suffix != ".ipynb":
        return normalized(path.read_text())
    cells = json.loads(path.read_text())["cells"]
    return normalized("\n".join("".join(c["source"]) for c in cells))


def expand(found: str) -> set[str]:
    """'3.10-3.14' -> {'3.10', ..., '3.14'}; '3.13.0' -> {'3.13'}."""
    versions: set[str] = set()
    for match in VERSIONS.finditer(found):
        low = int(match.group(1))
        high = int(match.group(2) or low)
        versions |= {f"3.{minor}" for minor in range(low, high + 1)}
    return versions


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the table under ``## heading`` (its header and rule left out)."""
    section = markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return [row for row in cells[2:] if row]


def listed() -> dict[str, set[str]]:
    """What docs/platform.md lists: Python versions, plan names, host versions."""
    markdown = PLATFORM.read_text()
    first = {heading: [row[0] for row in table_rows(markdown, heading)] for heading in HEADINGS}
    return {
        "python": set().union(*(expand(normalized(c)) for c in first["Python versions"])),
        "plan": {
            normalized(name).strip().lower()
            for cell in first["Hosting plans"]
            for name in cell.split(";")
            if name.strip()
        },
        "host": {f"4.{m.group(1)}" for c in first["Host versions read"] for m in HOST.finditer(c)},
    }


def named_pythons(text: str) -> set[str]:
    return set().union(set(), *(expand(m.group(1)) for m in PYTHON.finditer(text)))


def named_hosts(text: str) -> set[str]:
    return {f"4.{m.group(1)}" for m in HOST.finditer(text)}


def unlisted_plans(text: str, plans: set[str]) -> set[str]:
    """Plan names in ``text`` that are not in ``plans`` (names compared in lower case)."""
    missing = {m.group(0).lower() for m in PLAN_WORDS.finditer(text)} - plans
    for match in NAMED_PLAN.finditer(text):
        words = match.group(1).split()
        while words and words[0].lower() in NOT_A_NAME:
            words = words[1:]
        name = " ".join(words).lower()
        suffixes = {" ".join(words[i:]).lower() for i in range(len(words))}
        suffixes |= {f"{s} plan" for s in suffixes}
        if name and not suffixes & plans:
            missing.add(f"{name} plan")
    return missing


def unlisted(text: str, facts: dict[str, set[str]]) -> list[str]:
    """Every fact ``text`` names that ``facts`` does not list, as "kind name"."""
    return sorted(
        [f"Python {v}" for v in named_pythons(text) - facts["python"]]
        + [f"plan {p}" for p in unlisted_plans(text, facts["plan"])]
        + [f"host {h}" for h in named_hosts(text) - facts["host"]]
    )


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_platform_facts_are_listed_in_docs_platform(path: Path) -> None:
    missing = unlisted(text_of(path), listed())
    assert not missing, f"{path.name} names {missing}: add each to docs/platform.md with its source"


def test_the_table_lists_what_the_workbook_relies_on() -> None:
    facts = listed()
    assert {"3.10", "3.11", "3.12", "3.13", "3.14", "3.6", "3.7", "3.8"} <= facts["python"]
    assert {"flex consumption", "elastic premium", "linux consumption"} <= facts["plan"]
    assert "4.1037" in facts["host"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Deploy with Python 3.15 today.", ["Python 3.15"]),
        ("Any Python from 3.10 to 3.16: Python 3.10\u20133.16.", ["Python 3.15", "Python 3.16"]),
        ("The Python\n3.9.2 worker", []),
        ("Host 4.1100.2 changed it; 4.1037.0 did not.", ["host 4.1100"]),
        ("On the Windows Consumption plan, and on Flex Consumption.", ["plan windows consumption"]),
        ("A **Basic** plan, an App Service plan.", ["plan basic plan"]),
        ("The plan: Azure Functions Consumption plan hosting, Elastic\nPremium.", []),
    ],
)
def test_a_fact_missing_from_the_table_fails(text: str, expected: list[str]) -> None:
    """The check fails as it should: each string names something the table lacks, or not."""
    assert unlisted(normalized(text), listed()) == expected
