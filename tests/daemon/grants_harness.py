"""What both grants tests check, whatever the server: the daemon account runs workflows,
the operator account controls them, and the server refuses either of them the rest."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from daemon_harness import STEP_MODULES, DaemonFactory, DaemonProcess, wait_until
from sqlalchemy.engine import make_url

from wfed import Engine, WorkflowState

# Refused to both accounts: DDL.
REFUSED_TO_BOTH = (
    "CREATE TABLE wfed_intruder (a INT)",
    "DROP TABLE workflow_events",
    "ALTER TABLE workflows ADD COLUMN x INT",
)
# Refused to the operator: rewriting the audit trail, forging ownership.
REFUSED_TO_OPERATOR = (
    "DELETE FROM workflow_events",
    "UPDATE workflow_events SET actor = 'someone'",
    "UPDATE workflows SET fence = fence + 1",
    "UPDATE workflows SET claimed_by = 'me'",
)
# Refused to the daemon: rewriting the audit trail.
REFUSED_TO_DAEMON = (
    "DELETE FROM workflow_events",
    "UPDATE workflow_events SET actor = 'someone'",
)

Refused = Callable[[str, str], Awaitable[None]]
ROLES = ("migrate", "daemon", "operator")
DOCS = Path(__file__).resolve().parents[2] / "docs"


class Accounts:
    """The accounts of a grants file under names of this test's own (accounts are
    server-wide), on the test database, with fresh passwords."""

    def __init__(self, url: str, grants: Path) -> None:
        self.admin_url = url
        self.grants = grants
        self.database = make_url(url).database
        self.suffix = uuid.uuid4().hex[:8]
        self.passwords = {role: f"pw-{role}-{uuid.uuid4().hex[:12]}" for role in ROLES}

    def user(self, role: str) -> str:
        return f"wfed_{role}_{self.suffix}"

    def url(self, role: str) -> str:
        base = make_url(self.admin_url)
        return base.set(username=self.user(role), password=self.passwords[role]).render_as_string(
            hide_password=False
        )

    def sql(self) -> list[str]:
        """The file's statements, comments dropped, names and passwords replaced: the
        database is `wfed.` (MariaDB) or `DATABASE wfed` (PostgreSQL) in the files."""
        sql = self.grants.read_text()
        for role in ROLES:
            sql = re.sub(rf"\bwfed_{role}\b", self.user(role), sql)
            sql = sql.replace(f"'change-me-{role}'", f"'{self.passwords[role]}'")
        sql = sql.replace(" wfed.", f" {self.database}.")
        sql = sql.replace("DATABASE wfed ", f'DATABASE "{self.database}" ')
        lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
        return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


async def run_and_control(
    daemon_url: str,
    operator_url: str,
    start_daemon: DaemonFactory,
    queue: str,
    tmp_path: Path,
) -> DaemonProcess:
    """A daemon under `daemon_url` completes a workflow created by the operator; the
    operator pauses, edits, resumes, stops, restarts and deletes another."""
    journal = tmp_path / "journal.txt"
    journal.touch()
    daemon = start_daemon(daemon_url, queue=queue)
    async with Engine(operator_url, step_modules=STEP_MODULES) as operator:
        steps = [{"step": "mark", "args": {"tag": "a"}}, {"step": "mark", "args": {"tag": "b"}}]
        # A concurrency key: the daemon takes its slot when it claims, gives it up at the end.
        await operator.create_workflow(
            f"{queue}-1", {"journal": str(journal)}, steps, queue=queue, locks=[f"{queue}-key"]
        )

        async def done() -> bool:
            return (await operator.get(f"{queue}-1")).state is WorkflowState.COMPLETED

        await wait_until(done, what="completed under the daemon account")
        assert not [s for s in await operator.locks() if s.key == f"{queue}-key"]
        held = f"{queue}-held"
        await operator.create_workflow(
            held, {"journal": str(journal)}, steps, queue=f"{queue}-nobody"
        )
        await operator.pause(held, reason="grants test")
        await operator.set_context(held, {"extra": 1})
        await operator.resume(held)
        await operator.stop(held)
        await operator.restart(held)
        await operator.delete(held)
        assert [e.kind for e in await operator.history(held)][-1] == "deleted"
        await _schedule_fired_and_run(operator, queue, str(journal), steps)
    return daemon


async def _schedule_fired_and_run(
    operator: Engine, queue: str, journal: str, steps: list[dict[str, object]]
) -> None:
    """The operator adds a schedule, the daemon fires it and runs what it enqueued; the
    operator pauses, resumes and removes it."""
    schedule = f"{queue}-every-second"
    await operator.add_schedule(
        schedule, "* * * * * *", steps=steps, context={"journal": journal}, queue=queue
    )

    async def fired() -> bool:
        return (await operator.schedule(schedule)).row.last_fired_at is not None

    await wait_until(fired, what="a schedule fired under the daemon account")
    await operator.pause_schedule(schedule)
    tick = (await operator.schedule(schedule)).row.last_fired_at
    assert tick is not None
    enqueued = f"{schedule}-{tick:%Y%m%dT%H%M%S}Z"

    async def ran() -> bool:
        return (await operator.get(enqueued)).state is WorkflowState.COMPLETED

    await wait_until(ran, what="a scheduled workflow completed under the daemon account")
    await operator.resume_schedule(schedule)
    await operator.remove_schedule(schedule)


async def check_refusals(refused: Refused, daemon_url: str, operator_url: str) -> None:
    """Every statement the accounts may not run is refused by the server."""
    for statement in REFUSED_TO_BOTH:
        await refused(daemon_url, statement)
        await refused(operator_url, statement)
    for statement in REFUSED_TO_OPERATOR:
        await refused(operator_url, statement)
    for statement in REFUSED_TO_DAEMON:
        await refused(daemon_url, statement)
