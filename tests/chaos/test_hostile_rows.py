"""Hostile rows inserted with plain SQL beside good ones, on the three databases, under
real daemons (see hostile.py for the corpus)."""

from __future__ import annotations

import asyncio
import os
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonFactory, DaemonProcess
from harness import (
    CHAOS_DIR,
    INTERNAL_ERRORS,
    Fleet,
    read_journal,
    time_limit,
    vm_rss_kib,
    wait_until,
)
from hostile import BIG_CONTEXT_BYTES, GOOD_STEPS, HostileRow, corpus, good_rows
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from wfed.engine.lease import ERROR_TEXT_MAX
from wfed.store.database import redacted

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(time_limit(240, 600))]

RSS_LIMIT_KIB = 500 * 1024
WFECTL = Path(sys.executable).parent / "wfectl"
GOOD = 10
PRINTABLE = set(string.printable)


def readable(message: str | None) -> bool:
    """A last_error an operator can read: some text, bounded, without a traceback."""
    if not message or len(message) > ERROR_TEXT_MAX or "Traceback" in message:
        return False
    return all(ch in PRINTABLE or ch.isprintable() for ch in message)


async def insert(engine: AsyncEngine, name: str, queue: str, row: HostileRow) -> str | None:
    """INSERT one row with plain SQL; returns the database's refusal, if it refused it."""
    values: dict[str, Any] = {"name": name, "queue": queue, "steps": row.steps}
    if row.context is not None:
        values["context"] = row.context
    values.update(row.columns)
    columns = ", ".join(values)
    placeholders = ", ".join(f":{column}" for column in values)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(f"INSERT INTO workflows ({columns}) VALUES ({placeholders})"), values
            )
    except DBAPIError as exc:
        return " ".join(str(exc.orig).split())[:200]
    return None


async def states(engine: AsyncEngine, names: list[str]) -> dict[str, tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT name, state, last_error FROM workflows WHERE name IN :names").bindparams(
                bindparam("names", expanding=True)
            ),
            {"names": names},
        )
        return {row.name: (row.state, row.last_error) for row in rows}


async def settle(
    engine: AsyncEngine,
    daemon: DaemonProcess,
    names: list[str],
    ends: frozenset[str] | set[str] = frozenset({"completed", "error"}),
) -> dict[str, tuple[str, str | None]]:
    """Wait until every workflow of `names` is in one of `ends`, or the daemon is gone;
    their (state, last_error) then."""

    async def settled() -> bool:
        if daemon.proc.poll() is not None:
            return True
        now = await states(engine, names)
        return all(now[name][0] in ends for name in names)

    await wait_until(settled, limit=60, what=f"{len(names)} workflows settled or the daemon gone")
    return await states(engine, names)


