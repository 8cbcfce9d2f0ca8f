"""Operating the fleet: `wfectl daemons`, `health` and `purge` against real `wfed` daemons.

The daemons run the built-in `sleep` step only, each on a queue of its own test: the
database is shared by the session, so every check is narrowed to this test's queue,
daemon id or name prefix.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import make_url

from wfed import Engine, WorkflowNotFound, WorkflowState
from wfed.clock import utc_now
from wfed.store.schema import daemons, workflow_events, workflows

from .conftest import NO_DATABASE, Result, Wfectl

WFED = Path(sys.executable).parent / "wfed"
LEASE = 2.0
LONG_SLEEP = [{"step": "sleep", "args": {"seconds": 60}}]
T = TypeVar("T")


# -- helpers --------------------------------------------------------------------------


def with_engine(url: str, work: Callable[[Engine], Awaitable[T]]) -> T:
    """Set up or check through the Python API, in this process."""

    async def main() -> T:
        async with Engine(url, actor="tester@ops") as engine:
            return await work(engine)

    return asyncio.run(main())


def run_sql(url: str, *statements: Any) -> None:
    """Write rows behind wfectl's back, as a daemon or an operator with SQL would."""

    async def work(engine: Engine) -> None:
        async with engine.db.transaction() as conn:
            for statement in statements:
                await conn.execute(statement)

    with_engine(url, work)


def create(url: str, name: str, queue: str) -> None:
    async def work(engine: Engine) -> None:
        await engine.create_workflow(name, {}, LONG_SLEEP, queue=queue)

    with_engine(url, work)


def wait_running(url: str, name: str, owner: str, limit: float = 30.0) -> None:
    """Wait until `owner` has claimed the workflow and runs it."""

    async def work(engine: Engine) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            row = (await engine.get(name)).row
            if row.state is WorkflowState.RUNNING and row.claimed_by == owner:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name} not claimed by {owner} within {limit} s")

    with_engine(url, work)


def problems(result: Result) -> list[str]:
    """The problem lines of a failed `health` (exit code 1, `wfectl: …` on stderr)."""
    assert result.code == 1, result
    assert "Traceback" not in result.err, result
    lines = result.err.splitlines()
    assert lines, result
    assert all(line.startswith("wfectl: ") for line in lines), result
    return lines


