"""The notebook metadata JupyterLab writes, stored, so a fresh notebook opens unmodified.

When a notebook's kernel starts, JupyterLab writes the kernel's ``kernelspec`` and
``language_info`` into the notebook's metadata; if they differ from what is stored, the
notebook is marked changed (and autosaved) before the learner has touched it. ipykernel's
``language_info`` holds the Python version, so a notebook stays unmodified only on the
Python it was stored with; on another version that field is the one change.

Run it to store that metadata in every notebook (nothing else in the file changes):

    .venv/bin/python tests/notebook_metadata.py [--python-version 3.11.7]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def language_info(python_version: str | None = None) -> dict[str, Any]:
    """What ipykernel reports (and JupyterLab stores), for ``python_version``."""
    from ipykernel.ipkernel import IPythonKernel

    info = {**IPythonKernel.language_info, "version": python_version or platform.python_version()}
    return dict(sorted(info.items()))  # in the order nbformat writes keys


def notebooks() -> list[Path]:
    return sorted(
        p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )


def expected(stored: dict[str, Any], python_version: str | None = None) -> dict[str, Any]:
    """``stored`` metadata with JupyterLab's kernelspec and language_info."""
    return {**stored, "kernelspec": KERNELSPEC, "language_info": language_info(python_version)}


def differences(metadata: dict[str, Any]) -> list[str]:
    """What JupyterLab would rewrite in ``metadata``, Python version aside."""
    stored = metadata.get("language_info", {})
    want = expected(metadata, stored.get("version") or "?")
    return [key for key in ("kernelspec", "language_info") if metadata.get(key) != want[key]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", help="the version to store (default: this Python's)")
    args = parser.parse_args(argv)
    for path in notebooks():
        # Raw JSON, written as nbformat writes it: only the metadata lines change.
        nb = json.loads(path.read_text())
        new = expected(nb["metadata"], args.python_version)
        if new != nb["metadata"]:
            nb["metadata"] = new
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            print(f"stored JupyterLab's metadata in {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
