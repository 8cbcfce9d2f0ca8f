"""What both grants tests check, whatever the server: the daemon account runs workflows,
the operator account controls them, and the server refuses either of them the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from daemon_harness import STEP_MODULES, DaemonFactory, DaemonProcess, wait_until

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
        await operator.create_workflow(f"{queue}-1", {"journal": str(journal)}, steps, queue=queue)

        async def done() -> bool:
            return (await operator.get(f"{queue}-1")).state is WorkflowState.COMPLETED

        await wait_until(done, what="completed under the daemon account")
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
    return daemon


async def check_refusals(refused: Refused, daemon_url: str, operator_url: str) -> None:
    """Every statement the accounts may not run is refused by the server."""
    for statement in REFUSED_TO_BOTH:
        await refused(daemon_url, statement)
        await refused(operator_url, statement)
    for statement in REFUSED_TO_OPERATOR:
        await refused(operator_url, statement)
    for statement in REFUSED_TO_DAEMON:
        await refused(daemon_url, statement)
