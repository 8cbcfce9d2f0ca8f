"""A daemon's own workflows with a request waiting, through one index.

The heartbeat asks every control interval which of its workflows were asked to stop,
and renews their leases far less often: the index on `claimed_by` becomes one on
(`claimed_by`, `requested`), so that question reads only the rows with a request, however
many workflows the daemon runs (its prefix still serves every use of the old index).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_workflows_owner_requested", "workflows", ["claimed_by", "requested"])
    op.drop_index("ix_workflows_claimed_by", table_name="workflows")


def downgrade() -> None:
    op.create_index("ix_workflows_claimed_by", "workflows", ["claimed_by"])
    op.drop_index("ix_workflows_owner_requested", table_name="workflows")
