"""Live step output on every backend: a running shell step's lines are readable with
`Engine.output` before the step ends, in batches, capped with a marker, kept per attempt,
purged with their workflow; and a database that cannot be written to never fails or
stalls the step."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ACTOR, STEP_MODULES, TEST_QUEUE, CreateFn, EngineFactory, unique_name
from sqlalchemy import update
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from wfed import Engine, StepError
from wfed.clock import utc_now
from wfed.engine import output
from wfed.engine.execution import StepAttempt
from wfed.engine.output_view import OutputLine, StepNotFound
from wfed.states import WorkflowState
from wfed.steps.base import emit, step
from wfed.steps.definition import parse_definition
from wfed.steps.registry import StepRegistry
from wfed.store import output as output_store
from wfed.store.database import Database
from wfed.store.schema import workflows

DEADLINE = 20.0


def shell(script: str, **args: Any) -> dict[str, Any]:
    """A `shell` step element running `script` with /bin/sh."""
    return {"step": "shell", "args": {"cmd": script, "shell": True, **args}}


def wait_for(path: Path) -> str:
    """Shell: wait until `path` exists (the test creates it)."""
    return f'while [ ! -e "{path}" ]; do sleep 0.02; done'


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = DEADLINE) -> Any:
    """Poll `check` until it returns something true; its result."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        assert time.monotonic() < deadline, f"{what}: not within {within:g} s"
        await asyncio.sleep(0.05)
    return result


def texts(lines: list[OutputLine]) -> list[str]:
    return [line.text for line in lines]


async def chunks(engine: Engine, name: str) -> int:
    """How many output rows the workflow has."""
    async with engine.db.transaction() as conn:
        row = await output_store.output_attempt_of(conn, name, 0)
        assert row is not None
        return await output_store.output_count(conn, row[0])


async def test_output_is_readable_before_the_step_ends(
    engine: Engine, create: CreateFn, tmp_path: Path
) -> None:
    """What a running shell step printed is readable with Engine.output while it still
    runs; a cursor then gives only the new lines, and step_running turns False at the end."""
    go = tmp_path / "go"
    name = await create(
        [shell(f"echo first; echo warning >&2; {wait_for(go)}; echo last", save_as="r")]
    )
    run = asyncio.create_task(engine.run(name))
    try:

        async def two_lines() -> list[OutputLine]:
            lines = await engine.output(name)
            return lines if len(lines) == 2 else []

        early = await until(two_lines, "the first two lines")
        assert not run.done()
        assert await engine.output_attempt(name) == (0, 1)
        assert await engine.step_running(name, 0)
        assert await engine.step_running(name, 0, attempt=1)
        assert not await engine.step_running(name, 0, attempt=2)
        assert [(line.stream, line.text) for line in early] == [
            ("stdout", "first"),
            ("stderr", "warning"),
        ]
        assert {(line.position, line.attempt) for line in early} == {(0, 1)}
        go.touch()
        workflow = await run
    finally:
        go.touch()
        await asyncio.wait({run}, timeout=DEADLINE)
    assert workflow.state is WorkflowState.COMPLETED
    assert workflow.context["r"] == {"rc": 0, "stdout": "first\nlast\n", "stderr": "warning\n"}
    assert not await engine.step_running(name, 0)
    assert texts(await engine.output(name)) == ["first", "warning", "last"]
    assert texts(await engine.output(name, after=early[-1].seq)) == ["last"]
    assert await engine.output(name, after=(await engine.output(name))[-1].seq) == []
    assert (await engine.output(name))[0].to_json().keys() == {
        "at",
        "stream",
        "text",
        "position",
        "attempt",
        "seq",
    }


async def test_output_is_written_in_batches(engine: Engine, create: CreateFn) -> None:
    """A step printing a line every 20 ms for over a second is written in a few chunks
    (a write every 0.5 s at most), each of several lines, in order."""
    name = await create(
        [shell("i=0; while [ $i -lt 60 ]; do echo line$i; sleep 0.02; i=$((i+1)); done")]
    )
    started = time.monotonic()
    await engine.run(name)
    elapsed = time.monotonic() - started
    lines = await engine.output(name)
    assert texts(lines) == [f"line{i}" for i in range(60)]
    written = await chunks(engine, name)
    assert 2 <= written <= elapsed / output.INTERVAL + 2, (written, elapsed)
    assert [line.seq for line in lines] == sorted(line.seq for line in lines)


