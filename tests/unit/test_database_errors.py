"""What a database error means (`wfed.store.database.database_error`): the one line wfectl
prints for it, on every backend, without the statement or the password."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from wfed.errors import DatabaseUnavailable, SchemaOutdated, WfedError
from wfed.store.database import Database, database_error, explained_errors

URL = "mysql+asyncmy://wfed:***@db/wfed"


class MySQLError(Exception):
    """What asyncmy raises: args are (code, message)."""


class PostgresError(Exception):
    """What asyncpg raises: the SQLSTATE is an attribute."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(kind: type[DBAPIError], orig: Exception) -> DBAPIError:
    return kind("SELECT secret_statement FROM workflows", {}, orig)


def message(exc: DBAPIError | OSError) -> str:
    return str(database_error(exc, URL))


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(ProgrammingError, MySQLError(1146, "Table 'wfed.workflows' doesn't exist")),
        wrapped(ProgrammingError, PostgresError('relation "workflows" does not exist', "42P01")),
        wrapped(OperationalError, Exception("no such table: workflows")),
    ],
    ids=["mysql", "postgresql", "sqlite"],
)
def test_missing_table_says_to_run_db_upgrade(exc: DBAPIError) -> None:
    """A missing table is SchemaOutdated, naming the database and `wfectl db upgrade`."""
    error = database_error(exc, URL)
    assert isinstance(error, SchemaOutdated)
    assert str(error).startswith(f"the wfed schema in {URL} is missing or incomplete (")
    assert str(error).endswith("): run `wfectl db upgrade`")
    assert "secret_statement" not in str(error)


def test_mysql_login_refused_in_the_servers_words() -> None:
    """A refused login keeps the server's message and code, without SQLAlchemy's dump."""
    exc = wrapped(OperationalError, MySQLError(1045, "Access denied for user 'wfed'@'h'"))
    assert message(exc) == (
        f"database {URL} refused the login: Access denied for user 'wfed'@'h' (error 1045)"
    )


@pytest.mark.parametrize("sqlstate", ["28P01", "28000"])
def test_postgresql_login_refused(sqlstate: str) -> None:
    """Invalid authorization (class 28) is a refused login."""
    exc = wrapped(OperationalError, PostgresError("password authentication failed", sqlstate))
    assert message(exc) == f"database {URL} refused the login: password authentication failed"


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(OperationalError, MySQLError(1142, "INSERT command denied to user 'wfed'")),
        wrapped(ProgrammingError, PostgresError("permission denied for table workflows", "42501")),
    ],
    ids=["mysql", "postgresql"],
)
def test_missing_privilege_is_not_called_unreachable(exc: DBAPIError) -> None:
    """A statement refused for want of a privilege says so and points at the grants."""
    text = message(exc)
    assert text.startswith(f"database {URL} refused the operation: ")
    assert text.endswith("(the account lacks a privilege: see docs/grants-mariadb.sql)")
    assert "unreachable" not in text


def test_unreachable_and_timed_out() -> None:
    """A connection that fails or breaks is `unreachable`; a timeout says it timed out."""
    refused = wrapped(OperationalError, MySQLError(2003, "Can't connect to MySQL server"))
    assert message(refused) == (
        f"database {URL} unreachable: Can't connect to MySQL server (error 2003)"
    )
    assert message(ConnectionRefusedError(111, "Connection refused")) == (
        f"database {URL} unreachable: [Errno 111] Connection refused"
    )
    assert message(TimeoutError()) == f"database {URL} unreachable: timed out"


def test_any_other_database_error_failed() -> None:
    """Any other database error is DatabaseUnavailable `failed`, in the driver's words."""
    exc = wrapped(ProgrammingError, MySQLError(1064, "You have an error in your SQL syntax"))
    error = database_error(exc, URL)
    assert isinstance(error, DatabaseUnavailable)
    assert str(error) == f"database {URL} failed: You have an error in your SQL syntax (error 1064)"


def test_explained_errors_translates_database_errors_only() -> None:
    """Database errors leave `explained_errors` as WfedErrors; other errors pass as they are."""
    with pytest.raises(DatabaseUnavailable, match="unreachable: timed out"), explained_errors(URL):
        raise TimeoutError
    with pytest.raises(WfedError, match=r"^already one$"), explained_errors(URL):
        raise WfedError("already one")
    with pytest.raises(KeyError), explained_errors(URL):
        raise KeyError("a bug")


async def test_database_words_a_failed_connection_the_same_way() -> None:
    """A transaction that cannot connect is DatabaseUnavailable, worded as database_error
    words its cause (nothing listens on port 1)."""
    db = Database("mysql+asyncmy://wfed:pw@127.0.0.1:1/wfed")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            async with db.transaction():
                pass
    finally:
        await db.dispose()
    cause = raised.value.__cause__
    assert isinstance(cause, DBAPIError)
    assert str(raised.value) == str(database_error(cause, db.display_url))
    assert str(raised.value).startswith(f"database {db.display_url} unreachable: ")
    assert str(raised.value).endswith("(error 2003)")
