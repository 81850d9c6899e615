"""Every notebook's control panel after Run All: the notebook's last cell closed the lab
(workers and upstream stopped), and the learner presses Run. The run must start the lab's
workers and upstream again and finish, as notebook 11's queue panel does
(tests/test_queue_panel.py).

Each panel is built from its own notebook's cell (the ``ControlPanel(...)`` call, read with
``ast``), against a real Lab, and driven by its Run button's click handler: in process, no
browser. Runs are shortened to keep the test fast; the settings are the notebook's.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE_APP, wait_no_workers, worker_processes

from throughput_lab import MAX_PROCESSES, Lab, available_cores, default_executor_threads
from throughput_lab.panel import ControlPanel

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def panel_calls() -> list[tuple[str, ast.Call, dict[str, Any]]]:
    """Each notebook's ControlPanel(...) call, and the plain constants its cells define."""
    found = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        trees = [
            ast.parse("".join(c["source"]).replace("await ", ""))  # top-level await in cells
            for c in cells
            if c["cell_type"] == "code" and not "".join(c["source"]).lstrip().startswith("%")
        ]
        constants: dict[str, Any] = {
            "MAX_PROCESSES": MAX_PROCESSES,
            "math": math,
            "available_cores": available_cores,
            "default_executor_threads": default_executor_threads,
        }
        for tree in trees:  # NAME = expression of constants before it (CALLS, IN_FLIGHT, D)
            for node in tree.body:
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                ):
                    with contextlib.suppress(Exception):  # needs a run's result: not a constant
                        value = compile(ast.Expression(node.value), path.name, "eval")
                        constants[node.targets[0].id] = eval(value, dict(constants))
        for tree in trees:
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "ControlPanel"
                ):
                    found.append((path.name, node, constants))
    return found


PANELS = panel_calls()


def test_the_notebooks_have_panels_to_drive() -> None:
    names = {name for name, _, _ in PANELS}
    assert {"00_start_here.ipynb", "02_sync_and_the_thread_pool.ipynb"} <= names, names


@pytest.mark.parametrize(
    ("notebook", "call", "constants"), PANELS, ids=[name for name, _, _ in PANELS]
)
def test_run_after_run_all_starts_the_lab_again(
    notebook: str, call: ast.Call, constants: dict[str, Any]
) -> None:
    before = {p.pid for p in worker_processes()}
    lab = Lab(SAMPLE_APP, upstream_delay_ms=20)
    try:
        namespace = {**constants, "lab": lab, "ControlPanel": ControlPanel}
        panel = eval(compile(ast.Expression(call), notebook, "eval"), namespace)
        panel.duration_s, panel.requests = None, 8  # short: the point is that it runs
        lab.close()  # the notebook's last cell
        assert not lab.upstream.port

        async def press_run() -> None:
            panel.run_button.click()
            assert panel.running and not panel.stop_button.disabled
            deadline = time.monotonic() + 120
            while panel.running:
                assert time.monotonic() < deadline, f"still running: {panel.status.value}"
                await asyncio.sleep(0.05)

        asyncio.run(press_run())
        assert panel.status.value.startswith("done in"), f"{notebook}: {panel.status.value}"
        assert len(panel.history) == 1 and panel.history[0][1].ok == 8
        assert not panel.run_button.disabled and panel.stop_button.disabled
    finally:
        lab.close()
    assert not wait_no_workers(before), "the panel's workers outlived lab.close()"
