"""PostgreSQL wake-ups: a trigger tells listening daemons at once of new work and requests.

Every INSERT of a pending workflow (a plain SQL one too), every workflow that becomes
pending again (resumed, retried, released) and every pause or stop request sends a
NOTIFY on the `wfed_workflows` channel; daemons LISTEN and claim or act at once instead of
waiting for their next poll. Nothing on the other databases (they have no push).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Payloads: "pending <queue>" (work may be claimable there) and "request <id>" (a running
# workflow was asked to pause or stop). Identical notifications of one transaction are
# delivered once by PostgreSQL, so an INSERT … SELECT of ten thousand rows into one queue
# is one wake-up.
NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION wfed_notify_workflows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state = 'pending' THEN
            PERFORM pg_notify('wfed_workflows', 'pending ' || NEW.queue);
        END IF;
        RETURN NULL;
    END IF;
    IF NEW.state = 'pending' AND (OLD.state <> 'pending'
            OR NEW.requested IS DISTINCT FROM OLD.requested) THEN
        PERFORM pg_notify('wfed_workflows', 'pending ' || NEW.queue);
    ELSIF NEW.state = 'running' AND NEW.requested IS NOT NULL
            AND NEW.requested IS DISTINCT FROM OLD.requested THEN
        PERFORM pg_notify('wfed_workflows', 'request ' || NEW.id);
    END IF;
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER wfed_notify_insert AFTER INSERT ON workflows "
        "FOR EACH ROW EXECUTE FUNCTION wfed_notify_workflows()"
    )
    op.execute(
        "CREATE TRIGGER wfed_notify_update AFTER UPDATE OF state, requested ON workflows "
        "FOR EACH ROW EXECUTE FUNCTION wfed_notify_workflows()"
    )
