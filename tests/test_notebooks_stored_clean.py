"""Notebooks are stored without outputs, execution counts or saved widget state, and name
the python3 kernel with the metadata JupyterLab writes for it (so opening one leaves it
unmodified; tests/notebook_metadata.py stores it, tests/test_browser.py opens each one).

A learner opens a clean workbook and sees only what their own runs produce; diffs stay
readable. To clean a notebook: Edit > Clear Outputs of All Cells, then save, or
`.venv/bin/nbstripout notebooks/NAME.ipynb`.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from notebook_metadata import differences

# Behaves the same on every Python: CI runs it once, with the first of CI_PYTHONS.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    path for path in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts
)


def _problems(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has execution count {cell.execution_count}")
    if "widgets" in nb.metadata:
        problems.append("the notebook's metadata holds saved widget state")
    # Without a kernelspec, JupyterLab greets the learner with a "Select Kernel" dialog.
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("metadata.kernelspec.name is not 'python3'")
    for key in differences(nb.metadata):
        problems.append(
            f"metadata.{key} is not what JupyterLab writes (.venv/bin/python "
            "tests/notebook_metadata.py stores it)"
        )
    return problems


@pytest.mark.parametrize(
    "path", NOTEBOOKS or [None], ids=[p.relative_to(ROOT).as_posix() for p in NOTEBOOKS] or None
)
def test_notebook_is_stored_clean(path: Path | None) -> None:
    if path is None:
        pytest.skip("no notebooks under notebooks/ yet")
    problems = _problems(path)
    assert not problems, (
        f"{path.relative_to(ROOT)} is not stored clean ({'; '.join(problems)}). "
        f"Clear outputs with: .venv/bin/nbstripout {path.relative_to(ROOT).as_posix()}; "
        "a kernelspec is stored when the notebook is saved with the Python 3 (ipykernel) kernel."
    )
