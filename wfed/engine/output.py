"""Live step output: what a running step prints, recorded in the database as it comes.

Whoever runs a workflow binds an `OutputTarget` around the run (`recording(...)`:
`Engine.run` does); `StepAttempt` then makes an `OutputRecorder` for each attempt and
attaches it as the step's live-output sink (`wfed.steps.base.output_to`). Without a
target, or with `max_bytes` 0, nothing is recorded.

The recorder never holds the step up. The step hands it lines (`write()` returns at
once); it keeps them in memory and writes them, as chunks of lines, in short
transactions of its own — never the step commit's — at most every `INTERVAL` seconds
(the first lines wait too: a step shorter than that is one write), and once more when
the attempt ends. A write that fails because the database is away or slow
is tried again later with what came meanwhile (it is logged once); the end of the attempt
waits `END_WAIT` seconds at most for the last write, which carries on in the background
for up to `GIVE_UP_AFTER` seconds before the output is dropped. Memory stays bounded by
the cap: an attempt's output is cut at `max_bytes`, with a marker line where it was cut.

The chunks are found by the workflow's name and the step's position; the first write of
an attempt reads the step's current attempt number, and deletes output of that attempt
and later ones left by an earlier run of the step (a restart counts attempts from 1 again).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from wfed.clock import Clock, utc_now
from wfed.config import DEFAULT_OUTPUT_MAX_BYTES
from wfed.engine.lease import error_text
from wfed.logging import get_logger
from wfed.steps.base import Stream
from wfed.store import output as output_store
from wfed.store.database import Database, is_outage
from wfed.store.output import OutputChunk

log = get_logger("wfed.output")

INTERVAL = 0.5
"""Seconds between the starts of two writes of one attempt's output, at least."""
END_WAIT = 1.0
"""How long the end of an attempt waits for its last output to be written."""
WRITE_TIMEOUT = 30.0
"""One write's limit (a server that takes the connection and never answers)."""
RETRY_FIRST = 0.5
RETRY_MAX = 5.0
GIVE_UP_AFTER = 60.0
"""How long output is still tried once its attempt ended, before it is dropped."""
CHUNK_CHARS = 256 * 1024
"""Characters of one chunk row, at most (MySQL's MEDIUMTEXT holds 16 MiB of utf8mb4)."""

# Writes still going on after their attempt ended: kept here so they are not collected.
_background: set[asyncio.Task[None]] = set()


def cut_marker(max_bytes: int) -> str:
    """The line that ends an attempt's output once it reached the cap."""
    return (
        f"[… output cut here: this attempt printed more than {max_bytes:,} bytes "
        "([output] max_bytes); the rest was not recorded …]"
    )


@dataclass(frozen=True)
class OutputTarget:
    """Where the attempts of one workflow's run record their output."""

    db: Database
    workflow: str
    """The workflow's name."""
    max_bytes: int = DEFAULT_OUTPUT_MAX_BYTES


_target: contextvars.ContextVar[OutputTarget | None] = contextvars.ContextVar(
    "wfed_output_target", default=None
)


@contextlib.contextmanager
def recording(
    db: Database, workflow: str, max_bytes: int = DEFAULT_OUTPUT_MAX_BYTES
) -> Iterator[None]:
    """Record the live output of the step attempts of `workflow` run in this block (by a
    `WorkflowRunner` awaited in it, or in a task started in it)."""
    token = _target.set(OutputTarget(db, workflow, max_bytes))
    try:
        yield
    finally:
        _target.reset(token)


def attempt_recorder(position: int) -> OutputRecorder | None:
    """A recorder for an attempt of step `position` of the workflow being recorded, or
    None when nothing is (no target bound, or `max_bytes` 0)."""
    target = _target.get()
    if target is None or target.max_bytes <= 0:
        return None
    return OutputRecorder(target, position)


