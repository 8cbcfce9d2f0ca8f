"""A workflow's maintenance windows as read from its row and the config: the gate its
runner checks, the check of windows given at creation, and what `show` says of them.

Apart from the turn's ends (`wfed.engine.windows`), so that reading them loads no runner.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wfed.engine.views import WindowStatus
from wfed.errors import InvalidDefinition
from wfed.store.rows import WorkflowRow
from wfed.unreadable_json import UnreadableJson
from wfed.windows import (
    GRAMMAR_HINT,
    QueueWindows,
    WindowGate,
    WindowSpecError,
    parse_windows,
    specs,
)


def gate_of(queue_windows: QueueWindows, queue: str, own: Any) -> WindowGate:
    """The windows a workflow of `queue` with `own` (its column) runs in; WindowSpecError
    when `own` cannot be read."""
    return WindowGate(queue_windows.of(queue), parse_windows(own))


def checked(windows: Any) -> list[str]:
    """Windows given at creation (a list of specs, or None), as they are stored;
    InvalidDefinition naming the problem when one cannot be read."""
    try:
        return specs(parse_windows(list(windows) if isinstance(windows, tuple) else windows))
    except WindowSpecError as exc:
        raise InvalidDefinition(f"windows: {exc}") from None


def unreadable(own: Any) -> str | None:
    """Why a workflow's `windows` column cannot be read, or None."""
    if isinstance(own, UnreadableJson):
        return f"windows: {own.reason} ({str(own)[:60]!r}); {GRAMMAR_HINT}"
    try:
        parse_windows(own)
    except WindowSpecError as exc:
        return f"windows: {exc}"
    return None


def status(queue_windows: QueueWindows, row: WorkflowRow, now: datetime) -> WindowStatus:
    """What `show` says of a workflow's windows at `now`."""
    queue = queue_windows.of(row.queue)
    try:
        own = parse_windows(row.windows)
    except WindowSpecError as exc:
        return WindowStatus(queue=specs(queue), invalid=f"windows: {exc}")
    if not (own or queue):
        return WindowStatus()
    closed = WindowGate(queue, own).closed(now)
    return WindowStatus(
        own=specs(own),
        queue=specs(queue),
        closed=closed is not None,
        opens_at=None if closed is None else closed.opens_at,
    )
