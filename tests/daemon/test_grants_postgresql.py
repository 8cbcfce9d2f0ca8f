"""The least-privilege roles of docs/grants-postgresql.sql, for real on PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_harness import DaemonFactory
from grants_harness import check_refusals, run_and_control
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

GRANTS = Path(__file__).resolve().parents[2] / "docs" / "grants-postgresql.sql"
INSUFFICIENT_PRIVILEGE = "42501"
ROLES = ("migrate", "daemon", "operator")


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


class Roles:
    """The file's roles under names of this test's own (roles are cluster-wide)."""

    def __init__(self, url: str) -> None:
        self.admin_url = url
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
        sql = GRANTS.read_text()
        for role in ROLES:
            sql = re.sub(rf"\bwfed_{role}\b", self.user(role), sql)
            sql = sql.replace(f"'change-me-{role}'", f"'{self.passwords[role]}'")
        sql = sql.replace("DATABASE wfed ", f'DATABASE "{self.database}" ')
        return _statements(sql)


@pytest.fixture
async def roles(postgresql_url: str, schema_postgresql: str) -> AsyncIterator[Roles]:
    """The three roles of the grants file, created for this test and dropped after."""
    made = Roles(postgresql_url)
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
    roles: Roles, start_daemon: DaemonFactory, queue: str, tmp_path: Path
) -> None:
    """The daemon role runs workflows and the operator role controls them, while DDL,
    event rewriting and writes to lease columns are refused by PostgreSQL."""
    await run_and_control(roles.url("daemon"), roles.url("operator"), start_daemon, queue, tmp_path)
    await check_refusals(_refused, roles.url("daemon"), roles.url("operator"))