async def settle(within: float) -> bool:
    """Wait up to `within` seconds for the output writes of this event loop still going on
    after their attempts ended (before closing the database); whether none is left."""
    loop = asyncio.get_running_loop()
    pending = {task for task in _background if task.get_loop() is loop}
    if not pending:
        return True
    _, still = await asyncio.wait(pending, timeout=within)
    return not still


@dataclass
class _Chunk:
    stream: Stream
    at: datetime
    parts: list[str] = field(default_factory=list)
    """Lines, several of them joined by "\n" in a part."""
    chars: int = -1  # the first part adds no "\n"
    lines: int = 0

    def put(self, text: str, lines: int) -> None:
        self.parts.append(text)
        self.chars += 1 + len(text)
        self.lines += lines


class OutputRecorder:
    """One step attempt's live output: a `wfed.steps.base.OutputSink` that writes to the
    database in batches. Made and closed by `StepAttempt`, on the event loop's thread."""

    def __init__(
        self,
        target: OutputTarget,
        position: int,
        *,
        interval: float = INTERVAL,
        clock: Clock = utc_now,
    ) -> None:
        self.target = target
        self.position = position
        self.interval = interval
        self.clock = clock
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._pending: list[_Chunk] = []
        self._bytes = 0
        self._cut = False
        self._closed = False
        self._dead = False
        self._warned = False
        self._past_cap = 0  # lines not kept: past the cap
        self._where: tuple[int, int] | None = None  # (workflow id, attempt) once written
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        # Made with the writing task, by the first line: most attempts write none.
        self._wake: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._give_up_at = 0.0

    # -- the sink ---------------------------------------------------------------------

    def write(self, stream: Stream, text: str) -> None:
        """Take lines (see `OutputSink.write`): kept in memory, written later."""
        if threading.get_ident() != self._thread:
            # A plain `def` step in its worker thread: the loop's thread takes them.
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to take them
                self._loop.call_soon_threadsafe(self._take, stream, text)
            return
        self._take(stream, text)

    def _take(self, stream: Stream, text: str) -> None:
        if self._closed or self._dead:
            return
        if self._cut:
            self._past_cap += text.count("\n") + 1
            return
        try:
            # Whole reads at a time: a few C calls for thousands of lines.
            size = (len(text) if text.isascii() else len(text.encode("utf-8", "replace"))) + 1
            if self._bytes + size <= self.target.max_bytes:
                self._bytes += size
                self._add(stream, text)
            else:
                self._take_to_cap(stream, text.split("\n"))
            self._start()
        except Exception as exc:  # never into the step
            self._dead = True
            log.warning("step_output_failed", error=error_text(exc))

    def _take_to_cap(self, stream: Stream, lines: Sequence[str]) -> None:
        """Keep the lines that fit under the cap, then the marker; nothing more after."""
        limit = self.target.max_bytes
        kept = 0
        for line in lines:
            size = (len(line) if line.isascii() else len(line.encode("utf-8", "replace"))) + 1
            if self._bytes + size > limit:
                break
            self._bytes += size
            kept += 1
        if kept:
            self._add(stream, "\n".join(lines[:kept]))
        self._add(stream, cut_marker(limit))
        self._cut = True
        self._past_cap += len(lines) - kept

    def _add(self, stream: Stream, text: str) -> None:
        """Add lines joined by "\n" to the pending chunks, at most CHUNK_CHARS each, cut
        between lines; a line longer than a chunk goes in pieces."""
        last = self._pending[-1] if self._pending else None
        chunk = last if last is not None and last.stream == stream else None
        while True:
            room = CHUNK_CHARS if chunk is None else CHUNK_CHARS - chunk.chars - 1
            if len(text) <= room:
                chunk = chunk or self._new_chunk(stream)
                chunk.put(text, text.count("\n") + 1)
                return
            cut = text.rfind("\n", 0, room + 1)
            if cut >= 0:
                head, text = text[:cut], text[cut + 1 :]
            elif chunk is not None:
                chunk = None  # a chunk of its own has more room
                continue
            else:
                head, text = text[:room], text[room:]
            chunk = chunk or self._new_chunk(stream)
            chunk.put(head, head.count("\n") + 1)
            chunk = None

    def _new_chunk(self, stream: Stream) -> _Chunk:
        chunk = _Chunk(stream, self.clock())
        self._pending.append(chunk)
        return chunk

    def _start(self) -> None:
        if self._wake is None:
            self._wake, self._closing = asyncio.Event(), asyncio.Event()
            self._task = self._loop.create_task(self._run(self._wake, self._closing))
            _background.add(self._task)
            self._task.add_done_callback(_background.discard)
        self._wake.set()

    # -- the end of the attempt -------------------------------------------------------

    async def close(self) -> None:
        """The attempt ended: write what is left, waiting `END_WAIT` seconds at most (the
        write goes on in the background). Never raises but a cancellation."""
        if self._closed:
            return
        self._closed = True
        if self._task is None or self._wake is None or self._closing is None:
            return  # no line was written: nothing to wait for
        self._give_up_at = self._loop.time() + GIVE_UP_AFTER
        self._closing.set()
        self._wake.set()
        await asyncio.wait({self._task}, timeout=END_WAIT)

    # -- writing ----------------------------------------------------------------------

    async def _run(self, wake: asyncio.Event, closing: asyncio.Event) -> None:
        loop = self._loop
        delay = RETRY_FIRST
        # The first lines wait too: a step shorter than the interval is one write.
        next_write = loop.time() + self.interval
        failed = False
        try:
            while not self._dead:
                if not self._pending:
                    if self._closed:
                        return
                    await wake.wait()
                    wake.clear()
                    continue
                pause = next_write - loop.time()
                if pause > 0 and failed:
                    await asyncio.sleep(pause)
                elif pause > 0 and not self._closed:
                    # The end of the attempt cuts the pause short: its last lines go at once.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(pause):
                            await closing.wait()
                next_write = loop.time() + self.interval
                if await self._write():
                    failed, delay = False, RETRY_FIRST
                    continue
                failed = True
                if self._closed and loop.time() >= self._give_up_at:
                    self._drop("the database could not be written to")
                    return
                next_write = loop.time() + delay
                delay = min(delay * 2, RETRY_MAX)
        finally:
            self._report()

    async def _write(self) -> bool:
        """Write the pending chunks in one transaction; False if it is worth trying again."""
        chunks, self._pending = self._pending, []
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                async with self.target.db.transaction() as conn:
                    where = self._where
                    if where is None:
                        where = await output_store.output_attempt_of(
                            conn, self.target.workflow, self.position
                        )
                        if where is None:
                            self._dead = True
                            return True
                        await output_store.output_clear_from(
                            conn, where[0], self.position, where[1]
                        )
                    rows = [
                        OutputChunk(
                            position=self.position,
                            attempt=where[1],
                            seq=self._seq + number,
                            stream=chunk.stream,
                            text="\n".join(chunk.parts),
                            at=chunk.at,
                        )
                        for number, chunk in enumerate(chunks, 1)
                    ]
                    await output_store.output_insert(conn, where[0], rows)
        except Exception as exc:
            self._pending[:0] = chunks
            if isinstance(exc, TimeoutError) or is_outage(exc):
                if not self._warned:
                    self._warned = True
                    log.warning("step_output_delayed", error=error_text(exc))
                return False
            # Refused (the step's row gone, a duplicate from an owner that lost the
            # workflow): the same write would be refused again.
            self._dead = True
            self._drop(error_text(exc))
            return True
        self._where = where
        self._seq += len(rows)
        return True

    def _drop(self, why: str) -> None:
        lines = sum(chunk.lines for chunk in self._pending)
        self._pending.clear()
        if lines:
            log.warning("step_output_dropped", lines=lines, reason=why)

    def _report(self) -> None:
        if self._cut:
            log.info(
                "step_output_cut",
                max_bytes=self.target.max_bytes,
                lines_not_recorded=self._past_cap,
            )
