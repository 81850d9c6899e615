"""`make book`: the workbook as a static site, every notebook executed, outputs included.

1. Executed notebooks: the copy tests/test_notebooks.py saved under build/executed/ when
   it is fresh (it ran the notebook as stored now, by hash); otherwise this script runs
   the notebook itself with nbclient, the same Run All a learner does, and saves it there.
2. Sources are staged under build/book/src: README.md as the landing page, the workshop
   guide, the notebooks in order, the glossary, and every file a page links to.
   A control panel (an ipywidget) cannot run in a static page: it is shown as it was
   after its last run, its plot as an image and its status and summary as text.
3. Sphinx (MyST-NB, sphinx-book-theme) builds HTML into build/book/html with warnings as
   errors, so a dead internal link or anchor fails the build.

The launch links (Binder) and the repository's pages come from where this checkout lives
(book/binder.py, as `make binder`): with no public git remote they are left out, and a
line says so.

Prints the pages, images and seconds it took. Exit 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from traitlets.config import Config

from binder import Home, find_home

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NOTEBOOK_DIR = ROOT / "notebooks"
EXECUTED_DIR = ROOT / "build" / "executed"
OUT = ROOT / "build" / "book"
CELL_TIMEOUT_S = 180
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# The prose pages, in the order of the site's table of contents (notebooks go between).
GUIDE, GLOSSARY = "notebooks/README.md", "notebooks/glossary.md"
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
TEXT_LINK = re.compile(r"(?<!!)\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fresh_copy(path: Path) -> Path | None:
    """The executed copy of ``path`` if it ran the notebook as stored now."""
    copy = EXECUTED_DIR / path.name
    if not copy.exists():
        return None
    meta = nbformat.read(copy, as_version=4).metadata.get("throughput_lab", {})
    return copy if meta.get("source_sha256") == source_hash(path) else None


def kernel_transport() -> Config:
    """The kernel talks to this process over local IPC sockets, not TCP: ipykernel warns
    "Kernel is running over TCP without encryption" for every TCP kernel (kernelapp.py).

    The sockets' paths are absolute (the kernel runs from notebooks/, not from here), under
    Jupyter's runtime folder; jupyter_client numbers them past any that exist. Windows has
    no IPC transport in ZeroMQ: TCP there, on loopback as always.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    if os.name == "nt":
        return Config()
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True)
    return Config({"KernelManager": {"transport": "ipc", "ip": str(runtime / "book-kernel")}})


def execute(path: Path) -> Path:
    """Run All, headless, as tests/test_notebooks.py does; save the result with its hash."""
    from nbclient import NotebookClient

    source = path.read_bytes()  # hashed as it was read: an edit meanwhile makes it stale
    nb = nbformat.reads(source.decode(), as_version=4)
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        config=kernel_transport(),
    ).execute()
    nb.metadata["throughput_lab"] = {"source_sha256": hashlib.sha256(source).hexdigest()}
    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    copy = EXECUTED_DIR / path.name
    nbformat.write(nb, copy)
    return copy


def _children(state: dict[str, Any], model_id: str) -> list[str]:
    """Widget model ids under ``model_id``, depth first, itself included."""
    found = [model_id]
    for child in state.get(model_id, {}).get("state", {}).get("children", []):
        found += _children(state, str(child).removeprefix("IPY_MODEL_"))
    return found


def static_panel(state: dict[str, Any], model_id: str) -> list[dict[str, Any]]:
    """A panel's last state as plain outputs: its text as HTML, its plot as a PNG."""
    parts, images, panel = [], [], False
    for mid in _children(state, model_id):
        model = state.get(mid, {})
        name, values = model.get("model_name", ""), model.get("state", {})
        panel = panel or (name == "ButtonModel" and values.get("description") == "Run")
        if name == "HTMLModel" and values.get("value"):
            parts.append(values["value"])  # the panel's own HTML (title, summary)
        elif name == "LabelModel" and values.get("value"):
            parts.append(html.escape(values["value"]))
        elif name == "IntSliderModel":
            parts.append(html.escape(f"{values.get('description', '')} {values.get('value')}"))
        elif name == "OutputModel":  # a panel that prints into an Output widget
            for output in values.get("outputs", []):
                data = output.get("data", {})
                if "image/png" in data:
                    images.append(data["image/png"])
                elif output.get("text") or "text/plain" in data:
                    text = output.get("text") or data["text/plain"]
                    parts.append(f"<code>{html.escape(text.strip())}</code>")
        elif name == "ImageModel":
            for buffer in model.get("buffers", []):
                if buffer.get("path") == ["value"]:
                    images.append(buffer["data"])
    if not parts and not images:
        return []
    note = (
        "<p><em>A control panel, shown as it was after its last run when this page was "
        "built. Launch the notebook to move its sliders and press Run.</em></p>"
        if panel
        else "<p><em>A widget, shown as it was when this page was built.</em></p>"
    )
    text = " · ".join(parts)
    outputs = [nbformat.v4.new_output("display_data", data={"text/html": note + text})]
    for data in images[-1:]:
        alt = f"The control panel's plot after its last run: {re.sub('<[^>]+>', '', text)}"
        outputs.append(
            nbformat.v4.new_output(
                "display_data",
                data={"image/png": data, "text/plain": alt},
                metadata={"image/png": {"alt": alt}},
            )
        )
    return outputs


