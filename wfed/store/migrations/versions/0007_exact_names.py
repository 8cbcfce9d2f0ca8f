"""Workflow names, queues, states and requests compared byte for byte on MariaDB and MySQL.

Their default collations ignore case and accents (`utf8mb4_general_ci`, `…_0900_ai_ci`):
the unique index took `M3` for `m3`, so `create M3` was refused as a duplicate while
`show M3` found no such workflow, and a daemon serving queue `default` claimed the work
of queue `Default`. A session that switched the CHECK constraints off could store state
`PENDING`, which the claim then took for `pending` and no reader could parse. These
columns now have the binary collation, as they always were on PostgreSQL and SQLite: such
a row is passed over like any unknown state. No row changes: names the old collation
deemed equal could never both be stored, and migration 0006 made the states exact.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, length, nullable, server default)
_COLUMNS = (
    ("workflows", "name", 255, False, None),
    ("workflows", "queue", 64, False, "default"),
    ("workflows", "state", 16, False, "pending"),
    ("workflows", "requested", 8, True, None),
    ("workflow_steps", "state", 16, False, "pending"),
    ("workflow_events", "workflow_name", 255, False, None),
)


def _modify(collation: str | None) -> None:
    for table, column, length, nullable, default in _COLUMNS:
        collate = f" COLLATE {collation}" if collation else ""
        null = "NULL" if nullable else "NOT NULL"
        default_clause = f" DEFAULT '{default}'" if default is not None else ""
        op.execute(
            f"ALTER TABLE {table} MODIFY {column} VARCHAR({length}) CHARACTER SET utf8mb4"
            f"{collate} {null}{default_clause}"
        )


def upgrade() -> None:
    dialect = op.get_bind().dialect
    if dialect.name not in {"mysql", "mariadb"}:
        return
    # Binary and NO PAD (`utf8mb4_bin` ignores trailing spaces): MariaDB names it
    # `utf8mb4_nopad_bin`, MySQL 8 `utf8mb4_0900_bin`.
    _modify("utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin")


def downgrade() -> None:
    if op.get_bind().dialect.name not in {"mysql", "mariadb"}:
        return
    _modify(None)  # the table's default collation again
