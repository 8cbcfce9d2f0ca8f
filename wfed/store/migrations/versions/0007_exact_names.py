"""Workflow names and queues compared byte for byte on MariaDB and MySQL.

Their default collations ignore case and accents (`utf8mb4_general_ci`, `…_0900_ai_ci`):
the unique index took `M3` for `m3`, so `create M3` was refused as a duplicate while
`show M3` found no such workflow, and a daemon serving queue `default` claimed the work
of queue `Default`. These columns now have the binary collation, as names and queues
always were on PostgreSQL and SQLite. No row changes: names the old collation deemed
equal could never both be stored.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, length, server default)
_COLUMNS = (
    ("workflows", "name", 255, None),
    ("workflows", "queue", 64, "default"),
    ("workflow_events", "workflow_name", 255, None),
)


def _modify(collation: str | None) -> None:
    for table, column, length, default in _COLUMNS:
        collate = f" COLLATE {collation}" if collation else ""
        default_clause = f" DEFAULT '{default}'" if default is not None else ""
        op.execute(
            f"ALTER TABLE {table} MODIFY {column} VARCHAR({length}) CHARACTER SET utf8mb4"
            f"{collate} NOT NULL{default_clause}"
        )


def upgrade() -> None:
    if op.get_bind().dialect.name not in {"mysql", "mariadb"}:
        return
    _modify("utf8mb4_bin")


def downgrade() -> None:
    if op.get_bind().dialect.name not in {"mysql", "mariadb"}:
        return
    _modify(None)  # the table's default collation again
