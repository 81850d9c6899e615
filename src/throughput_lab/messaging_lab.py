"""What the labs of an emulated message broker share (Service Bus, Event Hubs), beyond
``trigger_lab.TriggerLab``: finding the function a broker triggers.
The broker itself lives in process (no emulator for either service installs without
containers), so no helper process costs CPU.
"""

from __future__ import annotations

from typing import Any, TypeVar

from .app_loader import AppLoadError, FunctionInfo

R = TypeVar("R")


def find_triggered(
    functions: dict[str, dict[str, Any]], name: str, trigger_type: str, what: str
) -> FunctionInfo:
    """The function ``name`` with this trigger type, or one line that lists those there are."""
    infos = {n: FunctionInfo.from_description(f) for n, f in functions.items()}
    matching = {n: i for n, i in infos.items() if i.trigger_type.lower() == trigger_type.lower()}
    if name not in matching:
        known = ", ".join(sorted(matching)) or "none"
        kind = f"is not {what}-triggered" if name in infos else "is unknown"
        raise AppLoadError(f"function {name!r} {kind}; this app's {what} functions: {known}")
    return matching[name]
