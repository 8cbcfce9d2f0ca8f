"""Fleet coordination: concurrency keys, schedules, maintenance windows, notifications.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from wfed.store.schema import NOW, Id, Json, Timestamp

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _concurrency_keys()
    _schedules()
    _windows()
    _notifications()


def _concurrency_keys() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("locks", Json, nullable=True))
    op.create_table(
        "workflow_locks",
        sa.Column("lock_key", sa.String(255), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("workflow_id", Id, nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False, server_default=NOW),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_locks_workflow_id",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "workflow_id", "lock_key", name="uq_workflow_locks_workflow_id_lock_key"
        ),
    )


def _schedules() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("template", Json, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("catchup", sa.String(8), nullable=True),
        sa.Column("next_fire_at", Timestamp, nullable=True),
        sa.Column("last_fired_at", Timestamp, nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=NOW),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=NOW),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
        sa.CheckConstraint("state IN ('active', 'paused')", name="state"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_schedules_due", "schedules", ["state", "next_fire_at"])
    op.create_table(
        "schedule_fires",
        sa.Column("schedule_id", Id, primary_key=True, autoincrement=False),
        sa.Column("tick_at", Timestamp, primary_key=True),
        sa.Column("workflow_name", sa.String(255), nullable=False),
        sa.Column("fired_by", sa.String(255), nullable=False),
        sa.Column("fired_at", Timestamp, nullable=False, server_default=NOW),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_schedule_fires_schedule_id",
            ondelete="CASCADE",
        ),
    )


def _windows() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("windows", Json, nullable=True))
        batch.add_column(sa.Column("window_paused", sa.String(255), nullable=True))
    op.create_index("ix_workflows_window_paused", "workflows", ["window_paused"])


def _notifications() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Timestamp, nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claimed_until", Timestamp, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False, server_default=NOW),
        sa.Column("sent_at", Timestamp, nullable=True),
        sa.UniqueConstraint(
            "event_id", "target", name="uq_notification_deliveries_event_id_target"
        ),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["state", "next_attempt_at"],
    )
    op.create_table(
        "notification_cursors",
        sa.Column("target", sa.String(255), primary_key=True),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=NOW),
    )
