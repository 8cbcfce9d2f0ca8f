"""`wfectl db grants`, applied for real in the order it prints: on a new database of a
chosen name (not `wfed`) and accounts of chosen names, the migrate account, then `wfectl
db upgrade` under it, then the daemon and operator accounts; a daemon then runs workflows
(a shell step's output recorded) and the operator controls them, while the server
refuses both the rest — on MariaDB and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_harness import STEP_MODULES, DaemonFactory, wait_until
from grants_harness import ROLES, check_refusals, run_and_control
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from wfed import Engine, WorkflowState
from wfed.store.grants import UPGRADE_MARK

WFECTL = Path(sys.executable).parent / "wfectl"
ACCESS_DENIED = {1142, 1143, 1044, 1045}
INSUFFICIENT_PRIVILEGE = "42501"


def wfectl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"WFED_CONFIG"}}
    env["WFED_DATABASE_URL"] = url
    return subprocess.run(
        [str(WFECTL), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


@dataclass
class Deployment:
    """A database and three accounts made from `wfectl db grants`' output."""

    backend: str
    admin_url: str
    database: str
    suffix: str
    passwords: dict[str, str]
    script: str = ""

    def user(self, role: str) -> str:
        return f"wfed_{role[0]}_{self.suffix}"

    def url(self, role: str) -> str:
        base = make_url(self.admin_url).set(database=self.database)
        return base.set(username=self.user(role), password=self.passwords[role]).render_as_string(
            hide_password=False
        )

    def admin_on_database(self) -> str:
        return make_url(self.admin_url).set(database=self.database).render_as_string(False)

    def parts(self) -> tuple[list[str], list[str]]:
        """The statements before the upgrade and after it, with the passwords set."""
        sql = self.script
        for role in ROLES:
            sql = sql.replace(f"'change-me-{role}'", f"'{self.passwords[role]}'")
        before, _, after = sql.partition(UPGRADE_MARK)
        return statements(before), statements(after.split("\n", 1)[1])


async def _admin(url: str, *sql: str, careless: bool = False) -> None:
    """Run `sql` as the administrator, one statement at a time (`careless`: on, past
    failures, for a clean-up)."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in sql:
                try:
                    await conn.execute(text(statement))
                except DBAPIError:
                    if not careless:
                        raise
    finally:
        await engine.dispose()


@pytest.fixture(params=["mariadb", "postgresql"])
async def deployment(request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    """A new database `wfed_g_<hex>` and the accounts `wfectl db grants` creates on it,
    dropped after the test."""
    backend: str = request.param
    admin_url: str = request.getfixturevalue(f"{backend}_url")
    suffix = uuid.uuid4().hex[:8]
    made = Deployment(
        backend,
        admin_url,
        f"wfed_g_{suffix}",
        suffix,
        {role: f"pw-{role}-{uuid.uuid4().hex[:12]}" for role in ROLES},
    )
    quote = "`" if backend == "mariadb" else '"'
    await _admin(admin_url, f"CREATE DATABASE {quote}{made.database}{quote}")
    try:
        yield made
    finally:
        if backend == "mariadb":
            await _admin(
                admin_url,
                *(f"DROP USER IF EXISTS '{made.user(role)}'@'%'" for role in ROLES),
                f"DROP DATABASE IF EXISTS `{made.database}`",
            )
        else:
            await _admin(
                made.admin_on_database(),
                *(f"DROP OWNED BY {made.user(role)}" for role in ROLES),
                careless=True,
            )
            await _admin(
                admin_url,
                f'DROP DATABASE IF EXISTS "{made.database}" WITH (FORCE)',
                *(f"DROP ROLE IF EXISTS {made.user(role)}" for role in ROLES),
            )


async def _refused_mariadb(url: str, statement: str) -> None:
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as denied:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        assert denied.value.orig.args[0] in ACCESS_DENIED, denied.value
    finally:
        await engine.dispose()


async def _refused_postgresql(url: str, statement: str) -> None:
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as denied:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        assert getattr(denied.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE
    finally:
        await engine.dispose()


async def test_the_printed_grants_work_in_the_printed_order(
    deployment: Deployment, start_daemon: DaemonFactory, queue: str, tmp_path: Path
) -> None:
    """Print, apply the migrate part, upgrade as the migrate account, apply the rest:
    the daemon account runs workflows (recording a shell step's output), the operator
    account controls them and reads that output, and both are refused the rest."""
    made = deployment
    printed = wfectl(
        made.admin_url,
        "db",
        "grants",
        "--database",
        made.database,
        "--migrate-user",
        made.user("migrate"),
        "--daemon-user",
        made.user("daemon"),
        "--operator-user",
        made.user("operator"),
    )
    assert printed.returncode == 0, printed.stderr
    made.script = printed.stdout
    migrate_part, rest = made.parts()

    await _admin(made.admin_on_database(), *migrate_part)
    # Before the upgrade, the grants of the rest name tables that do not exist yet.
    on_a_table = next(s for s in rest if s.startswith("GRANT") and "workflows" in s)
    with pytest.raises(DBAPIError, match=r"(does not|doesn't) exist"):
        await _admin(made.admin_on_database(), on_a_table)
    upgraded = wfectl(made.url("migrate"), "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded: none -> " in upgraded.stdout
    await _admin(made.admin_on_database(), *rest)

    daemon_url, operator_url = made.url("daemon"), made.url("operator")
    await run_and_control(daemon_url, operator_url, start_daemon, queue, tmp_path)
    refused = _refused_mariadb if made.backend == "mariadb" else _refused_postgresql
    await check_refusals(refused, daemon_url, operator_url)

    async with Engine(operator_url, step_modules=STEP_MODULES) as operator:
        name = f"{queue}-output"
        step = {"step": "shell", "args": {"cmd": ["echo", "hello from the daemon account"]}}
        await operator.create_workflow(name, {}, [step], queue=queue)

        async def completed() -> bool:
            return (await operator.get(name)).state is WorkflowState.COMPLETED

        await wait_until(completed, what="a shell step under the daemon account")
        lines = [line.text for line in await operator.output(name, position=0)]
        assert lines == ["hello from the daemon account"]