async def test_the_cap_holds_with_a_marker(
    database_url: str, make_engine: EngineFactory, create: CreateFn
) -> None:
    """An attempt's output stops at [output] max_bytes with a marker line where it was
    cut; the context's capture is not affected."""
    capped = make_engine(database_url, output_max_bytes=1000)
    name = await create([shell("seq 1 2000", save_as="r")])
    await capped.run(name)
    lines = await capped.output(name)
    kept, marker = texts(lines[:-1]), lines[-1].text
    assert kept == [str(i) for i in range(1, len(kept) + 1)]
    assert sum(len(text) + 1 for text in kept) <= 1000
    assert sum(len(text) + 1 for text in kept) + len(str(len(kept) + 1)) + 1 > 1000
    assert marker == output.cut_marker(1000)
    assert "1,000 bytes" in marker
    workflow = await capped.get(name)
    assert workflow.context["r"]["stdout"].endswith("1999\n2000\n")


async def test_zero_max_bytes_records_nothing(
    database_url: str, make_engine: EngineFactory, create: CreateFn
) -> None:
    """With [output] max_bytes = 0 no output is recorded."""
    silent = make_engine(database_url, output_max_bytes=0)
    name = await create([shell("echo hello")])
    await silent.run(name)
    assert await silent.output(name) == []


async def test_attempts_are_kept_apart(engine: Engine, create: CreateFn, tmp_path: Path) -> None:
    """Each attempt of a retried step has its own output; the default is the last one."""
    mark = tmp_path / "failed-once"
    script = f'if [ -e "{mark}" ]; then echo second; else touch "{mark}"; echo first; exit 3; fi'
    name = await create([{**shell(script), "retries": 1}])
    await engine.run(name)
    assert texts(await engine.output(name)) == ["second"]
    assert texts(await engine.output(name, attempt=1)) == ["first"]
    assert {line.attempt for line in await engine.output(name, attempt=2)} == {2}
    assert await engine.output(name, attempt=3) == []


async def test_the_default_step_is_the_current_or_last_that_printed(
    engine: Engine, create: CreateFn
) -> None:
    """By default: the failed step the workflow halted at; for a completed workflow, the
    last step that printed; any step by position; StepNotFound past the last."""
    done = await create([shell("echo zero"), shell("echo one"), "noop"])
    await engine.run(done)
    assert texts(await engine.output(done)) == ["one"]
    assert texts(await engine.output(done, position=0)) == ["zero"]
    assert await engine.output(done, position=2) == []
    assert await engine.output_attempt(done) == (1, 1)
    assert await engine.output_attempt(done, position=2) == (2, 1)
    with pytest.raises(StepNotFound, match="no step 3"):
        await engine.output(done, position=3)
    failed = await create([shell("echo zero"), shell("echo broken >&2; exit 1")])
    with pytest.raises(StepError):
        await engine.run(failed)
    assert [(line.stream, line.text) for line in await engine.output(failed)] == [
        ("stderr", "broken")
    ]


async def test_a_restart_replaces_the_earlier_run_output(
    engine: Engine, create: CreateFn, tmp_path: Path
) -> None:
    """A restarted step counts attempts from 1 again: its earlier run's output is replaced."""
    counter = tmp_path / "runs"
    name = await create([shell(f'echo run >> "{counter}"; echo "run $(wc -l < "{counter}")"')])
    await engine.run(name)
    assert texts(await engine.output(name)) == ["run 1"]
    await engine.restart(name, from_step=0)
    await engine.run(name)
    assert texts(await engine.output(name)) == ["run 2"]
    assert await engine.output(name, attempt=2) == []