@dataclass
class WfedProcess:
    """A `wfed` daemon started by a test, with its JSON log."""

    proc: subprocess.Popen[bytes]
    log: Path

    def wait_started(self, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("{") and json.loads(line).get("event") == "daemon_started":
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"wfed did not start:\n{self.log.read_text(errors='replace')}")

    def kill_9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (shutdown_grace 0: steps are handed back at once), SIGKILL if stuck."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def start_wfed(tmp_path: Path) -> Iterator[Callable[[str, str, str], WfedProcess]]:
    """Start `wfed` daemons (id, queue, 2 s lease); each is stopped after the test."""
    started: list[WfedProcess] = []

    def start(url: str, daemon_id: str, queue: str) -> WfedProcess:
        config = tmp_path / f"{daemon_id}.toml"
        config.write_text(
            f"[database]\nurl = {json.dumps(url)}\n"
            f"[daemon]\nid = {json.dumps(daemon_id)}\nqueues = [{json.dumps(queue)}]\n"
            f"lease = {LEASE}\npoll_interval = 0.1\ncontrol_interval = 0.2\n"
            "shutdown_grace = 0.0\n"
            "[steps]\nmodules = []\n"
            '[log]\nformat = "json"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WFED_", "WFECTL_"))}
        log = tmp_path / f"{daemon_id}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(WFED), "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        daemon = WfedProcess(proc, log)
        started.append(daemon)
        daemon.wait_started()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


# -- health ---------------------------------------------------------------------------


def test_health_names_a_queue_without_a_live_daemon_until_one_serves_it(
    wfectl: Wfectl, unique: str, start_wfed: Callable[[str, str, str], WfedProcess]
) -> None:
    """health --queue Q exits 1 naming Q while Q has a runnable workflow and no live
    daemon, and 0 with a summary once a daemon serving Q runs."""
    queue = f"ops-health-{unique}"
    other = f"ops-idle-{unique}"
    create(wfectl.url, f"{queue}-1", queue)

    unhealthy, report = wfectl.many(
        [["health", "--queue", queue, "--queue", other], ["health", "-q", queue, "--json"]]
    )
    [line] = problems(unhealthy)
    assert f"queue {queue!r}: 1 runnable workflow and no live daemon serves it" in line
    assert unhealthy.out == ""
    document = json.loads(report.out)
    assert report.code == 1
    assert document["healthy"] is False
    assert document["runnable"] == {queue: 1}
    assert document["queues"] == [queue]
    assert len(document["problems"]) == 1

    start_wfed(wfectl.url, f"d-{unique}", queue)
    healthy, report = wfectl.many(
        [["health", "--queue", queue, "--queue", other], ["health", "-q", queue, "--json"]]
    )
    assert healthy.code == 0, healthy
    assert healthy.err == "", healthy
    assert healthy.out.startswith("OK"), healthy
    assert f"d-{unique}" in healthy.out
    assert f"no live daemon serves queue {other!r} (nothing runnable" in healthy.out
    document = report.json()
    assert document["healthy"] is True
    assert document["problems"] == []
    assert f"d-{unique}" in document["live_daemons"]
    assert queue in document["queues_served"]
    assert set(document) == {
        "healthy",
        "problems",
        "database",
        "queues",
        "live_daemons",
        "queues_served",
        "runnable",
        "awaiting_recovery",
    }


def test_health_fails_on_an_unreachable_database(wfectl_config: Path) -> None:
    """health exits 1 with one line when the database cannot be reached (server down,
    or no SQLite file where the URL says), without the password."""
    server = Wfectl("mysql+asyncmy://root:s3cr3t-pw@127.0.0.1:1/wfed", wfectl_config)
    down, as_json = server.many([["health"], ["health", "--json"]])
    [line] = problems(down)
    assert "unreachable" in line
    assert "root:***@127.0.0.1:1" in line
    assert "s3cr3t" not in down.err + as_json.out + as_json.err
    document = json.loads(as_json.out)
    assert as_json.code == 1
    assert document["healthy"] is False
    assert "unreachable" in document["problems"][0]
    assert document["live_daemons"] is None

    [line] = problems(Wfectl(NO_DATABASE, wfectl_config)("health"))
    assert "no SQLite database at /nonexistent/wfectl-must-not-connect.db" in line


def test_health_fails_on_a_missing_schema_then_passes_after_upgrade(
    tmp_path: Path, wfectl_config: Path
) -> None:
    """On a fresh SQLite file health exits 1 saying to run `wfectl db upgrade`; after
    the upgrade, with nothing to run, it exits 0."""
    cli = Wfectl(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}", wfectl_config)
    [line] = problems(cli("health"))
    assert "schema" in line
    assert "missing" in line
    assert "wfectl db upgrade" in line
    assert cli("db", "upgrade").code == 0
    healthy = cli("health")
    assert healthy.code == 0, healthy
    assert healthy.out.startswith("OK: 0 live daemons"), healthy
    assert "runnable now:   none" in healthy.out


# -- daemons --------------------------------------------------------------------------


def test_daemons_shows_a_killed_daemon_dead_and_its_workflow_awaiting_recovery(
    wfectl: Wfectl, unique: str, start_wfed: Callable[[str, str, str], WfedProcess]
) -> None:
    """daemons shows a live daemon with its running workflow; after kill -9, once its
    heartbeat is older than its lease, the daemon is dead and the workflow awaits
    recovery."""
    url = wfectl.url
    queue = f"ops-kill-{unique}"
    daemon_id = f"k-{unique}"
    name = f"{queue}-1"
    create(url, name, queue)
    daemon = start_wfed(url, daemon_id, queue)
    try:
        wait_running(url, name, daemon_id)
        listed, table = wfectl.many([["daemons", "--json"], ["daemons"]])
        [mine] = [d for d in listed.json()["daemons"] if d["id"] == daemon_id]
        assert mine["alive"] is True
        assert mine["running_workflows"] == 1
        assert mine["queues"] == [queue]
        assert mine["pid"] == daemon.proc.pid
        assert mine["lease_seconds"] == 2
        assert mine["heartbeat_age_seconds"] < LEASE
        assert table.code == 0, table
        assert daemon_id in table.out
        assert "alive" in table.out

        daemon.kill_9()
        time.sleep(LEASE + 0.2)  # its last heartbeat was before the kill
        listed, table = wfectl.many([["daemons", "--json"], ["daemons"]])
        document = listed.json()
        [mine] = [d for d in document["daemons"] if d["id"] == daemon_id]
        assert mine["alive"] is False
        assert mine["heartbeat_age_seconds"] > LEASE
        assert mine["running_workflows"] == 1
        assert document["awaiting_recovery"] >= 1
        assert table.code == 0, table
        assert "dead (heartbeat older than its 2s lease)" in table.out
        assert "1 awaiting recovery" in table.out
        assert "recovery (owner dead or not a daemon, or lease expired)" in table.out
    finally:
        run_sql(
            url,
            delete(daemons).where(daemons.c.id == daemon_id),
            delete(workflows).where(workflows.c.queue == queue),
        )


# -- purge ----------------------------------------------------------------------------


def test_purge_dry_run_counts_then_purge_deletes_only_old_finished_workflows(
    wfectl: Wfectl, unique: str
) -> None:
    """purge --dry-run counts old completed/stopped workflows and deletes nothing; purge
    deletes them (by --state, in batches), keeps their events unless --events, and never
    touches newer or unfinished ones."""
    url = wfectl.url
    now = utc_now()

    async def baseline(engine: Engine) -> tuple[int, int]:
        old = timedelta(days=399)
        completed = await engine.purge(old, states=["completed"], dry_run=True)
        return completed, await engine.purge(old, states=["stopped"], dry_run=True)

    base_completed, base_stopped = with_engine(url, baseline)
    rows = {
        **{f"{unique}-c{i}": ("completed", 400) for i in range(3)},
        f"{unique}-s": ("stopped", 400),
        f"{unique}-e": ("error", 400),
        f"{unique}-recent": ("completed", 398),
    }
    values = [
        {
            "name": name,
            "steps": ["sleep"],
            "state": state,
            "queue": f"ops-purge-{unique}",
            "created_at": now - timedelta(days=age),
            "updated_at": now - timedelta(days=age),
            "finished_at": now - timedelta(days=age),
        }
        for name, (state, age) in rows.items()
    ]
    run_sql(url, insert(workflows).values(values))

    async def ids(engine: Engine) -> dict[str, int]:
        async with engine.db.transaction() as conn:
            found = await conn.execute(
                select(workflows.c.name, workflows.c.id).where(workflows.c.name.startswith(unique))
            )
            return {name: workflow_id for name, workflow_id in found}

    before = with_engine(url, ids)
    run_sql(
        url,
        insert(workflow_events).values(
            workflow_id=before[f"{unique}-s"],
            workflow_name=f"{unique}-s",
            kind="stopped",
            actor="tester@ops",
            at=now - timedelta(days=400),
        ),
    )
    try:
        dry, dry_json = wfectl.many(
            [
                ["purge", "--older-than", "399d", "--dry-run"],
                ["purge", "--older-than", "399d", "--state", "completed", "--dry-run", "--json"],
            ]
        )
        assert dry.code == 0, dry
        total = base_completed + base_stopped + 4
        assert f"dry run: {total} completed/stopped workflows finished more than 399d" in dry.out
        assert "nothing was deleted" in dry.out
        assert dry_json.json() == {
            "count": base_completed + 3,
            "dry_run": True,
            "states": ["completed"],
            "older_than": "399d",
            "older_than_seconds": 399 * 86400,
            "events_deleted": False,
        }
        assert with_engine(url, ids) == before

        purged = wfectl(
            "purge", "--older-than", "399d", "--state", "completed", "--batch-size", "2"
        )
        assert purged.code == 0, purged
        assert f"purged {base_completed + 3} completed workflows" in purged.out
        assert set(with_engine(url, ids)) == {f"{unique}-s", f"{unique}-e", f"{unique}-recent"}

        async def last_event(engine: Engine) -> str:
            return (await engine.history(f"{unique}-c0"))[-1].kind

        assert with_engine(url, last_event) == "purged"

        with_events = wfectl("purge", "--older-than", "399d", "--events", "--json").json()
        assert with_events["count"] == base_stopped + 1
        assert with_events["events_deleted"] is True
        assert set(with_engine(url, ids)) == {f"{unique}-e", f"{unique}-recent"}

        async def stopped_history(engine: Engine) -> None:
            await engine.history(f"{unique}-s")

        with pytest.raises(WorkflowNotFound):
            with_engine(url, stopped_history)
    finally:
        run_sql(url, delete(workflows).where(workflows.c.name.startswith(unique)))


def test_purge_usage_errors_exit_2_before_touching_the_database(wfectl_config: Path) -> None:
    """A bad duration, a missing --older-than, an unfinished --state or a batch size
    below 1 is a usage error (exit code 2) naming the problem; no database is needed."""
    cli = Wfectl(NO_DATABASE, wfectl_config)
    results = cli.many(
        [
            ["purge", "--older-than", "30x"],
            ["purge"],
            ["purge", "--older-than", "30d", "--state", "completed,error"],
            ["purge", "--older-than", "30d", "--batch-size", "0"],
        ]
    )
    expected = ["is not a duration", "Missing option", "only finished workflows", "batch-size"]
    for result, fragment in zip(results, expected, strict=True):
        assert result.code == 2, result
        assert "Traceback" not in result.err, result
        assert fragment in " ".join(result.err.split()), result


# -- privileges -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_missing_privilege_is_named_not_called_unreachable(
    backend: str, request: pytest.FixtureRequest, wfectl_config: Path, unique: str
) -> None:
    """An account that may read but not write gets exit code 1 with one line saying the
    database refused the operation (not that it is unreachable), without its password."""
    url: str = request.getfixturevalue(f"{backend}_url")

    async def upgrade(engine: Engine) -> None:
        await engine.upgrade_schema()

    with_engine(url, upgrade)
    user = f"wfed_ro_{unique}"
    database = make_url(url).database
    if backend == "mariadb":
        grant = [
            f"CREATE USER '{user}'@'%' IDENTIFIED BY 's3cr3t-pw'",
            f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'",
        ]
        revoke = [f"DROP USER IF EXISTS '{user}'@'%'"]
    else:
        grant = [
            f"CREATE ROLE {user} LOGIN PASSWORD 's3cr3t-pw'",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}",
        ]
        revoke = [f"DROP OWNED BY {user}", f"DROP ROLE IF EXISTS {user}"]
    run_sql(url, *(text(statement) for statement in grant))
    try:
        reader = make_url(url).set(username=user, password="s3cr3t-pw")
        cli = Wfectl(reader.render_as_string(hide_password=False), wfectl_config)
        result = cli("create", f"{unique}-denied", "--step", "sleep")
        assert result.code == 1, result
        [line] = result.err.splitlines()
        assert line.startswith("wfectl: database "), result
        assert "refused the operation" in line
        assert "unreachable" not in line
        assert "s3cr3t" not in line
    finally:
        run_sql(url, *(text(statement) for statement in revoke))