@pytest.mark.parametrize("backend_url", ["sqlite", "mariadb", "postgresql"], indirect=True)
async def test_hostile_rows_end_in_error_and_break_nothing_else(
    request: pytest.FixtureRequest,
    backend_url: str,
    start_daemon: DaemonFactory,
    queue: str,
    journal: Path,
    tmp_path: Path,
    figures: Callable[..., None],
) -> None:
    """At least 60 hostile rows beside good ones: each ends in error with a readable
    last_error of at most 4,000 characters (or is refused at INSERT), every good row
    completes, no daemon exits, the marker module is never imported, and daemon RSS stays
    under 500 MB with a 50 MB context."""
    backend = backend_url.split("+", 1)[0].replace("mysql", "mariadb")
    backend = "postgresql" if backend.startswith("postgresql") else backend
    connect_args: dict[str, Any] = {}
    if backend == "mariadb":
        # The 50 MB context must get in: the server's packet limit is raised for it.
        server = request.getfixturevalue("chaos_mariadb")
        server.sql("SET GLOBAL max_allowed_packet = 268435456")
        request.addfinalizer(lambda: server.sql("SET GLOBAL max_allowed_packet = 16777216"))
        connect_args["max_allowed_packet"] = 268435456
    trap_dir = tmp_path / "trap"
    trap_dir.mkdir()
    marker = tmp_path / "marker-imported"
    rows = corpus(str(journal), str(trap_dir))
    assert len(rows) >= 60
    engine = create_async_engine(backend_url, connect_args=connect_args)
    try:
        refused: dict[str, str] = {}
        hostile: dict[str, HostileRow] = {}
        for number, row in enumerate(rows):
            if row.only is not None and backend not in row.only:
                continue
            name = f"{queue}-hostile-{number}"
            refusal = await insert(engine, name, queue, row)
            if refusal is None:
                hostile[name] = row
            else:
                refused[row.label] = refusal
        good = {}
        for number, (label, steps, context) in enumerate(
            good_rows(str(journal), str(trap_dir), GOOD)
        ):
            name = f"{queue}-good-{number}"
            assert await insert(engine, name, queue, HostileRow(label, steps, context)) is None
            good[name] = label
        env = {
            "WFED_CHAOS_MARKER": str(marker),
            "PYTHONPATH": os.pathsep.join(
                [str(CHAOS_DIR), str(CHAOS_DIR.parent), str(CHAOS_DIR.parents[1])]
            ),
        }
        fleet = Fleet(
            start_daemon,
            backend_url,
            queue,
            2,
            lease=5.0,
            poll_interval=0.1,
            control_interval=0.5,
            max_workflows=8,
            env=env,
        )
        await fleet.ready()
        peak_rss = 0
        finished = asyncio.Event()

        async def sample_rss() -> None:
            nonlocal peak_rss
            while not finished.is_set():
                for daemon in fleet.every:
                    peak_rss = max(peak_rss, vm_rss_kib(daemon.pid) or 0)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample_rss())
        names = [*hostile, *good]

        async def all_finished() -> bool:
            now = await states(engine, names)
            return all(now.get(n, ("?",))[0] in {"completed", "error"} for n in names)

        try:
            took = await wait_until(
                all_finished, limit=180, what="every row finished", interval=0.25
            )
        except AssertionError:
            now = await states(engine, names)
            stuck = {
                hostile[n].label if n in hostile else n: now.get(n)
                for n in names
                if now.get(n, ("?",))[0] not in {"completed", "error"}
            }
            raise AssertionError(f"rows never finished: {stuck}") from None
        finally:
            finished.set()
            await sampler
        peak_rss = max([peak_rss, *fleet.rss_peaks_kib()])
        final = await states(engine, names)
    finally:
        # The SQLite and PostgreSQL databases are the whole session's: the corpus (a 50 MB
        # context among it) must not outlive this test.
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM workflows WHERE queue = :q"), {"q": queue})
            await conn.execute(
                text("DELETE FROM workflow_events WHERE workflow_name LIKE :names"),
                {"names": f"{queue}-%"},
            )
        await engine.dispose()
    not_error = {
        hostile[n].label: (state, (error or "")[:200])
        for n, (state, error) in final.items()
        if n in hostile and state != "error"
    }
    unreadable = {
        hostile[n].label: (len(error or ""), (error or "")[:200])
        for n, (state, error) in final.items()
        if n in hostile and not readable(error)
    }
    good_not_completed = {good[n]: final[n] for n in good if final[n][0] != "completed"}
    hostile_ran = [tag for tag in read_journal(journal) if not tag.startswith("good")]
    internal = fleet.log_events(*INTERNAL_ERRORS)
    figures(
        backend=backend,
        corpus=len(rows),
        inserted=len(hostile),
        refused_at_insert=len(refused),
        in_error=sum(1 for n in hostile if final[n][0] == "error"),
        good=len(good),
        good_completed=len(good) - len(good_not_completed),
        longest_last_error=max(len(final[n][1] or "") for n in hostile),
        peak_rss_mib=round(peak_rss / 1024),
        big_context_mb=BIG_CONTEXT_BYTES // (1024 * 1024),
        seconds=round(took, 1),
        daemon_exits=len(fleet.exited_unbidden()),
        internal_errors=sum(internal.values()),
        refused=sorted(refused),
        url=redacted(backend_url),
    )
    assert not not_error, f"hostile rows not in error: {not_error}"
    assert not unreadable, f"unreadable last_error: {unreadable}"
    assert not good_not_completed, good_not_completed
    assert not hostile_ran, f"steps of hostile rows ran: {hostile_ran}"
    assert len(read_journal(journal)) == GOOD * GOOD_STEPS
    assert not fleet.exited_unbidden(), [d.log_path for d in fleet.exited_unbidden()]
    assert not marker.exists(), marker.read_text()
    assert not any(trap_dir.iterdir()), "a shell metacharacter was obeyed"
    assert peak_rss < RSS_LIMIT_KIB, f"daemon RSS peaked at {peak_rss // 1024} MiB"


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("run_after", "1999-99-99 99:99:99"),
        ("created_at", 0),
        # Text that sorts after every timestamp, a BLOB (after all text), and forms that
        # compare wrongly as text: each would have left its row pending for ever.
        ("run_after", "tomorrow"),
        ("run_after", b"\x00\xff"),
        ("run_after", "2026-01-01T00:00:00"),
        ("run_after", "2026-01-01"),
    ],
)
async def test_sqlite_row_with_an_unreadable_timestamp_stops_no_daemon(
    backend_url: str,
    start_daemon: DaemonFactory,
    queue: str,
    journal: Path,
    column: str,
    value: object,
) -> None:
    """A SQLite row whose timestamp column holds no readable timestamp ends in error on
    its own: the daemon stays up and the good rows beside it complete."""
    engine = create_async_engine(backend_url)
    bad = HostileRow(f"{column} unreadable", '["mark"]', "{}", columns={column: value})
    goods = good_rows(str(journal), str(journal.parent), 3)[:3]
    try:
        assert await insert(engine, f"{queue}-bad", queue, bad) is None
        for number, (label, steps, context) in enumerate(goods):
            good = HostileRow(label, steps, context)
            assert await insert(engine, f"{queue}-good-{number}", queue, good) is None
        daemon = start_daemon(backend_url, queue=queue, lease=5.0, poll_interval=0.1)
        names = [f"{queue}-bad", *(f"{queue}-good-{n}" for n in range(len(goods)))]

        final = await settle(engine, daemon, names)
    finally:
        # The SQLite file is the whole session's: a row no reader can decode must not
        # outlive this test.
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM workflows WHERE queue = :q"), {"q": queue})
        await engine.dispose()
    assert daemon.proc.poll() is None, daemon.log_path.read_text()[-2000:]
    assert final[f"{queue}-bad"][0] == "error"
    assert all(final[n][0] == "completed" for n in names[1:])


