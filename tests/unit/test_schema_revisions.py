"""The schema check reads the version table without Alembic: the revisions it knows must
be those of the migration scripts."""

from __future__ import annotations

from wfed.store import migrate


def test_the_known_revisions_are_the_migration_scripts() -> None:
    """A new migration adds its revision to `migrate.REVISIONS` (its last is the head)."""
    assert list(migrate.REVISIONS) == migrate.script_revisions()
    assert migrate.head_revision() == migrate.HEAD
