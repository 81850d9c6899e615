"""Every notebook runs top to bottom, headless, at its default settings, and its lesson holds.

Each notebook under notebooks/ is executed with nbclient in a fresh python3 kernel, the
same code a learner runs. A notebook fails if any cell errors, if anything it prints on
stderr looks like a crash (a traceback, an exception a background task never surfaced),
if it takes longer than its time budget, if it leaves a worker process behind, if a run
it prints beats its ideal by more than 5 %, or if its closing cell does not print
"LESSON HELD:" (``throughput_lab.checks.lesson``). The notebooks whose lessons lean on the
CPU run a second time with another process keeping one core busy.
Each notebook's run time and lesson ratio are printed on a "[notebook timings]" line in
the run's closing summary (conftest's ``summary``). A notebook that passes is saved with
its outputs under build/executed/, with the hash of the stored notebook it ran: `make book`
publishes those copies instead of executing every notebook again.
"""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXECUTED_DIR = ROOT / "build" / "executed"  # git-ignored; read by book/build.py
BUDGET_S = 180.0  # per notebook; the workbook aims at 120 s on 2 cores
VERDICT = re.compile(r"^LESSON (HELD|DID NOT HOLD): (.*)$", re.MULTILINE)
CRASH = re.compile(
    r"Traceback \(most recent call last\)|Task exception was never retrieved|"
    r"Exception in callback|Exception ignored in"
)

# A printed run line: "...req/s (ideal 12.3 ± 0.4, 97%; ..."
RUN_LINE = re.compile(r"\(ideal [0-9.]+ ± [0-9.]+, (\d+)%(, equal within the ±)?")
RUN_NUMBERS = re.compile(r"([0-9.]+) ± ([0-9.]+) \S+/s \(ideal ([0-9.]+) ± ([0-9.]+),")
# The notebooks whose lessons lean on the CPU, run again with another program busy.
BUSY_CORE_NOTEBOOKS = [
    "02_sync_and_the_thread_pool.ipynb",
    "06_worker_processes.ipynb",
    "11_queue_triggers.ipynb",
]

pytestmark = pytest.mark.notebooks


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return data.get("text/plain", "") if isinstance(data.get("text/plain", ""), str) else ""


def _stderr(output: dict) -> str:
    return output.get("text", "") if output.get("name") == "stderr" else ""


def _kernel_children(client: NotebookClient) -> set[int]:
    """Processes the kernel started (the lab's workers), seen while the kernel runs."""
    try:
        kernel_pid = client.km.provisioner.pid  # type: ignore[union-attr]
        return {p.pid for p in psutil.Process(kernel_pid).children(recursive=True)}
    except (AttributeError, psutil.Error):
        return set()