async def run_wfectl(url: str, *args: str) -> tuple[int, str, str]:
    """Run `wfectl` on `url`: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(WFECTL),
        *args,
        env={**os.environ, "WFED_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


# Times the database holds that Python's datetime cannot: PostgreSQL keeps 4713 BC to
# 294276 AD, MariaDB an INSERT's zero date. (column, SQL literal, other columns.)
_OUT_OF_RANGE = {
    "postgresql": [
        ("created_at", "'4713-01-01 BC'", {}),
        ("run_after", "'4713-01-01 BC'", {}),
        ("finished_at", "'200000-01-01'", {}),
        ("lease_expires_at", "'200000-01-01'", {}),
        ("lease_expires_at", "'4713-01-01 BC'", {"state": "'running'", "claimed_by": "'ghost'"}),
    ],
    "mariadb": [
        ("run_after", "'0000-00-00 00:00:00'", {}),
        ("created_at", "'0000-00-00 00:00:00'", {}),
    ],
}


@pytest.mark.parametrize(
    ("backend_url", "column", "literal", "others"),
    [
        pytest.param(backend, column, literal, others, id=f"{backend}-{column}-{n}")
        for backend, cases in _OUT_OF_RANGE.items()
        for n, (column, literal, others) in enumerate(cases)
    ],
    indirect=["backend_url"],
)
async def test_a_time_python_cannot_hold_stops_no_daemon_and_no_reader(
    backend_url: str,
    start_daemon: DaemonFactory,
    queue: str,
    journal: Path,
    column: str,
    literal: str,
    others: dict[str, str],
) -> None:
    """A row whose timestamp is out of Python's range (PostgreSQL's 4713 BC or year
    200000, MariaDB's zero date) ends in error naming the column; the daemon stays up,
    the good rows beside it complete, and wfectl lists and shows it."""
    engine = create_async_engine(backend_url)
    bad = f"{queue}-bad"
    literals = {column: literal, **others}
    goods = good_rows(str(journal), str(journal.parent), 3)[:3]
    names = [bad, *(f"{queue}-good-{n}" for n in range(len(goods)))]
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO workflows (name, queue, steps, context, {', '.join(literals)}) "
                    f"VALUES (:name, :queue, '[\"mark\"]', '{{}}', {', '.join(literals.values())})"
                ),
                {"name": bad, "queue": queue},
            )
        for number, (label, steps, context) in enumerate(goods):
            good = HostileRow(label, steps, context)
            assert await insert(engine, f"{queue}-good-{number}", queue, good) is None
        daemon = start_daemon(backend_url, queue=queue, lease=5.0, poll_interval=0.1)

        final = await settle(engine, daemon, names)
        readers = [
            (args, *await run_wfectl(backend_url, *args))
            for args in (["list", "--queue", queue], ["show", bad], ["show", bad, "--json"])
        ]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM workflows WHERE queue = :q"), {"q": queue})
        await engine.dispose()
    assert daemon.proc.poll() is None, daemon.log_path.read_text()[-2000:]
    state, last_error = final[bad]
    assert state == "error", final[bad]
    assert readable(last_error), last_error
    assert all(final[n][0] == "completed" for n in names[1:]), final
    for args, code, out, err in readers:
        assert code == 0, (args, err)
        assert bad in out, (args, out)


@pytest.mark.parametrize("backend_url", ["mariadb"], indirect=True)
@pytest.mark.parametrize("state", ["PENDING", "Running", "pending "])
async def test_a_state_written_past_the_checks_stops_no_daemon(
    backend_url: str, start_daemon: DaemonFactory, queue: str, journal: Path, state: str
) -> None:
    """A MariaDB session may switch the CHECK constraints off and write a state that
    differs from a known one by case or a trailing space: the claim passes the row over
    (states compare byte for byte), the daemon stays up and the good rows complete."""
    engine = create_async_engine(backend_url)
    bad = f"{queue}-bad"
    goods = good_rows(str(journal), str(journal.parent), 3)[:3]
    names = [f"{queue}-good-{n}" for n in range(len(goods))]
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET SESSION check_constraint_checks = 0"))
            await conn.execute(
                text(
                    "INSERT INTO workflows (name, queue, steps, context, state) "
                    "VALUES (:name, :queue, '[\"mark\"]', '{}', :state)"
                ),
                {"name": bad, "queue": queue, "state": state},
            )
        for number, (label, steps, context) in enumerate(goods):
            good = HostileRow(label, steps, context)
            assert await insert(engine, names[number], queue, good) is None
        daemon = start_daemon(backend_url, queue=queue, lease=5.0, poll_interval=0.1)

        await settle(engine, daemon, names, ends={"completed"})
        final = await states(engine, [bad, *names])
    finally:
        await engine.dispose()
    assert daemon.proc.poll() is None, daemon.log_path.read_text()[-2000:]
    assert final[bad][0] == state  # passed over, not taken for a known state
    assert not daemon.events("runner_failed"), daemon.log_path.read_text()[-2000:]


# SQLite, with `PRAGMA ignore_check_constraints`, lets such rows in too, but checks on an
# UPDATE only the constraints on the columns it writes: there the claim goes through.
@pytest.mark.parametrize("backend_url", ["mariadb"], indirect=True)
async def test_rows_whose_claim_the_database_refuses_stop_no_daemon(
    backend_url: str, start_daemon: DaemonFactory, queue: str, journal: Path
) -> None:
    """Rows written with the CHECK constraints off (a request `kill`, a negative step)
    make the claim's UPDATE fail. The daemon claims the candidates one by one instead:
    it leaves those rows alone, names each in its log, and runs the good rows."""
    engine = create_async_engine(backend_url)
    bad = {f"{queue}-bad-request": ("requested", "kill"), f"{queue}-bad-step": ("current_step", -1)}
    goods = good_rows(str(journal), str(journal.parent), 3)[:3]
    names = [f"{queue}-good-{n}" for n in range(len(goods))]
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET SESSION check_constraint_checks = 0"))
            for name, (column, value) in bad.items():
                await conn.execute(
                    text(
                        f"INSERT INTO workflows (name, queue, steps, context, {column}) "
                        "VALUES (:name, :queue, '[\"mark\"]', '{}', :value)"
                    ),
                    {"name": name, "queue": queue, "value": value},
                )
        await engine.dispose()  # no pooled connection keeps the checks off
        for number, (label, steps, context) in enumerate(goods):
            good = HostileRow(label, steps, context)
            assert await insert(engine, names[number], queue, good) is None
        daemon = start_daemon(backend_url, queue=queue, lease=5.0, poll_interval=0.1)
        await settle(engine, daemon, names, ends={"completed"})
        final = await states(engine, [*bad, *names])
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM workflows WHERE queue = :q"), {"q": queue})
        await engine.dispose()
    assert daemon.proc.poll() is None, daemon.log_path.read_text()[-2000:]
    assert all(final[n][0] == "completed" for n in names), final
    assert all(final[n][0] == "pending" for n in bad), final
    refused = {line["workflow_id"] for line in daemon.events("workflow_unclaimable")}
    assert len(refused) == len(bad), daemon.log_path.read_text()[-2000:]


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("lease", ["never", b"\x00"])
async def test_sqlite_running_row_with_an_unreadable_lease_is_taken_over(
    backend_url: str, start_daemon: DaemonFactory, queue: str, journal: Path, lease: object
) -> None:
    """A running row whose lease column holds no timestamp (text that sorts after every
    time, a BLOB) counts as expired: a daemon takes it over and runs it to the end,
    instead of leaving it running for ever under an owner nobody can outlive."""
    engine = create_async_engine(backend_url)
    (label, steps, context) = good_rows(str(journal), str(journal.parent), 1)[0]
    orphan = HostileRow(
        label,
        steps,
        context,
        columns={"state": "running", "claimed_by": "gone:1", "fence": 1, "lease_expires_at": lease},
    )
    name = f"{queue}-orphan"
    try:
        assert await insert(engine, name, queue, orphan) is None
        daemon = start_daemon(backend_url, queue=queue, lease=5.0, poll_interval=0.1)

        final = await settle(engine, daemon, [name])
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM workflows WHERE queue = :q"), {"q": queue})
        await engine.dispose()
    assert daemon.proc.poll() is None, daemon.log_path.read_text()[-2000:]
    assert final[name][0] == "completed", final
