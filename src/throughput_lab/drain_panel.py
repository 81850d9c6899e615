"""What the panels that drain a trigger's messages share (notebook 11's queue, notebook 13's
Service Bus and Event Hubs): their sliders, and Run and Stop around ``TriggerLab.drain``.

Run drains on a thread (``panel.ThreadJob``: the kernel's loop stays free) and starts the
lab again first when the notebook's last cell closed it; Stop, or the lab's own cancel,
ends the drain as a stop (``DrainStopped``), not a failure; each run's line and its
messages in progress over time are shown. Everything else a panel does (buttons, status,
Kernel > Interrupt) is ``panel.Panel``'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import plots
from .panel import Panel, SliderSpec, ThreadJob, labelled_sliders
from .trigger_lab import DrainStopped


def lab_running(lab: Any) -> bool:
    """Whether the lab's upstream (and its Azurite, if it has one) is up: not closed, as by
    the notebook's last cell."""
    azurite = lab.azurite
    return bool(lab.upstream.port) and (azurite is None or azurite.running)


class DrainPanel(Panel):
    """Sliders, Run and Stop for draining ``messages`` through ``function`` of ``lab``.

    A subclass says how a drain is called (``_drain_messages``) and drawn (``_plot``). A
    lab that was closed (the notebook's last cell) is started again by the next Run, as
    ``ControlPanel``'s lab starts its workers again.
    """

    thread_name = "drain-panel"

    def __init__(
        self,
        lab: Any,
        function: str,
        messages: int,
        spec: SliderSpec,
        values: Mapping[str, int],
        title: str,
    ) -> None:
        self.lab, self.function, self.messages = lab, function, messages
        self._restarting = False
        defaults = {name: values.get(name, default) for name, (default, *_) in spec.items()}
        super().__init__(title, labelled_sliders(spec, defaults), defaults)

    def _starting(self, values: dict[str, int]) -> None:
        self.status.value = f"draining {self.messages} messages..."
        self.image.value = b""  # no plot of the last run beside this one's outcome

    def _start(self, values: dict[str, int]) -> ThreadJob:
        return ThreadJob(lambda job: self._drain(job, values), self.lab.cancel, self.thread_name)

    def _drain(self, job: ThreadJob, values: dict[str, int]) -> Any:
        """On the job's thread: start the lab again if it was closed, then drain."""
        if not lab_running(self.lab):
            self._restarting = True
            try:
                self.lab.close()  # whatever is left of it (safe twice), then all of it anew
                self.lab.start()
            finally:
                self._restarting = False
        if job.cancelled.is_set():  # Stop while the lab started: drain nothing
            raise DrainStopped("the drain was stopped")
        return self._drain_messages(job, values)

    async def _show_progress(self, job: ThreadJob, began: float, values: dict[str, int]) -> None:
        seconds = f"{time.monotonic() - began:.1f} s"
        if self._restarting:
            self.status.value = f"the lab was closed: starting it again... {seconds}"
            return
        self.status.value = f"draining {self.messages} messages: {self._done_text()}{seconds}"

    def _ended_early(self, exc: BaseException) -> bool:
        if isinstance(exc, DrainStopped):  # the lab's own cancel() too: a stop, not a failure
            self._stopping = True
        return super()._ended_early(exc)

    def _record(self, values: dict[str, int], result: Any) -> str:
        self.history.append(result)
        fig = self._plot({f"run {len(self.history)}": result})
        self.image.value = plots.png(fig, dpi=80)
        return result.line()

    # -- what a subclass says ------------------------------------------------------------

    def _drain_messages(self, job: ThreadJob, values: dict[str, int]) -> Any:
        """On the job's thread, the lab running: the drain, with the sliders' ``values``."""
        raise NotImplementedError

    def _done_text(self) -> str:
        """What the status says of the messages done so far ("" where it is not counted);
        a subclass that counts them also moves the progress bar here."""
        return ""

    def _plot(self, results: dict[str, Any]) -> Any:
        """The figure of a finished run: its messages in progress over time."""
        raise NotImplementedError
