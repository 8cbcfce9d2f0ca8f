"""Reading live step output: `Engine.output` and `Engine.step_running`.

Output is read per step attempt, in order, as lines; each line carries the `seq` of the
chunk it was written in, which is the cursor of a follower: pass the last line's `seq`
as `after` to get only what came since. To follow a step until it ends:

    position, attempt = await engine.output_attempt(name)  # the defaults of `output`
    lines = await engine.output(name, position=position, attempt=attempt)
    after = lines[-1].seq if lines else None
    while await engine.step_running(name, position, attempt):
        wait a second, then print await engine.output(name, position=…, attempt=…, after=…)
    print await engine.output(name, position=…, attempt=…, after=…)   # the last lines

The last read after the step ended gets everything: the end of an attempt waits (a
little) for its last lines to be written before the step's result is committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wfed.engine.json_values import iso
from wfed.errors import WfedError
from wfed.states import StepState, WorkflowState
from wfed.store import output as output_store
from wfed.store.output import OutputChunk
from wfed.store.rows import StepRow, WorkflowRow


class StepNotFound(WfedError, LookupError):
    """The workflow has no step at this position."""


@dataclass(frozen=True)
class OutputLine:
    """One line a step attempt printed."""

    at: datetime
    """When the chunk the line came in was read (naive UTC)."""
    stream: str
    """`stdout` or `stderr`."""
    text: str
    """The line, without its line end."""
    position: int
    attempt: int
    seq: int
    """The chunk's order in the attempt: the cursor for `Engine.output(after=…)`."""

    def to_json(self) -> dict[str, Any]:
        """{at, stream, text, position, attempt, seq}."""
        return {
            "at": iso(self.at),
            "stream": self.stream,
            "text": self.text,
            "position": self.position,
            "attempt": self.attempt,
            "seq": self.seq,
        }


def lines_of(chunks: Iterable[OutputChunk]) -> list[OutputLine]:
    """The lines of chunks, in order."""
    return [
        OutputLine(
            at=chunk.at,
            stream=chunk.stream,
            text=text,
            position=chunk.position,
            attempt=chunk.attempt,
            seq=chunk.seq,
        )
        for chunk in chunks
        for text in chunk.text.split("\n")
    ]


def _step(row: WorkflowRow, steps: list[StepRow], position: int) -> StepRow:
    for step in steps:
        if step.position == position:
            return step
    raise StepNotFound(
        f"workflow {row.name!r} has no step {position}"
        + (f" (its steps are 0 to {len(steps) - 1})" if steps else " (it has no step rows yet)")
    )


def default_position(row: WorkflowRow, steps: list[StepRow], with_output: dict[int, int]) -> int:
    """The step whose output to show: the running one; else the current one if it printed
    (a step that failed); else the last one before it that printed; else the current one."""
    for step in steps:
        if step.state is StepState.RUNNING:
            return step.position
    current = max(0, min(row.current_step, len(steps) - 1))
    if current in with_output:
        return current
    earlier = [position for position in with_output if position <= current]
    return max(earlier) if earlier else current


async def choose(
    conn: AsyncConnection,
    row: WorkflowRow,
    steps: list[StepRow],
    *,
    position: int | None,
    attempt: int | None,
) -> tuple[int, int] | None:
    """(position, attempt) of the output `Engine.output` reads with these arguments; None
    for a workflow without step rows (enqueued with SQL, not claimed yet)."""
    if position is None and not steps:
        return None
    if position is not None and attempt is not None:
        _step(row, steps, position)
        return position, attempt
    with_output = await output_store.output_attempts(conn, row.id)
    if position is None:
        position = default_position(row, steps, with_output)
    step = _step(row, steps, position)
    if attempt is None:
        running = step.state is StepState.RUNNING
        attempt = step.attempts if running else with_output.get(position, step.attempts)
    return position, attempt


async def read_output(
    conn: AsyncConnection,
    row: WorkflowRow,
    steps: list[StepRow],
    *,
    position: int | None,
    attempt: int | None,
    after: int | None,
) -> list[OutputLine]:
    """The lines of one attempt of one step of `row` (see `Engine.output`)."""
    chosen = await choose(conn, row, steps, position=position, attempt=attempt)
    if chosen is None:
        return []
    chunks = await output_store.output_read(conn, row.id, *chosen, after=after or 0)
    return lines_of(chunks)


def step_running(
    row: WorkflowRow, steps: list[StepRow], position: int, attempt: int | None
) -> bool:
    """Whether step `position` of a running workflow is running (its attempt `attempt`,
    if given)."""
    step = _step(row, steps, position)
    return (
        row.state is WorkflowState.RUNNING
        and step.state is StepState.RUNNING
        and (attempt is None or step.attempts == attempt)
    )
