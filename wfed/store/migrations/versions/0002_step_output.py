"""Live step output: workflow_step_output, chunks of lines per step attempt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from wfed.store.schema import Id, OutputText, Timestamp

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflow_step_output",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", Id, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("text", OutputText, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_step_output_workflow_id",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "workflow_id",
            "position",
            "attempt",
            "seq",
            name="uq_workflow_step_output_workflow_id_position_attempt_seq",
        ),
        sa.CheckConstraint("stream IN ('stdout', 'stderr')", name="stream"),
    )
