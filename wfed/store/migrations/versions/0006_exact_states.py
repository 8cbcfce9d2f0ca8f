"""State and request values compared byte for byte on MariaDB and MySQL.

Their tables' default collation ignores case and trailing spaces, so the CHECK
constraints let an INSERT or UPDATE store `'PENDING'` or `'stop '`, which the claim
and the heartbeat then matched as `'pending'` and `'stop'` — and which no reader of the
row could make sense of. The constraints now compare the bytes (PostgreSQL and SQLite
always did). Rows holding such a value are first given the value it stood for.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WORKFLOW_STATES = ["pending", "running", "paused", "error", "stopped", "completed"]
_STEP_STATES = ["pending", "running", "completed", "error", "skipped", "stopped"]

# (table, constraint, column, values, nullable)
_CHECKS = (
    ("workflows", "ck_workflows_state", "state", _WORKFLOW_STATES, False),
    ("workflows", "ck_workflows_requested", "requested", ["pause", "stop"], True),
    ("workflow_steps", "ck_workflow_steps_state", "state", _STEP_STATES, False),
)


def _listed(values: list[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _check(column: str, values: list[str], nullable: bool, *, exact: bool) -> str:
    compared = f"CAST({column} AS BINARY)" if exact else column
    condition = f"{compared} IN ({_listed(values)})"
    return f"{column} IS NULL OR {condition}" if nullable else condition


def _replace(exact: bool) -> None:
    for table, name, column, values, nullable in _CHECKS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        check = _check(column, values, nullable, exact=exact)
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check})")


def upgrade() -> None:
    if op.get_bind().dialect.name not in {"mysql", "mariadb"}:
        return
    for table, _, column, values, _ in _CHECKS:
        op.execute(
            f"UPDATE {table} SET {column} = LOWER(TRIM({column})) "
            f"WHERE CAST({column} AS BINARY) NOT IN ({_listed(values)})"
        )
    _replace(exact=True)


def downgrade() -> None:
    if op.get_bind().dialect.name not in {"mysql", "mariadb"}:
        return
    _replace(exact=False)
