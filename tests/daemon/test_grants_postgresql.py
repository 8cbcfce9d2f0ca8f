"""The least-privilege roles of docs/grants-postgresql.sql, for real on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory
from grants_harness import DOCS, ROLES, Accounts, check_refusals, run_and_control
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

GRANTS = DOCS / "grants-postgresql.sql"
INSUFFICIENT_PRIVILEGE = "42501"


@pytest.fixture
async def roles(postgresql_url: str, schema_postgresql: str) -> AsyncIterator[Accounts]:
    """The three roles of the grants file, created for this test and dropped after."""
    made = Accounts(postgresql_url, GRANTS)
    admin = create_async_engine(postgresql_url)
    try:
        async with admin.begin() as conn:
            for statement in made.sql():
                await conn.execute(text(statement))
        yield made
    finally:
        async with admin.begin() as conn:
            for role in ROLES:
                await conn.execute(text(f"DROP OWNED BY {made.user(role)}"))
                await conn.execute(text(f"DROP ROLE {made.user(role)}"))
        await admin.dispose()


async def _refused(url: str, statement: str) -> None:
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as denied:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        assert getattr(denied.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE, denied.value
    finally:
        await engine.dispose()


async def test_daemon_and_operator_roles_work_and_are_refused_the_rest(
    roles: Accounts, start_daemon: DaemonFactory, queue: str, tmp_path: Path
) -> None:
    """The daemon role runs workflows and the operator role controls them, while DDL,
    event rewriting and writes to lease columns are refused by PostgreSQL."""
    await run_and_control(roles.url("daemon"), roles.url("operator"), start_daemon, queue, tmp_path)
    await check_refusals(_refused, roles.url("daemon"), roles.url("operator"))