@step("emits_in_a_thread")
def emits_in_a_thread(ctx: dict[str, Any]) -> None:
    """A plain `def` step (run in a worker thread) that passes on live output itself."""
    emit("from a thread\nsecond line")
    emit("a warning", stream="stderr")


async def test_a_plain_def_step_can_emit_output(
    database_url: str, make_engine: EngineFactory
) -> None:
    """A step of one's own passes on lines with emit(), from its worker thread too; they
    are recorded like the shell step's."""
    registry = StepRegistry.from_modules([])
    registry.add(emits_in_a_thread.__wfed_step__)  # type: ignore[attr-defined]
    own = make_engine(database_url, registry=registry)
    name = unique_name("emit")
    await own.create_workflow(name, {}, ["emits_in_a_thread"], queue=TEST_QUEUE)
    await own.run(name)
    assert [(line.stream, line.text) for line in await own.output(name)] == [
        ("stdout", "from a thread"),
        ("stdout", "second line"),
        ("stderr", "a warning"),
    ]


async def test_deleting_a_workflow_removes_its_output(engine: Engine, create: CreateFn) -> None:
    """Delete takes the workflow's output with it (ON DELETE CASCADE)."""
    name = await create([shell("seq 1 100")])
    await engine.run(name)
    async with engine.db.transaction() as conn:
        found = await output_store.output_attempt_of(conn, name, 0)
    assert found is not None
    workflow_id = found[0]
    assert await chunks(engine, name) >= 1
    await engine.delete(name)
    async with engine.db.transaction() as conn:
        assert await output_store.output_count(conn, workflow_id) == 0


async def test_purging_a_workflow_removes_its_output(engine: Engine, create: CreateFn) -> None:
    """Retention's purge takes the output of the workflows it deletes with them."""
    name = await create([shell("seq 1 100")])
    await engine.run(name)
    async with engine.db.transaction() as conn:
        found = await output_store.output_attempt_of(conn, name, 0)
        assert found is not None
        workflow_id = found[0]
        # Finished long before anything other tests leave behind, so only it is purged.
        await conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(finished_at=utc_now() - timedelta(days=365 * 40))
        )
    assert await engine.purge(timedelta(days=365 * 39)) == 1
    async with engine.db.transaction() as conn:
        assert await output_store.output_count(conn, workflow_id) == 0


# -- a database that cannot be written to ----------------------------------------------


class Proxy:
    """A TCP proxy in front of a database server that a test can cut: its connections are
    dropped and new ones are taken but never answered (a server gone away, the worst
    case: clients wait for their connect timeout), until it is restored."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cut = False
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        if self.cut:
            return  # held open, never answered, closed by restore()
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        self._open.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    def _drop_all(self) -> None:
        for writer in list(self._open):
            writer.close()
        self._open.clear()

    def go_away(self) -> None:
        self.cut = True
        self._drop_all()

    def come_back(self) -> None:
        self.cut = False
        self._drop_all()

    async def close(self) -> None:
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Outage:
    """The test database made unwritable on demand: a cut proxy for MariaDB and
    PostgreSQL, an exclusive lock held by another connection for SQLite (writers then
    wait for it). `url` is the database as clients must reach it."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.url = database_url
        self.proxy: Proxy | None = None
        self.lock: sqlite3.Connection | None = None

    async def start(self) -> None:
        parsed = make_url(self.database_url)
        if parsed.get_backend_name() == "sqlite":
            return
        self.proxy = Proxy(parsed.host or "127.0.0.1", parsed.port or 0)
        port = await self.proxy.start()
        self.url = parsed.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    def begin(self) -> None:
        if self.proxy is not None:
            self.proxy.go_away()
            return
        path = make_url(self.database_url).database
        assert path is not None
        self.lock = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.lock.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self.proxy is not None:
            self.proxy.come_back()
        if self.lock is not None:
            self.lock.rollback()
            self.lock.close()
            self.lock = None

    async def close(self) -> None:
        self.end()
        if self.proxy is not None:
            await self.proxy.close()


