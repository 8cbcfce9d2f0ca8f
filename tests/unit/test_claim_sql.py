"""The claim query as each dialect compiles it: SKIP LOCKED where the backend has it."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.engine import Dialect

from wfed.clock import utc_now
from wfed.store import claims

DIALECTS: dict[str, Dialect] = {
    "mysql": mysql.dialect(),
    "mariadb": MariaDBDialect(),
    "postgresql": postgresql.dialect(),
    "sqlite": sqlite.dialect(),
}


def _claim_sql(dialect: Dialect) -> str:
    query = claims.claim_pending_query(["default"], 7, utc_now())
    return " ".join(str(query.compile(dialect=dialect)).split())


@pytest.mark.parametrize("dialect", list(DIALECTS), ids=[f"sql_{d}" for d in DIALECTS])
def test_claim_sql_skips_locked_rows_where_supported(dialect: str) -> None:
    """The compiled claim SELECT ends in FOR UPDATE SKIP LOCKED on MySQL, MariaDB and
    PostgreSQL, and has no FOR UPDATE on SQLite (whose write transaction is the lock)."""
    sql = _claim_sql(DIALECTS[dialect])

    assert "ORDER BY workflows.claim_rank, workflows.id" in sql
    assert "LIMIT" in sql
    if dialect == "sqlite":
        assert "FOR UPDATE" not in sql
    else:
        assert sql.endswith("FOR UPDATE SKIP LOCKED")
