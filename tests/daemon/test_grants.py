"""The least-privilege accounts of docs/grants-mariadb.sql, for real on MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory
from grants_harness import DOCS, ROLES, Accounts, check_refusals, run_and_control
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

GRANTS = DOCS / "grants-mariadb.sql"
ACCESS_DENIED = {1142, 1143, 1044, 1045}  # table/column command denied, db/login denied


@pytest.fixture
async def accounts(mariadb_url: str, schema_mariadb: str) -> AsyncIterator[Accounts]:
    """The three accounts of the grants file, created for this test and dropped after."""
    made = Accounts(mariadb_url, GRANTS)
    admin = create_async_engine(mariadb_url)
    try:
        async with admin.begin() as conn:
            for statement in made.sql():
                await conn.execute(text(statement))
        yield made
    finally:
        async with admin.begin() as conn:
            for role in ROLES:
                await conn.execute(text(f"DROP USER IF EXISTS '{made.user(role)}'@'%'"))
        await admin.dispose()


async def _refused(url: str, statement: str) -> None:
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as denied:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        assert denied.value.orig.args[0] in ACCESS_DENIED, denied.value
    finally:
        await engine.dispose()


async def test_daemon_and_operator_accounts_work_and_are_refused_the_rest(
    accounts: Accounts, start_daemon: DaemonFactory, queue: str, tmp_path: Path
) -> None:
    """The daemon account runs workflows and the operator account controls them, while
    DDL, event rewriting and writes to lease columns are refused by MariaDB."""
    daemon = await run_and_control(
        accounts.url("daemon"), accounts.url("operator"), start_daemon, queue, tmp_path
    )
    await check_refusals(_refused, accounts.url("daemon"), accounts.url("operator"))
    log = daemon.log_path.read_text()
    assert accounts.passwords["daemon"] not in log


async def test_a_wrong_password_is_never_printed(
    accounts: Accounts, start_daemon: DaemonFactory, queue: str
) -> None:
    """A daemon refused at login exits 1 naming the database, without the password."""
    wrong = make_url(accounts.url("daemon")).set(password="not-the-password-0451")
    daemon = start_daemon(
        wrong.render_as_string(hide_password=False), queue=queue, wait_ready=False
    )
    assert daemon.wait(timeout=60) == 1
    output = daemon.log_path.read_text()
    assert "not-the-password-0451" not in output
    assert "Access denied" in output or "unreachable" in output
    assert "Traceback" not in output


async def test_a_daemon_run_with_an_account_short_of_a_privilege_says_so(
    accounts: Accounts, start_daemon: DaemonFactory, queue: str
) -> None:
    """The daemon started with the operator's account (which may not prune dead
    daemons' rows): it exits 1 with a `daemon_failed` line and one line on stderr naming
    the refusal, and no traceback."""
    daemon = start_daemon(accounts.url("operator"), queue=queue, wait_ready=False)
    assert daemon.wait(timeout=60) == 1
    output = daemon.log_path.read_text()
    assert "Traceback" not in output
    assert '"event": "daemon_failed"' in output
    assert "denied" in output
    assert "wfed: " in output