@pytest.fixture
async def outage(database_url: str, make_engine: EngineFactory) -> AsyncIterator[Outage]:
    """An Outage of this backend's test database (its schema upgraded first)."""
    make_engine(database_url)  # the schema, upgraded directly (not through the proxy)
    cut = Outage(database_url)
    await cut.start()
    try:
        yield cut
    finally:
        await cut.close()


async def test_an_unwritable_database_neither_fails_nor_stalls_the_step(
    outage: Outage, create: CreateFn, engine: Engine, tmp_path: Path
) -> None:
    """While the database cannot be written to, a step printing far more than a pipe holds
    runs on to its end; once the database is back the workflow completes with its output
    captured, the live output recorded is whole and in order, and the delay was logged
    once (a server that went away; SQLite's writers just wait for the lock)."""
    go, done = tmp_path / "go", tmp_path / "done"
    count = 30_000  # about 170 KB: a pipe nobody read would block the command
    script = f'echo before; {wait_for(go)}; seq 1 {count}; touch "{done}"'
    name = await create([shell(script, save_as="r", max_output=100)])
    runner = Engine(outage.url, step_modules=STEP_MODULES, actor=ACTOR)
    logs = contextlib.ExitStack()
    captured = logs.enter_context(capture_logs())
    run = asyncio.create_task(runner.run(name))
    try:

        async def before() -> bool:
            return texts(await engine.output(name)) == ["before"]

        await until(before, "the first line")
        outage.begin()
        go.touch()
        deadline = time.monotonic() + DEADLINE
        while not done.exists():
            assert time.monotonic() < deadline, "the command was held up by its output"
            await asyncio.sleep(0.05)
        # Away long enough for a write of the output to be tried, and for the attempt to
        # end, while the database cannot be written to.
        await asyncio.sleep(output.INTERVAL + output.END_WAIT + 0.5)
        assert not run.done()
        outage.end()
        workflow = await asyncio.wait_for(run, timeout=DEADLINE)
        assert workflow.state is WorkflowState.COMPLETED
        assert workflow.context["r"]["rc"] == 0
        assert workflow.context["r"]["stdout"].endswith(f"{count}\n")

        expected = ["before"] + [str(i) for i in range(1, count + 1)]

        async def whole() -> bool:
            return texts(await engine.output(name)) == expected

        await until(whole, "the output delayed by the outage", within=70)
        delayed = [line for line in captured if line["event"] == "step_output_delayed"]
        assert len(delayed) == (0 if outage.proxy is None else 1)
        assert not [line for line in captured if line["event"] == "step_output_dropped"]
    finally:
        logs.close()
        outage.end()
        go.touch()
        if not run.done():
            run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await output.settle(10)
        await runner.close()


async def test_the_end_of_an_attempt_waits_little_for_its_output(
    outage: Outage, tmp_path: Path
) -> None:
    """With the database unwritable from the start, a step attempt that printed ends at
    most END_WAIT after its command, with its result; the output is written once the
    database is back."""
    registry = StepRegistry.from_modules([])
    plan = parse_definition([shell("seq 1 5000", save_as="r")], registry)[0]
    db = Database(outage.url)
    context: dict[str, Any] = {}
    try:
        outage.begin()
        with output.recording(db, unique_name("nowhere")):
            started = time.monotonic()
            assert await StepAttempt(plan, context).run() is None
            elapsed = time.monotonic() - started
        assert context["r"]["stdout"].endswith("4999\n5000\n")
        # The command itself takes a few milliseconds; the rest is the bounded wait.
        assert elapsed < output.END_WAIT + 2.0, elapsed
    finally:
        outage.end()
        assert await output.settle(60)
        await db.dispose()


async def test_output_of_an_sql_enqueued_workflow_not_yet_claimed_is_empty(
    engine: Engine,
) -> None:
    """A workflow inserted with SQL and not claimed has no step rows: no output, no error."""
    name = unique_name("sql")
    async with engine.db.transaction() as conn:
        await conn.execute(
            workflows.insert().values(name=name, steps=["noop"], context={}, queue=TEST_QUEUE)
        )
    assert await engine.output(name) == []
    assert await engine.output_attempt(name) is None
