"""Queries on the `workflow_step_output` table: a step attempt's live output, in chunks.

A chunk is one or more lines of one stream (joined by "\\n", without a final one), with
its order in the attempt (`seq`, from 1). The recorder writes chunks in short
transactions of their own while the step runs; readers follow an attempt by `seq`. The
rows go with their workflow (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from wfed.store.schema import workflow_step_output, workflow_steps, workflows

O = workflow_step_output.c  # noqa: E741 - the table's columns, as W and S elsewhere
S = workflow_steps.c
W = workflows.c


@dataclass(frozen=True)
class OutputChunk:
    """One row of `workflow_step_output`."""

    position: int
    attempt: int
    seq: int
    stream: str
    text: str
    at: datetime


class _utf8_from_hex(FunctionElement[str]):  # noqa: N801 - reads as the SQL it renders
    """MySQL: the text whose UTF-8 bytes a hexadecimal string spells."""

    type = Text()
    inherit_cache = True


@compiles(_utf8_from_hex)
def _compile_utf8_from_hex(element: _utf8_from_hex, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CONVERT(UNHEX({compiler.process(element.clauses, **kw)}) USING utf8mb4)"


# Built once (see workflows._guarded_update); executed with a list of rows it is the
# driver's executemany.
_INSERT = workflow_step_output.insert()
# MySQL: asyncmy escapes a string parameter one character at a time once it holds a
# character to escape (every line end is one): some 40 ns a character, 20 ms of the event
# loop's time for 500 KB of output. Sent as hexadecimal, which needs no escaping, the text
# costs a fraction of that. (asyncmy then runs the executemany row by row: the rows are
# few and large.)
_INSERT_HEX = workflow_step_output.insert().values(text=_utf8_from_hex(bindparam("b_text_hex")))


async def output_insert(
    conn: AsyncConnection, workflow_id: int, chunks: Sequence[OutputChunk]
) -> None:
    """Write chunks of a workflow's output (one statement for all of them)."""
    if not chunks:
        return
    rows: list[dict[str, Any]] = [
        {
            "workflow_id": workflow_id,
            "position": c.position,
            "attempt": c.attempt,
            "seq": c.seq,
            "stream": c.stream,
            "text": c.text,
            "at": c.at,
        }
        for c in chunks
    ]
    statement = _INSERT
    if conn.dialect.name in {"mysql", "mariadb"}:
        statement = _INSERT_HEX
        for row in rows:
            row["b_text_hex"] = row.pop("text").encode("utf-8", "replace").hex()
    await conn.execute(statement, rows[0] if len(rows) == 1 else rows)


_ATTEMPT_OF = (
    select(W.id, S.attempts, W.name)
    .join_from(workflows, workflow_steps, S.workflow_id == W.id)
    .where(W.name == bindparam("b_name"), S.position == bindparam("b_position"))
)


async def output_attempt_of(
    conn: AsyncConnection, workflow_name: str, position: int
) -> tuple[int, int] | None:
    """(workflow id, the step's current attempt) of a workflow's step; None if there is
    no such workflow or step."""
    row = (
        await conn.execute(_ATTEMPT_OF, {"b_name": workflow_name, "b_position": position})
    ).first()
    if row is None:
        return None
    return int(row[0]), int(row[1])


async def output_clear_from(
    conn: AsyncConnection, workflow_id: int, position: int, attempt: int
) -> int:
    """Delete the output of attempts `attempt` and later of a step: a restart counts a
    step's attempts from 1 again, so what is there is from an earlier run."""
    result = await conn.execute(
        delete(workflow_step_output).where(
            O.workflow_id == workflow_id, O.position == position, O.attempt >= attempt
        )
    )
    return int(result.rowcount)


async def output_read(
    conn: AsyncConnection,
    workflow_id: int,
    position: int,
    attempt: int,
    *,
    after: int = 0,
) -> list[OutputChunk]:
    """The chunks of one step attempt after `after` (a `seq`), in order."""
    rows = await conn.execute(
        select(O.position, O.attempt, O.seq, O.stream, O.text, O.at)
        .where(
            O.workflow_id == workflow_id,
            O.position == position,
            O.attempt == attempt,
            O.seq > after,
        )
        .order_by(O.seq)
    )
    return [
        OutputChunk(
            position=row.position,
            attempt=row.attempt,
            seq=row.seq,
            stream=row.stream,
            text=row.text,
            at=row.at,
        )
        for row in rows
    ]


async def output_attempts(conn: AsyncConnection, workflow_id: int) -> dict[int, int]:
    """{position: its last attempt with output} of a workflow's steps that have output."""
    rows = await conn.execute(
        select(O.position, func.max(O.attempt))
        .where(O.workflow_id == workflow_id)
        .group_by(O.position)
    )
    return {int(position): int(attempt) for position, attempt in rows}


async def output_count(conn: AsyncConnection, workflow_id: int) -> int:
    """How many output chunks a workflow (by id, existing or not) has."""
    count = await conn.scalar(
        select(func.count()).select_from(workflow_step_output).where(O.workflow_id == workflow_id)
    )
    return int(count or 0)
