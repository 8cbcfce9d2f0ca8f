"""The initial schema: workflows, workflow_steps, workflow_events, daemons.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from wfed.store.schema import NOW, Id, Json, Timestamp

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WORKFLOW_STATES = "'pending', 'running', 'paused', 'error', 'stopped', 'completed'"
STEP_STATES = "'pending', 'running', 'completed', 'error', 'skipped', 'stopped'"


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("steps", Json, nullable=False),
        sa.Column("context", Json, nullable=True),
        sa.Column("current_step", sa.Integer, nullable=False, server_default="0"),
        sa.Column("queue", sa.String(64), nullable=False, server_default="default"),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claim_rank", sa.Integer, sa.Computed("-priority", persisted=True)),
        sa.Column("run_after", Timestamp, nullable=True),
        sa.Column("requested", sa.String(8), nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", Timestamp, nullable=True),
        sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=NOW),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=NOW),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.UniqueConstraint("name", name="uq_workflows_name"),
        sa.CheckConstraint(f"state IN ({WORKFLOW_STATES})", name="state"),
        sa.CheckConstraint("requested IS NULL OR requested IN ('pause', 'stop')", name="requested"),
        sa.CheckConstraint("current_step >= 0", name="current_step"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_workflows_claim", "workflows", ["state", "queue", "claim_rank", "id"])
    op.create_index("ix_workflows_lease", "workflows", ["state", "lease_expires_at"])
    op.create_index("ix_workflows_claimed_by", "workflows", ["claimed_by"])
    op.create_index("ix_workflows_finished", "workflows", ["state", "finished_at"])

    op.create_table(
        "workflow_steps",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", Id, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("args", Json, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_steps_workflow_id",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "workflow_id", "position", name="uq_workflow_steps_workflow_id_position"
        ),
        sa.CheckConstraint(f"state IN ({STEP_STATES})", name="state"),
        sa.CheckConstraint("attempts >= 0", name="attempts"),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "workflow_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", Id, nullable=False),
        sa.Column("workflow_name", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("detail", Json, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_workflow_events_workflow", "workflow_events", ["workflow_id", "id"])
    op.create_index("ix_workflow_events_name", "workflow_events", ["workflow_name", "id"])

    op.create_table(
        "daemons",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("queues", Json, nullable=False),
        sa.Column("max_workflows", sa.Integer, nullable=False),
        sa.Column("lease_seconds", sa.Integer, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
    )