def for_the_site(nb: Any) -> Any:
    """Panels as their last state; no saved widget state (its JavaScript needs a CDN)."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
            else:
                outputs += static_panel(state, view["model_id"])
        cell.outputs = outputs
    nb.cells = [part for cell in nb.cells for part in one_image_each(cell)]
    return nb


def one_image_each(cell: Any) -> list[Any]:
    """``cell``, split so that each part shows at most one image, with its alt text.

    MyST-NB takes an image's alt text from its cell's metadata (``mystnb.image.alt``), not
    from the output's; a cell that shows two figures continues in a cell with no input.
    """
    if cell.cell_type != "code":
        return [cell]
    groups: list[list[Any]] = [[]]
    for output in cell.get("outputs", []):
        shown = "image/png" in output.get("data", {})
        if shown and any("image/png" in o.get("data", {}) for o in groups[-1]):
            groups.append([])
        groups[-1].append(output)
    parts = [cell] + [
        nbformat.v4.new_code_cell("", metadata={"tags": ["remove-input"]}) for _ in groups[1:]
    ]
    for part, outputs in zip(parts, groups, strict=True):
        part.outputs = outputs
        alts = [o.get("metadata", {}).get("image/png", {}).get("alt") for o in outputs]
        alt = next((a for a in alts if a), None)
        if alt:
            options = part.metadata.setdefault("mystnb", {})
            options["image"] = {**options.get("image", {}), "alt": alt}
    return parts


def linked_files(text: str) -> list[str]:
    """Relative link targets in Markdown prose (not in code blocks, not URLs or anchors)."""
    targets = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#")[0])
    return targets


def markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return path.read_text()


def retarget(text: str, document: Path, home: Home | None) -> str:
    """Links that the site must point elsewhere: README.md is the landing page (index);
    a folder has no page, so its link goes to the folder's page in the repository, or, with
    no known web page for the repository, becomes plain text."""

    def folder(target: str) -> Path | None:
        found = (document.parent / target.partition("#")[0]).resolve()
        return found if found.is_dir() and found.is_relative_to(ROOT) else None

    def folder_page(target: str) -> str | None:
        found = folder(target)
        return home.folder_url(found.relative_to(ROOT).as_posix()) if home and found else None

    def unlink(match: re.Match[str]) -> str:
        target = match.group(2)
        outside = re.match(r"^[a-z]+:", target) or target.startswith("#")
        return match.group(1) if not outside and folder(target) else match.group(0)

    def one(match: re.Match[str]) -> str:
        target = match.group(1)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        found = (document.parent / path).resolve()
        if found == ROOT / "README.md":
            new = os.path.relpath(ROOT / "index.md", document.parent) + (
                f"#{anchor}" * bool(anchor)
            )
        elif (page := folder_page(target)) is not None:
            new = page
        else:
            return match.group(0)
        return match.group(0).replace(target, new, 1)

    def prose(part: str) -> str:
        if home is None or home.web_url is None:
            part = TEXT_LINK.sub(unlink, part)
        return LINK.sub(one, part)

    # Code blocks are left alone: only prose outside them is rewritten.
    pieces, last = [], 0
    for fence in FENCE.finditer(text):
        pieces += [prose(text[last : fence.start()]), fence.group(0)]
        last = fence.end()
    return "".join([*pieces, prose(text[last:])])


def stage(notebooks: dict[Path, Path], src: Path, home: Home | None) -> None:
    """The site's sources under ``src``, laid out as in the repository, so links hold.

    Pages: README.md (as index.md), the guide, the notebooks, the glossary, then any other
    Markdown file a page links to (the sample app's README). Any other file a page links
    to (the app's code, a solution, the picture) is copied, and becomes a download.
    """
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for stored, executed in notebooks.items():
        nb = for_the_site(nbformat.read(executed, as_version=4))
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = retarget(cell.source, stored, home)
        nbformat.write(nb, src / "notebooks" / stored.name)
    pages = [ROOT / GUIDE, *notebooks, ROOT / GLOSSARY]
    seen = {ROOT / "README.md", *pages}
    for document in [ROOT / "README.md", *pages]:  # grows as linked pages are found
        for target in linked_files(markdown_of(document)):
            found = (document.parent / target).resolve()
            if found in seen or not found.is_relative_to(ROOT) or not found.is_file():
                continue  # a dead link is left for Sphinx to report; folders were retargeted
            seen.add(found)
            if found.suffix == ".md":
                pages.append(found)
                continue
            copy = src / found.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(found, copy)
    for page in pages:
        if page.suffix == ".md":
            copy = src / page.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(with_binder_link(retarget(page.read_text(), page, home), home))
    toctree = "\n".join(page.relative_to(ROOT).with_suffix("").as_posix() for page in pages)
    readme = retarget((ROOT / "README.md").read_text(), ROOT / "README.md", home)
    (src / "index.md").write_text(
        f"{readme}\n\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toctree}\n```\n"
    )


def with_binder_link(text: str, home: Home | None) -> str:
    """A Markdown page with "launch on Binder" under its title (notebook pages get a launch
    button in the header, book/conf.py); the page as it is when there is no public home."""
    if home is None:
        return text
    title, newline, rest = text.partition("\n")
    link = f"[Launch the workbook on Binder]({home.launch_url()})\n"
    if title.startswith("# "):
        return f"{title}\n\n{link}{newline}{rest}"
    return f"{link}\n{text}"


def sphinx(src: Path, html_dir: Path, doctrees: Path, home: Home | None = None) -> None:
    """Build the HTML; ``home`` gives notebook pages their launch button (book/conf.py)."""
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q"]
    command += ["-c", str(BOOK), "-d", str(doctrees), str(src), str(html_dir)]
    env = {
        **os.environ,
        "THROUGHPUT_LAB_BINDER": home.launch_base if home else "",
        "THROUGHPUT_LAB_REPOSITORY": (home.web_url or "") if home else "",
    }
    done = subprocess.run(command, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"book: Sphinx failed (exit {done.returncode}); its warnings are above")


def count(html_dir: Path) -> tuple[int, int]:
    """Pages of content (not the search or index pages) and images on them."""
    pages = [p for p in html_dir.rglob("*.html") if p.name not in {"search.html", "genindex.html"}]
    images = sum(len(re.findall(r"<img\b", p.read_text())) for p in pages)
    return len(pages), images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where src/ and html/ go")
    args = parser.parse_args(argv)
    began = time.monotonic()
    stored = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if not stored:
        print(f"book: no notebooks in {NOTEBOOK_DIR}", file=sys.stderr)
        return 2
    executed = {}
    for path in stored:
        copy = fresh_copy(path)
        if copy is None:
            print(f"book: executing {path.name} (no fresh copy in {EXECUTED_DIR})", flush=True)
            try:
                copy = execute(path)
            except Exception as exc:  # nbclient's CellExecutionError carries the traceback
                plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # no terminal colours
                first = plain.splitlines()[-1:] or [type(exc).__name__]
                print(f"book: {path.name} failed to run: {first[0]}", file=sys.stderr)
                return 1
        executed[path] = copy
    ran = time.monotonic() - began
    html_dir = args.out / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir)
    home = find_home(ROOT)
    if home is None:
        print(
            "book: no public git remote (origin), so the site has no Binder launch links; "
            "push to GitHub or GitLab and build again to have them (see: make binder)"
        )
    stage(executed, args.out / "src", home)
    sphinx(args.out / "src", html_dir, args.out / "doctrees", home)
    pages, images = count(html_dir)
    print(
        f"book: {pages} pages, {images} images in {html_dir}; "
        f"{time.monotonic() - began:.0f} s ({ran:.0f} s executing notebooks)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