def _wait_gone(pids: set[int], timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [pid for pid in pids if psutil.pid_exists(pid) and _not_zombie(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _run_notebook(path: Path, keep: bool = False) -> tuple[float, str, list[tuple[str, str]]]:
    """Execute ``path`` as a learner's Run All would; check it, return time, text, verdicts.

    ``keep``: save the executed notebook, outputs included, under build/executed/.
    """
    source = path.read_bytes()
    nb = nbformat.reads(source.decode(), as_version=4)
    client = NotebookClient(
        nb,
        timeout=BUDGET_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    children: set[int] = set()

    def remember_children(**_: object) -> None:
        children.update(_kernel_children(client))

    client.on_cell_executed = remember_children
    began = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - began

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    printed = "".join(_text(o) for o in outputs)
    errors = [o for o in outputs if o.get("output_type") == "error"]
    crashes = [t for t in (_stderr(o) for o in outputs) if CRASH.search(t)]
    verdicts = VERDICT.findall(printed)

    assert not errors, (
        f"{path.name}: error output: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    )
    assert not crashes, f"{path.name}: a crash on stderr:\n{crashes[0][-2000:]}"
    assert verdicts, f"{path.name} printed no 'LESSON HELD:' / 'LESSON DID NOT HOLD:' line"
    failed = [text for verdict, text in verdicts if verdict != "HELD"]
    assert not failed, f"{path.name}: the lesson did not hold on this machine: {failed}"
    left = _wait_gone(children)
    assert not left, f"{path.name} left processes behind: {left}"
    if keep:
        # The book takes this copy only while the stored notebook still has this hash.
        nb.metadata["throughput_lab"] = {"source_sha256": hashlib.sha256(source).hexdigest()}
        EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, EXECUTED_DIR / path.name)
    return elapsed, printed, verdicts


def _beyond_ideal(printed: str) -> list[str]:
    """Printed run lines over 105% of their ideal, unless within twice the combined ± of
    the rate and the ideal (both measured; the line then says so, checked here again)."""
    beyond = []
    for m in RUN_LINE.finditer(printed):
        if int(m.group(1)) <= 105:
            continue
        numbers = RUN_NUMBERS.search(printed, max(0, m.start() - 60), m.end())
        if numbers and m.group(2):
            rate, rate_err, ideal, ideal_err = map(float, numbers.groups())
            if rate - ideal <= 2 * math.hypot(rate_err, ideal_err) + 0.1:  # 0.1: rounding
                continue
        beyond.append(m.group(0))
    return beyond


def _unexplained(printed: str) -> list[str]:
    """Printed run lines under 70% of their ideal that do not say what held them back.

    "nothing the lab can name" counts as saying so: GIL hand-offs between threads, for one,
    slow a run without saturating anything the lab measures (seen with `mixed` on 3.13).
    """
    return [
        line
        for line in printed.splitlines()
        if (m := RUN_LINE.search(line)) and int(m.group(1)) < 70 and "held back by" not in line
    ]


@pytest.mark.timeout(BUDGET_S + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_its_lesson_holds(path: Path, summary: Callable[[str], None]) -> None:
    elapsed, printed, verdicts = _run_notebook(path, keep=True)
    ratio = "; ".join(text for _, text in verdicts) or "no verdict"
    summary(f"[notebook timings] {path.name}: {elapsed:.1f} s; {ratio}")
    assert elapsed <= BUDGET_S, f"{path.name} took {elapsed:.0f} s (budget {BUDGET_S:.0f} s)"
    beyond = _beyond_ideal(printed)
    assert not beyond, f"{path.name}: runs beat their ideal: {beyond}"
    unexplained = _unexplained(printed)
    assert not unexplained, f"{path.name}: runs far under their ideal, no cause: {unexplained}"


@pytest.fixture
def busy_core() -> Iterator[None]:
    """Another program keeping one core busy, as on a learner's laptop, for the test only."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


@pytest.mark.timeout(2 * BUDGET_S + 60)
@pytest.mark.parametrize("name", BUSY_CORE_NOTEBOOKS)
def test_lesson_holds_with_a_busy_core(
    name: str, busy_core: None, summary: Callable[[str], None]
) -> None:
    """The lessons that depend on the CPU hold on a busy machine, as learners' laptops are."""
    elapsed, printed, verdicts = _run_notebook(NOTEBOOK_DIR / name)
    ratio = "; ".join(text for _, text in verdicts) or "no verdict"
    summary(f"[notebook timings, one core busy] {name}: {elapsed:.1f} s; {ratio}")
    beyond = _beyond_ideal(printed)
    assert not beyond, f"{name}: runs beat their ideal: {beyond}"
    failed = [text for verdict, text in verdicts if verdict != "HELD"]
    assert verdicts and not failed, f"{name}: with a core busy the lesson did not hold: {failed}"


def test_the_beyond_ideal_check_believes_a_line_only_when_its_numbers_agree():
    ok = "cpu_bound: 8.4 ± 0.3 req/s (ideal 7.2 ± 1.4, 116%, equal within the ±; limit: CPU"
    false_claim = "cpu_bound: 9.9 ± 0.1 req/s (ideal 7.2 ± 0.2, 138%, equal within the ±; lim"
    silent = "cpu_bound: 8.4 ± 0.3 req/s (ideal 7.2 ± 1.4, 116%; limit: CPU cores)"
    assert _beyond_ideal(ok) == []
    assert _beyond_ideal(false_claim) and _beyond_ideal(silent)
