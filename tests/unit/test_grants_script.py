"""`wfectl db grants`'s script (wfed.store.grants): the docs' grants files are its output
for the database `wfed`, it says the order in comments, and it quotes what needs it.
Applied for real: tests/daemon/test_grants_command.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfed.errors import WfedError
from wfed.store import grants

DOCS = Path(__file__).resolve().parents[2] / "docs"
MYSQL = "mysql+asyncmy://admin@db/wfed"
POSTGRESQL = "postgresql+asyncpg://admin@db/wfed"


@pytest.mark.parametrize(
    ("url", "document"),
    [(MYSQL, "grants-mariadb.sql"), (POSTGRESQL, "grants-postgresql.sql")],
    ids=["mariadb", "postgresql"],
)
def test_the_docs_files_are_the_script_for_database_wfed(url: str, document: str) -> None:
    """docs/grants-*.sql are exactly `wfectl db grants --database wfed`: one content."""
    assert (DOCS / document).read_text(encoding="utf-8") == grants.script(url, "wfed")


@pytest.mark.parametrize("url", [MYSQL, POSTGRESQL], ids=["mariadb", "postgresql"])
def test_the_order_is_migrate_then_upgrade_then_the_others(url: str) -> None:
    """The header says the order; the migrate account comes before the upgrade mark,
    the daemon's and the operator's grants after it."""
    script = grants.script(url, "wfed")
    header = script.split("\n\n", 1)[0]
    assert "in this order" in header
    assert header.index("1. the migrate") < header.index("2. `wfectl db upgrade`")
    assert header.index("2. `wfectl db upgrade`") < header.index("3. the daemon and operator")
    before, after = script.split(grants.UPGRADE_MARK)
    assert "wfed_migrate" in before
    assert "wfed_daemon" not in before
    assert "wfed_operator" not in before
    assert "workflows" not in before.split("\n\n", 1)[1]  # no table named before the upgrade
    assert "wfed_daemon" in after
    assert "wfed_operator" in after
    assert "workflow_step_output" in after  # the daemon records its steps' output


def test_names_are_chosen_and_quoted_where_needed() -> None:
    mysql = grants.script(MYSQL, "shop-wfed", migrate_user="m", daemon_user="d", operator_user="o")
    assert "CREATE USER IF NOT EXISTS 'd'@'%' IDENTIFIED BY 'change-me-daemon';" in mysql
    assert "GRANT SELECT, INSERT ON `shop-wfed`.workflow_events TO 'd'@'%';" in mysql
    assert "GRANT ALL PRIVILEGES ON `shop-wfed`.* TO 'm'@'%';" in mysql
    # In a grant on all of a database's tables, `_` is a wildcard unless escaped.
    assert "GRANT SELECT ON `wfed\\_prod`.* TO 'wfed_operator'@'%';" in grants.script(
        MYSQL, "wfed_prod"
    )
    assert " wfed_prod.workflows " in grants.script(MYSQL, "wfed_prod")

    postgresql = grants.script(POSTGRESQL, "Shop", daemon_user="user")
    assert 'GRANT CONNECT ON DATABASE "Shop" TO "user";' in postgresql
    assert 'GRANT SELECT, INSERT ON workflow_events TO "user";' in postgresql
    assert "CREATE ROLE wfed_operator LOGIN" in postgresql


@pytest.mark.parametrize(
    ("database", "users"),
    [
        ("wfed'; DROP TABLE x; --", {}),
        ("", {}),
        ("wfed", {"daemon_user": "d@host"}),
        ("wfed", {"operator_user": "a b"}),
        ("wfed", {"daemon_user": "same", "operator_user": "same"}),
    ],
)
def test_names_the_script_cannot_use_are_refused(database: str, users: dict[str, str]) -> None:
    with pytest.raises(WfedError):
        grants.script(MYSQL, database, **users)


def test_sqlite_has_no_accounts(tmp_path: Path) -> None:
    """SQLite: refused, saying what decides who may use the file (named, absolute)."""
    with pytest.raises(WfedError, match=r"SQLite has no accounts .* /\S+/wfed\.db"):
        grants.script(f"sqlite+aiosqlite:///{tmp_path / 'wfed.db'}", "wfed")
