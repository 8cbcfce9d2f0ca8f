"""What a workflow's maintenance windows do to its runner's turn.

A daemon's runner is given its queue's windows (config) and reads the workflow's own
(its `windows` column) when the turn starts (`wfed.engine.window_reads`). Outside them, a
workflow just claimed is handed back as pending until the next opening
(`outside_windows`); one whose window closes while it runs pauses after its current step
(`window_closed`), as an operator's pause would, and a daemon's chore resumes it when its
windows open again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from wfed.engine.ends import after_step
from wfed.engine.json_values import iso
from wfed.engine.turn import StepEnd, TurnEnd
from wfed.states import Operation
from wfed.steps.definition import StepPlan
from wfed.windows import Closed

ALL_WINDOWS = "its maintenance windows"
"""What a pause names when no single window closed (windows that never opened since)."""


def _when(moment: datetime | None) -> str:
    return "not within a week" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def window_name(closed: Closed) -> str:
    """The window a pause or a wait names."""
    return closed.window.spec if closed.window is not None else ALL_WINDOWS


def window_closed(plan: StepPlan, context: dict[str, Any], closed: Closed) -> TurnEnd:
    """The window closed while step `plan` ran: the workflow pauses before the next step,
    naming the window (unless an operator's request waits: that is honoured instead)."""
    name = window_name(closed)
    reason = (
        f"maintenance window {name!r} closed; it resumes by itself when its next window "
        f"opens ({_when(closed.opens_at)})"
    )
    end = after_step(plan, Operation.HONOUR_PAUSE, context)
    return replace(
        end,
        values={**end.values, "window_paused": name},
        reason=reason,
        message=reason,
        detail={"window": name, "opens_at": iso(closed.opens_at)},
        on_request=False,
        yields_to_request=True,
    )


def outside_windows(
    position: int, context: dict[str, Any], closed: Closed, opens_at: datetime, *, rerun: bool
) -> TurnEnd:
    """A workflow claimed outside its windows goes back to pending, not to be claimed
    before `opens_at`. With `rerun`, its step (cut off with its previous owner, and to be
    re-run) goes back to pending too."""
    reason = (
        f"claimed outside its maintenance windows; waits for the next opening ({_when(opens_at)})"
    )
    step = StepEnd(position, None, "interrupted; re-run when its window opens") if rerun else None
    return TurnEnd(
        Operation.WAIT_FOR_WINDOW,
        values={"context": context, "current_step": position, "run_after": opens_at},
        step=step,
        position=position,
        reason=reason,
        message=reason,
        detail={"window": window_name(closed), "opens_at": iso(opens_at)},
    )
